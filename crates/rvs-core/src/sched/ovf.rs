//! `ovf` scheduler (placeholder until implemented).

use super::{DestChange, SchedCtx, SchedPacket, Scheduler};
use crate::dest::DestList;

/// `ovf` scheduler state.
#[derive(Debug, Default)]
pub struct Ovf {}

impl Scheduler for Ovf {
    fn name(&self) -> &'static str {
        "ovf"
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
