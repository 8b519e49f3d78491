//! Words of keepalived.conf with their locations, `include` files spliced in.
//!
//! keepalived reads a line at a time: an `!` or `#` anywhere outside a `"…"` string begins a
//! comment that runs to the end of the line (`\!` and `\#` are the characters themselves);
//! blanks separate words, a `"…"` string is one word (its quotes dropped), and `{` and `}` are
//! words of their own even when glued to others. A line whose first word is `include` is
//! replaced by the files its glob names (relative to the including file's directory), read the
//! same way, to any depth; a file that includes itself, directly or not, is refused.

use crate::spec::{ConfigError, Files, Loc, Notice};

/// One word of the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// the word, without quotes
    pub text: String,
    /// where it starts
    pub loc: Loc,
    /// the physical line it is on, numbered across all files read (statements end with it)
    pub line: usize,
    /// it was a quoted string (so never a brace or a keyword)
    pub quoted: bool,
}

impl Token {
    /// An unquoted `{`.
    pub fn is_open(&self) -> bool {
        !self.quoted && self.text == "{"
    }
    /// An unquoted `}`.
    pub fn is_close(&self) -> bool {
        !self.quoted && self.text == "}"
    }
}

/// How deep includes may nest (a guard besides the cycle check).
const MAX_DEPTH: usize = 32;

/// Reads files into tokens.
pub struct Lexer<'f> {
    files: &'f dyn Files,
    tokens: Vec<Token>,
    notices: Vec<Notice>,
    /// the files being read, outermost first
    stack: Vec<String>,
    lines: usize,
}

impl<'f> Lexer<'f> {
    /// A lexer reading through `files`.
    pub fn new(files: &'f dyn Files) -> Lexer<'f> {
        Lexer {
            files,
            tokens: Vec::new(),
            notices: Vec::new(),
            stack: Vec::new(),
            lines: 0,
        }
    }

    /// Every token of `path` and what it includes, and the notices (includes matching nothing).
    pub fn run(mut self, path: &str) -> Result<(Vec<Token>, Vec<Notice>), ConfigError> {
        let text = self.files.read(path).map_err(|e| {
            ConfigError::new(Loc::new(path, 1, 1), format!("cannot read {path}: {e}"))
        })?;
        self.file(path, &text)?;
        Ok((self.tokens, self.notices))
    }

    fn file(&mut self, path: &str, text: &str) -> Result<(), ConfigError> {
        self.stack.push(path.to_string());
        for (i, line) in text.lines().enumerate() {
            self.lines += 1;
            let words = split_line(path, i as u32 + 1, self.lines, line)?;
            match words.first() {
                Some(first) if !first.quoted && first.text == "include" => {
                    self.include(path, first, words.get(1))?
                }
                _ => self.tokens.extend(words),
            }
        }
        self.stack.pop();
        Ok(())
    }

    fn include(&mut self, from: &str, kw: &Token, arg: Option<&Token>) -> Result<(), ConfigError> {
        let Some(arg) = arg else {
            return Err(ConfigError::new(
                kw.loc.clone(),
                "include: missing file name",
            ));
        };
        let pattern = relative_to(from, &arg.text);
        // keepalived globs every include, a plain name too, and goes on when nothing
        // matches (it logs it): so does rvs, with a notice
        let paths = if arg.text.contains(['*', '?', '[']) {
            self.files.glob(&pattern)
        } else {
            match self.files.read(&pattern) {
                Err(e) if e == "No such file or directory" => Vec::new(),
                _ => vec![pattern],
            }
        };
        if paths.is_empty() {
            self.notices.push(Notice {
                loc: arg.loc.clone(),
                msg: format!("include {}: no file matches, nothing included", arg.text),
            });
        }
        for p in paths {
            if self.stack.contains(&p) {
                let chain = format!("{} -> {p}", self.stack.join(" -> "));
                return Err(ConfigError::new(
                    arg.loc.clone(),
                    format!("include {}: includes itself ({chain})", arg.text),
                ));
            }
            if self.stack.len() >= MAX_DEPTH {
                return Err(ConfigError::new(
                    arg.loc.clone(),
                    format!("include {}: nested more than {MAX_DEPTH} deep", arg.text),
                ));
            }
            let text = self.files.read(&p).map_err(|e| {
                ConfigError::new(arg.loc.clone(), format!("include {}: {p}: {e}", arg.text))
            })?;
            self.file(&p, &text)?;
        }
        Ok(())
    }
}

/// `name` relative to the directory of `from` (unless absolute), with `.` and `..` folded.
pub fn relative_to(from: &str, name: &str) -> String {
    let joined = if name.starts_with('/') {
        name.to_string()
    } else {
        match from.rfind('/') {
            Some(i) => format!("{}/{name}", &from[..i]),
            None => name.to_string(),
        }
    };
    normalize(&joined)
}

fn normalize(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            ".." if absolute => {}
            p => parts.push(p),
        }
    }
    let body = parts.join("/");
    if absolute {
        format!("/{body}")
    } else {
        body
    }
}

/// The line with its comment removed, as keepalived's `decomment`: an `!` or `#` anywhere
/// outside a `"…"` string ends the line (`\!` and `\#` there stand for the character
/// itself). Each kept character comes with its column.
fn decomment(text: &str) -> Vec<(char, u32)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::with_capacity(chars.len());
    let mut quote = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i as u32 + 1;
        match c {
            '"' => quote = !quote,
            '\\' if !quote && matches!(chars.get(i + 1), Some('!' | '#')) => {
                out.push((chars[i + 1], col + 1));
                i += 2;
                continue;
            }
            '\\' if i + 1 < chars.len() => {
                out.push((c, col));
                out.push((chars[i + 1], col + 1));
                i += 2;
                continue;
            }
            '!' | '#' if !quote => break,
            _ => {}
        }
        out.push((c, col));
        i += 1;
    }
    out
}

/// The words of one line.
fn split_line(file: &str, line: u32, id: usize, text: &str) -> Result<Vec<Token>, ConfigError> {
    let chars = decomment(text);
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (c, col) = chars[i];
        let loc = Loc::new(file, line, col);
        let (word, quoted, next) = if c.is_whitespace() {
            i += 1;
            continue;
        } else if c == '"' {
            let Some(len) = chars[i + 1..].iter().position(|&(q, _)| q == '"') else {
                return Err(ConfigError::new(
                    loc,
                    "unterminated quoted string (no closing \")",
                ));
            };
            (
                chars[i + 1..i + 1 + len].iter().map(|&(c, _)| c).collect(),
                true,
                i + len + 2,
            )
        } else if c == '{' || c == '}' {
            (c.to_string(), false, i + 1)
        } else {
            let len = chars[i..]
                .iter()
                .position(|&(w, _)| w.is_whitespace() || matches!(w, '"' | '{' | '}'))
                .unwrap_or(chars.len() - i);
            (
                chars[i..i + len].iter().map(|&(c, _)| c).collect(),
                false,
                i + len,
            )
        };
        out.push(Token {
            text: word,
            loc,
            line: id,
            quoted,
        });
        i = next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<(String, u32, bool)> {
        split_line("f", 1, 1, line)
            .unwrap()
            .into_iter()
            .map(|t| (t.text, t.loc.col, t.quoted))
            .collect()
    }

    #[test]
    fn splits_words_braces_quotes_and_comments() {
        assert_eq!(
            words("  real_server 10.0.0.1 80{ # comment"),
            vec![
                ("real_server".into(), 3, false),
                ("10.0.0.1".into(), 15, false),
                ("80".into(), 24, false),
                ("{".into(), 26, false),
            ]
        );
        assert_eq!(
            words("misc_path \"/bin/check -x\" ! c"),
            vec![
                ("misc_path".into(), 1, false),
                ("/bin/check -x".into(), 11, true)
            ]
        );
        assert!(words("! all comment").is_empty());
    }

    #[test]
    fn a_comment_starts_anywhere_outside_quotes_as_in_keepalived() {
        // keepalived's decomment cuts at the first `!` or `#` not inside "…", even in the
        // middle of a word; `\#` and `\!` stand for the character itself.
        assert_eq!(
            words("path /a#b"),
            vec![("path".into(), 1, false), ("/a".into(), 6, false)]
        );
        assert_eq!(
            words("delay_loop 6! six"),
            vec![("delay_loop".into(), 1, false), ("6".into(), 12, false)]
        );
        assert_eq!(
            words("path /a\\#b\\!c"),
            vec![("path".into(), 1, false), ("/a#b!c".into(), 6, false)]
        );
        assert_eq!(
            words("notify_up \"/bin/x #1\" # note"),
            vec![
                ("notify_up".into(), 1, false),
                ("/bin/x #1".into(), 11, true)
            ]
        );
    }

    #[test]
    fn an_unterminated_quote_is_located() {
        let e = split_line("k.conf", 4, 1, "  notify_up \"/bin/x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "k.conf:4:13: unterminated quoted string (no closing \")"
        );
    }

    #[test]
    fn relative_paths_fold_dots() {
        assert_eq!(
            relative_to("/etc/k/keepalived.conf", "conf.d/*.conf"),
            "/etc/k/conf.d/*.conf"
        );
        assert_eq!(relative_to("/etc/k/a/x.conf", "../b.conf"), "/etc/k/b.conf");
        assert_eq!(relative_to("/etc/k/x.conf", "/abs/./y.conf"), "/abs/y.conf");
        assert_eq!(relative_to("x.conf", "y.conf"), "y.conf");
    }
}
