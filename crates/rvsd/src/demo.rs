//! `rvsd --demo`: a self-contained demonstration on loopback. Three small HTTP real servers
//! (127.0.0.1:8081–8083, or free ports when those are taken), one virtual service
//! 127.0.0.1:8080 scheduled with wlc over them with weights 1, 2 and 3, the `rvsadm -Ln` table,
//! and three commands to try.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use rvs_api::proto::Request;

use crate::server::{execute, Shared};

/// The demo's virtual service.
const VIP: &str = "127.0.0.1:8080";

/// Where the demo's control socket goes when none is given: a private temporary directory.
pub fn socket_path() -> PathBuf {
    std::env::temp_dir()
        .join(format!("rvs-demo-{}", std::process::id()))
        .join("rvsd.sock")
}

/// Removes the private directory of [`socket_path`] at exit (after the socket file); one that
/// holds anything else stays.
pub fn remove_dir(socket: &Path) {
    if let Some(dir) = socket.parent() {
        let _ = std::fs::remove_dir(dir);
    }
}

/// The real servers run as long as this lives (their threads end with the process).
pub struct Demo {
    _servers: Vec<SocketAddr>,
}

/// Start the real servers, add the rules through the control path, print the table and the
/// commands to try.
pub fn start(shared: &Shared, socket: &Path) -> Result<Demo> {
    let mut servers = Vec::new();
    for (i, port) in [8081u16, 8082, 8083].into_iter().enumerate() {
        let l = TcpListener::bind(("127.0.0.1", port))
            .or_else(|_| TcpListener::bind("127.0.0.1:0"))
            .context("binding a demo real server")?;
        let addr = l.local_addr()?;
        let name = format!("real server {} ({addr}, weight {})", i + 1, i + 1);
        std::thread::spawn(move || serve_http(l, name));
        servers.push(addr);
    }
    let mut cmds: Vec<Vec<String>> = vec![["-A", "-t", VIP, "-s", "wlc"]
        .into_iter()
        .map(String::from)
        .collect()];
    for (i, rs) in servers.iter().enumerate() {
        let w = (i + 1).to_string();
        cmds.push(
            ["-a", "-t", VIP, "-r", &rs.to_string(), "-m", "-w", &w]
                .into_iter()
                .map(String::from)
                .collect(),
        );
    }
    for args in cmds {
        let resp = run(shared, args.clone());
        anyhow::ensure!(
            resp.status == 0,
            "demo rule {args:?}: {}",
            resp.stderr.trim_end()
        );
    }
    let vip: std::net::SocketAddr = VIP.parse().expect("literal");
    let serving = shared
        .director
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .listening()
        .iter()
        .any(|l| l.addr == vip);
    anyhow::ensure!(
        serving,
        "cannot listen on {VIP} (is another program using it?); the log above says why"
    );
    let table = run(shared, vec!["-L".into(), "-n".into()]);
    print!("{}", intro(&table.stdout, socket, &servers));
    std::io::stdout().flush()?;
    Ok(Demo { _servers: servers })
}

fn run(shared: &Shared, args: Vec<String>) -> rvs_api::proto::Response {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    execute(shared, &Request::ipvsadm("rvsadm", &words))
}

fn intro(table: &str, socket: &Path, servers: &[SocketAddr]) -> String {
    let rvsadm = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("rvsadm")))
        .filter(|p| p.exists())
        .map_or_else(|| "rvsadm".to_string(), |p| p.display().to_string());
    let last = servers.last().map(|a| a.to_string()).unwrap_or_default();
    format!(
        "\nrvs demo: virtual service {VIP} (wlc) in front of three HTTP real servers on loopback\n\
         \n$ rvsadm -Ln\n{table}\n\
         Try, in another terminal:\n\
         \n  # twelve requests, spread 1:2:3 by weight\
         \n  for i in $(seq 12); do curl -s http://{VIP}/; done\n\
         \n  # the counters of each real server (sampled every 2 seconds, as IPVS does)\
         \n  export RVS_SOCKET={sock}\
         \n  {rvsadm} -Ln --stats\n\
         \n  # drain real server 3 (weight 0: new connections go elsewhere), then curl again\
         \n  {rvsadm} -e -t {VIP} -r {last} -m -w 0\n\
         \nCtrl-C stops the demo.\n",
        sock = socket.display()
    )
}

/// A minimal HTTP/1.1 server: answers every request with its name (keep-alive honoured), one
/// thread per connection, bounded request size.
fn serve_http(l: TcpListener, name: String) {
    for conn in l.incoming().flatten() {
        let name = name.clone();
        std::thread::spawn(move || {
            let _ = answer(conn, &name);
        });
    }
}

fn answer(conn: TcpStream, name: &str) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    loop {
        let mut close = false;
        let mut line = String::new();
        let mut size = 0;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            size += line.len();
            if size > 16 * 1024 {
                return Ok(());
            }
            let l = line.to_ascii_lowercase();
            if l.starts_with("connection:") && l.contains("close") {
                close = true;
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
        }
        let body = format!("Hello from {name}\n");
        write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        )?;
        if close {
            return Ok(());
        }
    }
}
