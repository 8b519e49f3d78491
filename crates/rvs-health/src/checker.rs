//! One checker's schedule and state, as keepalived runs it (`check_tcp.c: tcp_epilog` and the
//! other checkers' epilogues):
//!
//! - the first probe runs after a random delay in `0..=warmup`;
//! - a probe that passes schedules the next one `delay_loop` after it completed; if the checker
//!   was down (or had not run yet), it is now up;
//! - an up checker whose probe fails is retried `retry` times, `delay_before_retry` after each
//!   failure completed; when the last retry fails too it goes down and the next probe is
//!   `delay_loop` later;
//! - a down checker is probed every `delay_loop`, without retries; one pass brings it up.
//!
//! So with probes that fail at once, a server killed just after a passing probe is seen down
//! at most `delay_loop + retry × delay_before_retry` after that probe; when each failing probe
//! waits for its whole timeout, `(retry + 1) × connect_timeout` more.

use rvs_config::spec::{Check, CheckKind};
use rvs_core::time::{Span, Tick};

use crate::{fmt_ms, kind_name, ms, Outcome};

/// What a completed probe changed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// nothing the rest of the engine cares about
    None,
    /// the checker went up
    Up,
    /// the checker went down, with the reason for the log line
    Down(String),
    /// the MISC dynamic weight changed (the checker stays up)
    Weight,
}

/// A checker's timers in milliseconds and its state.
#[derive(Clone, Debug)]
pub(crate) struct Checker {
    pub(crate) spec: Check,
    delay_loop: u64,
    retry_delay: u64,
    retry: u32,
    /// how long a probe may take before it is failed (`connect_timeout`, MISC `misc_timeout`)
    pub(crate) timeout: u64,
    /// `None`: never probed (ldirectord `on` / `off`)
    pub(crate) next: Option<Tick>,
    pub(crate) up: bool,
    has_run: bool,
    retry_it: u32,
    /// probe in flight: its id and deadline
    pub(crate) in_flight: Option<(u64, Tick)>,
    /// MISC dynamic: the weight the last passing probe gave
    pub(crate) dyn_weight: Option<u32>,
}

impl Checker {
    /// A checker starting at `now`, up unless `alpha`; `jitter` in `0..=warmup` delays the
    /// first probe.
    pub(crate) fn new(spec: &Check, alpha: bool, now: Tick, jitter: u64) -> Checker {
        let t = spec.timing;
        let timeout = match &spec.kind {
            CheckKind::Misc(m) => ms(m.timeout),
            _ => ms(t.connect_timeout),
        };
        let (up, next) = match spec.kind {
            CheckKind::On => (true, None),
            CheckKind::Off => (false, None),
            _ => (!alpha, Some(now + Span(jitter))),
        };
        Checker {
            spec: spec.clone(),
            delay_loop: ms(t.delay_loop),
            retry_delay: ms(t.delay_before_retry),
            retry: t.retry,
            timeout,
            next,
            up,
            has_run: false,
            retry_it: 0,
            in_flight: None,
            dyn_weight: None,
        }
    }

    /// The warmup of a check in milliseconds (0 for checks never probed).
    pub(crate) fn warmup(spec: &Check) -> u64 {
        match spec.kind {
            CheckKind::On | CheckKind::Off => 0,
            _ => ms(spec.timing.warmup),
        }
    }

    /// A new check of a real server that was already running (a reload added or changed
    /// it): it starts in the server's state, up if the server was healthy, else down until
    /// its first pass (as an `alpha` one). Checks never probed keep their fixed state.
    pub(crate) fn assume(&mut self, up: bool) {
        if self.next.is_some() {
            self.up = up;
        }
    }

    /// Whether a probe should start at `now`.
    pub(crate) fn is_due(&self, now: Tick) -> bool {
        self.in_flight.is_none() && self.next.is_some_and(|t| t <= now)
    }

    /// Mark a probe started at `now`; returns its deadline.
    pub(crate) fn start(&mut self, id: u64, now: Tick) -> Tick {
        let deadline = now + Span(self.timeout);
        self.in_flight = Some((id, deadline));
        self.next = None;
        deadline
    }

    /// The probe in flight completed at `now` with `outcome`.
    pub(crate) fn complete(&mut self, outcome: &Outcome, now: Tick) -> Change {
        self.in_flight = None;
        let passed = matches!(outcome, Outcome::Ok | Outcome::Weight(_));
        let mut delay = self.delay_loop;
        let mut change = Change::None;
        if passed || ((self.up || !self.has_run) && self.retry_it >= self.retry) {
            let retries = self.retry_it;
            self.retry_it = 0;
            if passed {
                change = self.passed(outcome);
            } else if self.up {
                self.up = false;
                self.dyn_weight = None;
                change = Change::Down(self.reason(outcome, retries));
            }
        } else if self.up {
            delay = self.retry_delay;
            self.retry_it += 1;
        }
        self.has_run = true;
        self.next = Some(now + Span(delay));
        change
    }

    fn passed(&mut self, outcome: &Outcome) -> Change {
        let w = match outcome {
            Outcome::Weight(w) => Some(*w),
            _ => None,
        };
        let weight_changed = self.dyn_weight != w;
        self.dyn_weight = w;
        if !self.up {
            self.up = true;
            Change::Up
        } else if weight_changed {
            Change::Weight
        } else {
            Change::None
        }
    }

    /// `HTTP_GET status 503 (expected 200-299) after 1 retry`
    fn reason(&self, outcome: &Outcome, retries: u32) -> String {
        let what = match outcome {
            Outcome::Fail(r) => r.clone(),
            Outcome::Timeout => format!("no answer within {}", fmt_ms(self.timeout)),
            Outcome::Ok | Outcome::Weight(_) => "passed".to_string(),
        };
        let after = match retries {
            0 => String::new(),
            1 => " after 1 retry".to_string(),
            n => format!(" after {n} retries"),
        };
        format!("{} {what}{after}", kind_name(&self.spec.kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_config::spec::{Loc, Timing};
    use std::time::Duration;

    fn tcp(retry: u32) -> Check {
        Check {
            loc: Loc::new("t", 1, 1),
            kind: CheckKind::Tcp,
            timing: Timing {
                delay_loop: Duration::from_secs(10),
                connect_timeout: Duration::from_secs(3),
                retry,
                delay_before_retry: Duration::from_secs(2),
                warmup: Duration::ZERO,
            },
            connect: None,
            bind_addr: None,
            bind_port: None,
            bind_if: None,
            fwmark: None,
            log_all_failures: false,
        }
    }

    fn run(c: &mut Checker, at: u64, o: Outcome) -> Change {
        assert!(c.is_due(Tick(at)), "due at {at}: next {:?}", c.next);
        c.start(1, Tick(at));
        c.complete(&o, Tick(at))
    }

    #[test]
    fn up_checker_goes_down_only_after_its_retries() {
        let mut c = Checker::new(&tcp(2), false, Tick(0), 0);
        assert_eq!(run(&mut c, 0, Outcome::Ok), Change::None);
        assert_eq!(c.next, Some(Tick(10_000)));
        let fail = || Outcome::Fail("connection refused".into());
        assert_eq!(run(&mut c, 10_000, fail()), Change::None);
        assert_eq!(c.next, Some(Tick(12_000)));
        assert_eq!(run(&mut c, 12_000, fail()), Change::None);
        let ch = run(&mut c, 14_000, fail());
        assert_eq!(
            ch,
            Change::Down("TCP_CHECK connection refused after 2 retries".into())
        );
        // down: every delay_loop, one pass brings it back
        assert_eq!(c.next, Some(Tick(24_000)));
        assert_eq!(run(&mut c, 24_000, fail()), Change::None);
        assert_eq!(c.next, Some(Tick(34_000)));
        assert_eq!(run(&mut c, 34_000, Outcome::Ok), Change::Up);
    }

    #[test]
    fn a_pass_between_retries_resets_the_count() {
        let mut c = Checker::new(&tcp(1), false, Tick(0), 0);
        run(&mut c, 0, Outcome::Fail("x".into()));
        assert_eq!(run(&mut c, 2_000, Outcome::Ok), Change::None);
        assert_eq!(run(&mut c, 12_000, Outcome::Fail("x".into())), Change::None);
        assert!(c.up);
    }

    #[test]
    fn alpha_checker_starts_down_and_is_not_retried() {
        let mut c = Checker::new(&tcp(3), true, Tick(0), 500);
        assert!(!c.up && !c.is_due(Tick(499)));
        assert_eq!(run(&mut c, 500, Outcome::Timeout), Change::None);
        assert_eq!(c.next, Some(Tick(10_500)));
        assert_eq!(run(&mut c, 10_500, Outcome::Ok), Change::Up);
    }

    #[test]
    fn dynamic_weight_changes_are_reported_and_reset_on_failure() {
        let mut c = Checker::new(&tcp(0), false, Tick(0), 0);
        assert_eq!(run(&mut c, 0, Outcome::Weight(5)), Change::Weight);
        assert_eq!(run(&mut c, 10_000, Outcome::Weight(5)), Change::None);
        assert_eq!(c.dyn_weight, Some(5));
        assert!(matches!(
            run(&mut c, 20_000, Outcome::Timeout),
            Change::Down(r) if r == "TCP_CHECK no answer within 3s"
        ));
        assert_eq!(c.dyn_weight, None);
    }
}
