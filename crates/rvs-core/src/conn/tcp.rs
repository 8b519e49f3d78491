//! The IPVS TCP state machine (`net/netfilter/ipvs/ip_vs_proto_tcp.c`, kernel 6.1).
//!
//! IPVS does not track TCP the way the endpoints do: it only looks at the four flags of each
//! segment it forwards and moves the entry through eleven states with a lookup table. The
//! *event* of a segment is, by priority, RST, then SYN, then FIN, then ACK; a segment with none
//! of those flags has no event and sends the entry to `CLOSE` (the kernel's fall-through).
//!
//! Three groups of rows exist: `INPUT` (client → server), `OUTPUT` (server → client, seen only
//! when the director is on the return path, i.e. NAT) and `INPUT-ONLY`, used for entries that
//! carry `NOOUTPUT` (DR, tunnel, local) until an output packet is ever seen. A second table
//! (`tcp_states_dos`) replaces the normal one while the `secure_tcp` defence is on.
//!
//! Each state has a default idle timeout; `ESTABLISHED`, `SYN_SENT`, `SYN_RECV` and `SYNACK`
//! count as *active* connections (`tcp_state_active_table`, since Linux 4.8), the others as
//! inactive.

/// `IP_VS_TCP_S_NONE`: freshly created, no transition yet.
pub const NONE: u16 = 0;
/// `IP_VS_TCP_S_ESTABLISHED`
pub const ESTABLISHED: u16 = 1;
/// `IP_VS_TCP_S_SYN_SENT`
pub const SYN_SENT: u16 = 2;
/// `IP_VS_TCP_S_SYN_RECV`
pub const SYN_RECV: u16 = 3;
/// `IP_VS_TCP_S_FIN_WAIT`
pub const FIN_WAIT: u16 = 4;
/// `IP_VS_TCP_S_TIME_WAIT`
pub const TIME_WAIT: u16 = 5;
/// `IP_VS_TCP_S_CLOSE`
pub const CLOSE: u16 = 6;
/// `IP_VS_TCP_S_CLOSE_WAIT`
pub const CLOSE_WAIT: u16 = 7;
/// `IP_VS_TCP_S_LAST_ACK`
pub const LAST_ACK: u16 = 8;
/// `IP_VS_TCP_S_LISTEN` (set only by the FTP helper)
pub const LISTEN: u16 = 9;
/// `IP_VS_TCP_S_SYNACK` (reached only through the secure table)
pub const SYNACK: u16 = 10;
/// `IP_VS_TCP_S_LAST`: number of states.
pub const LAST: u16 = 11;

/// Which group of transition rows applies to a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// client → server, on an entry that has seen (or can see) replies
    Input,
    /// server → client
    Output,
    /// client → server on an entry flagged `NOOUTPUT` (DR / tunnel / local)
    InputOnly,
}

/// The event a segment produces (`tcp_state_idx`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// SYN set (and RST clear)
    Syn,
    /// FIN set (SYN and RST clear)
    Fin,
    /// ACK set (no SYN, FIN or RST)
    Ack,
    /// RST set, whatever else is set
    Rst,
}

/// The TCP flags IPVS looks at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags {
    /// SYN
    pub syn: bool,
    /// FIN
    pub fin: bool,
    /// ACK
    pub ack: bool,
    /// RST
    pub rst: bool,
}

impl TcpFlags {
    /// A bare SYN.
    pub const SYN: TcpFlags = TcpFlags {
        syn: true,
        fin: false,
        ack: false,
        rst: false,
    };
    /// SYN+ACK.
    pub const SYN_ACK: TcpFlags = TcpFlags {
        syn: true,
        fin: false,
        ack: true,
        rst: false,
    };
    /// A bare ACK (data segments too).
    pub const ACK: TcpFlags = TcpFlags {
        syn: false,
        fin: false,
        ack: true,
        rst: false,
    };
    /// FIN+ACK.
    pub const FIN_ACK: TcpFlags = TcpFlags {
        syn: false,
        fin: true,
        ack: true,
        rst: false,
    };
    /// RST.
    pub const RST: TcpFlags = TcpFlags {
        syn: false,
        fin: false,
        ack: false,
        rst: true,
    };

    /// From the flags byte of a TCP header (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10).
    pub fn from_byte(b: u8) -> TcpFlags {
        TcpFlags {
            fin: b & 0x01 != 0,
            syn: b & 0x02 != 0,
            rst: b & 0x04 != 0,
            ack: b & 0x10 != 0,
        }
    }

    /// The event: RST beats SYN beats FIN beats ACK; `None` when none is set.
    pub fn event(self) -> Option<Event> {
        if self.rst {
            Some(Event::Rst)
        } else if self.syn {
            Some(Event::Syn)
        } else if self.fin {
            Some(Event::Fin)
        } else if self.ack {
            Some(Event::Ack)
        } else {
            None
        }
    }
}

// Short names for the tables, in the kernel's column order.
const ES: u16 = ESTABLISHED;
const SS: u16 = SYN_SENT;
const SR: u16 = SYN_RECV;
const FW: u16 = FIN_WAIT;
const TW: u16 = TIME_WAIT;
const CL: u16 = CLOSE;
const CW: u16 = CLOSE_WAIT;
const LA: u16 = LAST_ACK;
const LI: u16 = LISTEN;
const SA: u16 = SYNACK;

/// One row per (direction group, event): rows 0-3 INPUT, 4-7 OUTPUT, 8-11 INPUT-ONLY,
/// events in the order syn, fin, ack, rst; columns are the current state.
type Table = [[u16; LAST as usize]; 12];

/// `tcp_states`: the table in normal operation.
#[rustfmt::skip]
const NORMAL: Table = [
    // INPUT       NO  ES  SS  SR  FW  TW  CL  CW  LA  LI  SA
    /* syn */     [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
    /* fin */     [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
    /* ack */     [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
    /* rst */     [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
    // OUTPUT
    /* syn */     [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
    /* fin */     [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
    /* ack */     [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
    /* rst */     [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
    // INPUT-ONLY
    /* syn */     [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
    /* fin */     [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
    /* ack */     [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
    /* rst */     [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
];

/// `tcp_states_dos`: the table while the `secure_tcp` defence is on.
#[rustfmt::skip]
const SECURE: Table = [
    // INPUT       NO  ES  SS  SR  FW  TW  CL  CW  LA  LI  SA
    /* syn */     [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SA],
    /* fin */     [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, SA],
    /* ack */     [ES, ES, SS, SR, FW, TW, CL, CW, CL, LI, SA],
    /* rst */     [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
    // OUTPUT
    /* syn */     [SS, ES, SS, SA, SS, SS, SS, SS, SS, LI, SA],
    /* fin */     [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
    /* ack */     [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
    /* rst */     [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
    // INPUT-ONLY
    /* syn */     [SA, ES, ES, SR, SA, SA, SA, SA, SA, SA, SA],
    /* fin */     [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
    /* ack */     [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
    /* rst */     [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
];

/// The next state for a segment with `event` seen in `dir` by an entry in `state`.
///
/// `event == None` (no SYN/FIN/ACK/RST) gives `CLOSE`, as the kernel does. A state outside
/// the table (never produced by IPVS itself) also gives `CLOSE`.
pub fn transition(state: u16, dir: Dir, event: Option<Event>, secure: bool) -> u16 {
    let Some(event) = event else { return CLOSE };
    if state >= LAST {
        return CLOSE;
    }
    let base = match dir {
        Dir::Input => 0,
        Dir::Output => 4,
        Dir::InputOnly => 8,
    };
    let row = base
        + match event {
            Event::Syn => 0,
            Event::Fin => 1,
            Event::Ack => 2,
            Event::Rst => 3,
        };
    let table = if secure { &SECURE } else { &NORMAL };
    table[row][usize::from(state)]
}

/// Whether a connection in `state` counts as an active connection (`tcp_state_active`).
pub fn is_active(state: u16) -> bool {
    matches!(state, ESTABLISHED | SYN_SENT | SYN_RECV | SYNACK)
}

/// The name `/proc/net/ip_vs_conn` and `ipvsadm -Lnc` print; `ERR!` outside the table.
pub fn state_name(state: u16) -> &'static str {
    const NAMES: [&str; LAST as usize] = [
        "NONE",
        "ESTABLISHED",
        "SYN_SENT",
        "SYN_RECV",
        "FIN_WAIT",
        "TIME_WAIT",
        "CLOSE",
        "CLOSE_WAIT",
        "LAST_ACK",
        "LISTEN",
        "SYNACK",
    ];
    NAMES.get(usize::from(state)).copied().unwrap_or("ERR!")
}

/// Default idle timeouts in milliseconds, indexed by state (`tcp_timeouts`).
pub const DEFAULT_TIMEOUTS_MS: [u64; LAST as usize] = [
    2_000,   // NONE
    900_000, // ESTABLISHED
    120_000, // SYN_SENT
    60_000,  // SYN_RECV
    120_000, // FIN_WAIT
    120_000, // TIME_WAIT
    10_000,  // CLOSE
    60_000,  // CLOSE_WAIT
    30_000,  // LAST_ACK
    120_000, // LISTEN
    120_000, // SYNACK
];

#[cfg(test)]
mod tests {
    use super::*;

    const SYN: Option<Event> = Some(Event::Syn);
    const ACK: Option<Event> = Some(Event::Ack);
    const FIN: Option<Event> = Some(Event::Fin);
    const RST: Option<Event> = Some(Event::Rst);

    #[test]
    fn nat_handshake_reaches_established() {
        let s = transition(NONE, Dir::Input, SYN, false);
        assert_eq!(state_name(s), "SYN_RECV");
        // server's SYN+ACK: SYN wins over ACK
        let synack = TcpFlags::from_byte(0x12).event();
        let s = transition(s, Dir::Output, synack, false);
        assert_eq!(s, SYN_RECV);
        let s = transition(s, Dir::Input, ACK, false);
        assert_eq!(s, ESTABLISHED);
    }

    #[test]
    fn nat_close_sequence() {
        // client FIN, server ACK, server FIN, client ACK
        let s = transition(ESTABLISHED, Dir::Input, FIN, false);
        assert_eq!(s, CLOSE_WAIT);
        let s = transition(s, Dir::Output, ACK, false);
        assert_eq!(s, CLOSE_WAIT);
        let s = transition(s, Dir::Output, FIN, false);
        assert_eq!(s, TIME_WAIT);
        let s = transition(s, Dir::Input, ACK, false);
        assert_eq!(s, TIME_WAIT);
        // server closes first instead
        assert_eq!(transition(ESTABLISHED, Dir::Output, FIN, false), FIN_WAIT);
    }

    #[test]
    fn dr_input_only_flow_and_fin_stays_in_fin_wait() {
        let s = transition(NONE, Dir::InputOnly, SYN, false);
        assert_eq!(s, SYN_RECV);
        let s = transition(s, Dir::InputOnly, ACK, false);
        assert_eq!(s, ESTABLISHED);
        let s = transition(s, Dir::InputOnly, FIN, false);
        assert_eq!(state_name(s), "FIN_WAIT");
        // the client's last ACK (and a FIN retransmission) keep it there
        assert_eq!(transition(s, Dir::InputOnly, ACK, false), FIN_WAIT);
        assert_eq!(transition(s, Dir::InputOnly, FIN, false), FIN_WAIT);
    }

    #[test]
    fn rst_closes_from_every_ordinary_state() {
        for st in [ESTABLISHED, FIN_WAIT, TIME_WAIT, CLOSE_WAIT, NONE] {
            assert_eq!(transition(st, Dir::Input, RST, false), CLOSE);
            assert_eq!(transition(st, Dir::InputOnly, RST, false), CLOSE);
        }
        // RST from the server while the handshake is in progress
        assert_eq!(transition(SYN_RECV, Dir::Output, RST, false), CLOSE);
        // quirks: a client RST keeps SYN_RECV and LAST_ACK
        assert_eq!(transition(SYN_RECV, Dir::Input, RST, false), SYN_RECV);
        assert_eq!(transition(LAST_ACK, Dir::Input, RST, false), LAST_ACK);
        // RST wins over SYN
        assert_eq!(TcpFlags::from_byte(0x06).event(), RST);
    }

    #[test]
    fn segment_without_flags_closes() {
        assert_eq!(TcpFlags::from_byte(0x08).event(), None); // PSH only
        assert_eq!(transition(ESTABLISHED, Dir::Input, None, false), CLOSE);
        assert_eq!(transition(SYN_RECV, Dir::Output, None, true), CLOSE);
    }

    #[test]
    fn secure_table_differs_where_the_kernel_says() {
        // NAT: server SYN-ACK moves SYN_RECV to SYNACK, client ACK then establishes
        let s = transition(SYN_RECV, Dir::Output, SYN, true);
        assert_eq!(state_name(s), "SYNACK");
        assert_eq!(transition(s, Dir::Input, ACK, true), SYNACK);
        // a client ACK before the server answered keeps SYN_RECV
        assert_eq!(transition(SYN_RECV, Dir::Input, ACK, true), SYN_RECV);
        // DR: the first SYN goes to SYNACK in the secure table
        assert_eq!(transition(NONE, Dir::InputOnly, SYN, true), SYNACK);
        assert_eq!(transition(SYNACK, Dir::InputOnly, ACK, true), ESTABLISHED);
    }

    #[test]
    fn active_states_and_names() {
        let active: Vec<u16> = (0..LAST).filter(|&s| is_active(s)).collect();
        assert_eq!(active, vec![ESTABLISHED, SYN_SENT, SYN_RECV, SYNACK]);
        assert_eq!(state_name(SYNACK), "SYNACK");
        assert_eq!(state_name(LAST), "ERR!");
        assert_eq!(state_name(u16::MAX), "ERR!");
        assert!(!is_active(LAST));
    }

    #[test]
    fn default_timeouts_match_kernel_seconds() {
        let secs: Vec<u64> = DEFAULT_TIMEOUTS_MS.iter().map(|t| t / 1000).collect();
        assert_eq!(secs, vec![2, 900, 120, 60, 120, 120, 10, 60, 30, 120, 120]);
    }
}
