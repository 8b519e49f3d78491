//! Listings without `-n`, recorded by `tests/golden/listing/names.sh` in a VM that resolves
//! names only from the `/etc/hosts` and `/etc/services` the job writes. The resolver here reads
//! the same two tables out of the job script, as glibc's NSS "files" backend answers
//! `gethostbyaddr` (the first line naming the address, its first name) and `getservbyport`
//! (the first line with that port and protocol).

mod support;

use std::net::IpAddr;

use rvs_config::Names;
use support::transcript;

const JOB: &str = include_str!("golden/listing/names.sh");

/// The lines of the heredoc that ends with `end` in the job script.
fn heredoc(end: &str) -> Vec<&'static str> {
    let start = format!("<<'{end}'");
    JOB.lines()
        .skip_while(|l| !l.ends_with(&start))
        .skip(1)
        .take_while(|l| *l != end)
        .collect()
}

struct FileNames {
    hosts: Vec<(IpAddr, String)>,
    services: Vec<(u16, String, String)>,
}

impl FileNames {
    fn from_job() -> FileNames {
        let hosts = heredoc("H")
            .iter()
            .map(|l| {
                let mut w = l.split_whitespace();
                let a = w.next().unwrap().parse().unwrap();
                (a, w.next().unwrap().to_string())
            })
            .collect();
        let services = heredoc("S")
            .iter()
            .map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let (port, proto) = w[1].split_once('/').unwrap();
                (port.parse().unwrap(), proto.to_string(), w[0].to_string())
            })
            .collect();
        FileNames { hosts, services }
    }
}

impl Names for FileNames {
    fn host(&self, addr: &IpAddr) -> Option<String> {
        self.hosts
            .iter()
            .find(|h| h.0 == *addr)
            .map(|h| h.1.clone())
    }
    fn service(&self, port: u16, proto: &str) -> Option<String> {
        self.services
            .iter()
            .find(|s| s.0 == port && s.1 == proto)
            .map(|s| s.2.clone())
    }
}

#[test]
fn named_listings_match_ipvsadm() {
    let names = FileNames::from_job();
    assert!(names.hosts.len() >= 9 && names.services.len() >= 10);
    let (listed, applied) = transcript::replay(include_str!("golden/listing/names.out"), &names);
    assert!(listed >= 17, "{listed}");
    assert!(applied >= 25, "{applied}");
}
