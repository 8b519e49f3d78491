//! The shape of the file as serde reads it: every table denies unknown keys, and every value
//! that is checked after parsing keeps its span so the error can point at it.

use serde::Deserialize;
use toml::Spanned;

use super::values::{Cmd, Dur, Reply, Status};

/// An optional value with its place in the file.
pub type Opt<T> = Option<Spanned<T>>;

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub director: Option<Director>,
    #[serde(default)]
    pub service: Vec<Spanned<Service>>,
}

/// `[director]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Director {
    pub workers: Opt<i64>,
    pub drain_timeout: Option<Dur>,
    pub connect_timeout: Opt<Dur>,
    pub drain_grace: Option<Dur>,
    pub timeouts: Option<Timeouts>,
}

/// `timeouts = { tcp, tcpfin, udp }`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    pub tcp: Opt<Dur>,
    pub tcpfin: Opt<Dur>,
    pub udp: Opt<Dur>,
}

/// `[[service]]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub address: Opt<String>,
    pub fwmark: Opt<i64>,
    pub family: Opt<String>,
    pub protocol: Opt<String>,
    pub scheduler: Opt<String>,
    pub flags: Opt<Vec<Spanned<String>>>,
    pub ops: Opt<bool>,
    pub pe: Opt<String>,
    pub persistence: Opt<Persistence>,
    pub quorum: Opt<i64>,
    pub hysteresis: Opt<i64>,
    pub quorum_up: Option<Cmd>,
    pub quorum_down: Option<Cmd>,
    #[serde(default)]
    pub omega: bool,
    pub sorry: Opt<Sorry>,
    pub passive: Opt<Passive>,
    // defaults for the servers
    pub forward: Opt<String>,
    pub alpha: Option<bool>,
    pub inhibit_on_failure: Option<bool>,
    pub slow_start: Option<Dur>,
    pub proxy_protocol: Opt<String>,
    pub delay_loop: Opt<Dur>,
    pub connect_timeout: Opt<Dur>,
    pub retry: Opt<i64>,
    pub delay_before_retry: Opt<Dur>,
    pub warmup: Opt<Dur>,
    #[serde(default)]
    pub server: Vec<Spanned<Server>>,
}

/// `persistence = { timeout, netmask }`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persistence {
    pub timeout: Opt<Dur>,
    pub netmask: Opt<toml::Value>,
}

/// `sorry = { address, forward, weight, inhibit, command }`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sorry {
    pub address: Spanned<String>,
    pub forward: Opt<String>,
    pub weight: Opt<i64>,
    #[serde(default)]
    pub inhibit: bool,
    pub command: Option<Cmd>,
}

/// `passive = { failures, backoff, max_backoff, max_ejected_percent }`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Passive {
    pub failures: Opt<i64>,
    pub backoff: Opt<Dur>,
    pub max_backoff: Opt<Dur>,
    pub max_ejected_percent: Opt<i64>,
}

/// `[[service.server]]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub address: Spanned<String>,
    pub forward: Opt<String>,
    pub tunnel: Opt<Tunnel>,
    pub weight: Opt<i64>,
    pub uthreshold: Opt<i64>,
    pub lthreshold: Opt<i64>,
    pub inhibit_on_failure: Option<bool>,
    pub alpha: Option<bool>,
    pub notify_up: Option<Cmd>,
    pub notify_down: Option<Cmd>,
    pub slow_start: Option<Dur>,
    pub proxy_protocol: Opt<String>,
    pub delay_loop: Opt<Dur>,
    pub connect_timeout: Opt<Dur>,
    pub retry: Opt<i64>,
    pub delay_before_retry: Opt<Dur>,
    pub warmup: Opt<Dur>,
    #[serde(default)]
    pub check: Vec<Spanned<Check>>,
}

/// `tunnel = { type, port, csum }`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tunnel {
    #[serde(rename = "type")]
    pub kind: Opt<String>,
    pub port: Opt<i64>,
    pub csum: Opt<String>,
}

/// `[[service.server.check]]`: every kind's keys; which apply is checked per kind.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub kind: Spanned<String>,
    pub delay_loop: Opt<Dur>,
    pub connect_timeout: Opt<Dur>,
    pub retry: Opt<i64>,
    pub delay_before_retry: Opt<Dur>,
    pub warmup: Opt<Dur>,
    pub connect_ip: Opt<String>,
    pub connect_port: Opt<i64>,
    pub bind_addr: Opt<String>,
    pub bind_port: Opt<i64>,
    pub bind_if: Opt<String>,
    pub fwmark: Opt<i64>,
    pub log_all_failures: Opt<bool>,
    // http / https
    pub url: Opt<Vec<Spanned<Url>>>,
    pub http_protocol: Opt<String>,
    pub virtualhost: Opt<String>,
    pub method: Opt<String>,
    pub sni: Opt<bool>,
    pub sni_name: Opt<String>,
    pub close_notify: Opt<bool>,
    // smtp
    pub helo_name: Opt<String>,
    // dns
    #[serde(rename = "type")]
    pub qtype: Opt<String>,
    pub name: Opt<String>,
    // udp
    pub payload: Opt<String>,
    pub require_reply: Opt<Reply>,
    pub min_reply_length: Opt<i64>,
    pub max_reply_length: Opt<i64>,
    // misc
    pub command: Opt<Cmd>,
    pub timeout: Opt<Dur>,
    pub dynamic: Opt<bool>,
}

/// `url = [{ path, digest, status, virtualhost, regex, regex_no_match }]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Url {
    pub path: Spanned<String>,
    pub digest: Opt<String>,
    pub status: Option<Vec<Spanned<Status>>>,
    pub virtualhost: Option<String>,
    pub regex: Option<String>,
    #[serde(default)]
    pub regex_no_match: bool,
    #[serde(default)]
    pub regex_min_offset: usize,
    pub regex_max_offset: Option<usize>,
}
