//! Every kind of mistake in an rvs TOML file is refused with `file:line:column: message`,
//! pointing at the offending key or value.

use rvs_config::rvsconf::{parse, read};
use rvs_config::spec::MemFiles;

/// The error for `text`, as printed.
fn err(text: &str) -> String {
    match parse("rvs.toml", text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

const SVC: &str = "[[service]]\naddress = \"192.0.2.1:80\"\n";

/// A service with one server (`server` lines added to its table).
fn with_server(server: &str) -> String {
    format!("{SVC}[[service.server]]\naddress = \"10.0.0.1\"\n{server}")
}

/// A server with one check of `kind` and `lines`.
fn with_check(lines: &str) -> String {
    with_server(&format!("[[service.server.check]]\n{lines}"))
}

#[test]
fn toml_syntax() {
    assert_eq!(err("x = [\n"), "rvs.toml:1:6: unclosed array, expected `]`");
}

#[test]
fn unknown_keys_are_refused_where_they_are() {
    let e = err(&format!("{SVC}schedular = \"rr\"\n"));
    assert!(
        e.starts_with("rvs.toml:3:1: unknown field `schedular`, expected one of `address`"),
        "{e}"
    );
    assert_eq!(
        err("[director]\nworker = 2\n"),
        "rvs.toml:2:1: unknown field `worker`, expected one of `workers`, `drain_timeout`, \
         `connect_timeout`, `drain_grace`, `timeouts`"
    );
    assert_eq!(
        err(&with_server("tunnel = { typ = \"gue\" }\n")),
        "rvs.toml:5:12: unknown field `typ`, expected one of `type`, `port`, `csum`"
    );
    assert_eq!(
        err(&format!(
            "{SVC}quorum_up = {{ command = \"x\", shel = true }}\n"
        )),
        "rvs.toml:3:30: unknown field `shel`, expected one of `command`, `shell`, `user`, `group`"
    );
}

#[test]
fn wrong_types() {
    assert_eq!(
        err(&with_server("weight = \"3\"\n")),
        "rvs.toml:5:10: invalid type: string \"3\", expected an integer"
    );
    assert_eq!(
        err("[[service]]\naddress = 80\n"),
        "rvs.toml:2:11: invalid type: integer `80`, expected a string"
    );
    assert_eq!(
        err(&format!("{SVC}omega = \"yes\"\n")),
        "rvs.toml:3:9: invalid type: string \"yes\", expected a boolean"
    );
    assert_eq!(
        err(&format!("{SVC}quorum_down = 5\n")),
        "rvs.toml:3:15: invalid type: integer `5`, expected a command: a string, an array of \
         strings, or a table with `command`"
    );
}

#[test]
fn missing_keys() {
    assert_eq!(
        err(&format!("{SVC}[[service.server]]\nweight = 2\n")),
        "rvs.toml:3:1: missing field `address`"
    );
    assert_eq!(
        err("[[service]]\nscheduler = \"rr\"\n"),
        "rvs.toml:1:1: a service needs `address` or `fwmark`"
    );
    assert_eq!(
        err(&with_check("delay_loop = 3\n")),
        "rvs.toml:5:1: missing field `kind`"
    );
}

#[test]
fn durations() {
    assert_eq!(
        err(&format!("{SVC}delay_loop = \"5 s\"\n")),
        "rvs.toml:3:14: invalid duration \"5 s\": expected a number with ms, s, m or h \
         (\"500ms\", \"5s\")"
    );
    assert_eq!(
        err(&format!("{SVC}delay_loop = -1\n")),
        "rvs.toml:3:14: negative duration -1"
    );
    assert_eq!(
        err(&format!("{SVC}delay_loop = 0\n")),
        "rvs.toml:3:14: delay_loop must be more than zero"
    );
}

#[test]
fn bad_addresses() {
    assert_eq!(
        err("[[service]]\naddress = \"192.0.2.300:80\"\n"),
        "rvs.toml:2:11: invalid service address \"192.0.2.300:80\": expected IP:PORT \
         (\"192.0.2.10:80\", \"[2001:db8::10]:80\")"
    );
    assert_eq!(
        err(&format!(
            "{SVC}[[service.server]]\naddress = \"10.0.0.1:http\"\n"
        )),
        "rvs.toml:4:11: invalid real server address \"10.0.0.1:http\": expected IP or IP:PORT"
    );
    assert_eq!(
        err(&format!(
            "{SVC}[[service.server]]\naddress = \"224.0.0.1\"\n"
        )),
        "rvs.toml:4:11: real server address 224.0.0.1 is not a unicast address"
    );
    assert_eq!(
        err(&format!(
            "{SVC}[[service.server]]\naddress = \"2001:db8::1\"\n"
        )),
        "rvs.toml:4:11: real server 2001:db8::1 is not of the service's address family \
         (only tunnels may mix)"
    );
    assert_eq!(
        err("[[service]]\naddress = \"192.0.2.1:0\"\n"),
        "rvs.toml:2:11: port 0 (any port) is only for persistent services: add `persistence`"
    );
}

#[test]
fn service_settings() {
    assert_eq!(
        err(&format!("{SVC}scheduler = \"wrrr\"\n")),
        "rvs.toml:3:13: unknown scheduler \"wrrr\" (known: rr, wrr, lc, wlc, lblc, lblcr, dh, \
         sh, sed, nq, fo, ovf, mh, twos, none)"
    );
    assert_eq!(
        err(&format!("{SVC}flags = [\"sh-port\"]\n")),
        "rvs.toml:3:10: scheduler flag \"sh-port\" needs scheduler \"sh\", not \"wlc\""
    );
    assert_eq!(
        err(&format!("{SVC}ops = true\n")),
        "rvs.toml:3:7: `ops` (one-packet scheduling) is only for UDP and fwmark services"
    );
    assert_eq!(
        err(&format!("{SVC}pe = \"rtsp\"\n")),
        "rvs.toml:3:6: unknown persistence engine \"rtsp\" (known: sip)"
    );
    assert_eq!(
        err(&format!("{SVC}protocol = \"icmp\"\n")),
        "rvs.toml:3:12: unknown protocol \"icmp\" (expected tcp, udp or sctp)"
    );
    assert_eq!(
        err("[[service]]\nfwmark = 0\n"),
        "rvs.toml:2:10: fwmark 0 is out of range (1 to 4294967295)"
    );
    assert_eq!(
        err("[[service]]\nfwmark = 3\nprotocol = \"udp\"\n"),
        "rvs.toml:3:12: `protocol` does not apply to a fwmark service (the mark selects the \
         packets)"
    );
}

#[test]
fn persistence() {
    assert_eq!(
        err(&format!("{SVC}persistence = {{ timeout = 0 }}\n")),
        "rvs.toml:3:27: persistence timeout 0 s is out of range (1 to 2678400 s)"
    );
    assert_eq!(
        err(&format!("{SVC}persistence = {{ timeout = \"32d\" }}\n")),
        "rvs.toml:3:27: invalid duration \"32d\": expected a number with ms, s, m or h \
         (\"500ms\", \"5s\")"
    );
    assert_eq!(
        err(&format!("{SVC}persistence = {{ timeout = \"745h\" }}\n")),
        "rvs.toml:3:27: persistence timeout 2682000 s is out of range (1 to 2678400 s)"
    );
    assert_eq!(
        err(&format!("{SVC}persistence = {{ timeout = \"1500ms\" }}\n")),
        "rvs.toml:3:27: persistence timeout must be whole seconds"
    );
    assert_eq!(
        err(&format!("{SVC}persistence = {{ netmask = 33 }}\n")),
        "rvs.toml:3:27: netmask /33 is out of range (1 to 32)"
    );
}

#[test]
fn server_ranges() {
    assert_eq!(
        err(&with_server("weight = 2147483648\n")),
        "rvs.toml:5:10: weight 2147483648 is out of range (0 to 2147483647)"
    );
    assert_eq!(
        err(&with_server("weight = -1\n")),
        "rvs.toml:5:10: weight -1 is out of range (0 to 2147483647)"
    );
    assert_eq!(
        err(&with_server("uthreshold = 10\nlthreshold = 20\n")),
        "rvs.toml:6:14: lthreshold 20 is above uthreshold 10"
    );
    assert_eq!(
        err(&with_server("proxy_protocol = \"v3\"\n")),
        "rvs.toml:5:18: unknown proxy_protocol \"v3\" (expected none, v1 or v2)"
    );
    assert_eq!(
        err(&with_server("forward = \"direct\"\n")),
        "rvs.toml:5:11: unknown forward \"direct\" (expected nat, dr or tunnel)"
    );
}

#[test]
fn dr_and_tunnel_cannot_map_ports() {
    assert_eq!(
        err(&format!(
            "{SVC}forward = \"dr\"\n[[service.server]]\naddress = \"10.0.0.1:8080\"\n"
        )),
        "rvs.toml:5:11: real server port 8080 differs from the service port 80: dr cannot map \
         ports (use forward = \"nat\")"
    );
    assert_eq!(
        err(&format!(
            "{SVC}sorry = {{ address = \"10.0.0.9:81\", forward = \"tunnel\" }}\n"
        )),
        "rvs.toml:3:21: sorry server port 81 differs from the service port 80: tunnel cannot \
         map ports (use forward = \"nat\")"
    );
}

#[test]
fn tunnels() {
    assert_eq!(
        err(&with_server("tunnel = { type = \"gue\", port = 6080 }\n")),
        "rvs.toml:5:10: `tunnel` applies to forward = \"tunnel\" only"
    );
    let tun = |t: &str| with_server(&format!("forward = \"tunnel\"\ntunnel = {t}\n"));
    assert_eq!(
        err(&tun("{ type = \"gue\" }")),
        "rvs.toml:6:19: a gue tunnel needs `port`"
    );
    assert_eq!(
        err(&tun("{ type = \"gre\", csum = \"remcsum\" }")),
        "rvs.toml:6:33: remcsum is for gue tunnels only"
    );
    assert_eq!(
        err(&tun("{ port = 6080 }")),
        "rvs.toml:6:19: tunnel `port` is for gue tunnels only"
    );
}

#[test]
fn duplicates() {
    assert_eq!(
        err(&format!("{SVC}{SVC}")),
        "rvs.toml:3:1: service TCP 192.0.2.1:80 is already declared at line 1"
    );
    assert_eq!(
        err(&with_server(
            "[[service.server]]\naddress = \"10.0.0.1:80\"\n"
        )),
        "rvs.toml:6:11: real server 10.0.0.1:80 is already declared at line 3"
    );
}

#[test]
fn quorum_and_hysteresis() {
    assert_eq!(
        err(&format!("{SVC}quorum = 0\n")),
        "rvs.toml:3:10: quorum 0 is out of range (1 to 4294967295)"
    );
    assert_eq!(
        err(&format!("{SVC}quorum = 2\nhysteresis = 2\n")),
        "rvs.toml:4:14: hysteresis 2 must be less than quorum 2"
    );
}

#[test]
fn passive_health_and_slow_start() {
    assert_eq!(
        err(&format!("{SVC}passive = {{ failures = 0 }}\n")),
        "rvs.toml:3:24: passive failures 0 is out of range (1 to 4294967295)"
    );
    assert_eq!(
        err(&format!(
            "{SVC}passive = {{ backoff = \"1m\", max_backoff = \"30s\" }}\n"
        )),
        "rvs.toml:3:43: passive max_backoff 30s is shorter than backoff 60s"
    );
    assert_eq!(
        err(&format!("{SVC}passive = {{ max_ejected_percent = 101 }}\n")),
        "rvs.toml:3:35: passive max_ejected_percent 101 is out of range (0 to 100)"
    );
    assert_eq!(
        err(&with_server("slow_start = \"soon\"\n")),
        "rvs.toml:5:14: invalid duration \"soon\": expected a number with ms, s, m or h \
         (\"500ms\", \"5s\")"
    );
}

#[test]
fn checks() {
    assert_eq!(
        err(&with_check("kind = \"icmp\"\n")),
        "rvs.toml:6:8: unknown check kind \"icmp\" (known: tcp, http, https, smtp, dns, udp, \
         misc, ping)"
    );
    assert_eq!(
        err(&with_check("kind = \"tcp\"\nurl = []\n")),
        "rvs.toml:7:7: `url` does not apply to a tcp check"
    );
    assert_eq!(
        err(&with_check(
            "kind = \"http\"\nsni = true\nurl = [{ path = \"/\" }]\n"
        )),
        "rvs.toml:7:7: `sni` does not apply to a http check"
    );
    assert_eq!(
        err(&with_check("kind = \"http\"\n")),
        "rvs.toml:6:8: an http check needs `url = [{ path = \"/…\" }]`"
    );
    assert_eq!(
        err(&with_check(
            "kind = \"http\"\nurl = [{ path = \"/\", status = [200, \"500-404\"] }]\n"
        )),
        "rvs.toml:7:37: status \"500-404\" is not a code or range within 100 to 599"
    );
    assert_eq!(
        err(&with_check(
            "kind = \"http\"\nurl = [{ path = \"/\", digest = \"abc\" }]\n"
        )),
        "rvs.toml:7:31: digest \"abc\" is not an MD5 sum (32 hex digits)"
    );
    assert_eq!(
        err(&with_check("kind = \"dns\"\ntype = \"PTR\"\n")),
        "rvs.toml:7:8: unknown dns type \"PTR\" (expected A, NS, CNAME, SOA, MX, TXT or AAAA)"
    );
    assert_eq!(
        err(&with_check("kind = \"udp\"\npayload = \"0g\"\n")),
        "rvs.toml:7:11: payload \"0g\" is not hex bytes"
    );
    assert_eq!(
        err(&with_check("kind = \"misc\"\nconnect_port = 80\n")),
        "rvs.toml:7:16: `connect_port` does not apply to a misc check"
    );
    assert_eq!(
        err(&with_check("kind = \"misc\"\n")),
        "rvs.toml:5:1: a misc check needs `command`"
    );
    assert_eq!(
        err(&with_check("kind = \"tcp\"\nretry = -1\n")),
        "rvs.toml:7:9: retry -1 is out of range (0 to 4294967295)"
    );
}

#[test]
fn a_check_needs_a_port_when_the_server_has_none() {
    let text = "[[service]]\nfwmark = 1\n[[service.server]]\naddress = \"10.0.0.1\"\n\
                [[service.server.check]]\nkind = \"tcp\"\n";
    assert_eq!(
        err(text),
        "rvs.toml:5:1: the tcp check of 10.0.0.1 needs `connect_port`: the real server has no \
         port"
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    // "é" takes two bytes: the column of the bad value is still counted in characters
    let text = format!("{SVC}quorum_up = \"/bin/é\"\nquorum = 0\n");
    assert_eq!(
        err(&text),
        "rvs.toml:4:10: quorum 0 is out of range (1 to 4294967295)"
    );
    let text = format!("{SVC}# é\nscheduler = \"é\"\n");
    assert!(err(&text).starts_with("rvs.toml:4:13: unknown scheduler \"é\""));
    let text = "[[service]]\naddress = \"é\" ; x = 1\n";
    assert!(err(text).starts_with("rvs.toml:2:15:"), "{}", err(text));
}

#[test]
fn an_unreadable_file_names_itself() {
    let e = read("/etc/rvs/none.toml", &MemFiles::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/rvs/none.toml:1:1: cannot read: No such file or directory"
    );
}
