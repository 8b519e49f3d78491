//! `lblcr` scheduler (placeholder until implemented).

use super::{DestChange, SchedCtx, SchedPacket, Scheduler};
use crate::dest::DestList;

/// `lblcr` scheduler state.
#[derive(Debug, Default)]
pub struct Lblcr {}

impl Scheduler for Lblcr {
    fn name(&self) -> &'static str {
        "lblcr"
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
