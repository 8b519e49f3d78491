//! Passive health (rvs extension): the data plane reports connection failures and resets per
//! real server; `failures` consecutive ones eject the server for a backoff that doubles on
//! each repeat up to `max_backoff`. The repeat count starts again once a server has stayed in
//! the pool for `max_backoff` since its last return.

use rvs_config::spec::Passive;
use rvs_core::time::{Span, Tick};

use crate::{ms, PassiveEvent};

/// What one event did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// nothing to do
    None,
    /// the streak reached the threshold: eject if the cap allows
    Eject,
}

/// The passive state of one real server.
#[derive(Clone, Debug, Default)]
pub(crate) struct PassiveState {
    /// consecutive failures and resets
    pub(crate) streak: u32,
    /// ejected until then
    pub(crate) until: Option<Tick>,
    /// ejections in the current series (for the doubling)
    repeats: u32,
    /// when the server last came back from an ejection
    returned: Option<Tick>,
    /// the cap already refused this streak (logged once)
    pub(crate) refused: bool,
}

impl PassiveState {
    /// Count one event (for a server in the pool).
    pub(crate) fn event(&mut self, cfg: &Passive, ev: PassiveEvent) -> Verdict {
        match ev {
            PassiveEvent::Success => {
                self.streak = 0;
                self.refused = false;
                Verdict::None
            }
            PassiveEvent::ConnectFailure | PassiveEvent::Reset => {
                self.streak = self.streak.saturating_add(1);
                if self.streak >= cfg.failures.max(1) {
                    Verdict::Eject
                } else {
                    Verdict::None
                }
            }
        }
    }

    /// Eject at `now`; returns how long for.
    pub(crate) fn eject(&mut self, cfg: &Passive, now: Tick) -> u64 {
        let max = ms(cfg.max_backoff).max(ms(cfg.backoff));
        if self.returned.is_some_and(|r| now.since(r) >= max) {
            self.repeats = 0;
        }
        let factor = 1u64 << self.repeats.min(32);
        let span = ms(cfg.backoff).saturating_mul(factor).min(max);
        self.repeats = self.repeats.saturating_add(1);
        self.streak = 0;
        self.refused = false;
        self.until = Some(now + Span(span));
        span
    }

    /// End the ejection at `now`.
    pub(crate) fn end(&mut self, now: Tick) {
        self.until = None;
        self.returned = Some(now);
    }
}

/// How many of `n` servers may be ejected at once: `max_ejected_percent` of them rounded
/// down, but at least one unless the percentage is 0.
pub(crate) fn cap(cfg: &Passive, n: usize) -> usize {
    let pct = usize::from(cfg.max_ejected_percent.min(100));
    if pct == 0 || n == 0 {
        return 0;
    }
    (n * pct / 100).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg() -> Passive {
        Passive {
            failures: 3,
            backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(35),
            max_ejected_percent: 50,
        }
    }

    #[test]
    fn consecutive_failures_eject_and_a_success_resets_the_streak() {
        let c = cfg();
        let mut p = PassiveState::default();
        assert_eq!(p.event(&c, PassiveEvent::Reset), Verdict::None);
        assert_eq!(p.event(&c, PassiveEvent::ConnectFailure), Verdict::None);
        assert_eq!(p.event(&c, PassiveEvent::Success), Verdict::None);
        assert_eq!(p.event(&c, PassiveEvent::Reset), Verdict::None);
        assert_eq!(p.event(&c, PassiveEvent::Reset), Verdict::None);
        assert_eq!(p.event(&c, PassiveEvent::Reset), Verdict::Eject);
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_and_starts_over_after_a_quiet_time() {
        let c = cfg();
        let mut p = PassiveState::default();
        assert_eq!(p.eject(&c, Tick(0)), 10_000);
        p.end(Tick(10_000));
        assert_eq!(p.eject(&c, Tick(11_000)), 20_000);
        p.end(Tick(31_000));
        assert_eq!(p.eject(&c, Tick(32_000)), 35_000);
        p.end(Tick(67_000));
        // in the pool for max_backoff: the series starts over
        assert_eq!(p.eject(&c, Tick(102_000)), 10_000);
    }

    #[test]
    fn the_cap_rounds_down_but_allows_one() {
        let mut c = cfg();
        assert_eq!(cap(&c, 4), 2);
        assert_eq!(cap(&c, 5), 2);
        assert_eq!(cap(&c, 1), 1);
        c.max_ejected_percent = 10;
        assert_eq!(cap(&c, 3), 1);
        assert_eq!(cap(&c, 25), 2);
        c.max_ejected_percent = 0;
        assert_eq!(cap(&c, 25), 0);
        c.max_ejected_percent = 100;
        assert_eq!(cap(&c, 7), 7);
    }
}
