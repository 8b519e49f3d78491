//! One line of ldirectord.cf: indentation, comments, `key = value`, and the value checks
//! ldirectord makes, each failure located at `file:line:column`.

use crate::spec::{ConfigError, Loc};

/// A line being read: where it is and its text.
pub(crate) struct Ctx<'a> {
    file: &'a str,
    line: u32,
    pub text: &'a str,
}

/// A piece of a line (a key or a value) and the column (in characters, from 1) it starts at.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Val<'a> {
    pub text: &'a str,
    pub col: u32,
}

impl<'a> Ctx<'a> {
    pub fn new(file: &'a str, line: usize, text: &'a str) -> Ctx<'a> {
        Ctx {
            file,
            line: u32::try_from(line).unwrap_or(u32::MAX),
            text,
        }
    }

    pub fn loc(&self, col: u32) -> Loc {
        Loc::new(self.file, self.line, col)
    }

    pub fn err(&self, col: u32, msg: impl Into<String>) -> ConfigError {
        ConfigError::new(self.loc(col), msg)
    }

    /// The column of byte offset `at`.
    pub fn col(&self, at: usize) -> u32 {
        let n = self.text[..at].chars().count() + 1;
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    pub fn is_blank(&self) -> bool {
        self.text.trim().is_empty()
    }

    /// `^\s*#`: a comment line (skipped everywhere, even inside a section).
    pub fn is_comment(&self) -> bool {
        self.text.trim_start().starts_with('#')
    }

    pub fn indented(&self) -> bool {
        self.text.starts_with([' ', '\t'])
    }

    /// Byte offset of the first non-blank character.
    pub fn content_start(&self) -> usize {
        self.text.len() - self.text.trim_start().len()
    }

    /// The byte offset where a section key starts, when the line belongs to a section:
    /// indented by four columns or more (a tab counting as four) and not empty once its
    /// comment is removed.
    pub fn section_body(&self) -> Option<usize> {
        let start = self.content_start();
        let width: usize = self.text[..start]
            .chars()
            .map(|c| if c == '\t' { 4 } else { 1 })
            .sum();
        let rest = strip_comment(&self.text[start..]);
        (width >= 4 && !rest.trim().is_empty()).then_some(start)
    }

    /// `key = value` from byte offset `at`; the value runs to a `#` or the end of the line,
    /// its trailing blanks removed. A bare `supervised` is a key with an empty value.
    pub fn key_value(&self, at: usize) -> Result<(Val<'a>, Val<'a>), ConfigError> {
        let body = strip_comment(&self.text[at..]).trim_end();
        let klen = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(body.len());
        let key = Val {
            text: &body[..klen],
            col: self.col(at),
        };
        let after = &body[klen..];
        let eq = after.trim_start();
        if key.text.is_empty() {
            return Err(self.err(key.col, "expected a directive (key = value)"));
        }
        let Some(value) = eq.strip_prefix('=') else {
            if key.text == "supervised" && eq.is_empty() {
                let col = self.col(at + klen);
                return Ok((key, Val { text: "", col }));
            }
            let col = self.col(at + klen + (after.len() - eq.len()));
            return Err(self.err(col, format!("{}: expected \"=\" after the key", key.text)));
        };
        let value = value.trim_start();
        let off = at + body.len() - value.len();
        Ok((
            key,
            Val {
                text: value,
                col: self.col(off),
            },
        ))
    }
}

/// Everything before the first `#` (ldirectord removes comments that way, quotes or not).
fn strip_comment(s: &str) -> &str {
    s.split('#').next().unwrap_or("")
}

impl<'a> Val<'a> {
    /// A part of this value starting `off` bytes in.
    pub fn sub(&self, off: usize, text: &'a str) -> Val<'a> {
        let n = self.text[..off].chars().count();
        Val {
            text,
            col: self.col + u32::try_from(n).unwrap_or(0),
        }
    }

    /// A whole number of seconds or a count, at least 1.
    pub fn positive(&self, ctx: &Ctx, key: &str) -> Result<u32, ConfigError> {
        match self.text.parse::<u32>() {
            Ok(n) if n > 0 && !self.text.starts_with('+') => Ok(n),
            _ => Err(ctx.err(
                self.col,
                format!("{key}: \"{}\" is not a positive whole number", self.text),
            )),
        }
    }

    /// A whole number in `lo..=hi`.
    pub fn number(&self, ctx: &Ctx, key: &str, lo: u32, hi: u32) -> Result<u32, ConfigError> {
        match self.text.parse::<u32>() {
            Ok(n) if (lo..=hi).contains(&n) && !self.text.starts_with('+') => Ok(n),
            _ => Err(ctx.err(
                self.col,
                format!("{key}: \"{}\" is not a number from {lo} to {hi}", self.text),
            )),
        }
    }

    pub fn yes_no(&self, ctx: &Ctx, key: &str) -> Result<bool, ConfigError> {
        match self.text {
            "yes" => Ok(true),
            "no" => Ok(false),
            v => Err(ctx.err(self.col, format!("{key}: must be yes or no, not \"{v}\""))),
        }
    }

    pub fn nonempty(&self, ctx: &Ctx, key: &str) -> Result<&'a str, ConfigError> {
        if self.text.is_empty() {
            return Err(ctx.err(self.col, format!("{key}: a value is required")));
        }
        Ok(self.text)
    }

    /// A `"…"` value (ldirectord takes the text between the first and the last quote);
    /// it must not be empty.
    pub fn quoted(&self, ctx: &Ctx, key: &str) -> Result<&'a str, ConfigError> {
        let inner = self
            .text
            .strip_prefix('"')
            .and_then(|t| t.rfind('"').map(|end| &t[..end]));
        match inner {
            Some("") => Err(ctx.err(self.col, format!("{key}: the quoted value is empty"))),
            Some(s) => Ok(s),
            None => Err(ctx.err(
                self.col,
                format!("{key}: the value must be in double quotes"),
            )),
        }
    }

    /// A command: quoted or not (`checkcommand`, `fallbackcommand`).
    pub fn command(&self, ctx: &Ctx, key: &str) -> Result<String, ConfigError> {
        if self.text.starts_with('"') {
            return self.quoted(ctx, key).map(str::to_string);
        }
        self.nonempty(ctx, key).map(str::to_string)
    }
}
