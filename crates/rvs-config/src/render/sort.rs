//! ipvsadm's listing order: `libipvs.c: ipvs_cmp_services / ipvs_cmp_dests` sorted with
//! glibc's `qsort`.
//!
//! The comparisons subtract unsigned 32-bit values and read the difference as a signed `int`,
//! so values 2^31 or more apart compare backwards. Such a comparison is not a total order, so
//! the result depends on the sorting algorithm: Debian 12's glibc (2.36) sorts with a top-down
//! merge sort (`msort.c`: halves of `n/2` and `n - n/2`, merge taking the left element while
//! `cmp(left, right) <= 0`), replayed here by [`glibc_msort`].

use std::net::IpAddr;

use rvs_core::dest::Dest;
use rvs_core::model::ServiceKey;
use rvs_core::service::Service;

/// `a - b` on 32-bit words, read as a signed int (the sign is the comparison's result).
pub fn cmp_words(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// Sort `v` as glibc 2.36's `qsort` does with a comparison returning a signed int.
pub fn glibc_msort<T: Clone>(v: &mut [T], cmp: &dyn Fn(&T, &T) -> i32) {
    let n = v.len();
    if n <= 1 {
        return;
    }
    let n1 = n / 2;
    glibc_msort(&mut v[..n1], cmp);
    glibc_msort(&mut v[n1..], cmp);
    let mut merged = Vec::with_capacity(n);
    let (mut i, mut j) = (0, n1);
    while i < n1 && j < n {
        if cmp(&v[i], &v[j]) <= 0 {
            merged.push(v[i].clone());
            i += 1;
        } else {
            merged.push(v[j].clone());
            j += 1;
        }
    }
    merged.extend_from_slice(&v[i..n1]);
    let done = merged.len();
    v[..done].clone_from_slice(&merged);
}

/// An address as the four host-order words of `union nf_inet_addr` (IPv4 in the first).
fn words(a: &IpAddr) -> [u32; 4] {
    match a {
        IpAddr::V4(v4) => [u32::from(*v4), 0, 0, 0],
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            [w(0), w(4), w(8), w(12)]
        }
    }
}

/// The address comparison of both functions: four words for IPv6 (the first one's family
/// decides), one for IPv4.
fn cmp_addr(a: &IpAddr, b: &IpAddr) -> i32 {
    let (wa, wb) = (words(a), words(b));
    let n = if a.is_ipv6() { 4 } else { 1 };
    (0..n)
        .map(|i| cmp_words(wa[i], wb[i]))
        .find(|r| *r != 0)
        .unwrap_or(0)
}

/// `ipvs_cmp_services`: fwmark, family, protocol, address, port.
pub(crate) fn cmp_services(a: &ServiceKey, b: &ServiceKey) -> i32 {
    let firsts = [
        cmp_words(a.fwmark(), b.fwmark()),
        i32::from(a.family().af()) - i32::from(b.family().af()),
        i32::from(a.protocol().number()) - i32::from(b.protocol().number()),
        cmp_addr(&a.addr(), &b.addr()),
    ];
    firsts
        .into_iter()
        .find(|r| *r != 0)
        .unwrap_or_else(|| i32::from(a.port()) - i32::from(b.port()))
}

/// `ipvs_cmp_dests`: address, port.
pub(crate) fn cmp_dests(a: &Dest, b: &Dest) -> i32 {
    match cmp_addr(&a.addr, &b.addr) {
        0 => i32::from(a.port) - i32::from(b.port),
        r => r,
    }
}

/// Services in listing order (`nosort`: the core's order).
pub(crate) fn services_in_order(svcs: Vec<&Service>, nosort: bool) -> Vec<&Service> {
    let mut v = svcs;
    if !nosort {
        glibc_msort(&mut v, &|a: &&Service, b: &&Service| {
            cmp_services(&a.key, &b.key)
        });
    }
    v
}

/// Destinations in listing order (`nosort`: the kernel's list order).
pub(crate) fn dests_in_order(dests: Vec<&Dest>, nosort: bool) -> Vec<&Dest> {
    let mut v = dests;
    if !nosort {
        glibc_msort(&mut v, &|a: &&Dest, b: &&Dest| cmp_dests(a, b));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_difference_reads_backwards() {
        let a = u32::from(std::net::Ipv4Addr::new(200, 0, 0, 1));
        let b = u32::from(std::net::Ipv4Addr::new(10, 0, 0, 1));
        assert!(cmp_words(a, b) < 0);
        assert!(cmp_words(u32::MAX, 1) < 0);
        assert!(cmp_words(2, 1) > 0);
    }

    #[test]
    fn merge_sort_is_stable_and_sorts() {
        let mut v = vec![(3, 'a'), (1, 'b'), (3, 'c'), (2, 'd'), (1, 'e')];
        glibc_msort(&mut v, &|a: &(i32, char), b: &(i32, char)| a.0 - b.0);
        assert_eq!(v, vec![(1, 'b'), (1, 'e'), (2, 'd'), (3, 'a'), (3, 'c')]);
    }

    #[test]
    fn non_transitive_order_follows_the_merge() {
        // 10.x < 128.x (diff < 2^31), 128.x < 200.x, but 200.x < 10.x (wraps)
        let ip = |a: u8| u32::from(std::net::Ipv4Addr::new(a, 0, 0, 1));
        let mut v = vec![ip(10), ip(200), ip(128)];
        glibc_msort(&mut v, &|a: &u32, b: &u32| cmp_words(*a, *b));
        // halves [10] and [200,128] -> [128,200]; merge: 10 vs 128 -> 10; then 128, 200
        assert_eq!(v, vec![ip(10), ip(128), ip(200)]);
    }
}
