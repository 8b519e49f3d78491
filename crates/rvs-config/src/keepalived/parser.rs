//! Statements of keepalived.conf: a keyword, the words after it on its line, and the block
//! that follows when the next word (on the same line or the next) is `{`.

use super::lexer::Token;
use crate::spec::ConfigError;

/// One statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stmt {
    /// the keyword
    pub kw: Token,
    /// the words after it on its line
    pub args: Vec<Token>,
    /// its block, if it has one
    pub block: Option<Vec<Stmt>>,
}

impl Stmt {
    /// The keyword's text.
    pub fn name(&self) -> &str {
        &self.kw.text
    }
    /// The keyword and its words, as written (for messages).
    pub fn head(&self) -> String {
        let mut s = self.kw.text.clone();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.text);
        }
        s
    }
}

/// The statements of a whole file.
pub fn parse(tokens: &[Token]) -> Result<Vec<Stmt>, ConfigError> {
    let mut pos = 0;
    let body = block(tokens, &mut pos, None)?;
    Ok(body)
}

/// Statements up to the `}` closing `open` (or the end, at the top level).
fn block(
    tokens: &[Token],
    pos: &mut usize,
    open: Option<&Token>,
) -> Result<Vec<Stmt>, ConfigError> {
    let mut out = Vec::new();
    loop {
        let Some(tok) = tokens.get(*pos) else {
            return match open {
                None => Ok(out),
                Some(o) => Err(ConfigError::new(
                    o.loc.clone(),
                    "unbalanced braces: this `{` is never closed",
                )),
            };
        };
        *pos += 1;
        if tok.is_close() {
            return match open {
                Some(_) => Ok(out),
                None => Err(ConfigError::new(
                    tok.loc.clone(),
                    "unbalanced braces: `}` closes no block",
                )),
            };
        }
        if tok.is_open() {
            return Err(ConfigError::new(
                tok.loc.clone(),
                "`{` without a keyword before it",
            ));
        }
        let mut args = Vec::new();
        while let Some(t) = tokens.get(*pos) {
            if t.line != tok.line || t.is_open() || t.is_close() {
                break;
            }
            args.push(t.clone());
            *pos += 1;
        }
        let block = match tokens.get(*pos) {
            Some(t) if t.is_open() => {
                *pos += 1;
                Some(block(tokens, pos, Some(t))?)
            }
            _ => None,
        };
        out.push(Stmt {
            kw: tok.clone(),
            args,
            block,
        });
    }
}
