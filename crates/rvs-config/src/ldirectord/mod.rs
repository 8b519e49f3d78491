//! ldirectord.cf read as it is: [`read`] turns the file into the declarative
//! [`spec::Config`], with the defaults, overrides and quirks of ldirectord
//! (`ldirectord/ldirectord.in`, `read_config` and `ld_setup`).
//!
//! ```
//! use rvs_config::ldirectord::read;
//! use rvs_config::spec::{CheckKind, MemFiles};
//! let cf = "checkinterval = 5\n\
//!           virtual = 192.168.1.100:80\n    real = 10.0.0.1:80 masq 3\n    request = \"health\"\n";
//! let cfg = read("/etc/ldirectord.cf", &MemFiles::one("/etc/ldirectord.cf", cf)).unwrap();
//! let vs = &cfg.services[0];
//! assert_eq!(vs.conf.scheduler, "wrr");
//! let real = &vs.reals[0];
//! assert_eq!((real.dest.weight, real.inhibit_on_failure), (3, false)); // quiescent = no by default
//! let CheckKind::Http(http) = &real.checks[0].kind else { panic!() };
//! assert_eq!(http.urls[0].path, "/health");
//! ```
//!
//! **Layout.** Global keys start in the first column; `virtual =` (or `virtual6 =`) opens a
//! section whose keys are indented by at least four spaces (a tab counts as four). As in
//! ldirectord, a line that is not indented — a blank line too — ends the section, comment
//! lines (`#` after optional blanks) do not, and `#` starts a comment anywhere on a line.
//! Global keys may come anywhere and are defaults for every section (a section's own
//! `checktimeout`, `negotiatetimeout`, `failurecount`, `quiescent`, `fallback`,
//! `fallbackcommand` override them).
//!
//! **Mapping.** A section is one [`spec::VirtualService`]; `ipvsadm -A` gets its scheduler
//! (default `wrr`), `persistent` (with `netmask` only then, as ldirectord passes `-M` only
//! with `-p`) and `ops` (UDP only, as ldirectord). Each `real` is a [`spec::RealServer`]
//! whose [`DestConf`](rvs_core::model::DestConf) is what ldirectord's `ipvsadm -a` would
//! give: the configured weight, forwarding method, thresholds, and the port as given (0 when
//! omitted; direct routing and tunnelling take the virtual port, as ipvsadm forces it).
//! `quiescent` becomes `inhibit_on_failure`; its default is no, as in ldirectord's program
//! (`set_defaults` has said `$QUIESCENT = "no"` since ldirectord was imported into
//! resource-agents, while its manual says yes): a file that does not say is read as the
//! running ldirectord reads it. `fallbackcommand` runs with `start` / `stop`, the service's
//! `address:port` and protocol, as `do_fallback_command` runs it: with the fallback server
//! when there is one, else as the service's quorum commands (run when the last real server
//! goes down and when one comes back). Servers start down and are added
//! after their first check, which runs at once (`alpha`, zero warmup): ldirectord's start
//! quiesces or removes every server that is not already in the table, then checks them all.
//!
//! **Timing.** ldirectord checks every `checkinterval` seconds and takes a server out after
//! `failurecount` consecutive failures; any success restores it. keepalived's model retries
//! a failing check `retry` times `delay_before_retry` apart before the server goes down, so
//! `retry = failurecount − 1` with `delay_before_retry = checkinterval` gives the same
//! moment: the first failure plus failurecount − 1 more, one interval apart. A check's
//! timeout is `negotiatetimeout` for negotiate checks and `checktimeout` for the others,
//! each defaulting to the other and then to 30 s / 5 s, as `ld_setup` resolves them. A
//! section's `checkinterval` counts only with `fork = yes`, as in ldirectord (otherwise a
//! notice says it is ignored).
//!
//! **Checks.** `connect` → TCP connect (ping for UDP services, as ldirectord);
//! `ping` → ICMP echo; `external` and `external-perl` → an external command run without a
//! shell, with ldirectord's four arguments appended: the virtual address (or the fwmark),
//! the virtual port (0 for a fwmark), the real server's address and its port as configured
//! (IPv6 addresses in brackets, as ldirectord passes them);
//! `on` / `off`; `negotiate` by `service`: http / https → an HTTP(S) request of `request`
//! (`httpmethod`, `virtualhost`) that must answer 2xx and match `receive` when given, smtp /
//! submission → banner, HELO, QUIT, dns → an A query of `request`, simpletcp → send
//! `request` and match `receive`, none → always up; services rvs has no checker for (ftp,
//! imap, pop, ldap, nntp, sql, radius, sip, http_proxy) fall back to the connect check with a
//! notice. **`checktype = N`** (N connect checks, then one negotiate) becomes two checks that
//! must both pass: the connect check every `checkinterval`, and the negotiate check every
//! (N + 1) × `checkinterval`, retried every `checkinterval` while it fails — the cadence
//! ldirectord's counter gives (after a failure it negotiates at every round until one
//! passes). N = 0 is a plain negotiate check.
//!
//! **Not resolved.** Host and port names would need DNS and `/etc/services`; rvs-config does
//! no I/O, so addresses must be numeric and ports numeric or one of ldirectord's service
//! names (`http`, `smtp`, …) or a common name of the services file (`domain`, `www`, `ssh`,
//! `pop3`, `imap2`, `postgresql`, …). Keys rvs does not act on (`logfile`, `callback`,
//! `autoreload`, `emailalert*`, `smtp`, `execute`, `supervised`, `fork`, `cleanstop`,
//! `readdquiescent`, `maintenancedir`, `checkcount`, `monitorfile`, credentials of checks rvs
//! does not have, …) are reported as [`spec::Notice`]s.

mod check;
mod line;
mod real;
mod virt;

use crate::spec::{self, Config, ConfigError, Loc, Notice};

use line::{Ctx, Val};
use real::Fallback;
use virt::Virt;

/// Read an ldirectord configuration file. `files` supplies the text of `path`; nothing else
/// is read. Errors carry `path:line:column`.
pub fn read(path: &str, files: &dyn spec::Files) -> Result<Config, ConfigError> {
    let text = files
        .read(path)
        .map_err(|e| ConfigError::new(Loc::new(path, 0, 0), format!("cannot read: {e}")))?;
    let mut st = State::default();
    let mut virt: Option<Virt> = None;
    for (i, raw) in text.lines().enumerate() {
        let ctx = Ctx::new(path, i + 1, raw);
        if let Some(v) = virt.as_mut() {
            if ctx.is_comment() {
                continue;
            }
            if let Some(body) = ctx.section_body() {
                v.key(&ctx, body, &mut st.notices)?;
                continue;
            }
            st.virts.extend(virt.take());
        }
        if ctx.is_blank() || ctx.is_comment() {
            continue;
        }
        virt = st.top_level(&ctx)?;
    }
    st.virts.extend(virt);
    st.assemble()
}

/// ldirectord's global settings (`set_defaults`), `None` where unset.
#[derive(Debug, Default)]
pub(crate) struct Globals {
    pub checktimeout: Option<u32>,
    pub negotiatetimeout: Option<u32>,
    pub checkinterval: Option<u32>,
    pub failurecount: Option<u32>,
    pub quiescent: Option<bool>,
    pub fallback: Option<Fallback>,
    pub fallback6: Option<Fallback>,
    pub fallbackcommand: Option<String>,
    pub fork: bool,
}

#[derive(Default)]
struct State {
    globals: Globals,
    virts: Vec<Virt>,
    notices: Vec<Notice>,
}

impl State {
    /// A line outside a section: a global key or the start of a section.
    fn top_level(&mut self, ctx: &Ctx) -> Result<Option<Virt>, ConfigError> {
        if ctx.indented() {
            return Err(ctx.err(
                1,
                "indented line outside a virtual section (a blank or unindented line ends a \
                 section)",
            ));
        }
        let (key, val) = ctx.key_value(ctx.content_start())?;
        match key.text {
            "virtual" | "virtual6" => Ok(Some(Virt::open(ctx, key.text == "virtual6", &val)?)),
            _ => {
                self.global(ctx, &key, &val)?;
                Ok(None)
            }
        }
    }

    fn global(&mut self, ctx: &Ctx, key: &Val, val: &Val) -> Result<(), ConfigError> {
        let g = &mut self.globals;
        let k = key.text;
        match k {
            "checktimeout" => g.checktimeout = Some(val.positive(ctx, k)?),
            "negotiatetimeout" => g.negotiatetimeout = Some(val.positive(ctx, k)?),
            "checkinterval" => g.checkinterval = Some(val.positive(ctx, k)?),
            "failurecount" => g.failurecount = Some(val.positive(ctx, k)?),
            "quiescent" => g.quiescent = Some(val.yes_no(ctx, k)?),
            "fallback" | "fallback6" => {
                let fb = Fallback::parse(ctx, val, k == "fallback6")?;
                if k == "fallback6" {
                    g.fallback6 = Some(fb);
                } else {
                    g.fallback = Some(fb);
                }
            }
            "fallbackcommand" => g.fallbackcommand = Some(val.command(ctx, k)?),
            "fork" => {
                g.fork = val.yes_no(ctx, k)?;
                self.notice(ctx, key, "fork: rvs checks every server on its own timer");
            }
            "connecttimeout" | "timeout" => {
                return Err(ctx.err(
                    key.col,
                    format!("{k}: deprecated in favour of checktimeout and negotiatetimeout"),
                ))
            }
            _ => return self.global_unused(ctx, key, val),
        }
        Ok(())
    }

    /// Global keys that are checked as ldirectord checks them, then reported as not acted on.
    fn global_unused(&mut self, ctx: &Ctx, key: &Val, val: &Val) -> Result<(), ConfigError> {
        let k = key.text;
        let why = match k {
            "checkcount" => {
                val.positive(ctx, k)?;
                "checkcount: deprecated (see failurecount); ignored"
            }
            "autoreload" => {
                val.yes_no(ctx, k)?;
                "autoreload: ignored (rvsd re-reads its files on SIGHUP)"
            }
            "callback" => {
                val.quoted(ctx, k)?;
                "callback: ignored"
            }
            "logfile" => {
                val.quoted(ctx, k)?;
                "logfile: ignored (rvsd logs to its standard error)"
            }
            "execute" => "execute: ignored (rvsd does not start other ldirectord instances)",
            "supervised" => {
                if !val.text.is_empty() {
                    val.yes_no(ctx, k)?;
                }
                "supervised: ignored (rvsd runs in the foreground)"
            }
            "readdquiescent" => {
                val.yes_no(ctx, k)?;
                "readdquiescent: ignored (the file owns the servers it declares)"
            }
            "cleanstop" => {
                val.yes_no(ctx, k)?;
                "cleanstop: ignored"
            }
            "maintenancedir" => {
                val.nonempty(ctx, k)?;
                "maintenancedir: ignored (rvs does not force servers down from files)"
            }
            _ => virt::alert_key(ctx, key, val)?
                .ok_or_else(|| ctx.err(key.col, format!("unknown directive \"{k}\"")))?,
        };
        self.notice(ctx, key, why);
        Ok(())
    }

    fn notice(&mut self, ctx: &Ctx, key: &Val, msg: &str) {
        self.notices.push(Notice {
            loc: ctx.loc(key.col),
            msg: msg.to_string(),
        });
    }

    /// The services in file order, refusing a second section for the same service.
    fn assemble(mut self) -> Result<Config, ConfigError> {
        let mut services: Vec<spec::VirtualService> = Vec::new();
        for v in std::mem::take(&mut self.virts) {
            let vs = v.build(&self.globals, &mut self.notices)?;
            if services.iter().any(|s| s.keys == vs.keys) {
                return Err(ConfigError::new(
                    vs.loc,
                    format!("duplicate virtual server {}", vs.keys[0]),
                ));
            }
            services.push(vs);
        }
        self.notices.sort_by(|a, b| a.loc.cmp(&b.loc));
        Ok(Config {
            services,
            settings: spec::Settings::default(),
            notices: self.notices,
        })
    }
}
