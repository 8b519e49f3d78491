//! `twos` scheduler (placeholder until implemented).

use super::{DestChange, SchedCtx, SchedPacket, Scheduler};
use crate::dest::DestList;

/// `twos` scheduler state.
#[derive(Debug, Default)]
pub struct Twos {}

impl Scheduler for Twos {
    fn name(&self) -> &'static str {
        "twos"
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
