//! Least-connection family: lc, wlc, sed, nq (placeholder until implemented).

use super::{DestChange, SchedCtx, SchedPacket, Scheduler};
use crate::dest::DestList;

/// `lc` scheduler.
#[derive(Debug, Default)]
pub struct Lc {}

impl Scheduler for Lc {
    fn name(&self) -> &'static str {
        "lc"
    }
    fn dests_changed(&mut self, _list: DestList<'_>, _change: DestChange) {}
    fn schedule(
        &mut self,
        _: DestList<'_>,
        _: &SchedPacket,
        _: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        None
    }
}

/// `wlc` scheduler.
#[derive(Debug, Default)]
pub struct Wlc {}

impl Scheduler for Wlc {
    fn name(&self) -> &'static str {
        "wlc"
    }
    fn dests_changed(&mut self, _list: DestList<'_>, _change: DestChange) {}
    fn schedule(
        &mut self,
        _: DestList<'_>,
        _: &SchedPacket,
        _: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        None
    }
}

/// `sed` scheduler.
#[derive(Debug, Default)]
pub struct Sed {}

impl Scheduler for Sed {
    fn name(&self) -> &'static str {
        "sed"
    }
    fn dests_changed(&mut self, _list: DestList<'_>, _change: DestChange) {}
    fn schedule(
        &mut self,
        _: DestList<'_>,
        _: &SchedPacket,
        _: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        None
    }
}

/// `nq` scheduler.
#[derive(Debug, Default)]
pub struct Nq {}

impl Scheduler for Nq {
    fn name(&self) -> &'static str {
        "nq"
    }
    fn dests_changed(&mut self, _list: DestList<'_>, _change: DestChange) {}
    fn schedule(
        &mut self,
        _: DestList<'_>,
        _: &SchedPacket,
        _: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        None
    }
}
