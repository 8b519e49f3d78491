//! Persistence engines (`net/netfilter/ipvs/ip_vs_pe.c`, `ip_vs_pe_sip.c`; the header parser
//! they borrow from `net/netfilter/nf_conntrack_sip.c`; Linux 6.1).
//!
//! A persistence engine (`ipvsadm --pe NAME`) adds data taken from the packet to the key of a
//! persistent service's templates. Linux has one engine, `sip`: the key gains the SIP
//! `Call-ID`, so every datagram of one call reaches the same real server whatever the
//! client's port, and different calls from one client network are balanced independently.
//!
//! # How the kernel finds the Call-ID (reproduced byte for byte by [`sip_call_id`])
//! * Only UDP datagrams with a non-empty payload; anything else is an error and the packet is
//!   **dropped** (the engine's `fill_param` fails, `ip_vs_sched_persist` returns "ignored =
//!   −1"), so TCP to a `--pe sip` service never gets a connection.
//! * Headers are searched from the start of the payload, but a header only counts at the
//!   start of a line, i.e. right after a CR, an LF or a CRLF: a `Call-ID` on the very first
//!   line is never found. A line that starts with a space or tab (a continuation) is skipped.
//!   After a line start that matches nothing the scan moves on one byte, so a header that
//!   directly follows an empty line ended by a lone CR or LF is missed.
//! * The name matches `Call-Id` case-insensitively as a 7-byte prefix (nothing is required
//!   after it), or the compact form `i` when the next byte is not a letter. Letters and digits
//!   follow the kernel's Latin-1 `ctype` table (bytes `0xC0..=0xFF` except `0xD7` and `0xF7`
//!   are letters).
//! * Blanks (space, tab, and one line break followed by blanks: a continuation) may surround
//!   the colon. A name match that is not followed by a colon ends the whole search: nothing is
//!   found, even if a real `Call-ID` comes later (`Call-IDx:` or `i-x:` hide it).
//! * The value is a *word*, optionally `@` and a second word. Word bytes are letters, digits
//!   and ``!"%'()*+-./:<>?[\]_`{}~`` (so no `=`, `;`, `,`, `#`, `$`, `&`, `^`, `|`, blank
//!   or second `@`). An empty word, or `@` without a domain word, makes the value empty; the
//!   search then restarts further on, at the offset of the empty value **added to** the
//!   previous start offset (a kernel quirk: from the second empty value on, it skips ahead
//!   too far). The `ct` argument is `NULL` for IPVS, which only disables address parsing;
//!   the Call-ID grammar never parses addresses, so `abc@host.example` and `abc@10.1.1.9`
//!   are both taken whole.
//! * The value must be at most [`PEDATA_MAXLEN`] bytes and be followed by CR or LF (not by
//!   the end of the payload, a blank or anything else); otherwise the packet is dropped.

use crate::model::Protocol;

/// Most bytes of persistence-engine data a template carries (`IP_VS_PEDATA_MAXLEN`).
pub const PEDATA_MAXLEN: usize = 255;

/// A persistence engine the kernel knows (`ip_vs_pe_getbyname`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Engine {
    /// `ip_vs_pe_sip`: the SIP Call-ID
    Sip,
}

impl Engine {
    /// The engine registered under `name` (exact, case-sensitive match).
    pub fn by_name(name: &str) -> Option<Engine> {
        match name {
            "sip" => Some(Engine::Sip),
            _ => None,
        }
    }

    /// The name `ipvsadm` shows in the `pe name` column.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Sip => "sip",
        }
    }

    /// `fill_param`: the engine's data for a packet of protocol `proto` carrying `payload`
    /// (the transport payload), or `None` when the kernel's `fill_param` fails and the packet
    /// is dropped.
    pub fn fill_param(self, proto: Protocol, payload: &[u8]) -> Option<&[u8]> {
        match self {
            Engine::Sip if proto == Protocol::Udp => sip_call_id(payload),
            Engine::Sip => None,
        }
    }
}

/// The data a persistence-engine template carries besides its addresses (`cp->pe`,
/// `cp->pe_data`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeData {
    /// the engine that filled it
    pub engine: Engine,
    /// the engine's bytes (for `sip`, the Call-ID; 1 … [`PEDATA_MAXLEN`] bytes)
    pub data: Box<[u8]>,
}

const CR: u8 = b'\r';
const LF: u8 = b'\n';

/// The Call-ID of a SIP message as `ip_vs_pe_sip.c: get_callid` extracts it (see the module
/// documentation for every rule), or `None` when the kernel would drop the packet.
pub fn sip_call_id(payload: &[u8]) -> Option<&[u8]> {
    let mut dataoff = 0usize;
    let (off, len) = loop {
        match find_call_id(payload, dataoff) {
            Header::Found { off, len } => break (off, len),
            Header::Absent => return None,
            // the kernel adds the (absolute) offset of the empty value to its start offset
            Header::Empty { off } => dataoff = dataoff.saturating_add(off),
        }
    };
    if len > PEDATA_MAXLEN {
        return None;
    }
    let end = off + len;
    match payload.get(end) {
        Some(&CR) | Some(&LF) => Some(&payload[off..end]),
        _ => None,
    }
}

/// Outcome of one `ct_sip_get_header` call for the Call-ID header.
#[derive(Debug, PartialEq, Eq)]
enum Header {
    /// a value at `off` of `len` bytes
    Found { off: usize, len: usize },
    /// a header whose value is empty at `off` (the kernel's −1)
    Empty { off: usize },
    /// no header (the kernel's 0)
    Absent,
}

/// `ct_sip_get_header(NULL, …, SIP_HDR_CALL_ID, …)` searching from `dataoff`.
fn find_call_id(data: &[u8], dataoff: usize) -> Header {
    let limit = data.len();
    let mut i = dataoff;
    while i < limit {
        if data[i] != CR && data[i] != LF {
            i += 1;
            continue;
        }
        // the start of a line
        i += 1;
        if i >= limit {
            break;
        }
        if data[i - 1] == CR && data[i] == LF {
            i += 1;
            if i >= limit {
                break;
            }
        }
        let name_end = match header_name_at(data, i) {
            Some(end) => end,
            None => {
                // a continuation line or another header: the scan goes on after this byte
                i += 1;
                continue;
            }
        };
        return header_value(data, name_end);
    }
    Header::Absent
}

/// Where the header name at line start `i` ends, if it is `Call-Id` or the compact `i`.
fn header_name_at(data: &[u8], i: usize) -> Option<usize> {
    const NAME: &[u8] = b"Call-Id";
    let rest = &data[i..];
    if rest[0] == b' ' || rest[0] == b'\t' {
        return None;
    }
    if rest.len() >= NAME.len() && rest[..NAME.len()].eq_ignore_ascii_case(NAME) {
        return Some(i + NAME.len());
    }
    if rest.len() >= 2 && rest[0].eq_ignore_ascii_case(&b'i') && !is_alpha(rest[1]) {
        return Some(i + 1);
    }
    None
}

/// The rest of `ct_sip_get_header` after a name matched: blanks, colon, blanks, value.
fn header_value(data: &[u8], name_end: usize) -> Header {
    let Some(p) = skip_whitespace(data, name_end) else {
        return Header::Absent;
    };
    // At the end of the payload the kernel reads one byte past it; that byte is taken as
    // not a colon here.
    if data.get(p) != Some(&b':') || p + 1 >= data.len() {
        return Header::Absent;
    }
    let Some(p) = skip_whitespace(data, p + 1) else {
        return Header::Absent;
    };
    match callid_len(data, p) {
        0 => Header::Empty { off: p },
        len => Header::Found { off: p, len },
    }
}

/// `sip_skip_whitespace`: skip blanks; a line break is passed only as a continuation (`None`
/// when the next line is not one).
fn skip_whitespace(data: &[u8], mut i: usize) -> Option<usize> {
    while i < data.len() {
        match data[i] {
            b' ' | b'\t' => i += 1,
            CR | LF => return follow_continuation(data, i),
            _ => break,
        }
    }
    Some(i)
}

/// `sip_follow_continuation`: from the line break at `i`, the first non-blank byte of the
/// next line if that line is a continuation (starts with a blank).
fn follow_continuation(data: &[u8], i: usize) -> Option<usize> {
    let limit = data.len();
    let mut j = i + 1;
    if j >= limit {
        return None;
    }
    if data[j - 1] == CR && data[j] == LF {
        j += 1;
        if j >= limit {
            return None;
        }
    }
    if data[j] != b' ' && data[j] != b'\t' {
        return None;
    }
    while j < limit && (data[j] == b' ' || data[j] == b'\t') {
        j += 1;
    }
    Some(j)
}

/// `callid_len`: a word, optionally followed by `@` and a non-empty word (0 when the domain
/// word is empty).
fn callid_len(data: &[u8], p: usize) -> usize {
    let len = word_len(data, p);
    let q = p + len;
    if len == 0 || data.get(q) != Some(&b'@') {
        return len;
    }
    match word_len(data, q + 1) {
        0 => 0,
        domain => len + 1 + domain,
    }
}

fn word_len(data: &[u8], p: usize) -> usize {
    data.get(p..)
        .map_or(0, |s| s.iter().take_while(|&&c| is_word_char(c)).count())
}

/// `iswordc`: letters and digits (Latin-1, as the kernel's `ctype`) and a fixed set of marks.
fn is_word_char(c: u8) -> bool {
    is_alpha(c)
        || c.is_ascii_digit()
        || matches!(
            c,
            b'!' | b'"'
                | b'%'
                | b'\''
                | b'('..=b'+'
                | b'-'..=b'/'
                | b':'
                | b'<'
                | b'>'
                | b'?'
                | b'['..=b']'
                | b'_'
                | b'`'
                | b'{'
                | b'}'
                | b'~'
        )
}

/// The kernel's `isalpha` (`lib/ctype.c`): ASCII letters and the Latin-1 letters
/// `0xC0..=0xFF` except `0xD7` (×) and `0xF7` (÷).
fn is_alpha(c: u8) -> bool {
    c.is_ascii_alphabetic() || (c >= 0xC0 && c != 0xD7 && c != 0xF7)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(callid_line: &str) -> Vec<u8> {
        format!(
            "OPTIONS sip:rvs@10.0.0.1 SIP/2.0\r\n{callid_line}CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn id(payload: &[u8]) -> Option<&str> {
        sip_call_id(payload).map(|b| std::str::from_utf8(b).unwrap())
    }

    #[test]
    fn call_id_with_host_or_address_is_taken_whole() {
        let p = options("Call-ID: abc@host.example\r\n");
        assert_eq!(id(&p), Some("abc@host.example"));
        let p = options("Call-ID: abc@10.1.1.9\r\n");
        assert_eq!(id(&p), Some("abc@10.1.1.9"));
        let p = options("Call-ID: a84b4c76e66710@[2001:db8::1]\r\n");
        assert_eq!(id(&p), Some("a84b4c76e66710@[2001:db8::1]"));
    }

    #[test]
    fn name_is_case_insensitive_and_has_a_compact_form() {
        for line in [
            "call-id: x1\r\n",
            "CALL-ID: x1\r\n",
            "Call-Id:x1\r\n",
            "i: x1\r\n",
            "I:x1\r\n",
            "i \t: \t x1\r\n",
        ] {
            assert_eq!(id(&options(line)), Some("x1"), "{line:?}");
        }
        // "Call-Id" is a prefix match: a longer name that is not followed by a colon ends the
        // search, hiding the real header after it
        assert_eq!(id(&options("Call-IDx: y\r\nCall-ID: x1\r\n")), None);
        assert_eq!(id(&options("i-x: y\r\nCall-ID: x1\r\n")), None);
        assert_eq!(id(&options("i2: y\r\ni: x1\r\n")), None);
        // compact form needs a non-letter after it
        assert_eq!(id(&options("Info: y\r\ni: x1\r\n")), Some("x1"));
        // ... a letter by the kernel's Latin-1 table
        assert_eq!(id(b"X\r\ni\xe9: y\r\ni: x1\r\n"), Some("x1"));
        assert_eq!(id(b"X\r\ni\xd7: y\r\ni: x1\r\n"), None);
    }

    #[test]
    fn header_only_counts_at_a_line_start() {
        assert_eq!(id(b"Call-ID: first\r\nCSeq: 1\r\n"), None);
        assert_eq!(id(b"\r\nCall-ID: first\r\n"), Some("first"));
        assert_eq!(id(b"X\nCall-ID: lf\nY"), Some("lf"));
        assert_eq!(id(b"X\rCall-ID: cr\rY"), Some("cr"));
        // a continuation line is not a header
        assert_eq!(id(b"X\r\n Call-ID: no\r\n"), None);
        assert_eq!(id(b"X\r\nVia: a\r\n\ti: no\r\n"), None);
        // a header right after an empty line made of CRLF is found (the body is searched too)
        let mut body = options("");
        body.extend_from_slice(b"i: body\r\n");
        assert_eq!(id(&body), Some("body"));
        // but not after an empty line ended by a lone LF or CR
        assert_eq!(id(b"X\n\nCall-ID: x\n"), None);
        assert_eq!(id(b"X\r\rCall-ID: x\r"), None);
        assert_eq!(id(b"X\n\n\nCall-ID: x\n"), Some("x"));
    }

    #[test]
    fn blanks_and_continuations_around_the_colon() {
        assert_eq!(id(b"X\r\nCall-ID:\r\n   cont\r\n"), Some("cont"));
        assert_eq!(id(b"X\r\nCall-ID\r\n\t: cont\r\n"), Some("cont"));
        // a line break not followed by a blank ends the search
        assert_eq!(id(b"X\r\nCall-ID:\r\nabc\r\n"), None);
        assert_eq!(id(b"X\r\nCall-ID: "), None);
        assert_eq!(id(b"X\r\nCall-ID:"), None);
        assert_eq!(id(b"X\r\nCall-ID"), None);
    }

    #[test]
    fn value_grammar_and_terminator() {
        assert_eq!(
            id(&options("Call-ID: a!\"%'()*+-./:<>?[\\]_`{}~z\r\n")),
            Some("a!\"%'()*+-./:<>?[\\]_`{}~z")
        );
        for bad in [
            "abc ", "abc=", "ab;tag", "a@b@c", "a,b", "a#", "a$", "a&", "a^", "a|",
        ] {
            let line = format!("Call-ID: {bad}\r\n");
            assert_eq!(id(&options(&line)), None, "{bad:?}");
        }
        // must be followed by CR or LF, not by the end of the payload
        assert_eq!(id(b"X\r\nCall-ID: abc\n"), Some("abc"));
        assert_eq!(id(b"X\r\nCall-ID: abc"), None);
        // Latin-1 letters are word bytes; the multiplication sign is not
        assert_eq!(sip_call_id(b"X\r\ni: caf\xe9\r\n"), Some(&b"caf\xe9"[..]));
        assert_eq!(sip_call_id(b"X\r\ni: a\xd7b\r\n"), None);
    }

    #[test]
    fn at_most_255_bytes() {
        let ok = "c".repeat(PEDATA_MAXLEN);
        assert_eq!(
            id(&options(&format!("Call-ID: {ok}\r\n"))),
            Some(ok.as_str())
        );
        let long = "c".repeat(PEDATA_MAXLEN + 1);
        assert_eq!(id(&options(&format!("Call-ID: {long}\r\n"))), None);
        let long_at = format!("{}@{}", "a".repeat(200), "b".repeat(55));
        assert_eq!(id(&options(&format!("Call-ID: {long_at}\r\n"))), None);
    }

    #[test]
    fn empty_values_restart_the_search_with_the_kernels_offset_sum() {
        // one empty value: the search resumes at it and finds the next header
        assert_eq!(id(b"A\r\ni: =\r\ni: ok\r\n"), Some("ok"));
        assert_eq!(id(b"A\r\ni: abc@\r\ni: ok\r\n"), Some("ok"));
        assert_eq!(id(b"A\r\ni:\r\n \r\ni: ok\r\n"), Some("ok"));
        // two: the second restart offset is the sum of both value offsets (6 + 12 = 18),
        // past the start of the third header at 15
        assert_eq!(id(b"A\r\ni: =\r\ni: =\r\ni: ok\r\n"), None);
        // with room to spare the third header is still found
        assert_eq!(
            id(b"A\r\ni: =\r\ni: =\r\nVia: long-enough-line\r\ni: ok\r\n"),
            Some("ok")
        );
        assert_eq!(id(b"A\r\ni: @x\r\n"), None);
    }

    #[test]
    fn no_call_id_no_data() {
        assert_eq!(id(b""), None);
        assert_eq!(id(&options("")), None);
        assert_eq!(id(b"X\r\nCall\0ID: a\r\n"), None);
    }

    #[test]
    fn engine_by_name_and_protocol() {
        assert_eq!(Engine::by_name("sip"), Some(Engine::Sip));
        assert_eq!(Engine::by_name("SIP"), None);
        assert_eq!(Engine::Sip.name(), "sip");
        let p = options("Call-ID: z9\r\n");
        assert_eq!(Engine::Sip.fill_param(Protocol::Udp, &p), Some(&b"z9"[..]));
        assert_eq!(Engine::Sip.fill_param(Protocol::Tcp, &p), None);
        assert_eq!(Engine::Sip.fill_param(Protocol::Sctp, &p), None);
    }
}
