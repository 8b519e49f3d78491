//! No configuration file makes a reader panic: the fixtures mutated at random (words
//! dropped, doubled, swapped, replaced by hostile ones, lines cut, braces and quotes
//! scattered) and plain random bytes are each either read or refused with a located error
//! whose location is inside the file. Deterministic: a failing case prints its seed.

use rvs_config::spec::{Config, ConfigError, Files, MemFiles};

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const HOSTILE: &[&str] = &[
    "{",
    "}",
    "\"",
    "'",
    "#",
    "!",
    "=",
    "->",
    ":",
    "[",
    "]",
    "-1",
    "0",
    "4294967296",
    "99999999999999999999",
    "1.5",
    ".",
    "..",
    "0.0.0.0",
    "255.255.255.255",
    "::",
    "[::1]:80",
    "10.0.0.1-300",
    "10.0.0.1/40",
    "fwmark",
    "group",
    "include",
    "*",
    "/dev/null",
    "x\u{0}y",
    "\u{feff}",
    "é",
    "\t",
    "real",
    "virtual",
    "virtual6",
    "checktype",
    "service",
    "status_code",
    "200-100",
    "digest",
    "url",
    "TCP_CHECK",
    "HTTP_GET",
    "MISC_CHECK",
    "weight",
    "quorum",
    "hysteresis",
    "persistence_timeout",
    "lb_kind",
    "TUN",
    "type",
    "gue",
    "port",
    "65536",
    "u:5",
    "l:9",
    "gate",
    "masq",
    "ipip",
    "yes",
    "no",
    "\"\"",
    "''",
];

fn mutate(text: &str, rng: &mut Rng) -> String {
    let mut lines: Vec<Vec<String>> = text
        .lines()
        .map(|l| l.split(' ').map(str::to_string).collect())
        .collect();
    for _ in 0..1 + rng.below(6) {
        if lines.is_empty() {
            break;
        }
        let li = rng.below(lines.len());
        let line = &mut lines[li];
        if line.is_empty() {
            line.push(HOSTILE[rng.below(HOSTILE.len())].to_string());
        }
        let wi = rng.below(line.len());
        match rng.below(7) {
            0 => {
                line.remove(wi);
                continue;
            }
            1 => {
                let w = line[wi].clone();
                line.insert(wi, w);
            }
            2 => line[wi] = HOSTILE[rng.below(HOSTILE.len())].to_string(),
            3 => line.insert(wi, HOSTILE[rng.below(HOSTILE.len())].to_string()),
            4 => {
                let other = rng.below(lines.len());
                lines.swap(li, other);
            }
            5 => {
                lines.remove(li);
            }
            _ => {
                let w = &mut line[wi];
                let cut = w.char_indices().map(|(i, _)| i).nth(rng.below(w.len() + 1));
                if let Some(c) = cut {
                    w.truncate(c);
                }
            }
        }
    }
    lines
        .iter()
        .map(|l| l.join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

type Reader = fn(&str, &dyn Files) -> Result<Config, ConfigError>;

/// Read `text` as `path`; a refusal must point inside the file.
fn survives(read: Reader, path: &str, text: &str, seed: u64) {
    let files = MemFiles::one(path, text);
    let out = std::panic::catch_unwind(|| read(path, &files));
    match out {
        Err(_) => panic!("seed {seed}: the reader panicked on:\n{text}"),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            let lines = text.lines().count().max(1) as u32;
            assert!(
                e.loc.line >= 1 && e.loc.line <= lines + 1 && e.loc.col >= 1,
                "seed {seed}: {e} is outside the file ({lines} lines):\n{text}"
            );
            assert!(!e.msg.is_empty(), "seed {seed}: empty message");
        }
    }
}

fn fixtures(dir: &str, ext: &str) -> Vec<String> {
    let base = format!("{}/tests/fixtures/{dir}", env!("CARGO_MANIFEST_DIR"));
    let mut v: Vec<String> = std::fs::read_dir(&base)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    v.sort();
    v
}

fn run(read: Reader, path: &str, seeds: Vec<String>, cases: u64) {
    assert!(!seeds.is_empty());
    for seed in 0..cases {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let base = &seeds[rng.below(seeds.len())];
        let text = mutate(base, &mut rng);
        survives(read, path, &text, seed);
    }
    // random bytes, printable and not
    for seed in 0..cases / 4 {
        let mut rng = Rng(seed.wrapping_add(77) | 1);
        let n = rng.below(300);
        let bytes: Vec<u8> = (0..n).map(|_| (rng.next() & 0xff) as u8).collect();
        survives(read, path, &String::from_utf8_lossy(&bytes), seed);
    }
}

#[test]
fn mutated_keepalived_files_are_read_or_refused_with_a_location() {
    run(
        rvs_config::keepalived::read,
        "/etc/keepalived/keepalived.conf",
        fixtures("keepalived", "conf"),
        4000,
    );
}

#[test]
fn mutated_ldirectord_files_are_read_or_refused_with_a_location() {
    run(
        rvs_config::ldirectord::read,
        "/etc/ha.d/ldirectord.cf",
        fixtures("ldirectord", "cf"),
        4000,
    );
}

#[test]
fn mutated_toml_files_are_read_or_refused_with_a_location() {
    let base = format!("{}/../../examples", env!("CARGO_MANIFEST_DIR"));
    let mut seeds: Vec<String> = std::fs::read_dir(&base)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    seeds.sort();
    run(rvs_config::rvsconf::read, "/etc/rvs/rvs.toml", seeds, 4000);
}
