//! # rvsadm: the ipvsadm 1.31 command line for rvs
//!
//! Every invocation is parsed here with `rvs_config::ipvsadm::parse` (so misuse, `-h` and `-v`
//! print what ipvsadm prints without a round trip), then sent to the running `rvsd` over its
//! control socket (`--socket` of rvsd; `RVS_SOCKET`, default `/run/rvs/rvsd.sock`), which
//! applies it and answers ipvsadm's output and exit status. `-R` reads standard input and
//! sends it line by line: a line the parser refuses ends the restore with its message and
//! status; a line the state refuses prints its error and the restore goes on.
//!
//! Extensions: `rvsadm --reload` (alone) asks rvsd to re-read its configuration files, as
//! SIGHUP does, and prints what changed (or the file's located error, status 1);
//! `rvsadm --health [--json]` prints the health checker's view of every service and real
//! server (checks, weights, quorum, sorry server, ejections).
//!
//! Like ipvsadm, which opens the kernel's IPVS control channel before reading its options,
//! rvsadm first checks that the control socket is there, and otherwise prints
//! `Can't initialize ipvs: …` and exits 2.
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::path::Path;

use rvs_api::names::SystemNames;
use rvs_api::proto::{call, default_socket, Request, Response};
use rvs_config::ipvsadm::{self, parse, parse_restore_line, restore_lines, Command, Exit};

/// The two lines ipvsadm prints when it cannot reach IPVS (`fail(2, …)`), for an errno.
fn cannot_initialize(errno: i32) -> Exit {
    Exit::fail(&format!(
        "Can't initialize ipvs: {}\nAre you sure that IP Virtual Server is built in the kernel or as module?",
        ipvsadm::errno_text(&Command::Flush, errno)
    ))
}

/// The errno ipvsadm's initialisation would report for a socket we cannot use: EPERM when
/// we may not open it, ENOPROTOOPT (what a kernel without IPVS answers) otherwise.
fn init_errno(err: &io::Error) -> i32 {
    if err.kind() == io::ErrorKind::PermissionDenied {
        1
    } else {
        92
    }
}

fn emit(stdout: &str, stderr: &str) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(stdout.as_bytes());
    let _ = out.flush();
    let mut err = io::stderr().lock();
    let _ = err.write_all(stderr.as_bytes());
    let _ = err.flush();
}

fn finish(exit: &Exit) -> ! {
    emit(&exit.stdout, &exit.stderr);
    std::process::exit(exit.status)
}

/// Send one invocation and print the answer; the exit status it carries.
fn send(socket: &Path, argv0: &str, words: &[&str], restore_line: bool) -> i32 {
    let mut req = Request::ipvsadm(argv0, words);
    req.restore_line = restore_line;
    ask(socket, argv0, &req)
}

/// Send a request and print the answer; the exit status it carries.
fn ask(socket: &Path, argv0: &str, req: &Request) -> i32 {
    match call(socket, req) {
        Ok(Response {
            stdout,
            stderr,
            status,
            ..
        }) => {
            emit(&stdout, &stderr);
            status
        }
        // no daemon behind the socket: what ipvsadm says without IPVS
        Err(e) if unreachable(&e) => finish(&cannot_initialize(init_errno(&e))),
        // a daemon that accepted but did not answer: say so, the change may have applied
        Err(e) => finish(&Exit::fail(&format!(
            "{argv0}: no answer from rvsd on {}: {e}",
            socket.display()
        ))),
    }
}

/// Whether the control socket has no daemon at all (as opposed to one that failed to answer).
fn unreachable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::PermissionDenied
    )
}

fn restore(socket: &Path, argv0: &str, names: &SystemNames) -> i32 {
    let mut bytes = Vec::new();
    if let Err(e) = io::stdin().read_to_end(&mut bytes) {
        finish(&Exit::fail(&format!(
            "{argv0}: reading standard input: {e}"
        )));
    }
    // a line with bytes that are not UTF-8 is refused on its own, as ipvsadm refuses its words
    let input = String::from_utf8_lossy(&bytes);
    let mut status = 0;
    for words in restore_lines(&input) {
        if let Err(exit) = parse_restore_line(argv0, &words, names) {
            finish(&exit);
        }
        status = send(socket, argv0, &words, true);
    }
    status
}

fn main() {
    // bytes that are not UTF-8 become U+FFFD: the parser then refuses the word as ipvsadm
    // refuses any malformed value, instead of a panic
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let argv0 = argv.first().map_or("rvsadm", String::as_str);
    let args: Vec<&str> = argv.iter().skip(1).map(String::as_str).collect();
    let socket = default_socket();
    if let Err(e) = std::fs::metadata(&socket) {
        finish(&cannot_initialize(init_errno(&e)));
    }
    // extensions: `--reload` and `--health [--json]` are control actions, not ipvsadm commands
    let control = match args.as_slice() {
        ["--reload"] => Some("reload"),
        ["--health"] => Some("health"),
        ["--health", "--json"] | ["--json", "--health"] => Some("health-json"),
        _ => None,
    };
    if let Some(action) = control {
        std::process::exit(ask(&socket, argv0, &Request::control(argv0, action)));
    }
    let names = SystemNames::load();
    let status = match parse(argv0, &args, &names) {
        Err(exit) => finish(&exit),
        Ok(Command::Restore) => restore(&socket, argv0, &names),
        Ok(_) => send(&socket, argv0, &args, false),
    };
    std::process::exit(status)
}
