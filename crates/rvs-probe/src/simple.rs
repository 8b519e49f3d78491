//! Line and datagram protocols: SMTP, DNS, UDP payloads, and ldirectord's send/expect.

use std::net::SocketAddr;
use std::time::Duration;

use regex::bytes::Regex;
use rvs_config::spec::{DnsType, UdpCheck};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::net::{rand_u16, tcp_connect, udp_connect, why};
use crate::Bind;

/// Reads one SMTP reply (its last line decides) and returns its code.
async fn smtp_reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<u16, String> {
    let mut line = String::new();
    loop {
        line.clear();
        let n = r.read_line(&mut line).await.map_err(|e| why(&e))?;
        if n == 0 {
            return Err("connection closed before an SMTP reply".into());
        }
        if line.len() > 1000 {
            return Err("SMTP reply line too long".into());
        }
        let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
        let more = line.as_bytes().get(3) == Some(&b'-');
        match code {
            Some(c) if !more => return Ok(c),
            Some(_) => {}
            None => return Err(format!("not an SMTP reply: {:?}", line.trim_end())),
        }
    }
}

/// keepalived SMTP_CHECK: a 220 banner, `HELO name` answered 250, then QUIT.
pub async fn smtp(target: SocketAddr, bind: &Bind, helo: &str) -> Result<(), String> {
    let s = tcp_connect(target, bind).await?;
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let banner = smtp_reply(&mut r).await?;
    if banner != 220 {
        return Err(format!("SMTP banner {banner} (expected 220)"));
    }
    w.write_all(format!("HELO {helo}\r\n").as_bytes())
        .await
        .map_err(|e| why(&e))?;
    let code = smtp_reply(&mut r).await?;
    if code != 250 {
        return Err(format!("SMTP HELO answered {code} (expected 250)"));
    }
    let _ = w.write_all(b"QUIT\r\n").await;
    Ok(())
}

fn qtype_code(t: DnsType) -> u16 {
    match t {
        DnsType::A => 1,
        DnsType::Ns => 2,
        DnsType::Cname => 5,
        DnsType::Soa => 6,
        DnsType::Mx => 15,
        DnsType::Txt => 16,
        DnsType::Aaaa => 28,
    }
}

/// A DNS query message (recursion desired) for `name` and `t`.
pub fn dns_query(id: u16, t: DnsType, name: &str) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        let len = u8::try_from(label.len()).ok().filter(|&l| l <= 63);
        let len = len.ok_or_else(|| format!("DNS name label too long: {label}"))?;
        q.push(len);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype_code(t).to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // IN
    Ok(q)
}

/// Whether `reply` answers query `id`: QR set, same id, RCODE 0 (NOERROR).
pub fn dns_ok(id: u16, reply: &[u8]) -> Result<bool, String> {
    if reply.len() < 12 || reply[..2] != id.to_be_bytes() || reply[2] & 0x80 == 0 {
        return Ok(false);
    }
    match reply[3] & 0x0f {
        0 => Ok(true),
        rc => Err(format!("DNS answered RCODE {rc}")),
    }
}

/// keepalived DNS_CHECK: one UDP query answered without error.
pub async fn dns(target: SocketAddr, bind: &Bind, t: DnsType, name: &str) -> Result<(), String> {
    let sock = udp_connect(target, bind).await?;
    let id = rand_u16();
    sock.send(&dns_query(id, t, name)?)
        .await
        .map_err(|e| why(&e))?;
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).await.map_err(|e| why(&e))?;
        if dns_ok(id, &buf[..n])? {
            return Ok(());
        }
    }
}

/// keepalived UDP_CHECK: send the payload; with `require_reply` a reply of the right size
/// (and bytes) must come, otherwise only an ICMP error (port unreachable) fails it.
pub async fn udp(target: SocketAddr, bind: &Bind, c: &UdpCheck, t: Duration) -> Result<(), String> {
    let sock = udp_connect(target, bind).await?;
    sock.send(&c.payload).await.map_err(|e| why(&e))?;
    let mut buf = vec![0u8; c.max_reply_length.max(1) + 1];
    let wait = t.saturating_sub(Duration::from_millis(50));
    match tokio::time::timeout(wait, sock.recv(&mut buf)).await {
        Err(_) if c.require_reply.is_none() => Ok(()),
        Err(_) => Err("no reply".into()),
        Ok(Err(e)) => Err(why(&e)),
        Ok(Ok(n)) => {
            let Some(want) = &c.require_reply else {
                return Ok(());
            };
            if n < c.min_reply_length || n > c.max_reply_length {
                return Err(format!(
                    "reply of {n} bytes (expected {}-{})",
                    c.min_reply_length, c.max_reply_length
                ));
            }
            match want {
                Some(pat) if !udp_matches(pat, &buf[..n]) => Err("reply does not match".into()),
                _ => Ok(()),
            }
        }
    }
}

/// Whether `reply` starts with the pattern (value, mask) bytes.
pub fn udp_matches(pat: &[(u8, u8)], reply: &[u8]) -> bool {
    reply.len() >= pat.len() && pat.iter().zip(reply).all(|(&(v, m), &b)| b & m == v & m)
}

/// ldirectord negotiate for plain TCP: send `request`, the answer must match `receive`.
pub async fn send(
    target: SocketAddr,
    bind: &Bind,
    request: &[u8],
    receive: Option<&str>,
) -> Result<(), String> {
    let mut s = tcp_connect(target, bind).await?;
    if !request.is_empty() {
        s.write_all(request).await.map_err(|e| why(&e))?;
    }
    let Some(re) = receive else { return Ok(()) };
    let re = Regex::new(re).map_err(|e| format!("receive pattern: {e}"))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < 64 * 1024 {
        let n = s.read(&mut buf).await.map_err(|e| why(&e))?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if re.is_match(&got) {
            return Ok(());
        }
    }
    Err(format!("the answer does not match {re}"))
}
