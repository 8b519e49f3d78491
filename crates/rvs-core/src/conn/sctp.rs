//! The IPVS SCTP state machine (`net/netfilter/ipvs/ip_vs_proto_sctp.c`, the table-driven
//! version used since Linux 3.14 and unchanged in 6.1).
//!
//! The *event* of a packet is taken from the type of its first chunk (DATA, SACK, HEARTBEAT,
//! HEARTBEAT-ACK, ECNE, CWR and every unknown type count as DATA). One bundling rule applies:
//! when the first chunk is COOKIE-ECHO or COOKIE-ACK and the chunk right after it is an ABORT,
//! the event is ABORT. The next state comes from a table indexed by direction (INPUT, OUTPUT,
//! INPUT-ONLY for `NOOUTPUT` entries), event and current state. Only `ESTABLISHED` counts as an
//! active connection, and entering it assures the controlling template.
//!
//! The names are the kernel's short forms (`C-SENT`, `S-ACK-SENT`, …), which is what
//! `/proc/net/ip_vs_conn` and therefore `ipvsadm -Lnc` print.

/// `IP_VS_SCTP_S_NONE`
pub const NONE: u16 = 0;
/// `IP_VS_SCTP_S_INIT1`: first INIT from the client seen
pub const INIT1: u16 = 1;
/// `IP_VS_SCTP_S_INIT`: INIT retransmitted
pub const INIT: u16 = 2;
/// `IP_VS_SCTP_S_COOKIE_SENT`: server sent INIT-ACK
pub const COOKIE_SENT: u16 = 3;
/// `IP_VS_SCTP_S_COOKIE_REPLIED`: client sent COOKIE-ECHO
pub const COOKIE_REPLIED: u16 = 4;
/// `IP_VS_SCTP_S_COOKIE_WAIT`: server-initiated association, server sent INIT
pub const COOKIE_WAIT: u16 = 5;
/// `IP_VS_SCTP_S_COOKIE`: client sent INIT-ACK
pub const COOKIE: u16 = 6;
/// `IP_VS_SCTP_S_COOKIE_ECHOED`: server sent COOKIE-ECHO
pub const COOKIE_ECHOED: u16 = 7;
/// `IP_VS_SCTP_S_ESTABLISHED`
pub const ESTABLISHED: u16 = 8;
/// `IP_VS_SCTP_S_SHUTDOWN_SENT`
pub const SHUTDOWN_SENT: u16 = 9;
/// `IP_VS_SCTP_S_SHUTDOWN_RECEIVED`
pub const SHUTDOWN_RECEIVED: u16 = 10;
/// `IP_VS_SCTP_S_SHUTDOWN_ACK_SENT`
pub const SHUTDOWN_ACK_SENT: u16 = 11;
/// `IP_VS_SCTP_S_REJECTED`: INIT answered with ABORT
pub const REJECTED: u16 = 12;
/// `IP_VS_SCTP_S_CLOSED`
pub const CLOSED: u16 = 13;
/// `IP_VS_SCTP_S_LAST`: number of states.
pub const LAST: u16 = 14;

/// SCTP chunk type numbers used by the event mapping (RFC 9260 §3.2).
pub mod chunk {
    /// DATA
    pub const DATA: u8 = 0;
    /// INIT
    pub const INIT: u8 = 1;
    /// INIT ACK
    pub const INIT_ACK: u8 = 2;
    /// SACK
    pub const SACK: u8 = 3;
    /// HEARTBEAT
    pub const HEARTBEAT: u8 = 4;
    /// HEARTBEAT ACK
    pub const HEARTBEAT_ACK: u8 = 5;
    /// ABORT
    pub const ABORT: u8 = 6;
    /// SHUTDOWN
    pub const SHUTDOWN: u8 = 7;
    /// SHUTDOWN ACK
    pub const SHUTDOWN_ACK: u8 = 8;
    /// ERROR
    pub const ERROR: u8 = 9;
    /// COOKIE ECHO
    pub const COOKIE_ECHO: u8 = 10;
    /// COOKIE ACK
    pub const COOKIE_ACK: u8 = 11;
    /// ECNE
    pub const ECN_ECNE: u8 = 12;
    /// CWR
    pub const ECN_CWR: u8 = 13;
    /// SHUTDOWN COMPLETE
    pub const SHUTDOWN_COMPLETE: u8 = 14;
}

/// The event of an SCTP packet (`enum ipvs_sctp_event_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// DATA, SACK, HEARTBEATs, ECN chunks and unknown chunk types
    Data,
    /// INIT
    Init,
    /// INIT ACK
    InitAck,
    /// COOKIE ECHO
    CookieEcho,
    /// COOKIE ACK
    CookieAck,
    /// SHUTDOWN
    Shutdown,
    /// SHUTDOWN ACK
    ShutdownAck,
    /// SHUTDOWN COMPLETE
    ShutdownComplete,
    /// ERROR
    Error,
    /// ABORT
    Abort,
}

/// Which group of rows applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// client → server
    Input,
    /// server → client
    Output,
    /// client → server on an entry flagged `NOOUTPUT`
    InputOnly,
}

/// The event of a chunk type (`sctp_events`).
pub fn event_of(chunk_type: u8) -> Event {
    match chunk_type {
        chunk::INIT => Event::Init,
        chunk::INIT_ACK => Event::InitAck,
        chunk::ABORT => Event::Abort,
        chunk::SHUTDOWN => Event::Shutdown,
        chunk::SHUTDOWN_ACK => Event::ShutdownAck,
        chunk::ERROR => Event::Error,
        chunk::COOKIE_ECHO => Event::CookieEcho,
        chunk::COOKIE_ACK => Event::CookieAck,
        chunk::SHUTDOWN_COMPLETE => Event::ShutdownComplete,
        _ => Event::Data,
    }
}

/// The event of a packet from its first chunk type and, if the packet has one, the type of the
/// chunk that follows it: COOKIE-ECHO or COOKIE-ACK bundled with a following ABORT is ABORT.
pub fn packet_event(first: u8, second: Option<u8>) -> Event {
    let bundled_abort = second == Some(chunk::ABORT);
    if bundled_abort && (first == chunk::COOKIE_ECHO || first == chunk::COOKIE_ACK) {
        Event::Abort
    } else {
        event_of(first)
    }
}

const I1: u16 = INIT1;
const IN: u16 = INIT;
const CS: u16 = COOKIE_SENT;
const CR: u16 = COOKIE_REPLIED;
const CW: u16 = COOKIE_WAIT;
const CO: u16 = COOKIE;
const CE: u16 = COOKIE_ECHOED;
const ES: u16 = ESTABLISHED;
const SS: u16 = SHUTDOWN_SENT;
const SR: u16 = SHUTDOWN_RECEIVED;
const SA: u16 = SHUTDOWN_ACK_SENT;
const RJ: u16 = REJECTED;
const CL: u16 = CLOSED;

/// `sctp_states[direction][event][state]`.
#[rustfmt::skip]
const STATES: [[[u16; LAST as usize]; 10]; 3] = [
    [ // INPUT      NO  I1  IN  CS  CR  CW  CO  CE  ES  SS  SR  SA  RJ  CL
        /* d   */ [ES, I1, IN, CS, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
        /* i   */ [I1, IN, IN, CS, CR, CW, CO, CE, ES, SS, SR, SA, IN, IN],
        /* i_a */ [CW, CW, CW, CS, CR, CO, CO, CE, ES, SS, SR, SA, RJ, CL],
        /* c_e */ [CR, IN, IN, CR, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
        /* c_a */ [ES, I1, IN, CS, CR, CW, CO, ES, ES, SS, SR, SA, RJ, CL],
        /* s   */ [SR, I1, IN, CS, CR, CW, CO, CE, SR, SS, SR, SA, RJ, CL],
        /* s_a */ [CL, IN, IN, CS, CR, CW, CO, CE, ES, CL, SR, CL, RJ, CL],
        /* s_c */ [CL, CL, CL, CS, CR, CW, CO, CE, ES, SS, SR, CL, RJ, CL],
        /* err */ [CL, I1, IN, CS, CR, CW, CO, CL, ES, SS, SR, SA, RJ, CL],
        /* ab  */ [CL, CL, CL, CL, CL, RJ, CL, CL, CL, CL, CL, CL, CL, CL],
    ],
    [ // OUTPUT     NO  I1  IN  CS  CR  CW  CO  CE  ES  SS  SR  SA  RJ  CL
        /* d   */ [ES, I1, IN, CS, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
        /* i   */ [CW, CW, CW, CW, CW, CW, CW, CW, ES, CW, CW, CW, CW, CW],
        /* i_a */ [CS, CS, CS, CS, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
        /* c_e */ [CE, CE, CE, CE, CE, CE, CE, CE, ES, SS, SR, SA, RJ, CL],
        /* c_a */ [ES, ES, ES, ES, ES, ES, ES, ES, ES, SS, SR, SA, RJ, CL],
        /* s   */ [SS, SS, SS, SS, SS, SS, SS, SS, SS, SS, SR, SA, RJ, CL],
        /* s_a */ [SA, SA, SA, SA, SA, CW, CO, CE, ES, SA, SA, SA, RJ, CL],
        /* s_c */ [CL, I1, IN, CS, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
        /* err */ [CL, CL, CL, CL, CL, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
        /* ab  */ [CL, RJ, CL, CL, CL, CL, CL, CL, CL, CL, CL, CL, CL, CL],
    ],
    [ // INPUT-ONLY NO  I1  IN  CS  CR  CW  CO  CE  ES  SS  SR  SA  RJ  CL
        /* d   */ [ES, I1, IN, CS, CR, ES, CO, CE, ES, SS, SR, SA, RJ, CL],
        /* i   */ [I1, IN, IN, IN, IN, IN, CO, CE, ES, SS, SR, SA, IN, IN],
        /* i_a */ [CE, CE, CE, CE, CE, CE, CO, CE, ES, SS, SR, SA, RJ, CL],
        /* c_e */ [ES, ES, ES, ES, ES, ES, CO, CE, ES, SS, SR, SA, RJ, CL],
        /* c_a */ [ES, I1, IN, ES, ES, CW, ES, ES, ES, SS, SR, SA, RJ, CL],
        /* s   */ [SR, I1, IN, CS, CR, CW, CO, CE, SR, SS, SR, SA, RJ, CL],
        /* s_a */ [CL, IN, IN, CS, CR, CW, CO, CE, CL, CL, SR, CL, RJ, CL],
        /* s_c */ [CL, CL, CL, CL, CL, CW, CO, CE, ES, SS, CL, CL, RJ, CL],
        /* err */ [CL, I1, IN, CS, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
        /* ab  */ [CL, CL, CL, CL, CL, RJ, CL, CL, CL, CL, CL, CL, CL, CL],
    ],
];

/// The next state for `event` seen in `dir` by an entry in `state` (a state outside the
/// table, which IPVS never produces, gives `CLOSED`).
pub fn transition(state: u16, dir: Dir, event: Event) -> u16 {
    if state >= LAST {
        return CLOSED;
    }
    let d = match dir {
        Dir::Input => 0,
        Dir::Output => 1,
        Dir::InputOnly => 2,
    };
    let e = match event {
        Event::Data => 0,
        Event::Init => 1,
        Event::InitAck => 2,
        Event::CookieEcho => 3,
        Event::CookieAck => 4,
        Event::Shutdown => 5,
        Event::ShutdownAck => 6,
        Event::ShutdownComplete => 7,
        Event::Error => 8,
        Event::Abort => 9,
    };
    STATES[d][e][usize::from(state)]
}

/// Whether a connection in `state` counts as active: only `ESTABLISHED`.
pub fn is_active(state: u16) -> bool {
    state == ESTABLISHED
}

/// The name the kernel prints; `ERR!` outside the table.
pub fn state_name(state: u16) -> &'static str {
    const NAMES: [&str; LAST as usize] = [
        "NONE",
        "INIT1",
        "INIT",
        "C-SENT",
        "C-REPLIED",
        "C-WAIT",
        "COOKIE",
        "C-ECHOED",
        "ESTABLISHED",
        "S-SENT",
        "S-RECEIVED",
        "S-ACK-SENT",
        "REJECTED",
        "CLOSED",
    ];
    NAMES.get(usize::from(state)).copied().unwrap_or("ERR!")
}

/// `IP_VS_SCTP_MAX_RTO`: 61 s, the timeout of most handshake and shutdown states.
const MAX_RTO_MS: u64 = 61_000;

/// Default timeouts in milliseconds, indexed by state (`sctp_timeouts`).
pub const DEFAULT_TIMEOUTS_MS: [u64; LAST as usize] = [
    2_000,      // NONE
    4_000,      // INIT1
    MAX_RTO_MS, // INIT
    MAX_RTO_MS, // COOKIE_SENT
    MAX_RTO_MS, // COOKIE_REPLIED
    MAX_RTO_MS, // COOKIE_WAIT
    MAX_RTO_MS, // COOKIE
    MAX_RTO_MS, // COOKIE_ECHOED
    900_000,    // ESTABLISHED
    MAX_RTO_MS, // SHUTDOWN_SENT
    MAX_RTO_MS, // SHUTDOWN_RECEIVED
    MAX_RTO_MS, // SHUTDOWN_ACK_SENT
    4_000,      // REJECTED
    MAX_RTO_MS, // CLOSED
];

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mut s: u16, steps: &[(Dir, u8)]) -> Vec<&'static str> {
        steps
            .iter()
            .map(|&(d, c)| {
                s = transition(s, d, event_of(c));
                state_name(s)
            })
            .collect()
    }

    #[test]
    fn nat_four_way_handshake_and_shutdown() {
        use chunk::*;
        let names = run(
            NONE,
            &[
                (Dir::Input, INIT),
                (Dir::Output, INIT_ACK),
                (Dir::Input, COOKIE_ECHO),
                (Dir::Output, COOKIE_ACK),
                (Dir::Input, DATA),
                (Dir::Input, SHUTDOWN),
                (Dir::Output, SHUTDOWN_ACK),
                (Dir::Input, SHUTDOWN_COMPLETE),
            ],
        );
        assert_eq!(
            names,
            vec![
                "INIT1",
                "C-SENT",
                "C-REPLIED",
                "ESTABLISHED",
                "ESTABLISHED",
                "S-RECEIVED",
                "S-ACK-SENT",
                "CLOSED"
            ]
        );
    }

    #[test]
    fn dr_input_only_handshake() {
        use chunk::*;
        let names = run(
            NONE,
            &[(Dir::InputOnly, INIT), (Dir::InputOnly, COOKIE_ECHO)],
        );
        assert_eq!(names, vec!["INIT1", "ESTABLISHED"]);
        assert!(is_active(ESTABLISHED) && !is_active(COOKIE_REPLIED));
    }

    #[test]
    fn init_retransmit_and_rejection() {
        use chunk::*;
        assert_eq!(
            run(NONE, &[(Dir::Input, INIT), (Dir::Input, INIT)]),
            ["INIT1", "INIT"]
        );
        // the server refuses the first INIT with ABORT
        assert_eq!(transition(INIT1, Dir::Output, Event::Abort), REJECTED);
        assert_eq!(DEFAULT_TIMEOUTS_MS[usize::from(REJECTED)], 4_000);
    }

    #[test]
    fn chunk_mapping_and_bundled_abort() {
        assert_eq!(event_of(chunk::SACK), Event::Data);
        assert_eq!(event_of(chunk::HEARTBEAT_ACK), Event::Data);
        assert_eq!(event_of(chunk::ECN_CWR), Event::Data);
        assert_eq!(event_of(0x40), Event::Data); // I-DATA and other unknown types
        assert_eq!(event_of(chunk::SHUTDOWN_COMPLETE), Event::ShutdownComplete);
        let abort = Some(chunk::ABORT);
        assert_eq!(packet_event(chunk::COOKIE_ECHO, abort), Event::Abort);
        assert_eq!(packet_event(chunk::COOKIE_ACK, abort), Event::Abort);
        // only after COOKIE-ECHO / COOKIE-ACK
        assert_eq!(packet_event(chunk::DATA, abort), Event::Data);
        assert_eq!(
            packet_event(chunk::COOKIE_ECHO, Some(chunk::DATA)),
            Event::CookieEcho
        );
    }

    #[test]
    fn names_and_timeouts() {
        assert_eq!(state_name(COOKIE_SENT), "C-SENT");
        assert_eq!(state_name(SHUTDOWN_ACK_SENT), "S-ACK-SENT");
        assert_eq!(state_name(LAST), "ERR!");
        assert_eq!(DEFAULT_TIMEOUTS_MS[usize::from(NONE)], 2_000);
        assert_eq!(DEFAULT_TIMEOUTS_MS[usize::from(INIT1)], 4_000);
        assert_eq!(DEFAULT_TIMEOUTS_MS[usize::from(ESTABLISHED)], 900_000);
        assert_eq!(DEFAULT_TIMEOUTS_MS[usize::from(CLOSED)], 61_000);
    }
}
