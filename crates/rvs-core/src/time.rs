//! Time as the core sees it: a caller-supplied monotonic instant in milliseconds.
//!
//! The core never reads a clock. Every operation that depends on time takes a [`Tick`]; the
//! data planes pass `Instant`-derived values, the simulator and tests pass whatever they like.

use std::ops::{Add, Sub};

/// A point in time, in milliseconds since an arbitrary epoch chosen by the caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tick(pub u64);

impl Tick {
    /// The epoch.
    pub const ZERO: Tick = Tick(0);
    /// `secs` seconds after the epoch.
    pub fn from_secs(secs: u64) -> Tick {
        Tick(secs * 1000)
    }
    /// Milliseconds since the epoch.
    pub fn as_millis(self) -> u64 {
        self.0
    }
    /// Saturating difference in milliseconds.
    pub fn since(self, earlier: Tick) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// A span of time in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(pub u64);

impl Span {
    /// `s` seconds.
    pub const fn secs(s: u64) -> Span {
        Span(s * 1000)
    }
    /// Whole seconds (truncated), as the kernel reports `timeout / HZ`.
    pub fn as_secs(self) -> u64 {
        self.0 / 1000
    }
}

impl Add<Span> for Tick {
    type Output = Tick;
    fn add(self, rhs: Span) -> Tick {
        Tick(self.0.saturating_add(rhs.0))
    }
}

impl Sub<Tick> for Tick {
    type Output = Span;
    fn sub(self, rhs: Tick) -> Span {
        Span(self.0.saturating_sub(rhs.0))
    }
}
