//! Traffic counters and the rate estimator (`ip_vs_core.c` stats, `ip_vs_est.c`).

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

/// Counters plus estimator state (filled in by the stats module).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// absolute counters
    pub total: Counters,
}
