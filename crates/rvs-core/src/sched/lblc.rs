//! `lblc` scheduler (placeholder until implemented).

use super::{DestChange, SchedCtx, SchedPacket, Scheduler};
use crate::dest::DestList;

/// `lblc` scheduler state.
#[derive(Debug, Default)]
pub struct Lblc {}

impl Scheduler for Lblc {
    fn name(&self) -> &'static str {
        "lblc"
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
