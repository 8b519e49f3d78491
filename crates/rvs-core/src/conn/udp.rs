//! The IPVS UDP "state machine" (`net/netfilter/ipvs/ip_vs_proto_udp.c`).
//!
//! UDP has a single state, printed `UDP`. Every packet, in either direction, sets the timeout
//! back to the UDP timeout (300 s by default, `--set … udp`); a packet from the real server
//! (output direction) assures the controlling persistence template. The state never changes,
//! so a UDP entry never leaves the destination's inactive counter.

/// `IP_VS_UDP_S_NORMAL`, the only state.
pub const NORMAL: u16 = 0;
/// `IP_VS_UDP_S_LAST`: number of states.
pub const LAST: u16 = 1;

/// Default timeout of the single state, in milliseconds (5 minutes).
pub const DEFAULT_TIMEOUT_MS: u64 = 300_000;

/// The name printed for a UDP state: `UDP`, or `ERR!` outside the table.
pub fn state_name(state: u16) -> &'static str {
    if state == NORMAL {
        "UDP"
    } else {
        "ERR!"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_default() {
        assert_eq!(state_name(NORMAL), "UDP");
        assert_eq!(state_name(LAST), "ERR!");
        assert_eq!(DEFAULT_TIMEOUT_MS / 1000, 300);
    }
}
