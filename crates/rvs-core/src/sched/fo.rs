//! `fo` scheduler (placeholder until implemented).

use super::{DestChange, SchedCtx, SchedPacket, Scheduler};
use crate::dest::DestList;

/// `fo` scheduler state.
#[derive(Debug, Default)]
pub struct Fo {}

impl Scheduler for Fo {
    fn name(&self) -> &'static str {
        "fo"
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
