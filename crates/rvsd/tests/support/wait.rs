//! Bounded waiting for something the daemon does on its own time.

use std::time::{Duration, Instant};

/// How long a condition may take to come true.
pub const DEADLINE: Duration = Duration::from_secs(3);

/// Evaluate `cond` until it holds (true) or [`DEADLINE`] has passed (false), pausing 5 ms
/// between tries.
pub fn poll(mut cond: impl FnMut() -> bool) -> bool {
    poll_for(DEADLINE, &mut cond)
}

/// [`poll`] with its own deadline.
pub fn poll_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
