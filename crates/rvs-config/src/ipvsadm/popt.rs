//! The slice of popt (the option parser ipvsadm 1.31 is built with) that ipvsadm's table uses:
//! `--long`, `--long=value`, bundled short options (`-Ln`), a short option's value glued on
//! (`-t10.0.0.1:80`, `-t=…`), an optional value (`-p [timeout]`, taken only when the next word
//! does not start with `-`), `--` ending the options, and positional words collected on the
//! side while parsing goes on. `bad_option` is popt's `poptBadOption`: the last word consumed.

/// What an option is (one per row of ipvsadm's `options_table`, plus the extensions `--json`,
/// `--proxy-protocol` and `--extended`).
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opt {
    AddService,
    EditService,
    DelService,
    Clear,
    List,
    Zero,
    AddServer,
    EditServer,
    DelServer,
    Set,
    Help,
    Version,
    Restore,
    Save,
    StartDaemon,
    StopDaemon,
    Tcp,
    Udp,
    Sctp,
    Fwmark,
    Scheduler,
    Persistent,
    Netmask,
    RealServer,
    Masq,
    Ipip,
    Gate,
    Weight,
    UThreshold,
    LThreshold,
    Numeric,
    Connection,
    McastInterface,
    Syncid,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    Sort,
    Exact,
    Ipv6,
    Ops,
    Pe,
    SchedFlags,
    McastGroup,
    McastPort,
    McastTtl,
    SyncMaxlen,
    TunInfo,
    TunType,
    TunPort,
    TunNocsum,
    TunCsum,
    TunRemcsum,
    Json,
    ProxyProtocol,
    Extended,
}

/// Whether an option takes a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arg {
    None,
    Required,
    Optional,
}

use Arg::{None as N, Optional as O, Required as R};

/// ipvsadm's option table: long name, short letter, value kind, meaning.
const TABLE: &[(&str, Option<char>, Arg, Opt)] = &[
    ("add-service", Some('A'), N, Opt::AddService),
    ("edit-service", Some('E'), N, Opt::EditService),
    ("delete-service", Some('D'), N, Opt::DelService),
    ("clear", Some('C'), N, Opt::Clear),
    ("list", Some('L'), N, Opt::List),
    ("list", Some('l'), N, Opt::List),
    ("zero", Some('Z'), N, Opt::Zero),
    ("add-server", Some('a'), N, Opt::AddServer),
    ("edit-server", Some('e'), N, Opt::EditServer),
    ("delete-server", Some('d'), N, Opt::DelServer),
    ("set", None, N, Opt::Set),
    ("help", Some('h'), N, Opt::Help),
    ("version", Some('v'), N, Opt::Version),
    ("restore", Some('R'), N, Opt::Restore),
    ("save", Some('S'), N, Opt::Save),
    ("start-daemon", None, R, Opt::StartDaemon),
    ("stop-daemon", None, R, Opt::StopDaemon),
    ("tcp-service", Some('t'), R, Opt::Tcp),
    ("udp-service", Some('u'), R, Opt::Udp),
    ("sctp-service", None, R, Opt::Sctp),
    ("fwmark-service", Some('f'), R, Opt::Fwmark),
    ("scheduler", Some('s'), R, Opt::Scheduler),
    ("persistent", Some('p'), O, Opt::Persistent),
    ("netmask", Some('M'), R, Opt::Netmask),
    ("real-server", Some('r'), R, Opt::RealServer),
    ("masquerading", Some('m'), N, Opt::Masq),
    ("ipip", Some('i'), N, Opt::Ipip),
    ("gatewaying", Some('g'), N, Opt::Gate),
    ("weight", Some('w'), R, Opt::Weight),
    ("u-threshold", Some('x'), R, Opt::UThreshold),
    ("l-threshold", Some('y'), R, Opt::LThreshold),
    ("numeric", Some('n'), N, Opt::Numeric),
    ("connection", Some('c'), N, Opt::Connection),
    ("mcast-interface", None, R, Opt::McastInterface),
    ("syncid", None, R, Opt::Syncid),
    ("timeout", None, N, Opt::Timeout),
    ("daemon", None, N, Opt::Daemon),
    ("stats", None, N, Opt::Stats),
    ("rate", None, N, Opt::Rate),
    ("thresholds", None, N, Opt::Thresholds),
    ("persistent-conn", None, N, Opt::PersistentConn),
    ("nosort", None, N, Opt::NoSort),
    ("sort", None, N, Opt::Sort),
    ("exact", Some('X'), N, Opt::Exact),
    ("ipv6", Some('6'), N, Opt::Ipv6),
    ("ops", Some('o'), N, Opt::Ops),
    ("pe", None, R, Opt::Pe),
    ("sched-flags", Some('b'), R, Opt::SchedFlags),
    ("mcast-group", None, R, Opt::McastGroup),
    ("mcast-port", None, R, Opt::McastPort),
    ("mcast-ttl", None, R, Opt::McastTtl),
    ("sync-maxlen", None, R, Opt::SyncMaxlen),
    ("tun-info", None, N, Opt::TunInfo),
    ("tun-type", None, R, Opt::TunType),
    ("tun-port", None, R, Opt::TunPort),
    ("tun-nocsum", None, N, Opt::TunNocsum),
    ("tun-csum", None, N, Opt::TunCsum),
    ("tun-remcsum", None, N, Opt::TunRemcsum),
    ("json", None, N, Opt::Json),
    ("proxy-protocol", None, R, Opt::ProxyProtocol),
    ("extended", None, N, Opt::Extended),
];

/// A popt error: `poptStrerror` text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoptError {
    /// POPT_ERROR_BADOPT
    Unknown,
    /// POPT_ERROR_NOARG
    MissingArg,
    /// POPT_ERROR_UNWANTEDARG
    UnwantedArg,
}

impl PoptError {
    /// popt's message for the error.
    pub fn text(self) -> &'static str {
        match self {
            PoptError::Unknown => "unknown option",
            PoptError::MissingArg => "missing argument",
            PoptError::UnwantedArg => "option does not take an argument",
        }
    }
}

/// The option stream over one argument vector (without argv[0]).
pub struct Popt<'a> {
    args: &'a [&'a str],
    next: usize,
    /// the rest of a bundle of short options still to be read
    bundle: Option<&'a str>,
    only_positional: bool,
    /// positional words met so far, in order
    pub leftovers: Vec<&'a str>,
}

impl<'a> Popt<'a> {
    /// Start reading `args`.
    pub fn new(args: &'a [&'a str]) -> Popt<'a> {
        Popt {
            args,
            next: 0,
            bundle: None,
            only_positional: false,
            leftovers: Vec::new(),
        }
    }

    /// `poptBadOption`: the last word consumed.
    pub fn bad_option(&self) -> &'a str {
        self.args
            .get(self.next.saturating_sub(1))
            .copied()
            .unwrap_or("")
    }

    /// The next option and its value; `Ok(None)` at the end.
    pub fn next_opt(&mut self) -> Result<Option<(Opt, Option<&'a str>)>, PoptError> {
        if let Some(rest) = self.bundle.take() {
            return self.short(rest).map(Some);
        }
        loop {
            let Some(&word) = self.args.get(self.next) else {
                return Ok(None);
            };
            self.next += 1;
            if self.only_positional || word == "-" || !word.starts_with('-') {
                self.leftovers.push(word);
            } else if word == "--" {
                self.only_positional = true;
            } else if let Some(long) = word.strip_prefix("--") {
                return self.long(long).map(Some);
            } else {
                return self.short(&word[1..]).map(Some);
            }
        }
    }

    fn long(&mut self, text: &'a str) -> Result<(Opt, Option<&'a str>), PoptError> {
        let (name, glued) = match text.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (text, None),
        };
        let &(_, _, arg, opt) = TABLE
            .iter()
            .find(|row| row.0 == name)
            .ok_or(PoptError::Unknown)?;
        match (arg, glued) {
            (N, Some(_)) => Err(PoptError::UnwantedArg),
            (N, None) => Ok((opt, None)),
            (_, Some(v)) => Ok((opt, Some(v))),
            (_, None) => self.value(arg).map(|v| (opt, v)),
        }
    }

    fn short(&mut self, text: &'a str) -> Result<(Opt, Option<&'a str>), PoptError> {
        let mut chars = text.chars();
        let c = chars.next().ok_or(PoptError::Unknown)?;
        let rest = chars.as_str();
        let &(_, _, arg, opt) = TABLE
            .iter()
            .find(|row| row.1 == Some(c))
            .ok_or(PoptError::Unknown)?;
        if arg == N {
            if !rest.is_empty() {
                self.bundle = Some(rest);
            }
            return Ok((opt, None));
        }
        if !rest.is_empty() {
            return Ok((opt, Some(rest.strip_prefix('=').unwrap_or(rest))));
        }
        self.value(arg).map(|v| (opt, v))
    }

    /// The value of an option from the next word.
    fn value(&mut self, arg: Arg) -> Result<Option<&'a str>, PoptError> {
        match self.args.get(self.next) {
            None if arg == O => Ok(None),
            None => Err(PoptError::MissingArg),
            Some(w) if arg == O && w.starts_with('-') => Ok(None),
            Some(&w) => {
                self.next += 1;
                Ok(Some(w))
            }
        }
    }
}
