//! The listings of the real ipvsadm 1.31 recorded *after real traffic* by the kernel transcripts
//! of `rvs-core` (`crates/rvs-core/tests/golden/*.golden`: `raw-L` = `-Ln`, `raw-Lc` = `-Lnc`,
//! `raw-Lcp` = `-Lnc --persistent-conn`, `raw-stats` = `-Ln --stats --exact`), rebuilt by
//! replaying the same events through `rvs_core::ipvs::Ipvs` (the packet exchange of the core's
//! own replay test) and rendering with `rvs_config::render`.
//!
//! `-Ln` is compared byte for byte. In `-Lnc` the row order is the kernel's hash order (seeded
//! per boot) and the expire column depends on the VM's timing: rows are compared sorted, with
//! the `MM:SS` column allowed to differ by a few seconds. In `--stats` only the Conns column is
//! deterministic: names and Conns are compared exactly, the packet and byte columns masked.

#[path = "../../rvs-core/tests/support/ipvsadm.rs"]
mod ipvsadm;
#[path = "../../rvs-core/tests/support/replay.rs"]
mod replay;

use std::fs;

use replay::{golden_files, Checks, Replay, EXPIRE_SLACK};
use rvs_config::{render, ListOpts, NoNames};
use rvs_core::time::Tick;

/// The renderer's comparisons: every listing recorded at a `check` or `stats` event.
struct ListingChecks;

impl Checks for ListingChecks {
    fn check(&mut self, r: &mut Replay, line: usize, now: Tick, extra: &[&str]) {
        r.ipvs.advance(now);
        r.compare_listings(line, now, extra);
    }
    fn stats(&mut self, r: &mut Replay, line: usize, now: Tick, extra: &[&str]) {
        r.ipvs.advance(now);
        r.compare_listings(line, now, extra);
    }
}

impl Replay {
    /// Render every listing recorded at this point and compare it with the kernel's.
    fn compare_listings(&mut self, line: usize, now: Tick, extra: &[&str]) {
        let raw = |tag: &str| -> Option<String> {
            let p = format!("{tag} | ");
            let failed = extra
                .iter()
                .any(|l| l.trim_start().starts_with(&format!("{tag}-status")));
            let v: Vec<&str> = extra
                .iter()
                .filter_map(|l| l.strip_prefix("  ")?.strip_prefix(p.as_str()))
                .collect();
            (!v.is_empty() && !failed).then(|| v.iter().map(|l| format!("{l}\n")).collect())
        };
        let numeric = ListOpts {
            numeric: true,
            ..ListOpts::default()
        };
        if let Some(want) = raw("raw-L") {
            let got = render::list_all(&self.ipvs, &NoNames, &numeric);
            self.same(line, "-Ln", &want, &got, |t| t.to_string());
        }
        if let Some(want) = raw("raw-stats") {
            let o = ListOpts {
                stats: true,
                exact: true,
                ..numeric.clone()
            };
            let got = render::list_all(&self.ipvs, &NoNames, &o);
            self.same(line, "-Ln --stats --exact", &want, &got, mask_stats);
        }
        if let Some(want) = raw("raw-Lc") {
            let o = ListOpts {
                connection: true,
                ..numeric.clone()
            };
            let got = render::list_conns(&self.ipvs, now, &NoNames, &o);
            self.same_rows(line, "-Lnc", &want, &got);
        }
        if let Some(want) = raw("raw-Lcp") {
            let o = ListOpts {
                connection: true,
                persistent_conn: true,
                ..numeric
            };
            let got = render::list_conns(&self.ipvs, now, &NoNames, &o);
            self.same_rows(line, "-Lnc --persistent-conn", &want, &got);
        }
    }

    fn same(&mut self, line: usize, what: &str, want: &str, got: &str, f: fn(&str) -> String) {
        self.compared += 1;
        if f(want) != f(got) {
            self.fail(line, format!("{what}:\n--- ipvsadm\n{want}--- rvs\n{got}"));
        }
    }

    /// Connection listings: the two header lines exactly, then the rows as sorted sets with
    /// the expire column compared within [`EXPIRE_SLACK`] seconds.
    fn same_rows(&mut self, line: usize, what: &str, want: &str, got: &str) {
        self.compared += 1;
        let split = |t: &str| -> (Vec<String>, Vec<(String, i64)>) {
            let lines: Vec<&str> = t.lines().collect();
            let head = lines.iter().take(2).map(|s| s.to_string()).collect();
            let mut rows: Vec<(String, i64)> =
                lines.iter().skip(2).map(|l| expire_masked(l)).collect();
            rows.sort();
            (head, rows)
        };
        let (wh, wr) = split(want);
        let (gh, gr) = split(got);
        let ok = wh == gh
            && wr.len() == gr.len()
            && wr
                .iter()
                .zip(&gr)
                .all(|(a, b)| a.0 == b.0 && (a.1 - b.1).abs() <= EXPIRE_SLACK);
        if !ok {
            self.fail(line, format!("{what}:\n--- ipvsadm\n{want}--- rvs\n{got}"));
        }
    }
}

fn expire_masked(l: &str) -> (String, i64) {
    let secs = l
        .get(4..10)
        .and_then(|e| {
            let (m, s) = e.trim().split_once(':')?;
            Some(m.parse::<i64>().ok()? * 60 + s.parse::<i64>().ok()?)
        })
        .unwrap_or(-1);
    let masked = match (l.get(..4), l.get(10..)) {
        (Some(a), Some(b)) => format!("{a}------{b}"),
        _ => l.to_string(),
    };
    (masked, secs)
}

/// A `--stats --exact` listing with the packet and byte columns masked: the name and the Conns
/// column stay (the first 33 + 9 columns of a service line, 5 + 28 + 9 of a server line).
fn mask_stats(t: &str) -> String {
    t.lines()
        .enumerate()
        .map(|(i, l)| {
            if i < 3 {
                return format!("{l}\n");
            }
            let keep = l.len().min(42);
            let rest: String = l[keep..].split_whitespace().map(|_| " #").collect();
            format!("{}{rest}\n", &l[..keep])
        })
        .collect()
}

#[test]
fn listings_after_real_traffic_match_ipvsadm() {
    let files = golden_files();
    assert!(!files.is_empty(), "no golden transcripts found");
    let mut failures = Vec::new();
    let mut compared = 0;
    for f in &files {
        let text = fs::read_to_string(f).expect("read golden");
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let mut r = Replay::new(&name);
        r.run(&text, &mut ListingChecks);
        compared += r.compared;
        failures.extend(r.failures);
    }
    eprintln!(
        "compared {compared} listings from {} transcripts",
        files.len()
    );
    assert!(compared > 500, "{compared}");
    assert!(
        failures.is_empty(),
        "{} listings differ from ipvsadm ({compared} compared):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
