//! The rvs configuration file (TOML): parse → validate → [`crate::spec::Config`].
//!
//! ```toml
//! [director]                      # optional: workers, drain_timeout, connect_timeout,
//! workers = 2                     # drain_grace, timeouts = { tcp, tcpfin, udp }
//!
//! [[service]]
//! address = "192.0.2.10:80"       # or fwmark = 7 (+ family = "ipv6")
//! scheduler = "wrr"               # default wlc
//! forward = "nat"                 # default for its servers; default nat (keepalived's)
//!
//! [[service.server]]
//! address = "10.0.0.1:8080"
//! weight = 3
//!
//! [[service.server.check]]
//! kind = "http"
//! url = [{ path = "/health", status = [200] }]
//! ```
//!
//! `examples/rvs.toml` at the repository root is the commented tour of every key. Every
//! problem is refused with `file:line:column: message`, the column counted in characters:
//! TOML syntax, unknown keys (a typo is never ignored), wrong types, and what is checked
//! after parsing (addresses, scheduler names, ranges, the DR/TUN port rule, duplicates,
//! which keys a check kind takes, quorum and hysteresis, passive health, slow start).
//!
//! Decisions (documented in the example too):
//! - weights go up to 2147483647 as the kernel, keepalived and rvs's ipvsadm take them;
//! - a server's forwarding method defaults to the service's `forward`, itself NAT by default
//!   (keepalived's `lvs_method` default; ipvsadm's `-a` default is DR);
//! - the protocol of an address service defaults to TCP (keepalived assumes UDP with a
//!   warning, which surprises more than it helps);
//! - check timers follow keepalived: `delay_loop` 60 s, `connect_timeout` 5 s, `retry` 1
//!   (DNS 3, misc 0), `delay_before_retry` 1 s (HTTP/HTTPS 3 s, DNS the delay loop), `warmup`
//!   the delay loop; service values are defaults for servers, server values for checks.

mod check;
mod raw;
mod service;
mod values;

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use crate::spec::{Config, ConfigError, Files, Loc, Settings};

pub use values::{parse_duration, split_words};

/// Read and validate the file at `path` through `files`.
pub fn read(path: &str, files: &dyn Files) -> Result<Config, ConfigError> {
    let text = files
        .read(path)
        .map_err(|e| ConfigError::new(Loc::new(path, 1, 1), format!("cannot read: {e}")))?;
    parse(path, &text)
}

/// Validate `text`, read from `path` (used in error locations).
pub fn parse(path: &str, text: &str) -> Result<Config, ConfigError> {
    let ctx = Ctx { path, text };
    let file: raw::File = toml::from_str(text).map_err(|e| ctx.toml_error(&e))?;
    let settings = match file.director {
        Some(d) => director(&ctx, d)?,
        None => Settings::default(),
    };
    let mut services = Vec::with_capacity(file.service.len());
    for s in file.service {
        let span = s.span();
        let svc = service::build(&ctx, s)?;
        if let Some(prev) = services
            .iter()
            .find(|p: &&crate::spec::VirtualService| p.keys == svc.keys)
        {
            return Err(ctx.err(
                span,
                format!(
                    "service {} is already declared at line {}",
                    svc.keys[0], prev.loc.line
                ),
            ));
        }
        services.push(svc);
    }
    Ok(Config {
        services,
        settings,
        notices: Vec::new(),
    })
}

/// The file being read: turns byte spans into locations.
pub(crate) struct Ctx<'a> {
    path: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    /// The location of byte offset `at` (line and column from 1, the column in characters).
    pub fn loc(&self, at: usize) -> Loc {
        let at = at.min(self.text.len());
        let mut at = at;
        while !self.text.is_char_boundary(at) {
            at -= 1;
        }
        let before = &self.text[..at];
        let line = before.matches('\n').count() + 1;
        let start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[start..].chars().count() + 1;
        Loc::new(self.path, line as u32, col as u32)
    }

    /// An error at the start of `span`.
    pub fn err(&self, span: Range<usize>, msg: impl Into<String>) -> ConfigError {
        ConfigError::new(self.loc(span.start), msg)
    }

    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let at = e.span().map_or(0, |s| s.start);
        let msg = e
            .message()
            .trim_end()
            .replace('\n', "; ")
            .replace("expected i64", "expected an integer");
        ConfigError::new(self.loc(at), msg)
    }

    /// An integer key within `lo..=hi`.
    pub fn int(&self, v: &Spanned<i64>, key: &str, lo: i64, hi: i64) -> Result<i64, ConfigError> {
        let n = *v.get_ref();
        if (lo..=hi).contains(&n) {
            Ok(n)
        } else {
            Err(self.err(
                v.span(),
                format!("{key} {n} is out of range ({lo} to {hi})"),
            ))
        }
    }

    /// A duration key of whole seconds within `lo..=hi` seconds.
    pub fn secs(
        &self,
        v: &Spanned<values::Dur>,
        key: &str,
        lo: u64,
        hi: u64,
    ) -> Result<u32, ConfigError> {
        let d = v.get_ref().0;
        if d.subsec_nanos() != 0 {
            return Err(self.err(v.span(), format!("{key} must be whole seconds")));
        }
        let s = d.as_secs();
        if (lo..=hi).contains(&s) {
            Ok(s as u32)
        } else {
            Err(self.err(
                v.span(),
                format!("{key} {s} s is out of range ({lo} to {hi} s)"),
            ))
        }
    }

    /// A duration that must not be zero.
    pub fn positive(&self, v: &Spanned<values::Dur>, key: &str) -> Result<Duration, ConfigError> {
        let d = v.get_ref().0;
        if d.is_zero() {
            Err(self.err(v.span(), format!("{key} must be more than zero")))
        } else {
            Ok(d)
        }
    }
}

fn director(ctx: &Ctx<'_>, d: raw::Director) -> Result<Settings, ConfigError> {
    let workers = match &d.workers {
        Some(w) => Some(ctx.int(w, "workers", 1, 1024)? as usize),
        None => None,
    };
    let connect_timeout = match &d.connect_timeout {
        Some(t) => Some(ctx.positive(t, "connect_timeout")?),
        None => None,
    };
    let timeouts = match d.timeouts {
        Some(t) => {
            let one = |v: &Option<Spanned<values::Dur>>, key| match v {
                Some(v) => ctx.secs(v, key, 0, u64::from(u32::MAX)),
                None => Ok(0),
            };
            Some((
                one(&t.tcp, "timeouts.tcp")?,
                one(&t.tcpfin, "timeouts.tcpfin")?,
                one(&t.udp, "timeouts.udp")?,
            ))
        }
        None => None,
    };
    Ok(Settings {
        workers,
        drain_timeout: d.drain_timeout.map(|v| v.0),
        connect_timeout,
        timeouts,
        drain_grace: d.drain_grace.map(|v| v.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_count_characters() {
        let ctx = Ctx {
            path: "f.toml",
            text: "a = 1\né = \"x\" # ü\nz",
        };
        assert_eq!(ctx.loc(0).to_string(), "f.toml:1:1");
        assert_eq!(ctx.loc(6).to_string(), "f.toml:2:1");
        // 'é' is two bytes: the '=' after it is the third character
        assert_eq!(ctx.loc(9).to_string(), "f.toml:2:3");
        assert_eq!(ctx.loc(ctx.text.len() - 1).to_string(), "f.toml:3:1");
    }
}
