//! The engine shared by the control plane and the data plane: one [`Ipvs`] behind a mutex and
//! the clock it runs on (milliseconds since the director started).

use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use rvs_core::ipvs::Ipvs;
use rvs_core::time::Tick;

/// One IPVS instance and its clock.
pub struct Core {
    ipvs: Mutex<Ipvs>,
    start: Instant,
}

impl Core {
    /// Wrap `ipvs`; its clock starts now.
    pub fn new(ipvs: Ipvs) -> Core {
        Core {
            ipvs: Mutex::new(ipvs),
            start: Instant::now(),
        }
    }

    /// The engine's clock.
    pub fn now(&self) -> Tick {
        Tick(self.start.elapsed().as_millis() as u64)
    }

    /// Exclusive access to the engine. A panic while the lock was held cannot leave the
    /// engine half-changed in a way a later caller must avoid (every operation checks its
    /// inputs before it changes anything), so a poisoned lock is taken over.
    pub fn lock(&self) -> MutexGuard<'_, Ipvs> {
        self.ipvs.lock().unwrap_or_else(|e| e.into_inner())
    }
}
