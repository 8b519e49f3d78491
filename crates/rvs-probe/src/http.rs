//! HTTP_GET and SSL_GET: one request per URL; the status must be in the accepted set, the
//! body's MD5 must equal the digest and the body must match the regex, where given.

use std::net::SocketAddr;
use std::sync::Arc;

use md5::{Digest, Md5};
use regex::bytes::Regex;
use rvs_config::spec::{HttpCheck, HttpProtocol, UrlCheck};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::net::{tcp_connect, why};
use crate::Bind;

/// The most of a body a check reads (keepalived reads what comes; a bound keeps a broken
/// server from filling memory).
const MAX_BODY: usize = 16 << 20;

/// Run every URL of the check; the first failure decides.
pub async fn check(h: &HttpCheck, target: SocketAddr, bind: &Bind) -> Result<(), String> {
    for url in &h.urls {
        let s = tcp_connect(target, bind).await?;
        let resp = if h.tls {
            let tls = tls_connect(h, url, target, s).await?;
            exchange(h, url, target, tls).await?
        } else {
            exchange(h, url, target, s).await?
        };
        judge(url, &resp).map_err(|why| format!("{}: {why}", url.path))?;
    }
    Ok(())
}

/// A parsed answer.
#[derive(Debug, Default)]
pub struct Response {
    /// status code
    pub status: u16,
    /// the body, de-chunked
    pub body: Vec<u8>,
}

/// The request keepalived sends.
pub fn request(h: &HttpCheck, url: &UrlCheck, target: SocketAddr) -> String {
    let host = url
        .virtualhost
        .as_deref()
        .or(h.virtualhost.as_deref())
        .map_or_else(
            || match target {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
            },
            str::to_string,
        );
    let (version, close) = match h.protocol {
        HttpProtocol::Http10 => ("1.0", false),
        HttpProtocol::Http10Close => ("1.0", true),
        HttpProtocol::Http11 => ("1.1", true),
    };
    let port = if target.port() == if h.tls { 443 } else { 80 } {
        String::new()
    } else {
        format!(":{}", target.port())
    };
    let mut r = format!(
        "{} {} HTTP/{version}\r\nUser-Agent: KeepAliveClient\r\nHost: {host}{port}\r\n",
        h.method, url.path
    );
    if close {
        r.push_str("Connection: close\r\n");
    }
    r.push_str("\r\n");
    r
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    h: &HttpCheck,
    url: &UrlCheck,
    target: SocketAddr,
    mut s: S,
) -> Result<Response, String> {
    s.write_all(request(h, url, target).as_bytes())
        .await
        .map_err(|e| why(&e))?;
    let resp = read_answer(h, &mut s).await;
    if h.tls && h.tls_close_notify {
        // keepalived `tls_compliant`: end the session with a close_notify alert
        let _ = s.shutdown().await;
    }
    resp
}

async fn read_answer<S: AsyncRead + Unpin>(h: &HttpCheck, s: &mut S) -> Result<Response, String> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let n = match s.read(&mut buf).await {
            Ok(n) => n,
            // a TLS server that closes without close_notify still sent a whole answer
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(why(&e)),
        };
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if raw.len() > MAX_BODY {
            return Err("answer larger than 16 MiB".into());
        }
        if let Some(r) = parse(&raw, h.method == "HEAD")? {
            return Ok(r);
        }
    }
    parse_at_eof(&raw, h.method == "HEAD")
}

fn head_end(raw: &[u8]) -> Option<usize> {
    raw.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn status_of(head: &str) -> Result<u16, String> {
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next().and_then(|c| c.parse().ok())) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => Ok(code),
        _ => Err(format!(
            "not an HTTP answer: {:?}",
            line.chars().take(60).collect::<String>()
        )),
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A complete answer in `raw`, if it is complete already (by Content-Length or chunking).
pub fn parse(raw: &[u8], head_only: bool) -> Result<Option<Response>, String> {
    let Some(end) = head_end(raw) else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&raw[..end]);
    let status = status_of(&head)?;
    let body = &raw[end..];
    if head_only || status / 100 == 1 || status == 204 || status == 304 {
        return Ok(Some(Response {
            status,
            body: Vec::new(),
        }));
    }
    if header(&head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return Ok(dechunk(body)?.map(|body| Response { status, body }));
    }
    if let Some(len) = header(&head, "content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| format!("bad Content-Length {len:?}"))?;
        return Ok((body.len() >= len).then(|| Response {
            status,
            body: body[..len].to_vec(),
        }));
    }
    Ok(None)
}

fn parse_at_eof(raw: &[u8], head_only: bool) -> Result<Response, String> {
    if let Some(r) = parse(raw, head_only)? {
        return Ok(r);
    }
    let end = head_end(raw).ok_or_else(|| {
        if raw.is_empty() {
            "connection closed without an answer".to_string()
        } else {
            "answer cut short in its headers".to_string()
        }
    })?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let status = status_of(&head)?;
    if header(&head, "content-length").is_some() || header(&head, "transfer-encoding").is_some() {
        return Err("answer cut short in its body".into());
    }
    Ok(Response {
        status,
        body: raw[end..].to_vec(),
    })
}

/// The body of a chunked message, once its last chunk is in.
fn dechunk(mut b: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = String::from_utf8_lossy(&b[..eol]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(Some(out));
        }
        // a size beyond what a check reads can never complete (the read stops at MAX_BODY)
        if size > MAX_BODY || b.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// Whether the answer passes the URL's conditions; why not.
pub fn judge(url: &UrlCheck, r: &Response) -> Result<(), String> {
    let ok = if url.status.is_empty() {
        (200..=299).contains(&r.status)
    } else {
        url.status.iter().any(|&(a, b)| (a..=b).contains(&r.status))
    };
    if !ok {
        let want: Vec<String> = if url.status.is_empty() {
            vec!["200-299".into()]
        } else {
            url.status
                .iter()
                .map(|&(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect()
        };
        return Err(format!("status {} (expected {})", r.status, want.join(",")));
    }
    if let Some(want) = &url.digest {
        let got: String = Md5::digest(&r.body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if !got.eq_ignore_ascii_case(want) {
            return Err(format!("digest {got} (expected {want})"));
        }
    }
    if let Some(re) = &url.regex {
        let re = Regex::new(re).map_err(|e| format!("regex: {e}"))?;
        if regex_hit(&re, url, &r.body) == url.regex_no_match {
            return Err(format!(
                "body {} {re}",
                if url.regex_no_match {
                    "matches"
                } else {
                    "does not match"
                }
            ));
        }
    }
    Ok(())
}

/// Whether `re` matches the body at a place the URL allows: starting at `regex_min_offset`
/// or later, before `regex_max_offset`, and with `regex_first_line` within the first line.
/// The leftmost match from the minimum offset decides (a later one would start later still).
fn regex_hit(re: &Regex, url: &UrlCheck, body: &[u8]) -> bool {
    if url.regex_min_offset > body.len() {
        return false;
    }
    let Some(m) = re.find_at(body, url.regex_min_offset) else {
        return false;
    };
    let first_line_end = if url.regex_first_line {
        body.iter().position(|&b| b == b'\n').unwrap_or(body.len())
    } else {
        usize::MAX
    };
    url.regex_max_offset.is_none_or(|max| m.start() < max) && m.start() <= first_line_end
}

/// keepalived's SSL_GET does not verify the server's certificate (no `ca` given): neither
/// does this.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn tls_connect(
    h: &HttpCheck,
    url: &UrlCheck,
    target: SocketAddr,
    s: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    cfg.enable_sni = h.sni;
    let name = h
        .sni_name
        .as_deref()
        .or(url.virtualhost.as_deref())
        .or(h.virtualhost.as_deref());
    let server = match name.filter(|_| h.sni) {
        Some(n) => rustls::pki_types::ServerName::try_from(n.to_string())
            .map_err(|e| format!("SNI name {n:?}: {e}"))?,
        None => rustls::pki_types::ServerName::IpAddress(target.ip().into()),
    };
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(server, s)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: deterministic bytes.
    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn hostile_answers_never_panic_the_parser() {
        let heads = [
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: ",
            "HTTP/1.0 200 OK\r\n\r\n",
            "HTTP/1.1 99999 X\r\n\r\n",
        ];
        let tails: [&[u8]; 6] = [
            b"ffffffffffffffff\r\nx\r\n",
            b"fffffffffffffffe\r\n",
            b"18446744073709551615\r\n\r\nabc",
            b"-5\r\n",
            b"0\r\n\r\n",
            b"2\r\nab",
        ];
        for h in heads {
            for t in tails {
                let mut raw = h.as_bytes().to_vec();
                raw.extend_from_slice(t);
                let _ = parse(&raw, false);
                let _ = parse_at_eof(&raw, false);
            }
        }
        for seed in 0..20_000u64 {
            let mut raw = heads[(seed % 4) as usize].as_bytes().to_vec();
            raw.extend(bytes(seed, (seed % 200) as usize));
            let _ = parse(&raw, seed % 7 == 0);
            let _ = parse_at_eof(&raw, false);
            let _ = parse(&bytes(seed ^ 0xabc, (seed % 300) as usize), false);
        }
    }

    #[test]
    fn the_regex_must_match_where_the_url_allows() {
        let mut u = UrlCheck {
            path: "/".into(),
            digest: None,
            status: vec![(200, 299)],
            virtualhost: None,
            regex: Some("(?i)ready".into()),
            regex_no_match: false,
            regex_min_offset: 0,
            regex_max_offset: None,
            regex_first_line: false,
        };
        let resp = |b: &[u8]| Response {
            status: 200,
            body: b.to_vec(),
        };
        assert!(judge(&u, &resp(b"status: READY\n")).is_ok());
        u.regex_min_offset = 9;
        assert!(judge(&u, &resp(b"status: READY\n")).is_err());
        assert!(judge(&u, &resp(b"status:  READY\n")).is_ok());
        u.regex_min_offset = 100;
        assert!(judge(&u, &resp(b"short")).is_err());
        u.regex_min_offset = 0;
        u.regex_max_offset = Some(8);
        assert!(judge(&u, &resp(b"status: ready")).is_err());
        assert!(judge(&u, &resp(b"ready")).is_ok());
        u.regex_max_offset = None;
        u.regex_first_line = true;
        assert!(judge(&u, &resp(b"line one\nready")).is_err());
        assert!(judge(&u, &resp(b"ready\nline two")).is_ok());
        // regex_no_match: failing where a match is found in the allowed place
        u.regex_no_match = true;
        assert!(judge(&u, &resp(b"ready\nline two")).is_err());
        assert!(judge(&u, &resp(b"line one\nready")).is_ok());
    }

    #[test]
    fn an_oversized_chunk_is_waited_for_not_a_panic() {
        assert_eq!(dechunk(b"ffffffffffffffff\r\nabc").unwrap(), None);
        assert!(dechunk(b"zz\r\n").is_err());
    }
}
