//! What an operator relies on, one scenario each: a dead server leaves the pool within the
//! bound keepalived's timers give, comes back after one passing check, inhibit keeps it with
//! weight 0, quorum loss switches to the sorry server and back with hysteresis, MISC dynamic
//! weights, slow start, passive ejection and its cap.

mod common;

use common::*;
use rvs_core::time::Tick;
use rvs_health::{Action, PassiveEvent, RealId};

const R0: RealId = RealId { svc: 0, real: 0 };

/// delay_loop 10 s, connect_timeout 3 s, retry 2, delay_before_retry 2 s.
fn timers() -> rvs_config::spec::Timing {
    timing(10_000, 3_000, 2, 2_000)
}

/// Run to the completion of a passing probe (probes pass after 5 ms and run every
/// delay_loop after the previous completed: at 0, 10 005, 20 010 …).
fn to_third_pass(d: &mut Driver) -> u64 {
    let t_pass = 2 * 10_005 + 5;
    d.run_until(Tick(t_pass));
    t_pass
}

#[test]
fn a_silent_server_is_out_exactly_at_the_bound_of_the_timers() {
    let mut d = Driver::new(vec![service(vec![real(1, 3, vec![tcp(timers())])])]);
    let t_pass = to_third_pass(&mut d);
    let mark = d.log.len();
    d.silent.insert(ip(1));
    d.secs(60);
    let down = d.first(mark, "delete 10.0.0.1:80").expect("removed");
    // kill just after a passing probe: one delay_loop, then retry + 1 probes that each wait
    // their whole connect_timeout, with delay_before_retry between them
    let bound = t_pass + 10_000 + 3 * 3_000 + 2 * 2_000;
    assert_eq!(down, Tick(bound));
    // within the bound: delay_loop × (retry + 1) + delay_before_retry
    assert!(down.as_millis() - t_pass <= 10_000 * 3 + 2_000);
    let lines = d.since(mark);
    assert!(lines.contains(
        &"log real server 10.0.0.1:80 of TCP 192.0.2.10:80 down: TCP_CHECK no answer within 3s after 2 retries"
            .to_string()
    ), "{lines:#?}");
    assert!(lines.contains(&"run /bin/down 1".to_string()));
}

#[test]
fn a_refusing_server_is_out_after_one_delay_loop_and_its_retries_and_back_after_one_pass() {
    let mut d = Driver::new(vec![service(vec![
        real(1, 3, vec![tcp(timers())]),
        real(2, 1, vec![tcp(timers())]),
    ])]);
    let t_pass = to_third_pass(&mut d);
    let mark = d.log.len();
    d.dead.insert(ip(1));
    d.secs(30);
    let down = d.first(mark, "delete 10.0.0.1:80").expect("removed");
    assert_eq!(down, Tick(t_pass + 10_000 + 2 * 2_000 + 3));
    assert_eq!(d.weight_of(0, 0), None);
    assert_eq!(d.weight_of(0, 1), Some(1), "the other server stays");
    // restart: the next probe (every delay_loop while down) passes and brings it back
    let revived = d.now;
    d.dead.remove(&ip(1));
    let mark = d.log.len();
    d.secs(30);
    let up = d.first(mark, "add 10.0.0.1:80").expect("re-added");
    assert!(up.as_millis() - revived.as_millis() <= 10_000 + 5);
    assert_eq!(d.weight_of(0, 0), Some(3));
    assert_eq!(
        d.since(mark)[..3],
        [
            "log real server 10.0.0.1:80 of TCP 192.0.2.10:80 up: TCP_CHECK passed",
            "add 10.0.0.1:80 to TCP 192.0.2.10:80 weight 3",
            "run /bin/up 1",
        ]
    );
}

#[test]
fn inhibit_on_failure_keeps_the_server_with_weight_zero() {
    let mut r = real(1, 4, vec![tcp(timers())]);
    r.inhibit_on_failure = true;
    let mut d = Driver::new(vec![service(vec![r, real(2, 1, vec![tcp(timers())])])]);
    assert_eq!(d.weight_of(0, 0), Some(4));
    d.dead.insert(ip(1));
    d.secs(40);
    assert_eq!(d.weight_of(0, 0), Some(0));
    assert!(d
        .since(0)
        .contains(&"edit 10.0.0.1:80 of TCP 192.0.2.10:80 weight 0".into()));
    assert!(!d.since(0).iter().any(|l| l.starts_with("delete")));
    d.dead.clear();
    d.secs(20);
    assert_eq!(d.weight_of(0, 0), Some(4));
}

#[test]
fn alpha_servers_start_out_and_join_after_their_first_pass() {
    let mut a = real(1, 2, vec![tcp(timers())]);
    a.alpha = true;
    let mut b = real(2, 2, vec![tcp(timers())]);
    b.alpha = true;
    b.inhibit_on_failure = true;
    let mut d = Driver::new(vec![service(vec![a, b])]);
    assert_eq!(
        d.since(0),
        [
            "add service TCP 192.0.2.10:80 wlc",
            "add 10.0.0.2:80 to TCP 192.0.2.10:80 weight 0"
        ]
    );
    assert!(!d.h.quorum_up(0));
    d.run_until(Tick(5));
    assert_eq!(d.weight_of(0, 0), Some(2));
    assert_eq!(d.weight_of(0, 1), Some(2));
    assert!(d.h.quorum_up(0));
    assert!(d.since(0).contains(&"run /bin/quorum up".into()));
}

/// Four servers of weight 1, quorum 3, hysteresis 1: lost below 2, regained at 4.
fn quorum_service(sorry_inhibit: bool) -> Driver {
    let reals = (1..=4).map(|i| real(i, 1, vec![tcp(timers())])).collect();
    let mut s = service(reals);
    s.quorum = 3;
    s.hysteresis = 1;
    s.sorry = Some(sorry(99, sorry_inhibit));
    Driver::new(vec![s])
}

#[test]
fn quorum_loss_switches_to_the_sorry_server_and_back_with_hysteresis() {
    let mut d = quorum_service(false);
    assert!(d.h.quorum_up(0));
    assert!(!d.since(0).iter().any(|l| l.contains("10.0.0.99")));
    d.dead.extend([ip(1), ip(2)]);
    d.secs(40);
    assert!(d.h.quorum_up(0), "weight 2 is not below 3 - 1");
    let mark = d.log.len();
    d.dead.insert(ip(3));
    d.secs(40);
    assert!(!d.h.quorum_up(0) && d.h.sorry_active(0));
    let lines = d.since(mark);
    let at = lines
        .iter()
        .position(|l| l.contains("lost quorum"))
        .unwrap();
    assert_eq!(
        lines[at..at + 4],
        [
            "log TCP 192.0.2.10:80 lost quorum: weight 1 < 3-1, sorry server 10.0.0.99:80 added",
            "delete 10.0.0.4:80 from TCP 192.0.2.10:80",
            "add 10.0.0.99:80 to TCP 192.0.2.10:80 weight 1",
            "run /bin/quorum down",
        ]
    );
    let pool: Vec<_> = d.h.table(0).iter().map(|x| x.addr).collect();
    assert_eq!(pool, [ip(99)]);
    // two servers back: weight 3 < 3 + 1, still on the sorry server
    d.dead.remove(&ip(1));
    d.dead.remove(&ip(2));
    d.secs(20);
    assert!(d.h.sorry_active(0));
    assert_eq!(
        d.h.table(0).len(),
        1,
        "servers wait while the sorry server serves"
    );
    let mark = d.log.len();
    d.dead.clear();
    d.secs(20);
    assert!(d.h.quorum_up(0) && !d.h.sorry_active(0));
    let lines = d.since(mark);
    let at = lines
        .iter()
        .position(|l| l.contains("gained quorum"))
        .unwrap();
    assert_eq!(
        lines[at..at + 2],
        [
            "log TCP 192.0.2.10:80 gained quorum: weight 4 >= 3+1, sorry server 10.0.0.99:80 removed",
            "delete 10.0.0.99:80 from TCP 192.0.2.10:80",
        ]
    );
    assert_eq!(lines[at + 6], "run /bin/quorum up");
    assert_eq!(d.h.table(0).len(), 4);
}

#[test]
fn sorry_server_inhibit_keeps_it_at_weight_zero_while_the_quorum_holds() {
    let mut d = quorum_service(true);
    assert!(d
        .since(0)
        .contains(&"add 10.0.0.99:80 to TCP 192.0.2.10:80 weight 0".into()));
    d.dead.extend([ip(1), ip(2), ip(3)]);
    d.secs(40);
    assert!(d
        .since(0)
        .contains(&"edit 10.0.0.99:80 of TCP 192.0.2.10:80 weight 1".into()));
    d.dead.clear();
    d.secs(20);
    let last_sorry = d
        .since(0)
        .into_iter()
        .rev()
        .find(|l| l.contains("10.0.0.99"))
        .unwrap();
    assert_eq!(
        last_sorry,
        "edit 10.0.0.99:80 of TCP 192.0.2.10:80 weight 0"
    );
}

#[test]
fn starting_without_quorum_installs_the_sorry_server_and_runs_quorum_down() {
    let mut r = real(1, 1, vec![tcp(timers())]);
    r.alpha = true;
    let mut s = service(vec![r]);
    let mut so = sorry(99, false);
    so.command = Some(cmd("/bin/fallback"));
    s.sorry = Some(so);
    let d = Driver::new(vec![s]);
    assert_eq!(
        d.since(0),
        [
            "add service TCP 192.0.2.10:80 wlc",
            "log TCP 192.0.2.10:80 starting with quorum down: weight 0 < 1+0, sorry server 10.0.0.99:80 added",
            "add 10.0.0.99:80 to TCP 192.0.2.10:80 weight 1",
            "run /bin/fallback start 192.0.2.10:80 tcp",
            "run /bin/quorum down",
        ]
    );
}

#[test]
fn quorum_down_runs_at_start_without_a_sorry_server_only_when_asked() {
    // keepalived: no sorry server, no quorum_down at start
    let mut r = real(1, 1, vec![tcp(timers())]);
    r.alpha = true;
    let d = Driver::new(vec![service(vec![r.clone()])]);
    assert_eq!(d.since(0), ["add service TCP 192.0.2.10:80 wlc"]);
    // ldirectord's fallbackcommand without a fallback server: `start` at start
    let mut s = service(vec![r]);
    s.quorum_down_at_start = true;
    let d = Driver::new(vec![s]);
    assert_eq!(
        d.since(0),
        ["add service TCP 192.0.2.10:80 wlc", "run /bin/quorum down"]
    );
}

#[test]
fn misc_dynamic_weights_set_the_weight_and_count_for_the_quorum() {
    let t = timing(5_000, 2_000, 0, 1_000);
    let mut s = service(vec![real(1, 10, vec![misc(t, true)])]);
    s.quorum = 5;
    s.sorry = Some(sorry(99, false));
    let mut d = Driver::new(vec![s]);
    d.weights.insert(ip(1), 7);
    d.run_until(Tick(5));
    assert_eq!(d.weight_of(0, 0), Some(7));
    assert!(d
        .since(0)
        .contains(&"edit 10.0.0.1:80 of TCP 192.0.2.10:80 weight 7".into()));
    assert!(d
        .since(0)
        .iter()
        .any(|l| l.contains("weight 10 -> 7 (MISC_CHECK)")));
    // exit 4: weight 2, below the quorum: the sorry server takes over
    d.weights.insert(ip(1), 2);
    d.secs(6);
    assert!(d.h.sorry_active(0));
    assert_eq!(d.h.real_status(R0).unwrap().weight, 2);
    // plain exit 0: the configured weight again
    d.weights.clear();
    d.secs(6);
    assert!(!d.h.sorry_active(0));
    assert_eq!(d.weight_of(0, 0), Some(10));
}

#[test]
fn slow_start_ramps_the_weight_once_a_second_after_a_recovery() {
    let mut r = real(1, 100, vec![tcp(timing(10_000, 1_000, 0, 1_000))]);
    r.slow_start = Some(std::time::Duration::from_secs(10));
    let mut d = Driver::new(vec![service(vec![r])]);
    assert!(d
        .since(0)
        .contains(&"add 10.0.0.1:80 to TCP 192.0.2.10:80 weight 100".into()));
    d.dead.insert(ip(1));
    d.secs(15);
    assert_eq!(d.weight_of(0, 0), None);
    d.dead.clear();
    let mark = d.log.len();
    d.secs(30);
    let steps: Vec<(u64, i32)> = d.log[mark..]
        .iter()
        .filter_map(|(t, a)| match a {
            Action::AddDest { dest, .. } | Action::EditDest { dest, .. } => {
                Some((t.as_millis(), dest.weight))
            }
            _ => None,
        })
        .collect();
    assert_eq!(steps[0].1, 1, "back with weight 1: {steps:?}");
    let start = steps[0].0;
    let weights: Vec<i32> = steps.iter().map(|s| s.1).collect();
    assert_eq!(weights, [1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
    for w in steps.windows(2) {
        assert!(w[1].0 - w[0].0 >= 1_000, "steps at most once a second");
    }
    assert_eq!(steps.last().unwrap().0, start + 10_000);
    assert!(!d.h.real_status(R0).unwrap().ramping);
}

fn passive_service(n: u8, pct: u8) -> Driver {
    let reals = (1..=n).map(|i| real(i, 1, vec![tcp(timers())])).collect();
    let mut s = service(reals);
    s.passive = Some(rvs_config::spec::Passive {
        failures: 3,
        backoff: std::time::Duration::from_secs(10),
        max_backoff: std::time::Duration::from_secs(25),
        max_ejected_percent: pct,
    });
    Driver::new(vec![s])
}

fn fail_n(d: &mut Driver, real: usize, n: usize) {
    for _ in 0..n {
        let now = d.now;
        let acts =
            d.h.passive(RealId { svc: 0, real }, PassiveEvent::Reset, now);
        d.log.extend(acts.into_iter().map(|a| (now, a)));
    }
}

#[test]
fn passive_failures_eject_for_a_doubling_backoff_and_the_checks_decide_the_return() {
    let mut d = passive_service(4, 50);
    d.run_until(Tick(100));
    fail_n(&mut d, 0, 2);
    let now = d.now;
    d.h.passive(R0, PassiveEvent::Success, now);
    fail_n(&mut d, 0, 2);
    assert_eq!(d.weight_of(0, 0), Some(1), "a success restarts the count");
    fail_n(&mut d, 0, 1);
    assert_eq!(d.weight_of(0, 0), None);
    assert!(d.since(0).contains(
        &"log real server 10.0.0.1:80 of TCP 192.0.2.10:80 ejected for 10s: 3 consecutive connection failures or resets"
            .into()
    ));
    d.run_until(Tick(10_099));
    assert_eq!(d.weight_of(0, 0), None);
    d.run_until(Tick(10_100));
    assert_eq!(d.weight_of(0, 0), Some(1), "back: its checks are up");
    // again: twice as long
    fail_n(&mut d, 0, 3);
    d.run_until(Tick(30_099));
    assert_eq!(d.weight_of(0, 0), None);
    d.run_until(Tick(30_100));
    assert_eq!(d.weight_of(0, 0), Some(1));
    // ejected, and dead meanwhile: stays out when the backoff ends
    fail_n(&mut d, 0, 3);
    d.dead.insert(ip(1));
    d.run_until(Tick(56_000));
    assert!(d.since(0).iter().any(|l| l.contains("ejected for 25s")));
    assert!(d
        .since(0)
        .iter()
        .any(|l| l.contains("stays out until its checks pass")));
    assert_eq!(d.weight_of(0, 0), None);
    d.dead.clear();
    d.secs(20);
    assert_eq!(d.weight_of(0, 0), Some(1));
}

#[test]
fn passive_ejection_never_exceeds_its_share_of_the_pool() {
    let mut d = passive_service(5, 50);
    d.run_until(Tick(100));
    for r in 0..5 {
        fail_n(&mut d, r, 3);
    }
    let ejected = (0..5).filter(|&r| d.weight_of(0, r).is_none()).count();
    assert_eq!(ejected, 2, "50% of 5 rounds down to 2");
    assert_eq!(
        d.since(0)
            .iter()
            .filter(|l| l.contains("not ejected: 2 of 5"))
            .count(),
        3
    );
    // a small pool may still eject one
    let mut d = passive_service(2, 10);
    d.run_until(Tick(100));
    fail_n(&mut d, 0, 3);
    fail_n(&mut d, 1, 3);
    assert_eq!(d.weight_of(0, 0), None);
    assert_eq!(d.weight_of(0, 1), Some(1));
}

#[test]
fn omega_runs_the_down_notifiers_at_stop() {
    let mut s = service(vec![real(1, 1, vec![tcp(timers())])]);
    s.omega = true;
    let d = Driver::new(vec![s]);
    let stop: Vec<String> = d.h.stop_actions().iter().map(|a| a.to_string()).collect();
    assert_eq!(stop, ["run /bin/down 1", "run /bin/quorum down"]);
}
