//! Value types of the rvs TOML file that need their own reading: durations (`"5s"`,
//! `"500ms"`, `"2m"`, `"1h"` or integer seconds), commands (a string split like keepalived
//! splits it, an array of words, or a table), status codes and UDP reply patterns.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::spec::Command;

/// A duration as written in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        d.deserialize_any(DurVisitor)
    }
}

struct DurVisitor;

impl Visitor<'_> for DurVisitor {
    type Value = Dur;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration: seconds, or a string such as \"5s\", \"500ms\", \"2m\", \"1h\"")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
        u64::try_from(v)
            .map(|s| Dur(Duration::from_secs(s)))
            .map_err(|_| E::custom(format!("negative duration {v}")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
        Ok(Dur(Duration::from_secs(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
        parse_duration(v).map(Dur).ok_or_else(|| {
            E::custom(format!(
                "invalid duration \"{v}\": expected a number with ms, s, m or h (\"500ms\", \"5s\")"
            ))
        })
    }
}

/// `"500ms"`, `"5s"`, `"2m"`, `"1h"`, `"30"` (seconds).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let n: u64 = s[..digits].parse().ok()?;
    let ms = match &s[digits..] {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    Some(Duration::from_millis(n.checked_mul(ms)?))
}

/// A command: `"prog arg 'two words'"`, `["prog", "arg"]`, or
/// `{ command = …, shell = true, user = "u", group = "g" }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmd(pub Command);

impl<'de> Deserialize<'de> for Cmd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cmd, D::Error> {
        d.deserialize_any(CmdVisitor)
    }
}

/// The words of a command, from a string or an array.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Words(Vec<String>);

impl<'de> Deserialize<'de> for Words {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Words, D::Error> {
        match d.deserialize_any(CmdVisitor)? {
            Cmd(c) if c.shell || c.user.is_some() || c.group.is_some() => Err(de::Error::custom(
                "`command` is a string or an array of strings",
            )),
            Cmd(c) => Ok(Words(c.argv)),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CmdTable {
    command: Words,
    #[serde(default)]
    shell: bool,
    user: Option<String>,
    group: Option<String>,
}

struct CmdVisitor;

fn plain(argv: Vec<String>) -> Cmd {
    Cmd(Command {
        argv,
        shell: false,
        user: None,
        group: None,
    })
}

impl<'de> Visitor<'de> for CmdVisitor {
    type Value = Cmd;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a command: a string, an array of strings, or a table with `command`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Cmd, E> {
        let words = split_words(v).map_err(E::custom)?;
        if words.is_empty() {
            return Err(E::custom("empty command"));
        }
        Ok(plain(words))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Cmd, A::Error> {
        let mut words = Vec::new();
        while let Some(w) = seq.next_element::<String>()? {
            words.push(w);
        }
        if words.first().is_none_or(|w| w.is_empty()) {
            return Err(de::Error::custom("empty command"));
        }
        Ok(plain(words))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Cmd, A::Error> {
        let t = CmdTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(Cmd(Command {
            argv: t.command.0,
            shell: t.shell,
            user: t.user,
            group: t.group,
        }))
    }
}

/// Split a command line on blanks, `"…"` and `'…'` grouping words (keepalived's rule).
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.get_or_insert_with(String::new).push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                cur.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(cur.take()),
            (None, c) => cur.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(q) = quote {
        return Err(format!("unterminated {q} quote in command \"{s}\""));
    }
    words.extend(cur);
    Ok(words)
}

/// One element of an HTTP `status` list: `200` or `"200-299"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// a code
    One(i64),
    /// a range as written
    Range(String),
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Status, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Status;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a status code (200) or a range (\"200-299\")")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Status, E> {
                Ok(Status::One(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Status, E> {
                Ok(Status::Range(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// UDP `require_reply`: `true`/`false` or a hex pattern (`x` nibbles are wildcards).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// any reply (true) or none required (false)
    Flag(bool),
    /// the pattern as written
    Pattern(String),
}

impl<'de> Deserialize<'de> for Reply {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Reply, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Reply;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or a hex pattern")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Reply, E> {
                Ok(Reply::Flag(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Reply, E> {
                Ok(Reply::Pattern(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Hex bytes (`"0a1B"`), blanks allowed between bytes.
pub fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    hex_pattern(s, false).map(|p| p.into_iter().map(|(v, _)| v).collect())
}

/// A hex pattern: each byte with its mask; with `wild`, an `x` nibble matches anything.
pub fn hex_pattern(s: &str, wild: bool) -> Option<Vec<(u8, u8)>> {
    let nibbles: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !nibbles.len().is_multiple_of(2) {
        return None;
    }
    let nib = |c: char| -> Option<(u8, u8)> {
        match c {
            'x' | 'X' if wild => Some((0, 0)),
            c => c.to_digit(16).map(|d| (d as u8, 0xf)),
        }
    };
    nibbles
        .chunks(2)
        .map(|p| {
            let (hv, hm) = nib(p[0])?;
            let (lv, lm) = nib(p[1])?;
            Some(((hv << 4) | lv, (hm << 4) | lm))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        for bad in ["", "s", "5 s", "5x", "-1s", "1.5s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn words_split_like_keepalived() {
        assert_eq!(
            split_words("/bin/x  'a b' \"c\"d ''").unwrap(),
            vec!["/bin/x", "a b", "cd", ""]
        );
        assert!(split_words("x 'open").is_err());
    }

    #[test]
    fn hex_patterns_with_wildcards() {
        assert_eq!(hex_bytes("0a ff"), Some(vec![0x0a, 0xff]));
        assert_eq!(hex_bytes("0x"), None);
        assert_eq!(hex_pattern("1x", true), Some(vec![(0x10, 0xf0)]));
        assert_eq!(hex_pattern("abc", true), None);
    }
}
