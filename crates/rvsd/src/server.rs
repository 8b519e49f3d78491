//! The control socket: bound with mode 0600, one JSON request per connection, each connection
//! on its own thread with a deadline for its request; commands apply one at a time under the
//! director's lock (a listing never sees half a change), until the stop flag is raised.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rvs_api::names::SystemNames;
use rvs_api::proto::{read_message, write_message, Request, Response, VERSION};
use rvs_config::ipvsadm::{parse, parse_restore_line, Exit};

use crate::director::Director;
use crate::statefile;

/// What every connection works on.
pub struct Shared {
    /// the IPVS state
    pub director: Mutex<Director>,
    /// `--state FILE`
    pub state: Option<PathBuf>,
    /// the configuration files and the checker running them, if any
    pub checker: Mutex<Option<(crate::config::Sources, crate::health::Checker)>>,
}

/// The bound control socket: the listener and the file it was bound to.
pub struct Control {
    /// accepts the control connections ([`serve`])
    pub listener: UnixListener,
    path: PathBuf,
    /// the file's device and inode once in place: at exit the path is removed only while it
    /// is still this socket (another rvsd may have bound it since ours was deleted)
    file: Option<(u64, u64)>,
}

impl Control {
    /// A handle that ends [`serve`] from another thread, through the socket itself and not
    /// its path (which may have been deleted or taken by another rvsd meanwhile).
    pub fn stopper(&self) -> io::Result<Stopper> {
        self.listener.try_clone().map(Stopper)
    }

    /// Removes the socket's file if the path still names this socket.
    pub fn remove_file(&self) {
        if self.file.is_some() && file_id(&self.path) == self.file {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Ends [`serve`]'s wait for connections (see [`Control::stopper`]).
pub struct Stopper(UnixListener);

impl Stopper {
    /// Shuts the listening socket down: the blocked accept returns at once and every later
    /// one fails, so `serve` looks at its stop flag (to be raised before).
    pub fn stop(&self) {
        let _ = socket2::SockRef::from(&self.0).shutdown(std::net::Shutdown::Both);
    }
}

/// The device and inode of the file at `path` (not following a symbolic link).
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Bind `path`: create its directory, refuse if another rvsd answers there, remove a stale
/// socket, and make the socket appear with mode 0600 (bound under a temporary name, chmod,
/// renamed into place, so it is never reachable with wider permissions).
pub fn bind(path: &Path) -> Result<Control> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if let Ok(meta) = fs::symlink_metadata(path) {
        if UnixStream::connect(path).is_ok() {
            bail!("another rvsd answers on {}", path.display());
        }
        if !meta.file_type().is_socket() {
            bail!("{} exists and is not a socket", path.display());
        }
        fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
        tracing::info!(socket = %path.display(), "removed a stale socket");
    }
    let name = path.file_name().context("socket path has no file name")?;
    let tmp = path.with_file_name(format!(
        ".{}.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = fs::remove_file(&tmp);
    let listener =
        UnixListener::bind(&tmp).with_context(|| format!("binding {}", tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming onto {}", path.display()))?;
    Ok(Control {
        listener,
        path: path.to_path_buf(),
        file: file_id(path),
    })
}

/// Accept and answer connections until `stop` is raised (a signal handler raises it and then
/// wakes the accept with a [`Stopper`]). Each connection is served on its own thread, so a slow
/// client holds nobody else up; commands still apply one at a time under the director's lock.
/// On stop, the requests in hand are finished (each is bounded by [`REQUEST_DEADLINE`]).
pub fn serve(listener: &UnixListener, shared: &Shared, stop: &AtomicBool) {
    let active = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for conn in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            match conn {
                Ok(stream) if active.load(Ordering::SeqCst) >= MAX_CLIENTS => {
                    tracing::warn!("{MAX_CLIENTS} control connections open; refusing one");
                    drop(stream);
                }
                Ok(stream) => {
                    active.fetch_add(1, Ordering::SeqCst);
                    let active = &active;
                    scope.spawn(move || {
                        match answer(stream, shared) {
                            Ok(()) => {}
                            // a client that connected and left without a request (a
                            // readiness probe): nothing to report
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof
                                ) =>
                            {
                                tracing::debug!("control connection: {e}");
                            }
                            Err(e) => tracing::warn!("control connection: {e}"),
                        }
                        active.fetch_sub(1, Ordering::SeqCst);
                    });
                }
                Err(e) => tracing::warn!("accept: {e}"),
            }
        }
    });
}

/// A whole request must arrive within this time, however it trickles in.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Largest request accepted (a command line is a few hundred bytes).
const MAX_REQUEST: usize = 1 << 20;
/// Control connections served at once.
const MAX_CLIENTS: usize = 64;

fn answer(mut stream: UnixStream, shared: &Shared) -> io::Result<()> {
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let resp = match read_request(&mut stream) {
        Ok(req) => execute(shared, &req),
        Err(e) => Response::new(String::new(), format!("rvsd: bad request: {e}\n"), 2),
    };
    write_message(&mut stream, &resp)
}

/// Read one request to end of file within [`REQUEST_DEADLINE`] and [`MAX_REQUEST`] bytes.
fn read_request(stream: &mut UnixStream) -> io::Result<Request> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request incomplete after 5 s",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if buf.len() > MAX_REQUEST {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request too large",
            ));
        }
    }
    read_message::<Request>(&mut buf.as_slice())
}

/// An rvs control action.
fn control(shared: &Shared, action: &str) -> Response {
    match action {
        "reload" => match crate::health::reload_files(shared) {
            Ok(summary) => Response::new(format!("{summary}\n"), String::new(), 0),
            Err(e) => Response::new(String::new(), format!("{e}\n"), 1),
        },
        "health" | "health-json" => {
            let guard = shared.checker.lock().unwrap_or_else(|e| e.into_inner());
            match guard.as_ref() {
                Some((_, checker)) => match checker.status(action == "health-json") {
                    Ok(text) => Response::new(text, String::new(), 0),
                    Err(e) => Response::new(String::new(), format!("rvsd: {e:#}\n"), 1),
                },
                None => Response::new(
                    String::new(),
                    "rvsd: no health checker (started without --config, --keepalived or --ldirectord)\n".into(),
                    1,
                ),
            }
        }
        other => Response::new(
            String::new(),
            format!("rvsd: unknown control action {other:?}\n"),
            2,
        ),
    }
}

fn from_exit(exit: Exit) -> Response {
    Response::new(exit.stdout, exit.stderr, exit.status)
}

/// Parse and apply one request; the state file is rewritten before the answer leaves.
pub fn execute(shared: &Shared, req: &Request) -> Response {
    if req.version != VERSION {
        let msg = format!(
            "rvsd: protocol version {} not supported (this rvsd speaks {VERSION})\n",
            req.version
        );
        return Response::new(String::new(), msg, 2);
    }
    if let Some(action) = &req.control {
        return control(shared, action);
    }
    let names = SystemNames::load();
    let args: Vec<&str> = req.args.iter().map(String::as_str).collect();
    let parsed = if req.restore_line {
        parse_restore_line(&req.argv0, &args, &names)
    } else {
        parse(&req.argv0, &args, &names)
    };
    let cmd = match parsed {
        Ok(cmd) => cmd,
        Err(exit) => return from_exit(exit),
    };
    let mut director = shared.director.lock().unwrap_or_else(|e| e.into_inner());
    let out = director.run(&cmd, &names);
    let mut resp = from_exit(out.exit);
    if out.changed {
        tracing::info!(args = ?req.args, "applied");
        if let Some(path) = &shared.state {
            if let Err(e) = statefile::write_atomic(path, &director.saved_rules()) {
                tracing::error!("state file {}: {e:#}", path.display());
                resp.stderr
                    .push_str(&format!("rvsd: change applied but not saved: {e:#}\n"));
            }
        }
    }
    resp
}
