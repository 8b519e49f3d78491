//! keepalived.conf read as it is: the LVS half (`virtual_server`, `virtual_server_group`,
//! real servers and their checkers) into a [`spec::Config`](crate::spec::Config), with
//! keepalived's defaults, inheritance (virtual server → real server → checker) and the
//! corrections its `check_data.c` makes, each reported as a [`Notice`].
//!
//! - [`lexer`]: words, quotes, comments, `include` globs (relative, nested, cycles refused);
//! - [`parser`]: statements and their `{ … }` blocks;
//! - `resolve`, `real`, `group`, `checks`: the directives.
//!
//! Blocks rvs does not act on (`vrrp_instance`, `global_defs`, `SSL`, FILE_CHECK, …) and
//! unknown keywords are reported once each as a notice, never dropped in silence; a value
//! keepalived cannot use (a bad address, a weight out of range, an unknown scheduler, …) is a
//! [`ConfigError`] at `file:line:column` naming the directive and the value.
//!
//! ```
//! use rvs_config::keepalived::read;
//! use rvs_config::spec::MemFiles;
//! let files = MemFiles::one("/etc/keepalived/keepalived.conf", "
//! virtual_server 10.0.0.1 80 {
//!     protocol TCP
//!     real_server 10.0.1.1 80 {
//!         weight 2
//!         TCP_CHECK {
//!             connect_timeout 3
//!         }
//!     }
//! }
//! ");
//! let cfg = read("/etc/keepalived/keepalived.conf", &files).unwrap();
//! let vs = &cfg.services[0];
//! assert_eq!(vs.conf.scheduler, "wlc");
//! assert_eq!(vs.reals[0].dest.weight, 2);
//! assert_eq!(vs.reals[0].checks[0].timing.delay_loop.as_secs(), 60);
//! ```

pub mod lexer;
pub mod parser;

mod checks;
mod group;
mod real;
mod resolve;
mod values;

#[cfg(test)]
mod tests;

use crate::spec::{Config, ConfigError, Files, Loc, Notice};
use parser::Stmt;

/// Read a keepalived.conf (and what it includes) into a resolved configuration.
pub fn read(path: &str, files: &dyn Files) -> Result<Config, ConfigError> {
    let (tokens, notices) = lexer::Lexer::new(files).run(path)?;
    let stmts = parser::parse(&tokens)?;
    let mut sink = Sink { notices };
    let services = resolve::services(&stmts, &mut sink)?;
    Ok(Config {
        services,
        settings: Default::default(),
        notices: sink.notices,
    })
}

/// Where notices go while a file is read.
pub(crate) struct Sink {
    notices: Vec<Notice>,
}

impl Sink {
    /// A notice at `loc`.
    fn notice(&mut self, loc: &Loc, msg: String) {
        self.notices.push(Notice {
            loc: loc.clone(),
            msg,
        });
    }
    /// `s` (and its block) is read but not acted on.
    fn ignored(&mut self, s: &Stmt, why: &str) {
        let loc = s.kw.loc.clone();
        self.notice(&loc, format!("{}: ignored ({why})", s.head()));
    }
    /// `s` is not a keyword of `context`.
    fn unknown(&mut self, context: &str, s: &Stmt) {
        let loc = s.kw.loc.clone();
        self.notice(
            &loc,
            format!("{context}: unknown keyword {}, ignored", s.name()),
        );
    }
}
