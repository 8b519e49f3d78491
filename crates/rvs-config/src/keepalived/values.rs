//! Values of keepalived.conf directives: numbers, timers, addresses, booleans, commands.
//! Each refusal names the directive and the value, located at the value.

use std::net::IpAddr;
use std::time::Duration;

use super::lexer::Token;
use super::parser::Stmt;
use super::Sink;
use crate::spec::{Command, ConfigError};

/// An error at `tok` about directive `kw` with value `tok.text`.
pub fn bad(kw: &str, tok: &Token, why: &str) -> ConfigError {
    ConfigError::new(tok.loc.clone(), format!("{kw} {}: {why}", tok.text))
}

/// The `n`th word after the keyword (from 0), or an error naming what is missing.
pub fn arg<'s>(s: &'s Stmt, n: usize, what: &str) -> Result<&'s Token, ConfigError> {
    s.args
        .get(n)
        .ok_or_else(|| ConfigError::new(s.kw.loc.clone(), format!("{}: missing {what}", s.name())))
}

/// An unsigned integer in `min..=max` (decimal).
pub fn uint(s: &Stmt, n: usize, min: u64, max: u64) -> Result<u64, ConfigError> {
    let tok = arg(s, n, "value")?;
    match tok.text.parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(bad(
            s.name(),
            tok,
            &format!("must be an integer from {min} to {max}"),
        )),
    }
}

/// The first word as an unsigned integer in `min..=max`.
pub fn uint1(s: &Stmt, min: u64, max: u64) -> Result<u64, ConfigError> {
    uint(s, 0, min, max)
}

/// A timer in seconds, with up to six decimals (keepalived's `read_timer`), at least `min`.
pub fn timer(s: &Stmt, min: Duration) -> Result<Duration, ConfigError> {
    let tok = arg(s, 0, "time in seconds")?;
    let d = parse_seconds(&tok.text).filter(|d| *d >= min);
    d.ok_or_else(|| {
        bad(
            s.name(),
            tok,
            &format!(
                "must be a time in seconds of at least {}",
                min.as_secs_f64()
            ),
        )
    })
}

/// `12`, `1.5`, `0.000001` as a duration (at most a year).
fn parse_seconds(s: &str) -> Option<Duration> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(frac) || frac.len() > 6 || (s.contains('.') && frac.is_empty()) {
        return None;
    }
    let secs: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    if secs > 366 * 86_400 {
        return None;
    }
    let micros: u32 = format!("{frac:0<6}").parse().ok()?;
    Some(Duration::from_secs(secs) + Duration::from_micros(u64::from(micros)))
}

/// A boolean that may be left out (then true): `true|on|yes` / `false|off|no`.
pub fn opt_bool(s: &Stmt) -> Result<bool, ConfigError> {
    let Some(tok) = s.args.first() else {
        return Ok(true);
    };
    match tok.text.to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" => Ok(true),
        "false" | "off" | "no" => Ok(false),
        _ => Err(bad(
            s.name(),
            tok,
            "must be true, on, yes, false, off or no",
        )),
    }
}

/// An IP address (IPv4 or IPv6).
pub fn ip(kw: &str, tok: &Token) -> Result<IpAddr, ConfigError> {
    tok.text
        .parse()
        .map_err(|_| bad(kw, tok, "not an IPv4 or IPv6 address"))
}

/// A port 0..=65535 (0: none given).
pub fn port(kw: &str, tok: &Token) -> Result<u16, ConfigError> {
    tok.text
        .parse()
        .map_err(|_| bad(kw, tok, "not a port number (0 to 65535)"))
}

/// `<IP> [<PORT>]` from the words of a statement (port 0 when absent).
pub fn addr_port(s: &Stmt) -> Result<(IpAddr, u16), ConfigError> {
    let a = ip(s.name(), arg(s, 0, "address")?)?;
    let p = match s.args.get(1) {
        Some(t) => port(s.name(), t)?,
        None => 0,
    };
    if let Some(extra) = s.args.get(2) {
        return Err(bad(
            s.name(),
            extra,
            "unexpected word after the address and port",
        ));
    }
    Ok((a, p))
}

/// What keepalived makes of the words after a command's first one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// `notify_up`, `quorum_up`, …: the user and group to run it as
    UserGroup,
    /// `misc_path`: nothing (keepalived ignores them)
    Nothing,
}

/// A command as keepalived reads `notify_*`, `quorum_*` and `misc_path`: the first word
/// (usually a quoted string) is split into the program and its arguments (quotes inside it
/// honoured); words after it are the user and group to run as, or ignored for `misc_path`.
/// To pass arguments, the whole command must be quoted.
pub fn command(s: &Stmt, after: After, sink: &mut Sink) -> Result<Command, ConfigError> {
    let first = arg(s, 0, "command")?;
    let argv = split_words(&first.text)
        .ok_or_else(|| bad(s.name(), first, "unbalanced quotes in the command"))?;
    if argv.is_empty() {
        return Err(ConfigError::new(
            first.loc.clone(),
            format!("{}: empty command", s.name()),
        ));
    }
    let mut cmd = Command {
        argv,
        shell: false,
        user: None,
        group: None,
    };
    let (kept, why) = match after {
        After::UserGroup => (
            2,
            "keepalived reads at most a user and a group after the command",
        ),
        After::Nothing => (0, "keepalived runs only the first word or quoted string"),
    };
    if after == After::UserGroup {
        if let Some(u) = s.args.get(1) {
            cmd.user = Some(u.text.clone());
            cmd.group = s.args.get(2).map(|g| g.text.clone());
            sink.notice(
                &u.loc,
                format!(
                    "{}: {} is the user to run {} as (quote the whole command to pass arguments)",
                    s.name(),
                    u.text,
                    cmd.argv[0]
                ),
            );
        }
    }
    if let Some(extra) = s.args.get(1 + kept) {
        let rest: Vec<&str> = s.args[1 + kept..].iter().map(|t| t.text.as_str()).collect();
        sink.notice(
            &extra.loc,
            format!("{}: {} ignored ({why})", s.name(), rest.join(" ")),
        );
    }
    Ok(cmd)
}

/// Words of a command string, with `'…'` and `"…"` quoting.
fn split_words(text: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.get_or_insert_with(String::new).push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                cur.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => out.extend(cur.take()),
            (None, c) => cur.get_or_insert_with(String::new).push(c),
        }
    }
    if quote.is_some() {
        return None;
    }
    out.extend(cur);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_take_six_decimals() {
        assert_eq!(parse_seconds("6"), Some(Duration::from_secs(6)));
        assert_eq!(parse_seconds("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_seconds(".25"), Some(Duration::from_millis(250)));
        assert_eq!(parse_seconds("0.000001"), Some(Duration::from_micros(1)));
        for bad in ["", ".", "1.", "1.0000001", "-1", "1s", "99999999999"] {
            assert_eq!(parse_seconds(bad), None, "{bad}");
        }
    }

    #[test]
    fn command_strings_split_with_quotes() {
        assert_eq!(
            split_words("/bin/check 'a b' \"c\" d").unwrap(),
            vec!["/bin/check", "a b", "c", "d"]
        );
        assert_eq!(split_words("x ''").unwrap(), vec!["x", ""]);
        assert_eq!(split_words("x 'open"), None);
    }
}
