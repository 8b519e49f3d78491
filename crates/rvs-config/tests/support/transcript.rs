//! Reader of the recorded job transcripts (`### <command>` / output / `### rc=N`) and the
//! replay of their commands through an `Ipvs`, with the listing options each listing used.

#![allow(dead_code)]

use rvs_config::{render, ListOpts, Names};
use rvs_core::ipvs::{Config, Ipvs};
use rvs_core::model::ServiceKey;
use rvs_core::service::Service;
use rvs_core::time::Tick;

#[path = "../../../rvs-core/tests/support/ipvsadm.rs"]
pub mod ipvsadm;

use ipvsadm::Cmd;

/// One recorded command with what it printed and its exit status.
#[derive(Debug, Clone)]
pub struct Step {
    /// the arguments after `ipvsadm`
    pub args: Vec<String>,
    /// stdout and stderr, lines ending in `\n`
    pub output: String,
    /// exit status
    pub rc: i32,
}

/// Split a transcript into its steps (non-ipvsadm commands are kept too).
pub fn steps(text: &str) -> Vec<Step> {
    let mut out = Vec::new();
    let mut cur: Option<Step> = None;
    for line in text.lines() {
        if let Some(rc) = line.strip_prefix("### rc=") {
            let mut s = cur.take().expect("rc without command");
            s.rc = rc.parse().expect("rc");
            out.push(s);
        } else if let Some(cmd) = line.strip_prefix("### ") {
            cur = Some(Step {
                args: cmd.split_whitespace().map(str::to_string).collect(),
                output: String::new(),
                rc: 0,
            });
        } else if let Some(s) = cur.as_mut() {
            s.output.push_str(line);
            s.output.push('\n');
        }
    }
    out
}

/// What a listing command asks for.
#[derive(Debug, Clone)]
pub enum Listing {
    /// `-L` of everything (or `-c`, `--timeout`, `--daemon`)
    All(ListOpts),
    /// `-L <service>`
    One(ServiceKey, ListOpts),
    /// `-S`
    Save(ListOpts),
}

/// The listing a command asks for, or `None` for a command that changes the state.
pub fn listing(args: &[String]) -> Option<Listing> {
    let a: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let save = a.contains(&"-S");
    if !save && !a.contains(&"-L") && !a.contains(&"-l") {
        return None;
    }
    let mut o = ListOpts::default();
    for x in &a {
        match *x {
            "-n" => o.numeric = true,
            "-c" => o.connection = true,
            "--timeout" => o.timeout = true,
            "--daemon" => o.daemon = true,
            "--stats" => o.stats = true,
            "--rate" => o.rate = true,
            "--thresholds" => o.thresholds = true,
            "--persistent-conn" => o.persistent_conn = true,
            "--tun-info" => o.tun_info = true,
            "--exact" | "-X" => o.exact = true,
            "--nosort" => o.nosort = true,
            _ => {}
        }
    }
    if save {
        return Some(Listing::Save(o));
    }
    let plain: Vec<&str> = a
        .iter()
        .copied()
        .filter(|x| !x.starts_with("--") || *x == "--sctp-service")
        .filter(|x| !matches!(*x, "-n" | "-c" | "-X"))
        .collect();
    match ipvsadm::parse(&plain) {
        Some(Cmd::List(k)) => Some(Listing::One(k, o)),
        _ => Some(Listing::All(o)),
    }
}

/// A fresh core with the kernel's defaults.
pub fn new_ipvs() -> Ipvs {
    Ipvs::new(Config::default())
}

/// Apply a state-changing command the real ipvsadm accepted.
pub fn apply(ipvs: &mut Ipvs, args: &[String], now: Tick) {
    let a: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let cmd = ipvsadm::parse(&a).unwrap_or_else(|| panic!("cannot read {args:?}"));
    let r = match cmd {
        Cmd::AddService(k, c) => ipvs.add_service(k, c).map(|_| ()),
        Cmd::EditService(k, c) => ipvs.edit_service(&k, c),
        Cmd::DelService(k) => ipvs.del_service(&k, now),
        Cmd::Flush => {
            ipvs.flush(now);
            Ok(())
        }
        Cmd::AddDest(k, d) => ipvs.add_dest(&k, d).map(|_| ()),
        Cmd::EditDest(k, d) => ipvs.edit_dest(&k, d),
        Cmd::DelDest(k, a, p) => ipvs.del_dest(&k, &a, p, now),
        Cmd::Zero(k) => ipvs.zero(k.as_ref()),
        Cmd::SetTimeouts(a, b, c) => ipvs.set_timeouts(a, b, c),
        Cmd::List(_) | Cmd::Other => Ok(()),
    };
    r.unwrap_or_else(|e| panic!("{args:?} accepted by ipvsadm, refused by the core: {e:?}"));
}

/// The service blocks of a listing (a service line and its `  ->` lines), for comparing
/// `--nosort` listings whose service order is the kernel's hash order.
pub fn blocks(text: &str, title_lines: usize) -> (String, Vec<String>) {
    let mut lines = text.lines();
    let head: Vec<&str> = lines.by_ref().take(title_lines).collect();
    let mut blocks: Vec<String> = Vec::new();
    for l in lines {
        if l.starts_with("  -> ") {
            let b = blocks.last_mut().expect("dest before service");
            b.push_str(l);
            b.push('\n');
        } else {
            blocks.push(format!("{l}\n"));
        }
    }
    blocks.sort();
    (head.join("\n"), blocks)
}

/// The service key a listing's service line names (`TCP  10.0.0.1:80 wlc`, `FWM  -1 rr`,
/// `FWM  2 IPv6 wlc`); `None` for other lines. Numeric listings only.
pub fn service_line_key(line: &str) -> Option<ServiceKey> {
    use rvs_core::model::{Family, Protocol};
    let mut w = line.split_whitespace();
    let proto = match w.next()? {
        "TCP" => Protocol::Tcp,
        "UDP" => Protocol::Udp,
        "SCTP" => Protocol::Sctp,
        "FWM" => {
            let mark = w.next()?.parse::<i64>().ok()? as u32;
            let af = if w.next() == Some("IPv6") {
                Family::V6
            } else {
                Family::V4
            };
            return Some(ServiceKey::Fwmark { af, mark });
        }
        _ => return None,
    };
    let ap = w.next()?;
    let (a, p) = ap.rsplit_once(':')?;
    let a = a.trim_start_matches('[').trim_end_matches(']');
    Some(ServiceKey::Addr {
        proto,
        addr: a.parse().ok()?,
        port: p.parse().ok()?,
    })
}

/// For each step, the kernel's service dump order, read from the next `-L -n --nosort`
/// listing recorded before the state changes again, else from the last one recorded since it
/// last changed (`None` when there is none).
pub fn dump_orders(steps: &[Step]) -> Vec<Option<Vec<ServiceKey>>> {
    let mut out = vec![None; steps.len()];
    let mut pending: Option<Vec<ServiceKey>> = None;
    for (i, s) in steps.iter().enumerate().rev() {
        match listing(&s.args) {
            Some(Listing::All(o)) if o.nosort && o.numeric && !o.connection && !o.timeout => {
                pending = Some(s.output.lines().filter_map(service_line_key).collect());
            }
            Some(_) => {}
            None if s.args.first().map(String::as_str) == Some("ipvsadm") && s.rc == 0 => {
                pending = None
            }
            None => {}
        }
        out[i] = pending.clone();
    }
    let mut last: Option<Vec<ServiceKey>> = None;
    for (i, s) in steps.iter().enumerate() {
        if listing(&s.args).is_none() && s.rc == 0 {
            last = None;
        } else if out[i].is_some() {
            last.clone_from(&out[i]);
        } else {
            out[i].clone_from(&last);
        }
    }
    out
}

/// Render what `step` asks for; `None` for a command that is not a listing.
fn render_step(
    names: &dyn Names,
    ipvs: &Ipvs,
    step: &Step,
    now: Tick,
    dump: &Option<Vec<ServiceKey>>,
) -> Option<(String, i32)> {
    let l = listing(&step.args)?;
    let svcs: Vec<&Service> = match dump {
        Some(keys) => keys
            .iter()
            .map(|k| ipvs.service(k).expect("dumped"))
            .collect(),
        None => ipvs.services().collect(),
    };
    Some(match l {
        Listing::All(o) if o.connection || o.timeout || o.daemon => (
            render::listing(ipvs, now, names, &o, None, &[]).expect("listing"),
            0,
        ),
        Listing::All(o) => (render::list_all_from(ipvs, svcs, names, &o), 0),
        Listing::Save(o) => (render::save_from(ipvs, svcs, names, &o), 0),
        Listing::One(k, o) => match render::list_service(ipvs, &k, names, &o) {
            Some(t) => (t, 0),
            None => ("No such service\n".to_string(), 1),
        },
    })
}

fn title_lines(args: &[String]) -> usize {
    if args.iter().any(|a| a == "-S") {
        0
    } else {
        3
    }
}

/// Replay a transcript: apply the commands ipvsadm accepted, render every listing with
/// `names` and require ipvsadm's text; returns (listings compared, commands applied).
pub fn replay(text: &str, names: &dyn Names) -> (usize, usize) {
    replay_with(text, names, &|t: &str| t.to_string())
}

/// [`replay`] comparing both texts through `view` (e.g. [`mask_counters`]).
pub fn replay_with(text: &str, names: &dyn Names, view: &dyn Fn(&str) -> String) -> (usize, usize) {
    let mut ipvs = new_ipvs();
    let now = Tick(0);
    let (mut listed, mut applied) = (0, 0);
    let steps = steps(text);
    let dumps = dump_orders(&steps);
    for (step, dump) in steps.iter().zip(&dumps) {
        if step.args.first().map(String::as_str) != Some("ipvsadm") {
            continue;
        }
        match render_step(names, &ipvs, step, now, dump) {
            Some((got, rc)) => {
                assert_eq!(rc, step.rc, "{:?}", step.args);
                if step.args.iter().any(|a| a == "--nosort") {
                    let n = title_lines(&step.args);
                    assert_eq!(
                        blocks(&view(&got), n),
                        blocks(&view(&step.output), n),
                        "{:?}",
                        step.args
                    );
                } else {
                    assert_eq!(view(&got), view(&step.output), "{:?}", step.args);
                }
                listed += 1;
            }
            None if step.rc == 0 => {
                apply(&mut ipvs, &step.args, now);
                applied += 1;
            }
            None => {}
        }
    }
    (listed, applied)
}

/// A `--stats` / `--rate` listing with its counter columns masked: the first 33 columns of
/// every line but the titles (the service or server name) stay, each counter becomes `#`
/// (a number, optionally with a K/M/G/T unit, is required) and the line length is kept, so
/// only the layout is compared.
pub fn mask_counters(t: &str) -> String {
    t.lines()
        .map(|l| {
            let title = ["IP Virtual", "Prot ", "  -> RemoteAddress"]
                .iter()
                .any(|p| l.starts_with(p));
            if title || l.len() <= 33 {
                return format!("{l}\n");
            }
            let (name, rest) = l.split_at(33);
            let cols: Vec<&str> = rest
                .split_whitespace()
                .map(|w| {
                    let digits = w.trim_end_matches(['K', 'M', 'G', 'T']);
                    assert!(
                        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
                        "{l}"
                    );
                    "#"
                })
                .collect();
            format!("{name}|{}|{}\n", l.len(), cols.join(" "))
        })
        .collect()
}
