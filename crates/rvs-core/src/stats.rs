//! Traffic counters and the rate estimator (`ip_vs_core.c` stats helpers, `ip_vs_est.c`,
//! `ip_vs_ctl.c: ip_vs_zero_stats`).
//!
//! Every destination, every service and the whole director keep five 64-bit counters. The
//! estimator samples them every 2 seconds ([`EST_PERIOD`]) and keeps an exponentially weighted
//! moving average with weight ¼, in fixed point: packet and connection rates scaled by 2^10,
//! byte rates by 2^5, exactly as the kernel does, so `--rate` shows the kernel's numbers for the
//! same traffic.
//!
//! What a listing shows is the counters as the estimator last *sampled* them (Linux 6.1 copies
//! the per-CPU counters into the shown ones only in its 2-second estimation timer), so traffic
//! appears in `--stats` at the next sample. Zeroing (`-Z`) does not clear the counters: it
//! records the last sample as a zero point (what is shown is `sample − zero point`) and resets
//! the averages, as the kernel does; traffic since that sample shows up after the next one.
//!
//! ```
//! use rvs_core::stats::Stats;
//! let mut s = Stats::default();
//! for _ in 0..10 {
//!     s.total.inpkts += 2000; // 1000 packets per second over a 2 s period
//!     s.estimate();
//! }
//! assert!(s.rates().inpps > 900);
//! assert_eq!(s.shown().inpkts, 20_000);
//! s.total.inpkts += 5;
//! assert_eq!(s.shown().inpkts, 20_000); // until the next sample
//! ```

use crate::time::Span;

/// Sampling period of the estimator.
pub const EST_PERIOD: Span = Span::secs(2);

/// The five counters IPVS keeps per destination, per service and globally.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// connections scheduled
    pub conns: u64,
    /// packets client → server
    pub inpkts: u64,
    /// packets server → client
    pub outpkts: u64,
    /// bytes client → server (IP datagram length)
    pub inbytes: u64,
    /// bytes server → client
    pub outbytes: u64,
}

impl Counters {
    /// Field-wise wrapping difference (`self − base`).
    pub fn minus(&self, base: &Counters) -> Counters {
        Counters {
            conns: self.conns.wrapping_sub(base.conns),
            inpkts: self.inpkts.wrapping_sub(base.inpkts),
            outpkts: self.outpkts.wrapping_sub(base.outpkts),
            inbytes: self.inbytes.wrapping_sub(base.inbytes),
            outbytes: self.outbytes.wrapping_sub(base.outbytes),
        }
    }
}

/// Per-second rates as `--rate` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rates {
    /// connections per second
    pub cps: u64,
    /// incoming packets per second
    pub inpps: u64,
    /// outgoing packets per second
    pub outpps: u64,
    /// incoming bytes per second
    pub inbps: u64,
    /// outgoing bytes per second
    pub outbps: u64,
}

/// Estimator state (`struct ip_vs_estimator`): last sample and scaled averages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Estimator {
    last: Counters,
    cps: i64,
    inpps: i64,
    outpps: i64,
    inbps: i64,
    outbps: i64,
}

/// One EWMA step with weight ¼ on a sample already scaled to fixed point.
fn ewma(avg: i64, delta: u64, scale_shift: u32) -> i64 {
    let sample = (delta << scale_shift) as i64;
    avg + ((sample - avg) >> 2)
}

/// Counters, zero point and estimator of one stats object.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// absolute counters since the object was created (the kernel's per-CPU counters)
    pub total: Counters,
    /// `total` as of the last estimator sample (the kernel's `kstats`)
    sampled: Counters,
    zero_point: Counters,
    est: Estimator,
}

impl Stats {
    /// The counters as listed (`last sample − zero point`).
    pub fn shown(&self) -> Counters {
        self.sampled.minus(&self.zero_point)
    }

    /// One estimator period (call every [`EST_PERIOD`]). Packet and connection samples are
    /// `delta × 2^9` (per second × 2^10 over 2 s), byte samples `delta × 2^4` (per second × 2^5).
    pub fn estimate(&mut self) {
        let now = self.total;
        self.sampled = now;
        let d = now.minus(&self.est.last);
        self.est.cps = ewma(self.est.cps, d.conns, 9);
        self.est.inpps = ewma(self.est.inpps, d.inpkts, 9);
        self.est.outpps = ewma(self.est.outpps, d.outpkts, 9);
        self.est.inbps = ewma(self.est.inbps, d.inbytes, 4);
        self.est.outbps = ewma(self.est.outbps, d.outbytes, 4);
        self.est.last = now;
    }

    /// The rates as the kernel reports them: rounded from the fixed-point averages.
    pub fn rates(&self) -> Rates {
        let pkt = |v: i64| ((v + 0x1FF) >> 10).max(0) as u64;
        let byte = |v: i64| ((v + 0xF) >> 5).max(0) as u64;
        Rates {
            cps: pkt(self.est.cps),
            inpps: pkt(self.est.inpps),
            outpps: pkt(self.est.outpps),
            inbps: byte(self.est.inbps),
            outbps: byte(self.est.outbps),
        }
    }

    /// `-Z`: the last sample becomes the zero point and the averages reset.
    pub fn zero(&mut self) {
        self.zero_point = self.sampled;
        self.est = Estimator {
            last: self.sampled,
            ..Estimator::default()
        };
    }

    /// Count a scheduled connection.
    #[inline]
    pub fn add_conn(&mut self) {
        self.total.conns += 1;
    }

    /// Count a client → server packet of `bytes` bytes.
    #[inline]
    pub fn add_in(&mut self, bytes: u64) {
        self.total.inpkts += 1;
        self.total.inbytes += bytes;
    }

    /// Count `pkts` client → server packets of `bytes` bytes in all (a proxy's batch).
    #[inline]
    pub fn add_in_n(&mut self, pkts: u64, bytes: u64) {
        self.total.inpkts += pkts;
        self.total.inbytes += bytes;
    }

    /// Count `pkts` server → client packets of `bytes` bytes in all (a proxy's batch).
    #[inline]
    pub fn add_out_n(&mut self, pkts: u64, bytes: u64) {
        self.total.outpkts += pkts;
        self.total.outbytes += bytes;
    }

    /// Count a server → client packet of `bytes` bytes.
    #[inline]
    pub fn add_out(&mut self, bytes: u64) {
        self.total.outpkts += 1;
        self.total.outbytes += bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rate_converges_to_the_true_rate() {
        let mut s = Stats::default();
        for _ in 0..60 {
            s.total.conns += 200; // 100/s
            s.total.inpkts += 20_000; // 10 000/s
            s.total.inbytes += 2_000_000; // 1 000 000 B/s
            s.estimate();
        }
        let r = s.rates();
        assert_eq!(r.cps, 100);
        assert_eq!(r.inpps, 10_000);
        assert_eq!(r.inbps, 1_000_000);
        assert_eq!(r.outpps, 0);
    }

    #[test]
    fn first_sample_is_a_quarter_of_the_rate() {
        // avg = 0 + (sample - 0) / 4: one period of 400 pkts (200/s) reads 50 pps.
        let mut s = Stats::default();
        s.total.inpkts = 400;
        s.estimate();
        assert_eq!(s.rates().inpps, 50);
    }

    #[test]
    fn rate_decays_after_traffic_stops() {
        let mut s = Stats::default();
        for _ in 0..30 {
            s.total.inpkts += 2000;
            s.estimate();
        }
        let before = s.rates().inpps;
        s.estimate();
        let after = s.rates().inpps;
        // one idle period keeps three quarters
        assert_eq!(after, (before * 3 + 2) / 4);
        for _ in 0..100 {
            s.estimate();
        }
        assert_eq!(s.rates().inpps, 0);
    }

    #[test]
    fn zero_keeps_absolute_counters_and_resets_rates() {
        let mut s = Stats::default();
        s.add_conn();
        s.add_in(100);
        s.add_out(40);
        for _ in 0..5 {
            s.total.inpkts += 1000;
            s.estimate();
        }
        s.zero();
        assert_eq!(s.shown(), Counters::default());
        assert_eq!(s.rates(), Rates::default());
        assert_eq!(s.total.conns, 1);
        s.add_in(60);
        assert_eq!(s.shown().inpkts, 0, "shown at the next sample");
        // the next sample only sees traffic after the zero
        s.estimate();
        assert_eq!(s.shown().inpkts, 1);
        assert_eq!(s.shown().inbytes, 60);
        assert_eq!(s.rates().inpps, 0); // (1 << 9)/4 = 128 → (128+511)>>10 = 0
    }

    #[test]
    fn traffic_before_a_zero_but_after_the_last_sample_reappears() {
        // what Linux 6.1 shows: -Z right after two connections, then a sample
        let mut s = Stats::default();
        s.estimate();
        s.add_conn();
        s.add_conn();
        assert_eq!(s.shown().conns, 0);
        s.zero();
        s.estimate();
        assert_eq!(s.shown().conns, 2);
    }
}
