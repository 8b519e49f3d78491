//! `wrr` scheduler (placeholder until implemented).

use super::{DestChange, SchedCtx, SchedPacket, Scheduler};
use crate::dest::DestList;

/// `wrr` scheduler state.
#[derive(Debug, Default)]
pub struct Wrr {}

impl Scheduler for Wrr {
    fn name(&self) -> &'static str {
        "wrr"
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
