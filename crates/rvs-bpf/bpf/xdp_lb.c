// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * rvs's XDP data plane: virtual services forwarded by direct routing, tunnels and NAT in the
 * driver.
 *
 * For each packet: parse Ethernet, IPv4/IPv6 and TCP/UDP with every length checked against
 * the packet; follow its flow in `rvs_flows`, or look up its virtual service (address, port,
 * protocol; then port 0) and schedule a new one; count it; then by the real server's method:
 * rewrite the Ethernet addresses (direct routing) or put a tunnel header on, and transmit it
 * back out (XDP_TX); or (NAT) rewrite its destination to the real server, look the way there
 * up in the kernel's FIB and send it out of that interface (XDP_TX / XDP_REDIRECT). A NAT real
 * server's replies find their flow by a second entry and leave with the virtual address as
 * source again.
 *
 * What is not a virtual service's traffic goes to the kernel untouched (XDP_PASS), and so
 * does what cannot be parsed (truncated or inconsistent headers: the kernel's own checks
 * drop it), IPv4 fragments and IPv6 packets with extension headers; each case is counted.
 * The fixture table (tests/fixtures.rs) pins the treatment of each.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "rvs_abi.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RVS_MAX_SERVICES);
	__type(key, struct rvs_vip);
	__type(value, struct rvs_service);
} rvs_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RVS_MAX_DESTS);
	__type(key, __u32);
	__type(value, struct rvs_dest);
} rvs_dests SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RVS_SEQ_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} rvs_seq SEC(".maps");

/* Next position in each service's sequence: shared by every CPU, so the order of choices is
 * the kernel's (one sequence per service), whichever CPU a flow arrives on. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RVS_MAX_SERVICES);
	__type(key, __u32);
	__type(value, __u32);
} rvs_pos SEC(".maps");

/* Flows live until the control plane deletes them (when rvs-core's entry expires), not by
 * eviction: a full map refuses new flows (their first packet is dropped and counted, as IPVS
 * drops a packet whose connection it cannot allocate) and never breaks established ones. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RVS_MAX_FLOWS);
	__type(key, struct rvs_flow_key);
	__type(value, struct rvs_flow);
} rvs_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, RVS_MAX_TEMPLATES);
	__type(key, struct rvs_tmpl_key);
	__type(value, struct rvs_tmpl);
} rvs_templates SEC(".maps");

/* An array, not a hash: its lookup is an address computation, on every forwarded packet. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RVS_MAX_IFINDEX);
	__type(key, __u32);
	__type(value, struct rvs_iface);
} rvs_ifaces SEC(".maps");

/* The director's side of the interface a packet arrived on, if the control plane set it up. */
static __always_inline struct rvs_iface *iface_of(struct xdp_md *ctx)
{
	__u32 i = ctx->ingress_ifindex;
	struct rvs_iface *me = bpf_map_lookup_elem(&rvs_ifaces, &i);
	return me && (me->flags & RVS_IFACE_ON) ? me : NULL;
}

/* Per CPU: the IPv4 ID of the next outer header (fresh for every tunnelled packet). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} rvs_ipid SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RVS_C_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} rvs_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RVS_MAX_DESTS);
	__type(key, __u32);
	__type(value, struct rvs_dest_stats);
} rvs_dest_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RVS_MAX_DESTS);
	__type(key, __u32);
	__type(value, struct rvs_dest_conns);
} rvs_conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RVS_MAX_DESTS);
	__type(key, __u32);
	__type(value, struct rvs_dest_sched);
} rvs_sched SEC(".maps");

/* Real server `di`'s connections as the schedulers count them: the core's, plus the ones
 * the program made that the core's counts do not include yet (see rvs_abi.h). */
static __always_inline void conns_of(__u32 di, __u32 *active, __u32 *inactive)
{
	struct rvs_dest_conns *c = bpf_map_lookup_elem(&rvs_conns, &di);
	struct rvs_dest_sched *s = bpf_map_lookup_elem(&rvs_sched, &di);
	*active = 0;
	*inactive = 0;
	if (!c)
		return;
	*active = c->active;
	*inactive = c->inactive;
	if (s) {
		/* the core may hear of a connection a moment before it is counted here (the
		 * event goes first): never less than the core's */
		__s32 a = s->active - c->seen_active, i = s->inactive - c->seen_inactive;
		*active += a > 0 ? a : 0;
		*inactive += i > 0 ? i : 0;
	}
}

/* Where the later fragments of a packet go: the real server its first fragment went to. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, RVS_MAX_FRAGS);
	__type(key, struct rvs_frag_key);
	__type(value, struct rvs_frag);
} rvs_frags SEC(".maps");

/* The generation of the kept next hops (struct rvs_nexthop): entries of another one are
 * looked up again; 0 keeps none. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} rvs_nh_gen SEC(".maps");

/* Per CPU, indexed like `rvs_dests`: the next hop toward each NAT real server as this CPU
 * last looked it up (the control plane clears a slot when it writes its real server). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RVS_MAX_DESTS);
	__type(key, __u32);
	__type(value, struct rvs_nexthop);
} rvs_nh_dest SEC(".maps");

/* The interfaces NAT may send a packet out of (XDP_REDIRECT), keyed by ifindex: those the
 * control plane attached the program to. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} rvs_tx_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, RVS_EVENT_RING);
} rvs_events SEC(".maps");

static __always_inline void count(__u32 c)
{
	__u64 *v = bpf_map_lookup_elem(&rvs_counters, &c);
	if (v)
		*v += 1;
}

/* What the parser found. */
struct pkt {
	struct rvs_flow_key key;
	__u8 tcp_flags;  /* FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10 */
	__u8 any_port;   /* its service is a port-0 one */
	__u8 frag;       /* FRAG_NONE, FRAG_FIRST, FRAG_LATER */
	__u32 len;       /* L3 length (the IP packet), what IPVS counts as bytes */
	__u32 frag_id;   /* a fragment's identification (IPv4: 16 bits) */
	__u16 l4_off;    /* offset of the TCP/UDP (or ICMP) header in the frame */
	__u16 inner_off; /* ICMP error: offset of the quoted IP header */
	__u16 inner_l4;  /* ICMP error: offset of the quoted TCP/UDP header */
};

/* The IP header follows an Ethernet header without VLAN tags. */
#define L3_OFF ((__u32)sizeof(struct ethhdr))

#define FRAG_NONE 0
#define FRAG_FIRST 1   /* offset 0, more to come: it carries the ports */
#define FRAG_LATER 2   /* offset > 0: no ports; goes where its first fragment went */

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

/* P_PASS: not TCP or UDP over IP (the kernel's business); P_FRAG: an IPv4 fragment; P_EXT:
 * IPv6 with extension headers before L4; P_ICMP: an ICMP error about a TCP or UDP packet, its
 * flow's key in `key` (the offending packet went from the virtual service to the client);
 * P_DROP: malformed. */
enum parsed { P_OK, P_PASS, P_FRAG, P_EXT, P_ICMP, P_DROP };

/* L4 ports and flags at `l4`; `proto` says which. `room` is the L4 length the IP header
 * declares (already checked to lie within the frame); accesses are checked against the
 * frame's end, which is what the verifier follows. */
static __always_inline enum parsed parse_l4(void *l4, void *end, __u32 room, __u8 proto,
					    struct pkt *p)
{
	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;
		if ((void *)(th + 1) > end || room < sizeof(*th))
			return P_DROP;
		if (th->doff < 5 || th->doff * 4 > room)
			return P_DROP;
		p->key.cport = th->source;
		p->key.vport = th->dest;
		p->tcp_flags = ((__u8 *)th)[13];
		return P_OK;
	}
	if (proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;
		if ((void *)(uh + 1) > end || room < sizeof(*uh))
			return P_DROP;
		__u32 ulen = bpf_ntohs(uh->len);
		/* a first fragment holds part of the datagram its UDP length counts */
		if (ulen < sizeof(*uh) || (ulen > room && p->frag != FRAG_FIRST))
			return P_DROP;
		p->key.cport = uh->source;
		p->key.vport = uh->dest;
		return P_OK;
	}
	return P_PASS;
}

/* The ports of the offending packet quoted in an ICMP error: its L4 header at `l4` (at least
 * 8 bytes of it, as RFC 792 requires), `room` bytes available. */
static __always_inline enum parsed quoted_ports(__u8 *l4, void *end, __u32 room, struct pkt *p)
{
	if (l4 + 8 > (__u8 *)end || room < 8)
		return P_DROP;
	/* reversed: the packet went from VIP:vport to client:cport */
	p->key.vport = *(__u16 *)l4;
	p->key.cport = *(__u16 *)(l4 + 2);
	return P_ICMP;
}

/* An ICMP error (destination unreachable, source quench, time exceeded, parameter problem)
 * about a TCP or UDP packet from a virtual service: the flow it belongs to. */
static __always_inline enum parsed parse_icmp4(__u8 *ic, void *end, __u32 room, struct pkt *p)
{
	if (ic + 8 > (__u8 *)end || room < 8)
		return P_DROP;
	__u8 type = ic[0];
	if (type != 3 && type != 4 && type != 11 && type != 12)
		return P_PASS;
	struct iphdr *in = (void *)(ic + 8);
	if ((void *)(in + 1) > end || room < 8 + sizeof(*in))
		return P_DROP;
	if (in->version != 4 || in->ihl < 5)
		return P_DROP;
	if (in->protocol != IPPROTO_TCP && in->protocol != IPPROTO_UDP)
		return P_PASS;
	__u32 ihl = in->ihl * 4;
	if (ihl > 60)
		return P_DROP;
	p->inner_off = p->l4_off + 8;
	p->inner_l4 = p->inner_off + ihl;
	p->key.proto = in->protocol;
	p->key.caddr[0] = in->daddr;
	p->key.vaddr[0] = in->saddr;
	return quoted_ports((__u8 *)in + ihl, end, room - 8 - ihl, p);
}

static __always_inline enum parsed parse_icmp6(__u8 *ic, void *end, __u32 room, struct pkt *p)
{
	if (ic + 8 > (__u8 *)end || room < 8)
		return P_DROP;
	__u8 type = ic[0];
	if (type < 1 || type > 4)
		return P_PASS;
	struct ipv6hdr *in = (void *)(ic + 8);
	if ((void *)(in + 1) > end || room < 8 + sizeof(*in))
		return P_DROP;
	if (in->version != 6)
		return P_DROP;
	if (in->nexthdr != IPPROTO_TCP && in->nexthdr != IPPROTO_UDP)
		return P_PASS;
	p->inner_off = p->l4_off + 8;
	p->inner_l4 = p->inner_off + sizeof(*in);
	p->key.proto = in->nexthdr;
	__builtin_memcpy(p->key.caddr, &in->daddr, 16);
	__builtin_memcpy(p->key.vaddr, &in->saddr, 16);
	return quoted_ports((__u8 *)(in + 1), end, room - 8 - sizeof(*in), p);
}

static __always_inline enum parsed parse_v4(void *l3, void *end, struct pkt *p)
{
	struct iphdr *ip = l3;
	if ((void *)(ip + 1) > end)
		return P_DROP;
	if (ip->version != 4 || ip->ihl < 5)
		return P_DROP;
	__u32 hlen = ip->ihl * 4;
	__u32 tot = bpf_ntohs(ip->tot_len);
	if (tot < hlen || tot > (__u32)(end - l3))
		return P_DROP;
	p->l4_off = L3_OFF + hlen;
	if (ip->protocol == IPPROTO_ICMP) {
		if (ip->frag_off & bpf_htons(0x3fff))
			return P_FRAG;
		p->key.family = RVS_AF_INET;
		p->len = tot;
		return parse_icmp4(l3 + hlen, end, tot - hlen, p);
	}
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return P_PASS;
	p->key.family = RVS_AF_INET;
	p->key.proto = ip->protocol;
	p->key.caddr[0] = ip->saddr;
	p->key.vaddr[0] = ip->daddr;
	p->len = tot;
	/* a fragment: MF set or a non-zero offset */
	if (ip->frag_off & bpf_htons(0x3fff)) {
		p->frag_id = ip->id;
		if (ip->frag_off & bpf_htons(0x1fff)) {
			p->frag = FRAG_LATER;
			return P_FRAG;
		}
		p->frag = FRAG_FIRST;
	}
	return parse_l4(l3 + hlen, end, tot - hlen, ip->protocol, p);
}

/* An IPv6 fragment header right after the fixed header (RFC 8200 4.5): the first fragment
 * of a TCP or UDP packet is parsed on (it carries the ports), a later one is P_FRAG; other
 * headers after it are extension headers we do not walk. */
static __always_inline enum parsed parse_frag6(__u8 *fh, void *end, __u32 plen, struct pkt *p)
{
	if (fh + 8 > (__u8 *)end || plen < 8)
		return P_DROP;
	__u8 next = fh[0];
	if (next != IPPROTO_TCP && next != IPPROTO_UDP)
		return P_EXT;
	__u16 off = bpf_ntohs(*(__u16 *)(fh + 2));
	p->key.proto = next;
	p->frag_id = *(__u32 *)(fh + 4);
	if (off & 0xfff8) {
		p->frag = FRAG_LATER;
		return P_FRAG;
	}
	if (!(off & 1))
		return P_EXT; /* an atomic fragment (offset 0, no more): RFC 8021, left to the kernel */
	p->frag = FRAG_FIRST;
	p->l4_off = L3_OFF + sizeof(struct ipv6hdr) + 8;
	return parse_l4(fh + 8, end, plen - 8, next, p);
}

static __always_inline enum parsed parse_v6(void *l3, void *end, struct pkt *p)
{
	struct ipv6hdr *ip6 = l3;
	if ((void *)(ip6 + 1) > end)
		return P_DROP;
	if (ip6->version != 6)
		return P_DROP;
	__u32 plen = bpf_ntohs(ip6->payload_len);
	if (plen > (__u32)(end - (void *)(ip6 + 1)))
		return P_DROP;
	p->key.family = RVS_AF_INET6;
	__builtin_memcpy(p->key.caddr, &ip6->saddr, 16);
	__builtin_memcpy(p->key.vaddr, &ip6->daddr, 16);
	p->len = sizeof(*ip6) + plen;
	p->l4_off = L3_OFF + sizeof(*ip6);
	switch (ip6->nexthdr) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
		break;
	case IPPROTO_ICMPV6:
		return parse_icmp6((void *)(ip6 + 1), end, plen, p);
	case IPPROTO_FRAGMENT:
		return parse_frag6((void *)(ip6 + 1), end, plen, p);
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_DSTOPTS:
		return P_EXT;
	default:
		return P_PASS;
	}
	p->key.proto = ip6->nexthdr;
	return parse_l4(ip6 + 1, end, plen, ip6->nexthdr, p);
}

/* The virtual service of the packet's destination: address, port and protocol; then the same
 * address with port 0 (a service for all ports). */
static __always_inline struct rvs_service *find_service(struct pkt *p)
{
	struct rvs_vip vip = {};
	__builtin_memcpy(vip.addr, p->key.vaddr, 16);
	vip.port = p->key.vport;
	vip.proto = p->key.proto;
	vip.family = p->key.family;
	struct rvs_service *svc = bpf_map_lookup_elem(&rvs_services, &vip);
	if (svc)
		return svc;
	vip.port = 0;
	p->any_port = 1;
	return bpf_map_lookup_elem(&rvs_services, &vip);
}


/* Entry `i` of the service's sequence or table, or -1 (empty, out of range). */
static __always_inline int entry(struct rvs_service *svc, __u32 i)
{
	if (i >= svc->seq_len)
		return -1;
	__u32 slot = svc->seq_off + i;
	__u32 *dest = bpf_map_lookup_elem(&rvs_seq, &slot);
	if (!dest || *dest == RVS_NO_DEST)
		return -1;
	return *dest;
}

/* The next real server of the service's sequence (rr, wrr), or -1. */
static __always_inline int sched_seq(struct rvs_service *svc)
{
	__u32 id = svc->id;
	__u32 *pos = bpf_map_lookup_elem(&rvs_pos, &id);
	if (!pos || svc->seq_len == 0)
		return -1;
	__u32 n = __sync_fetch_and_add(pos, 1);
	return entry(svc, n % svc->seq_len);
}

/* The kernel's hash_32() (include/linux/hash.h). */
static __always_inline __u32 hash_32(__u32 v, __u32 bits)
{
	return (v * 0x61C88647u) >> (32 - bits);
}

/* An address as IPVS's hashing schedulers fold it: IPv4 in host order, IPv6 the XOR of its
 * four words (XOR first, byte swap after: the same number). */
static __always_inline __u32 fold(const __u32 *a, __u8 family)
{
	if (family == RVS_AF_INET)
		return bpf_ntohl(a[0]);
	return bpf_ntohl(a[0] ^ a[1] ^ a[2] ^ a[3]);
}

/* is_unavailable() of ip_vs_sh.c and the test of ip_vs_dh.c: gone, weight 0 or overloaded. */
static __always_inline int usable(int idx)
{
	__u32 i = idx;
	struct rvs_dest *d = bpf_map_lookup_elem(&rvs_dests, &i);
	return d && (d->flags & RVS_DEST_AVAILABLE) && d->weight > 0 &&
	       !(d->flags & RVS_DEST_OVERLOAD);
}

/* The number sh and mh hash: the folded source address, plus the source port with sh-port /
 * mh-port (RVS_SVC_SCHED2). */
static __always_inline __u32 source_key(struct rvs_service *svc, struct pkt *p)
{
	__u32 port = svc->flags & RVS_SVC_SCHED2 ? bpf_ntohs(p->key.cport) : 0;
	return port + fold(p->key.caddr, p->key.family);
}

/* The first choice of a hashing scheduler, bucket `i`: its server if usable (>= 0); -1 when
 * the bucket is empty or the server unusable without fallback (RVS_SVC_SCHED1); -2 when the
 * fallback probe is to run. */
static __always_inline int first_choice(struct rvs_service *svc, __u32 i)
{
	int d = entry(svc, i);
	if (d < 0)
		return -1;
	if (usable(d))
		return d;
	return svc->flags & RVS_SVC_SCHED1 ? -2 : -1;
}

/* ip_vs_sh: the bucket of the source address (plus the source port with sh-port); with
 * sh-fallback an unusable bucket's choice is replaced by probing from twice the hash, as
 * ip_vs_sh_get_fallback() does. */
static __always_inline int sched_sh(struct rvs_service *svc, struct pkt *p)
{
	__u32 ihash = hash_32(source_key(svc, p), RVS_HASH_TAB_BITS);
	int d = first_choice(svc, ihash);
	if (d != -2)
		return d;
	for (__u32 off = 0; off < RVS_HASH_TAB_SIZE; off++) {
		__u32 roff = (off + ihash) % RVS_HASH_TAB_SIZE;
		d = entry(svc, (roff + ihash) & (RVS_HASH_TAB_SIZE - 1));
		if (d < 0)
			return -1;
		if (usable(d))
			return d;
	}
	return -1;
}

/* ip_vs_dh: the bucket of the destination address. */
static __always_inline int sched_dh(struct rvs_service *svc, struct pkt *p)
{
	int d = entry(svc, hash_32(fold(p->key.vaddr, p->key.family), RVS_HASH_TAB_BITS));
	return d >= 0 && usable(d) ? d : -1;
}

/* One SipHash round on four 64-bit words. */
#define SIPROUND                                                                                  \
	do {                                                                                      \
		v0 += v1;                                                                         \
		v1 = (v1 << 13 | v1 >> 51) ^ v0;                                                  \
		v0 = v0 << 32 | v0 >> 32;                                                         \
		v2 += v3;                                                                         \
		v3 = (v3 << 16 | v3 >> 48) ^ v2;                                                  \
		v0 += v3;                                                                         \
		v3 = (v3 << 21 | v3 >> 43) ^ v0;                                                  \
		v2 += v1;                                                                         \
		v1 = (v1 << 17 | v1 >> 47) ^ v2;                                                  \
		v2 = v2 << 32 | v2 >> 32;                                                         \
	} while (0)

/* The 64-bit kernel's hsiphash() of a 4-byte integer with ip_vs_mh.c's first key (2654435761
 * in both words): SipHash-1-3 of the integer's little-endian bytes, truncated to 32 bits. */
static __always_inline __u32 mh_hash(__u32 value)
{
	const __u64 k = 2654435761ULL;
	__u64 v0 = 0x736f6d6570736575ULL ^ k, v1 = 0x646f72616e646f6dULL ^ k;
	__u64 v2 = 0x6c7967656e657261ULL ^ k, v3 = 0x7465646279746573ULL ^ k;
	__u64 b = (4ULL << 56) | value;
	v3 ^= b;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return (__u32)(v0 ^ v1 ^ v2 ^ v3);
}

/* What the mh fallback probe carries from step to step. */
struct mh_probe {
	__u32 seq_off;
	__u32 seq_len;
	__u32 v;
	__u32 ihash;
	int found;
};

/* One step of ip_vs_mh_get_fallback(): the slot of hash(v + (offset + ihash) mod M); an empty
 * slot ends the search with none, a usable server ends it with that server. */
static long mh_probe_step(__u32 offset, void *arg)
{
	struct mh_probe *m = arg;
	__u32 roff = (offset + m->ihash) % RVS_MH_TAB_SIZE;
	__u32 i = mh_hash(m->v + roff) % RVS_MH_TAB_SIZE;
	if (i >= m->seq_len)
		return 1;
	__u32 slot = m->seq_off + i;
	__u32 *dest = bpf_map_lookup_elem(&rvs_seq, &slot);
	if (!dest || *dest == RVS_NO_DEST)
		return 1;
	if (usable(*dest)) {
		m->found = *dest;
		return 1;
	}
	return 0;
}

/* ip_vs_mh: the Maglev slot of the source address (plus the source port with mh-port); with
 * mh-fallback an unusable slot's choice is replaced by probing re-hashed slots (bpf_loop: the
 * verifier checks the step once). */
static __always_inline int sched_mh(struct rvs_service *svc, struct pkt *p)
{
	__u32 v = source_key(svc, p);
	__u32 ihash = mh_hash(v) % RVS_MH_TAB_SIZE;
	int d = first_choice(svc, ihash);
	if (d != -2)
		return d;
	struct mh_probe m = {svc->seq_off, svc->seq_len, v, ihash, -1};
	bpf_loop(RVS_MH_TAB_SIZE, mh_probe_step, &m, 0);
	return m.found;
}

/* What a connection-count scan carries from server to server. */
struct scan {
	__u32 seq_off;
	__u32 sched;
	int best;        /* list entry chosen so far, -1: none */
	__s64 best_oh;   /* its overhead (lc, wlc, sed, nq) */
	__s32 best_w;    /* its weight */
};

/* One real server of the scan, literally as the kernel's loop looks at it; returns 1 to end
 * the scan (nq found an idle server). */
static long scan_step(__u32 i, void *arg)
{
	struct scan *s = arg;
	__u32 slot = s->seq_off + i;
	__u32 *idx = bpf_map_lookup_elem(&rvs_seq, &slot);
	if (!idx || *idx == RVS_NO_DEST)
		return 0;
	__u32 di = *idx;
	struct rvs_dest *d = bpf_map_lookup_elem(&rvs_dests, &di);
	if (!d || !(d->flags & RVS_DEST_AVAILABLE) || (d->flags & RVS_DEST_OVERLOAD))
		return 0;
	__u32 active, inactive;
	conns_of(di, &active, &inactive);
	__s32 w = d->weight;
	switch (s->sched) {
	case RVS_SCHED_LC: {
		/* ip_vs_lc: the first least (active << 8) + inactive, as an unsigned int */
		__s64 oh = (__u32)((active << 8) + inactive);
		if (w == 0)
			return 0;
		if (s->best < 0 || oh < s->best_oh) {
			s->best = di;
			s->best_oh = oh;
		}
		return 0;
	}
	case RVS_SCHED_WLC:
	case RVS_SCHED_SED:
	case RVS_SCHED_NQ: {
		__s64 oh = s->sched == RVS_SCHED_WLC ? (__s32)((active << 8) + inactive)
						     : (__s32)(active + 1);
		if (s->best < 0) {
			/* the first candidate needs a weight; later ones are compared as they are */
			if (w <= 0)
				return 0;
		}
		if (s->sched == RVS_SCHED_NQ && w > 0 && active == 0) {
			s->best = di;
			return 1;
		}
		if (s->best < 0 || s->best_oh * w > oh * s->best_w) {
			s->best = di;
			s->best_oh = oh;
			s->best_w = w;
		}
		return 0;
	}
	case RVS_SCHED_FO:
		if (w > s->best_w) {
			s->best = di;
			s->best_w = w;
		}
		return 0;
	default: /* RVS_SCHED_OVF */
		if (w == 0 || (__s32)active > w)
			return 0;
		if (s->best < 0 || w > s->best_w) {
			s->best = di;
			s->best_w = w;
		}
		return 0;
	}
}

/* Entries of the service's list a scan looks at. */
static __always_inline __u32 list_len(struct rvs_service *svc)
{
	return svc->seq_len > RVS_MAX_LIST ? RVS_MAX_LIST : svc->seq_len;
}

/* A scan of the list as scheduler `code` (an RVS_SCHED_LC … RVS_SCHED_OVF) does it. */
static __always_inline int scan_list(struct rvs_service *svc, __u32 code)
{
	struct scan s = {svc->seq_off, code, -1, 0, 0};
	bpf_loop(list_len(svc), scan_step, &s, 0);
	return s.best;
}

/* The connection-count schedulers: a scan of the list (bpf_loop: checked once). */
static __always_inline int sched_scan(struct rvs_service *svc)
{
	return scan_list(svc, svc->sched);
}

/* A real server's active connections and its overhead ((active << 8) + inactive, as the
 * kernel's ip_vs_dest_conn_overhead() computes it in an int), counted as the scan counts. */
static __always_inline __u32 active_of(__u32 di)
{
	__u32 active, inactive;
	conns_of(di, &active, &inactive);
	return active;
}

static __always_inline __s32 overhead_of(__u32 di)
{
	__u32 active, inactive;
	conns_of(di, &active, &inactive);
	return (__s32)((active << 8) + inactive);
}

/* Whether real server `d` is one of service `svc`'s (the kernel's AVAILABLE flag). */
static __always_inline int in_service(struct rvs_service *svc, struct rvs_dest *d)
{
	return d && (d->flags & RVS_DEST_AVAILABLE) && d->svc == svc->id;
}

/* The lblc/lblcr `is_overloaded` scan: is some real server of the list below half its
 * weight in active connections? */
struct half_scan {
	__u32 seq_off;
	int found;
};

static long half_step(__u32 i, void *arg)
{
	struct half_scan *h = arg;
	__u32 slot = h->seq_off + i;
	__u32 *idx = bpf_map_lookup_elem(&rvs_seq, &slot);
	if (!idx || *idx == RVS_NO_DEST)
		return 0;
	__u32 di = *idx;
	struct rvs_dest *d = bpf_map_lookup_elem(&rvs_dests, &di);
	if (!d)
		return 0;
	/* every server of the list, whatever its flags, as the kernel's loop */
	if ((__s32)(active_of(di) * 2) < d->weight) {
		h->found = 1;
		return 1;
	}
	return 0;
}

/* lblc's and lblcr's own overload: more active connections than its weight while some
 * server of the list has fewer than half its weight. */
static __always_inline int loc_overloaded(struct rvs_service *svc, __u32 di)
{
	struct rvs_dest *d = bpf_map_lookup_elem(&rvs_dests, &di);
	if (!d || (__s32)active_of(di) <= d->weight)
		return 0;
	struct half_scan h = {svc->seq_off, 0};
	bpf_loop(list_len(svc), half_step, &h, 0);
	return h.found;
}

/* The locality tables: (service, destination address) to a real server (lblc) or a set of
 * them (lblcr). A virtual service's packets all go to its virtual address, so a service has
 * one entry; the control plane deletes idle ones as the kernel's timer does. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RVS_MAX_LOCALITY);
	__type(key, struct rvs_loc_key);
	__type(value, struct rvs_lblc);
} rvs_lblc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RVS_MAX_LOCALITY);
	__type(key, struct rvs_loc_key);
	__type(value, struct rvs_lblcr);
} rvs_lblcr SEC(".maps");

static __always_inline void loc_key(struct rvs_service *svc, struct pkt *p, struct rvs_loc_key *k)
{
	__builtin_memcpy(k->addr, p->key.vaddr, 16);
	k->svc = svc->id;
	k->family = p->key.family;
}

/* ip_vs_lblc: the real server cached for the destination address while it is in the service,
 * has a weight and is not overloaded in lblc's sense (its OVERLOAD flag is not looked at);
 * otherwise the wlc choice, which the entry then holds. A table without room leaves the
 * choice uncached, as the kernel does when it cannot allocate an entry. */
static __always_inline int sched_lblc(struct rvs_service *svc, struct pkt *p)
{
	struct rvs_loc_key k = {};
	loc_key(svc, p, &k);
	__u64 now = bpf_ktime_get_coarse_ns();
	int cached = -1;
	struct rvs_lblc *en = bpf_map_lookup_elem(&rvs_lblc, &k);
	if (en) {
		en->last_ns = now;
		__u32 di = en->dest;
		struct rvs_dest *d = bpf_map_lookup_elem(&rvs_dests, &di);
		cached = di;
		if (in_service(svc, d) && d->weight > 0 && !loc_overloaded(svc, di))
			return di;
	}
	int d = scan_list(svc, RVS_SCHED_WLC);
	if (d < 0 || d == cached)
		return d;
	struct rvs_lblc v = {.dest = d, .last_ns = now};
	bpf_map_update_elem(&rvs_lblc, &k, &v, BPF_ANY);
	return d;
}

/* An lblcr set being looked at: a copy of the entry, and the best member found so far. */
struct set_scan {
	struct rvs_lblcr v;
	__u32 svc;
	int best;
	__s64 best_oh;
	__s32 best_w;
};

/* The set's i-th member in the kernel's order (newest first), or -1 past its end. */
static __always_inline int member(struct set_scan *s, __u32 i)
{
	if (i >= s->v.n || s->v.n > RVS_LBLCR_SET)
		return -1;
	return s->v.dests[(s->v.n - 1 - i) & (RVS_LBLCR_SET - 1)];
}

/* One member for ip_vs_dest_set_min(): OVERLOAD skipped; the first with a weight that is in
 * the service, then any in the service with a lower overhead / weight. */
static long set_min_step(__u32 i, void *arg)
{
	struct set_scan *s = arg;
	int m = member(s, i);
	if (m < 0)
		return 1;
	__u32 di = m;
	struct rvs_dest *d = bpf_map_lookup_elem(&rvs_dests, &di);
	if (!d || (d->flags & RVS_DEST_OVERLOAD))
		return 0;
	int avail = (d->flags & RVS_DEST_AVAILABLE) && d->svc == s->svc;
	__s32 w = d->weight;
	__s64 oh = overhead_of(di);
	if (s->best < 0) {
		if (w > 0 && avail) {
			s->best = di;
			s->best_oh = oh;
			s->best_w = w;
		}
		return 0;
	}
	if (s->best_oh * w > oh * s->best_w && avail) {
		s->best = di;
		s->best_oh = oh;
		s->best_w = w;
	}
	return 0;
}

/* One member for ip_vs_dest_set_max(): the first with a weight, then any with a weight and a
 * higher overhead / weight (members that left the service too, as the kernel's loop). */
static long set_max_step(__u32 i, void *arg)
{
	struct set_scan *s = arg;
	int m = member(s, i);
	if (m < 0)
		return 1;
	__u32 di = m;
	struct rvs_dest *d = bpf_map_lookup_elem(&rvs_dests, &di);
	if (!d)
		return 0;
	__s32 w = d->weight;
	__s64 oh = overhead_of(di);
	if (s->best < 0) {
		if (w > 0) {
			s->best = di;
			s->best_oh = oh;
			s->best_w = w;
		}
		return 0;
	}
	if (s->best_oh * w < oh * s->best_w && w > 0) {
		s->best = di;
		s->best_oh = oh;
		s->best_w = w;
	}
	return 0;
}

static __always_inline int set_has(struct rvs_lblcr *v, __u32 di)
{
#pragma unroll
	for (int j = 0; j < RVS_LBLCR_SET; j++)
		if (j < (int)v->n && v->dests[j] == di)
			return 1;
	return 0;
}

/* Takes member `di` out of the set (ip_vs_dest_set_erase). */
static __always_inline void set_erase(struct rvs_lblcr *v, __u32 di)
{
	int found = 0;
#pragma unroll
	for (int j = 0; j < RVS_LBLCR_SET; j++) {
		if (j >= (int)v->n)
			break;
		if (v->dests[j] == di)
			found = 1;
		if (found && j + 1 < RVS_LBLCR_SET)
			v->dests[j] = v->dests[j + 1];
	}
	if (found)
		v->n -= 1;
}

/* Adds `di` as the newest member (ip_vs_dest_set_insert); a full set drops its oldest. */
static __always_inline void set_insert(struct rvs_lblcr *v, __u32 di)
{
	if (v->n >= RVS_LBLCR_SET) {
#pragma unroll
		for (int j = 0; j + 1 < RVS_LBLCR_SET; j++)
			v->dests[j] = v->dests[j + 1];
		v->n = RVS_LBLCR_SET - 1;
	}
	v->dests[v->n & (RVS_LBLCR_SET - 1)] = di;
	v->n += 1;
}

/* ip_vs_lblcr: the least loaded member of the destination address's set; when the set has
 * more than one member and did not change for lblcr_expiration its most loaded member is
 * dropped first; when there is no usable member or the least loaded is overloaded in lblc's
 * sense, the wlc choice, added to the set. No entry: the wlc choice starts one. */
static __always_inline int sched_lblcr(struct rvs_service *svc, struct pkt *p)
{
	struct rvs_loc_key k = {};
	loc_key(svc, p, &k);
	__u64 now = bpf_ktime_get_coarse_ns();
	struct set_scan s = {};
	s.svc = svc->id;
	struct rvs_lblcr *en = bpf_map_lookup_elem(&rvs_lblcr, &k);
	if (!en) {
		int d = scan_list(svc, RVS_SCHED_WLC);
		if (d < 0)
			return d;
		s.v.last_ns = now;
		s.v.lastmod_ns = now;
		s.v.n = 1;
		s.v.dests[0] = d;
		bpf_map_update_elem(&rvs_lblcr, &k, &s.v, BPF_ANY);
		return d;
	}
	__builtin_memcpy(&s.v, en, sizeof(s.v));
	if (s.v.n > RVS_LBLCR_SET)
		s.v.n = RVS_LBLCR_SET;
	s.v.last_ns = now;
	s.best = -1;
	bpf_loop(RVS_LBLCR_SET, set_min_step, &s, 0);
	int d = s.best;
	int changed = 0;
	if (s.v.n > 1 && now > s.v.lastmod_ns + (__u64)svc->expire_ms * 1000000) {
		s.best = -1;
		bpf_loop(RVS_LBLCR_SET, set_max_step, &s, 0);
		if (s.best >= 0) {
			set_erase(&s.v, s.best);
			s.v.lastmod_ns = now;
			changed = 1;
		}
	}
	if (d < 0 || loc_overloaded(svc, d)) {
		d = scan_list(svc, RVS_SCHED_WLC);
		if (d >= 0 && !set_has(&s.v, d)) {
			set_insert(&s.v, d);
			s.v.lastmod_ns = now;
			changed = 1;
		}
	}
	if (changed)
		bpf_map_update_elem(&rvs_lblcr, &k, &s.v, BPF_ANY);
	else
		en->last_ns = now;
	return d;
}

/* What the twos walk carries: the weight total, then the two random weights and the
 * servers they land on. */
struct twos {
	__u32 seq_off;
	__s32 total;
	int last;        /* the last usable server (the kernel's choice1 before the draws) */
	__s32 r1, r2;
	int c1, c2;
	__s32 w1, w2;    /* -1: not picked yet */
	__s32 o1, o2;
};

/* The list's i-th server if twos may pick it (in the service, OVERLOAD clear, a weight), and
 * its weight; -1 otherwise. */
static __always_inline int twos_usable(__u32 seq_off, __u32 i, __s32 *w)
{
	__u32 slot = seq_off + i;
	__u32 *idx = bpf_map_lookup_elem(&rvs_seq, &slot);
	if (!idx || *idx == RVS_NO_DEST)
		return -1;
	__u32 di = *idx;
	struct rvs_dest *d = bpf_map_lookup_elem(&rvs_dests, &di);
	if (!d || !(d->flags & RVS_DEST_AVAILABLE) || (d->flags & RVS_DEST_OVERLOAD) ||
	    d->weight <= 0)
		return -1;
	*w = d->weight;
	return di;
}

static long twos_total_step(__u32 i, void *arg)
{
	struct twos *t = arg;
	__s32 w = 0;
	int di = twos_usable(t->seq_off, i, &w);
	if (di < 0)
		return 0;
	t->total = (__s32)((__u32)t->total + (__u32)w);
	t->last = di;
	return 0;
}

static long twos_pick_step(__u32 i, void *arg)
{
	struct twos *t = arg;
	__s32 w = 0;
	int di = twos_usable(t->seq_off, i, &w);
	if (di < 0)
		return 0;
	t->r1 = (__s32)((__u32)t->r1 - (__u32)w);
	t->r2 = (__s32)((__u32)t->r2 - (__u32)w);
	if (t->r1 <= 0 && t->w1 == -1) {
		t->c1 = di;
		t->w1 = w;
		t->o1 = overhead_of(di);
	}
	if (t->r2 <= 0 && t->w2 == -1) {
		t->c2 = di;
		t->w2 = w;
		t->o2 = overhead_of(di);
	}
	return t->w1 != -1 && t->w2 != -1;
}

/* ip_vs_twos: two random weights in [0, total] over the usable servers' weights, each landing
 * on the first server where the running sum reaches it; the second wins only with a lower
 * overhead / weight (in the kernel's int arithmetic). Without a first landing (a weight total
 * beyond an int) the last usable server stands in, as in the kernel. */
static __always_inline int sched_twos(struct rvs_service *svc)
{
	struct twos t = {.seq_off = svc->seq_off, .last = -1};
	__u32 n = list_len(svc);
	bpf_loop(n, twos_total_step, &t, 0);
	if (t.last < 0)
		return -1;
	__u32 bound = (__u32)t.total + 1;
	t.r1 = bound ? (__s32)(bpf_get_prandom_u32() % bound) : 0;
	t.r2 = bound ? (__s32)(bpf_get_prandom_u32() % bound) : 0;
	t.c1 = t.last;
	t.c2 = -1;
	t.w1 = -1;
	t.w2 = -1;
	t.o1 = 0;
	bpf_loop(n, twos_pick_step, &t, 0);
	if (t.c2 >= 0 && (__s32)((__u32)t.w2 * (__u32)t.o1) > (__s32)((__u32)t.w1 * (__u32)t.o2))
		return t.c2;
	return t.c1;
}

/* A new flow's real server by the service's scheduler, or -1. A global function: the verifier
 * checks it once, on its own, instead of once per path that reaches a call (persistent and
 * plain services). */
__attribute__((noinline)) int rvs_schedule(struct rvs_service *svc, struct pkt *p)
{
	if (!svc || !p)
		return -1;
	switch (svc->sched) {
	case RVS_SCHED_LC:
	case RVS_SCHED_WLC:
	case RVS_SCHED_SED:
	case RVS_SCHED_NQ:
	case RVS_SCHED_FO:
	case RVS_SCHED_OVF:
		return sched_scan(svc);
	case RVS_SCHED_LBLC:
		return sched_lblc(svc, p);
	case RVS_SCHED_LBLCR:
		return sched_lblcr(svc, p);
	case RVS_SCHED_TWOS:
		return sched_twos(svc);
	case RVS_SCHED_SH:
		return sched_sh(svc, p);
	case RVS_SCHED_MH:
		return sched_mh(svc, p);
	case RVS_SCHED_DH:
		return sched_dh(svc, p);
	default:
		return sched_seq(svc);
	}
}

/* Rows of the IPVS TCP state table (tcp_states of ip_vs_proto_tcp.c) by the packet's way:
 * INPUT and OUTPUT for NAT, which sees both directions; INPUT-ONLY for direct routing and
 * tunnels (the kernel's NOOUTPUT entries). */
#define ROWS_INPUT 0
#define ROWS_OUTPUT 4
#define ROWS_INPUT_ONLY 8

/* One row of the table (event syn, fin, ack or rst after `rows`): the next state of each of
 * the eleven states, packed in 4-bit fields (state i in bits 4i..4i+3). */
static __always_inline __u64 tcp_row(__u32 row)
{
	switch (row) {
	case 0: return 0x33333333113ULL;  /* INPUT syn:  SR ES ES SR SR SR SR SR SR SR SR */
	case 1: return 0x59876555276ULL;  /* INPUT fin:  CL CW SS TW TW TW CL CW LA LI TW */
	case 2: return 0x19676541211ULL;  /* INPUT ack:  ES ES SS ES FW TW CL CW CL LI ES */
	case 3: return 0x39866663666ULL;  /* INPUT rst:  CL CL CL SR CL CL CL CL LA LI SR */
	case 4: return 0x39222223212ULL;  /* OUTPUT syn: SS ES SS SR SS SS SS SS SS LI SR */
	case 5: return 0x59856545245ULL;  /* OUTPUT fin: TW FW SS TW FW TW CL TW LA LI TW */
	case 6: return 0x11876541211ULL;  /* OUTPUT ack: ES ES SS ES FW TW CL CW LA ES ES */
	case 7: return 0x66666566266ULL;  /* OUTPUT rst: CL CL SS CL CL TW CL CL CL CL CL */
	case 8: return 0x33333333113ULL;  /* INPUT-ONLY syn: as INPUT */
	case 9: return 0x59876545246ULL;  /* INPUT-ONLY fin: CL FW SS TW FW TW CL CW LA LI TW */
	case 10: return 0x19676541211ULL; /* INPUT-ONLY ack: as INPUT */
	default: return 0x69866663666ULL; /* INPUT-ONLY rst: CL CL CL SR CL CL CL CL LA LI CL */
	}
}

/* The state a segment with TCP `flags` moves a flow in `state` to, by the rows of its way. The
 * event is RST, else SYN, else FIN, else ACK (tcp_state_idx); a segment with none of them
 * moves the flow to CLOSE, as the kernel's fall-through does. */
static __always_inline __u8 next_state(__u8 state, __u8 flags, __u32 rows)
{
	__u32 ev;
	if (flags & TCP_RST)
		ev = 3;
	else if (flags & TCP_SYN)
		ev = 0;
	else if (flags & TCP_FIN)
		ev = 1;
	else if (flags & TCP_ACK)
		ev = 2;
	else
		return RVS_S_CLOSE;
	if (state > RVS_S_SYNACK)
		return RVS_S_CLOSE;
	return (tcp_row(rows + ev) >> (4 * state)) & 0xf;
}

/* A persistent service's choice (ip_vs_sched_persist): the template of the client's network
 * (its address under the netmask: an IPv4 mask, or an IPv6 prefix length) and this virtual
 * address and port (all ports for a port-0 or an FTP service) sends the new flow to its real server
 * while the template lives and the server is still in the service (even at weight 0, as the
 * kernel does with expire_quiescent_template 0); otherwise the scheduler chooses and the
 * template is made (again). The control plane deletes a template when rvs-core's copy expires
 * (persist_timeout after its last use, or later while it controls connections). */
static __always_inline int sched_persist(struct rvs_service *svc, struct pkt *p, __u64 now)
{
	struct rvs_tmpl_key k = {};
	if (p->key.family == RVS_AF_INET) {
		k.caddr[0] = p->key.caddr[0] & svc->netmask;
	} else {
		__u32 plen = svc->netmask > 128 ? 128 : svc->netmask;
#pragma unroll
		for (int i = 0; i < 4; i++) {
			__u32 bits = plen > (__u32)(32 * i) ? plen - 32 * i : 0;
			__u32 m = bits >= 32 ? 0xffffffff : bits ? ~((1u << (32 - bits)) - 1) : 0;
			k.caddr[i] = p->key.caddr[i] & bpf_htonl(m);
		}
	}
	__builtin_memcpy(k.vaddr, p->key.vaddr, 16);
	/* port 0 for a port-0 service and, as the kernel keys them, for an FTP (port 21) one */
	k.vport = p->any_port || p->key.vport == bpf_htons(21) ? 0 : p->key.vport;
	k.proto = p->key.proto;
	k.family = p->key.family;
	struct rvs_tmpl *t = bpf_map_lookup_elem(&rvs_templates, &k);
	if (t) {
		__u32 idx = t->dest;
		struct rvs_dest *d = bpf_map_lookup_elem(&rvs_dests, &idx);
		if (d && (d->flags & RVS_DEST_AVAILABLE)) {
			t->last_ns = now;
			count(RVS_C_PERSIST_HIT);
			return idx;
		}
	}
	int d = rvs_schedule(svc, p);
	if (d < 0)
		return d;
	struct rvs_tmpl v = {.dest = d, .last_ns = now};
	bpf_map_update_elem(&rvs_templates, &k, &v, BPF_ANY);
	return d;
}

static __always_inline void dest_stats(__u32 dest, __u32 len, int new_conn)
{
	struct rvs_dest_stats *st = bpf_map_lookup_elem(&rvs_dest_stats, &dest);
	if (!st)
		return;
	st->conns += new_conn;
	st->packets += 1;
	st->bytes += len;
}

/* A NAT real server's reply, counted as the kernel's OutPkts / OutBytes. */
static __always_inline void dest_stats_out(__u32 dest, __u32 len)
{
	struct rvs_dest_stats *st = bpf_map_lookup_elem(&rvs_dest_stats, &dest);
	if (!st)
		return;
	st->out_packets += 1;
	st->out_bytes += len;
}

/* Tells the control plane about a packet of the flow of `key` that went way `dir` (see
 * RVS_EV_*); a full ring is counted and the packet goes on. */
static __always_inline int report_key(struct rvs_flow_key *key, struct pkt *p, __u8 kind,
				      __u32 dest, __u32 svc, __u8 state, __u64 now, __u8 dir)
{
	struct rvs_event *ev = bpf_ringbuf_reserve(&rvs_events, sizeof(*ev), 0);
	if (!ev) {
		count(RVS_C_EVENT_LOST);
		return -1;
	}
	__builtin_memcpy(&ev->key, key, sizeof(ev->key));
	ev->dest = dest;
	ev->svc = svc;
	ev->ns = now;
	ev->len = p->len;
	ev->kind = kind;
	ev->tcp_flags = p->tcp_flags;
	ev->state = state;
	ev->dir = dir;
	bpf_ringbuf_submit(ev, 0);
	return 0;
}

/* 0 when the event is on its way, -1 when the ring was full (counted, and lost). */
static __always_inline int report(struct pkt *p, __u8 kind, __u32 dest, __u32 svc, __u8 state,
				  __u64 now)
{
	return report_key(&p->key, p, kind, dest, svc, state, now, RVS_DIR_INPUT);
}

/* A packet of a known flow (its first entry `f`) that went way `dir`: the state it moves the
 * flow to, its time and count, and an event when the state changed or the flow reported
 * nothing for RVS_TOUCH_NS. */
static __always_inline void flow_packet(struct rvs_flow *f, struct rvs_flow_key *key,
					struct pkt *p, __u32 rows, __u8 dir, __u64 now)
{
	__u8 was = f->state;
	__u8 next = p->key.proto == IPPROTO_TCP ? next_state(was, p->tcp_flags, rows) : was;
	if (next != was)
		f->state = next;
	if (f->last_ns != now)
		f->last_ns = now;
	f->packets += 1;
	if (next != was) {
		f->reported_ns = now;
		f->reported_packets = f->packets;
		report_key(key, p, RVS_EV_STATE, f->dest, f->svc, next, now, dir);
	} else if (now - f->reported_ns >= RVS_TOUCH_NS) {
		f->reported_ns = now;
		f->reported_packets = f->packets;
		report_key(key, p, RVS_EV_TOUCH, f->dest, f->svc, next, now, dir);
	}
}

/* Whether a SYN on a known flow starts a new connection on its tuple (conn_reuse_mode 1:
 * the old one is closed), which IPVS then schedules afresh. */
static __always_inline int reused(struct rvs_flow *f, struct pkt *p)
{
	return p->key.proto == IPPROTO_TCP && (p->tcp_flags & TCP_SYN) &&
	       (f->state == RVS_S_TIME_WAIT || f->state == RVS_S_CLOSE);
}

/* Direct routing: the frame goes back out with the real server's Ethernet address as its
 * destination and the director's as its source; the IP packet is untouched. */
static __always_inline int forward_dr(struct ethhdr *eth, struct rvs_dest *d, struct rvs_iface *me)
{
	__builtin_memcpy(eth->h_dest, d->mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, me->mac, ETH_ALEN);
	count(RVS_C_TX);
	return XDP_TX;
}

/* The director forwards: the TTL / hop limit goes down by one (the IPv4 checksum follows, as
 * ip_decrease_ttl() updates it); a packet that arrives with 1 or 0 is not forwarded. */
static __always_inline int decrement_ttl(void *l3, void *end, __u8 family)
{
	if (family == RVS_AF_INET) {
		struct iphdr *ip = l3;
		if ((void *)(ip + 1) > end || ip->ttl <= 1)
			return -1;
		__u32 check = ip->check;
		check += bpf_htons(0x0100);
		ip->check = (__u16)(check + (check >= 0xffff));
		ip->ttl--;
		return 0;
	}
	struct ipv6hdr *ip6 = l3;
	if ((void *)(ip6 + 1) > end || ip6->hop_limit <= 1)
		return -1;
	ip6->hop_limit--;
	return 0;
}

/* INET_ECN_encapsulate(): the outer DS field is the inner one, except that a Congestion
 * Experienced mark becomes ECT(0). */
static __always_inline __u8 ecn_encap(__u8 ds)
{
	return (ds & 3) == 3 ? (ds & ~3) | 2 : ds;
}

/* A fresh IPv4 ID: a per-CPU counter, the CPU number in the top bits so CPUs never collide. */
static __always_inline __u16 fresh_id(void)
{
	__u32 zero = 0;
	__u32 *n = bpf_map_lookup_elem(&rvs_ipid, &zero);
	if (!n)
		return 0;
	*n += 1;
	return (__u16)((bpf_get_smp_processor_id() << 11) ^ *n);
}

/* The ones' complement checksum of an IPv4 header without options. */
static __always_inline __u16 ip4_csum(struct iphdr *ip)
{
	__u16 *w = (__u16 *)ip;
	__u32 sum = 0;
#pragma unroll
	for (int i = 0; i < (int)(sizeof(*ip) / 2); i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/* Whether this program can forward to real server `d` a packet of family `family` leaving
 * from interface `me`: direct routing, NAT to a real server of the packet's family, or a tunnel (IPIP, GUE, GRE) to a real server of the
 * packet's own family when the interface has an address of that family to be the outer
 * source. */
static __always_inline int forwardable(struct rvs_dest *d, __u8 family, struct rvs_iface *me)
{
	if (d->fwd == RVS_FWD_DROUTE)
		return 1;
	if (d->fwd == RVS_FWD_MASQ)
		return d->family == family;
	if (d->fwd != RVS_FWD_TUNNEL || d->family != family)
		return 0;
	if (d->tun_type != RVS_TUN_IPIP && d->tun_type != RVS_TUN_GUE && d->tun_type != RVS_TUN_GRE)
		return 0;
	if (d->tun_type == RVS_TUN_GUE && !d->tun_port)
		return 0;
	if (family == RVS_AF_INET)
		return me->addr4 != 0;
	return (me->addr6[0] | me->addr6[1] | me->addr6[2] | me->addr6[3]) != 0;
}

/* The 32-bit partial ones' complement sum of `len` bytes of the packet from offset `off`
 * (at most RVS_SUM_MAX bytes, `off` at most 256), added to `seed`. A global function: the
 * verifier checks it once, on its own, instead of once per path that reaches a call. */
#define RVS_SUM_MAX 9216
__attribute__((noinline)) int rvs_sum(struct xdp_md *ctx, __u32 off, __u32 len, __u32 seed)
{
	__u8 *start = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 sum = seed;
	__u32 done = 0;
	if (off > 256 || len > RVS_SUM_MAX)
		return sum;
	start += off;
	for (int i = 0; i < RVS_SUM_MAX / 512; i++) {
		if (len - done < 512)
			break;
		if (start + done + 512 > (__u8 *)end)
			return sum;
		sum = bpf_csum_diff(0, 0, (void *)(start + done), 512, sum);
		done += 512;
	}
#pragma unroll
	for (int size = 256; size >= 4; size >>= 1) {
		if (len - done >= (__u32)size) {
			if (start + done + size > (__u8 *)end)
				return sum;
			sum = bpf_csum_diff(0, 0, (void *)(start + done), size, sum);
			done += size;
		}
	}
	/* 0 to 3 bytes left, at an even offset: summed as the CPU reads 16-bit words */
	__u8 *t = start + (done & (RVS_SUM_MAX - 1));
	if (len - done >= 2) {
		if (t + 2 > (__u8 *)end)
			return sum;
		__u32 w = *(__u16 *)t;
		sum += w;
		sum += sum < w; /* the carry goes around: a helper's sum may use all 32 bits */
		t += 2;
		done += 2;
	}
	if (len - done == 1) {
		if (t + 1 > (__u8 *)end)
			return sum;
		__u32 b = *t; /* the byte in the word's first (low, on little-endian) half */
		sum += b;
		sum += sum < b;
	}
	return sum;
}

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* A UDP source port for the flow in the local port range (udp_flow_src_port() does the
 * same with the kernel's flow hash), so real servers spread tunnelled flows over their
 * receive queues. */
static __always_inline __u16 flow_port(struct pkt *p)
{
	__u32 h = p->key.caddr[0] ^ p->key.caddr[1] ^ p->key.caddr[2] ^ p->key.caddr[3];
	h ^= p->key.vaddr[0] ^ p->key.vaddr[1] ^ p->key.vaddr[2] ^ p->key.vaddr[3];
	h ^= ((__u32)p->key.cport << 16) | p->key.vport;
	h = hash_32(h ^ p->key.proto, 32);
	return bpf_htons((__u16)((((__u64)h * (60999 - 32768)) >> 32) + 32768));
}

/* GRE header flags: checksum present. */
#define RVS_GRE_CSUM 0x8000
/* IP_VS_TUNNEL_ENCAP_FLAG_CSUM */
#define RVS_TUN_F_CSUM 0x1

/* The encapsulation header after the outer IP header: 0 (IPIP), UDP + GUE (12), GRE (4, or 8
 * with its checksum). */
static __always_inline int encap_len(struct rvs_dest *d)
{
	if (d->tun_type == RVS_TUN_GUE)
		return sizeof(struct udphdr) + 4;
	if (d->tun_type == RVS_TUN_GRE)
		return d->tun_flags & RVS_TUN_F_CSUM ? 8 : 4;
	return 0;
}

/* Writes the GUE or GRE header at `h` (the inner packet follows, `inner_len` bytes), with its
 * checksum when the real server asks for it. */
static __always_inline int write_encap(struct xdp_md *ctx, __u8 *h, void *end,
				       struct rvs_dest *d, struct pkt *p, __u32 inner_len,
				       __u32 pseudo)
{
	__u8 inner_proto = p->key.family == RVS_AF_INET ? IPPROTO_IPIP : IPPROTO_IPV6;
	if (d->tun_type == RVS_TUN_GUE) {
		struct udphdr *u = (void *)h;
		__u8 *gue = h + sizeof(*u);
		if (gue + 4 > (__u8 *)end)
			return -1;
		u->source = flow_port(p);
		u->dest = d->tun_port;
		u->len = bpf_htons(sizeof(*u) + 4 + inner_len);
		u->check = 0;
		/* version 0, no control, no options; the inner protocol; no flags */
		gue[0] = 0;
		gue[1] = inner_proto;
		gue[2] = 0;
		gue[3] = 0;
		/* the UDP checksum only with --tun-csum (--tun-remcsum asks for it only for packets
		 * whose checksum is still to be computed, which a forwarded packet never is) */
		if (d->tun_flags & RVS_TUN_F_CSUM) {
			__u64 off = (__u64)(h - (__u8 *)(long)ctx->data) & 511;
			__u32 sum = rvs_sum(ctx, off, sizeof(*u) + 4 + inner_len, pseudo);
			__u16 c = csum_fold(sum);
			/* the packet may have moved: find the header again */
			__u8 *data = (void *)(long)ctx->data;
			if (off > 256 || data + off + sizeof(*u) > (__u8 *)(long)ctx->data_end)
				return -1;
			((struct udphdr *)(data + off))->check = c ? c : 0xffff;
		}
		return 0;
	}
	if (d->tun_type == RVS_TUN_GRE) {
		if (h + 8 > (__u8 *)end)
			return -1;
		__u16 *g = (__u16 *)h;
		int csum = d->tun_flags & RVS_TUN_F_CSUM;
		g[0] = bpf_htons(csum ? RVS_GRE_CSUM : 0);
		g[1] = bpf_htons(p->key.family == RVS_AF_INET ? ETH_P_IP : ETH_P_IPV6);
		if (csum) {
			g[2] = 0;
			g[3] = 0;
			__u64 off = (__u64)(h - (__u8 *)(long)ctx->data) & 511;
			__u16 c = csum_fold(rvs_sum(ctx, off, 8 + inner_len, 0));
			__u8 *data = (void *)(long)ctx->data;
			if (off > 256 || data + off + 8 > (__u8 *)(long)ctx->data_end)
				return -1;
			((__u16 *)(data + off))[2] = c;
		}
	}
	return 0;
}

/* IP tunnelling (ip_vs_tunnel_xmit): the IP packet (its TTL already decremented) gets an
 * outer IPv4 or IPv6 header from the director's address on this interface to the real
 * server, with the inner TTL / hop limit, the inner DS field with its ECN encapsulated, the
 * inner DF bit (pmtu_disc 1, the default), IPv4 ID 0 with DF and a fresh one without; for GUE
 * and GRE their header follows; then a new Ethernet header toward the real server's next
 * hop. */
static __always_inline int forward_tun(struct xdp_md *ctx, struct rvs_dest *d, struct pkt *p,
				       struct rvs_iface *me)
{
	int v4 = p->key.family == RVS_AF_INET;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u8 *inner = (void *)(eth + 1);
	if ((void *)(inner + 12) > end)
		return XDP_PASS;
	/* IPv4: TOS, DF and TTL; IPv6: traffic class and hop limit */
	__u8 tos = inner[1];
	__u16 df = ((struct iphdr *)inner)->frag_off & bpf_htons(0x4000);
	__u8 ttl = inner[8];
	__u8 tclass = (inner[0] << 4) | (inner[1] >> 4);
	__u8 hops = inner[7];
	int extra = encap_len(d);
	int iplen = v4 ? (int)sizeof(struct iphdr) : (int)sizeof(struct ipv6hdr);
	__u8 proto = d->tun_type == RVS_TUN_GUE	  ? IPPROTO_UDP
		     : d->tun_type == RVS_TUN_GRE ? IPPROTO_GRE
		     : v4			  ? IPPROTO_IPIP
						  : IPPROTO_IPV6;
	__u32 payload = extra + p->len;
	if (bpf_xdp_adjust_head(ctx, -(iplen + extra))) {
		count(RVS_C_NO_ROOM);
		return XDP_DROP;
	}
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) + 40 + 8 > end)
		return XDP_DROP;
	__builtin_memcpy(eth->h_dest, d->mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, me->mac, ETH_ALEN);
	__u32 pseudo;
	__u8 *h;
	if (v4) {
		struct iphdr *o = (void *)(eth + 1);
		eth->h_proto = bpf_htons(ETH_P_IP);
		o->version = 4;
		o->ihl = 5;
		o->tos = ecn_encap(tos);
		o->tot_len = bpf_htons(sizeof(*o) + payload);
		o->id = df ? 0 : bpf_htons(fresh_id());
		o->frag_off = df;
		o->ttl = ttl;
		o->protocol = proto;
		o->check = 0;
		o->saddr = me->addr4;
		o->daddr = d->addr[0];
		o->check = ip4_csum(o);
		struct {
			__u32 saddr, daddr;
			__u8 zero, proto;
			__u16 len;
		} ph = {o->saddr, o->daddr, 0, proto, bpf_htons(payload)};
		pseudo = bpf_csum_diff(0, 0, (void *)&ph, sizeof(ph), 0);
		h = (void *)(o + 1);
	} else {
		struct ipv6hdr *o = (void *)(eth + 1);
		eth->h_proto = bpf_htons(ETH_P_IPV6);
		/* version 6, the inner traffic class (ECN encapsulated), flow label 0 */
		*(__u32 *)o = bpf_htonl(0x60000000 | ((__u32)ecn_encap(tclass) << 20));
		o->payload_len = bpf_htons(payload);
		o->nexthdr = proto;
		o->hop_limit = hops;
		__builtin_memcpy(&o->saddr, me->addr6, 16);
		__builtin_memcpy(&o->daddr, d->addr, 16);
		struct {
			__u32 saddr[4], daddr[4];
			__u32 len;
			__u8 zero[3], proto;
		} ph = {};
		__builtin_memcpy(ph.saddr, me->addr6, 16);
		__builtin_memcpy(ph.daddr, d->addr, 16);
		ph.len = bpf_htonl(payload);
		ph.proto = proto;
		pseudo = bpf_csum_diff(0, 0, (void *)&ph, sizeof(ph), 0);
		h = (void *)(o + 1);
	}
	if (extra && write_encap(ctx, h, end, d, p, p->len, pseudo))
		return XDP_DROP;
	count(RVS_C_TX);
	return XDP_TX;
}

/* Sends a packet of a known flow on to its real server: interface, method, TTL, then the
 * method's rewrite. */
static __always_inline int forward(struct xdp_md *ctx, struct pkt *p, struct rvs_dest *dest,
				   struct rvs_iface *me)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	if (decrement_ttl(eth + 1, end, p->key.family)) {
		/* IPVS answers ICMP time exceeded here; this program only drops */
		count(RVS_C_TTL_EXPIRED);
		return XDP_DROP;
	}
	if (dest->fwd == RVS_FWD_TUNNEL)
		return forward_tun(ctx, dest, p, me);
	return forward_dr(eth, dest, me);
}

static __always_inline void frag_key(struct pkt *p, struct rvs_frag_key *k)
{
	__builtin_memcpy(k->saddr, p->key.caddr, 16);
	__builtin_memcpy(k->daddr, p->key.vaddr, 16);
	k->id = p->frag_id;
	k->proto = p->key.proto;
	k->family = p->key.family;
	k->pad = 0;
}

/* NAT. */

/* Ones' complement addition of a 32-bit word (the carry goes around). */
static __always_inline __u32 csum_add(__u32 sum, __u32 v)
{
	sum += v;
	return sum + (sum < v);
}

/* A checksum field after the words it covers changed by `diff` (the ones' complement sum of
 * the complemented old words and the new ones): RFC 1624's HC' = ~(~HC + ~m + m'). */
static __always_inline __u16 csum_update(__u16 check, __u32 diff)
{
	return csum_fold(csum_add(diff, (__u16)~check));
}

/* The source (`to_dst` 0) or destination address of the IP header at frame offset `off`
 * becomes `addr`; an IPv4 header's checksum follows. Adds the change to `*diff` (for the
 * checksums whose pseudo-header holds the address). */
static __always_inline int set_addr(struct xdp_md *ctx, __u32 off, __u8 family, int to_dst,
				    const __u32 *addr, __u32 *diff)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	if (off > 255)
		return -1;
	if (family == RVS_AF_INET) {
		struct iphdr *ip = data + off;
		if ((void *)(ip + 1) > end)
			return -1;
		__u32 old = to_dst ? ip->daddr : ip->saddr;
		__u32 d = csum_add(~old, addr[0]);
		if (to_dst)
			ip->daddr = addr[0];
		else
			ip->saddr = addr[0];
		ip->check = csum_update(ip->check, d);
		*diff = csum_add(*diff, d);
		return 0;
	}
	struct ipv6hdr *ip6 = data + off;
	if ((void *)(ip6 + 1) > end)
		return -1;
	__u32 *a = to_dst ? ip6->daddr.in6_u.u6_addr32 : ip6->saddr.in6_u.u6_addr32;
	__u32 d = *diff;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		d = csum_add(d, ~a[i]);
		d = csum_add(d, addr[i]);
		a[i] = addr[i];
	}
	*diff = d;
	return 0;
}

/* The pseudo-header sum of the IP header at L3_OFF for an upper-layer packet of `len` bytes
 * and protocol `proto` (RFC 768, RFC 8200 8.1). */
static __always_inline int pseudo_sum(struct xdp_md *ctx, __u8 family, __u8 proto, __u32 len,
				      __u32 *sum)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 s = 0;
	if (family == RVS_AF_INET) {
		struct iphdr *ip = data + L3_OFF;
		if ((void *)(ip + 1) > end)
			return -1;
		s = csum_add(s, ip->saddr);
		s = csum_add(s, ip->daddr);
	} else {
		struct ipv6hdr *ip6 = data + L3_OFF;
		if ((void *)(ip6 + 1) > end)
			return -1;
#pragma unroll
		for (int i = 0; i < 4; i++) {
			s = csum_add(s, ip6->saddr.in6_u.u6_addr32[i]);
			s = csum_add(s, ip6->daddr.in6_u.u6_addr32[i]);
		}
	}
	s = csum_add(s, bpf_htonl(len));
	s = csum_add(s, bpf_htonl(proto));
	*sum = s;
	return 0;
}

/* NAT's rewrite of a TCP or UDP packet: its destination (`to_dst`, toward the real server) or
 * source (a reply) address and port become `addr` and `port` (network order); the IPv4
 * header's checksum and the TCP/UDP checksum follow the change (a later fragment has the IP
 * header only). An IPv4 UDP datagram sent without a checksum gets one computed, as IPVS's
 * UDP handlers give it. */
static __always_inline int nat_rewrite(struct xdp_md *ctx, struct pkt *p, int to_dst,
				       const __u32 *addr, __u16 port)
{
	__u32 diff = 0;
	if (set_addr(ctx, L3_OFF, p->key.family, to_dst, addr, &diff))
		return -1;
	if (p->frag == FRAG_LATER)
		return 0;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 off = p->l4_off;
	if (off > 255)
		return -1;
	if (p->key.proto == IPPROTO_TCP) {
		struct tcphdr *th = data + off;
		if ((void *)(th + 1) > end)
			return -1;
		__u16 *pp = to_dst ? &th->dest : &th->source;
		diff = csum_add(diff, (__u16)~*pp);
		diff = csum_add(diff, port);
		*pp = port;
		th->check = csum_update(th->check, diff);
		return 0;
	}
	struct udphdr *uh = data + off;
	if ((void *)(uh + 1) > end)
		return -1;
	__u16 *pp = to_dst ? &uh->dest : &uh->source;
	diff = csum_add(diff, (__u16)~*pp);
	diff = csum_add(diff, port);
	*pp = port;
	if (uh->check) {
		__u16 c = csum_update(uh->check, diff);
		uh->check = c ? c : 0xffff;
		return 0;
	}
	/* no checksum: IPv6 forbids that (the real server drops it as it came); an IPv4 first
	 * fragment does not hold the whole datagram to sum */
	if (p->key.family != RVS_AF_INET || p->frag != FRAG_NONE)
		return 0;
	__u32 ulen = bpf_ntohs(uh->len);
	__u32 sum;
	if (pseudo_sum(ctx, p->key.family, IPPROTO_UDP, ulen, &sum))
		return -1;
	__u16 c = csum_fold(rvs_sum(ctx, off, ulen, sum));
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	uh = data + off;
	if ((void *)(uh + 1) > end)
		return -1;
	uh->check = c ? c : 0xffff;
	return 0;
}

/* Hands a rewritten packet to the kernel to send out of `ifindex` (see rvs_tc_neigh): a note
 * in its metadata, then XDP_PASS. */
static __always_inline int via_kernel(struct xdp_md *ctx, __u32 ifindex)
{
	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct rvs_meta))) {
		count(RVS_C_NO_ROUTE);
		return XDP_DROP;
	}
	void *data = (void *)(long)ctx->data;
	struct rvs_meta *m = (void *)(long)ctx->data_meta;
	if ((void *)(m + 1) > data)
		return XDP_DROP;
	m->magic = RVS_META_MAGIC;
	m->ifindex = ifindex;
	count(RVS_C_VIA_KERNEL);
	return XDP_PASS;
}

/* The generation next hops are kept under now (0: none are). */
static __always_inline __u32 nh_gen(void)
{
	__u32 zero = 0;
	__u32 *g = bpf_map_lookup_elem(&rvs_nh_gen, &zero);
	return g ? *g : 0;
}

/* Puts the Ethernet addresses on and sends the packet out of `oif`: XDP_TX back out of the
 * interface it came in by, XDP_REDIRECT out of another the program runs on (in
 * `rvs_tx_ports`); out of any other, through the kernel (via_kernel). */
static __always_inline int nat_send(struct xdp_md *ctx, __u32 oif, const __u8 *dmac,
				    const __u8 *smac)
{
	int verdict = XDP_TX;
	/* the redirect looks the port up itself (XDP_ABORTED, flags 0, when it is not there) and
	 * only takes note of it: the frame is finished below */
	if (oif != ctx->ingress_ifindex) {
		if (bpf_redirect_map(&rvs_tx_ports, oif, 0) != XDP_REDIRECT)
			return via_kernel(ctx, oif);
		verdict = XDP_REDIRECT;
	}
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_DROP;
	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	count(verdict == XDP_TX ? RVS_C_TX : RVS_C_REDIRECT);
	return verdict;
}

/* Asks the kernel's FIB (bpf_fib_lookup) how to send the packet on, as the kernel would route
 * it on arriving here; `tot_len` is the length the way out's MTU is checked against. */
static __always_inline long fib_ask(struct xdp_md *ctx, struct pkt *p, __u8 l4, __u32 tot_len,
				    struct bpf_fib_lookup *fib)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->ifindex = ctx->ingress_ifindex;
	fib->l4_protocol = l4;
	fib->tot_len = tot_len;
	if (p->key.family == RVS_AF_INET) {
		struct iphdr *ip = data + L3_OFF;
		if ((void *)(ip + 1) > end)
			return -1;
		fib->family = RVS_AF_INET;
		fib->tos = ip->tos;
		fib->ipv4_src = ip->saddr;
		fib->ipv4_dst = ip->daddr;
	} else {
		struct ipv6hdr *ip6 = data + L3_OFF;
		if ((void *)(ip6 + 1) > end)
			return -1;
		fib->family = RVS_AF_INET6;
		fib->flowinfo = *(__u32 *)ip6 & bpf_htonl(0x0fffffff);
		__builtin_memcpy(fib->ipv6_src, &ip6->saddr, 16);
		__builtin_memcpy(fib->ipv6_dst, &ip6->daddr, 16);
	}
	return bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
}

/* Sends a NAT-rewritten packet (protocol `l4` over IP) on: the kernel's FIB says which
 * interface and next hop (bpf_fib_lookup, as the kernel would route it on arriving here:
 * forwarding must be on); out of the interface it came in by with XDP_TX, out of another the
 * program runs on with XDP_REDIRECT; to a next hop not resolved yet, or out of an interface
 * the program does not run on, through the kernel (via_kernel). No route, and a packet longer
 * than the way out's MTU, are dropped and counted.
 *
 * `nh` (may be NULL) keeps the answer for the next packet the same way: while it is of the
 * current generation, for the interface this packet came in by and for `tag` (its
 * destination's, or 0 where the entry belongs to one destination anyway), the packet goes out
 * as it says without asking the FIB again. Only answers the program sends itself are kept (the
 * ones through the kernel stay the kernel's to decide), with the way out's MTU learned from
 * a second question (the FIB names it only to a packet too long for it). */
static __always_inline int nat_xmit(struct xdp_md *ctx, struct pkt *p, __u8 l4,
				    struct rvs_nexthop *nh, __u32 tag)
{
	__u32 gen = nh_gen();
	if (nh && gen && nh->gen == gen && nh->iif == ctx->ingress_ifindex && nh->tag == tag) {
		if (p->len > nh->mtu) {
			count(RVS_C_TOO_BIG);
			return XDP_DROP;
		}
		count(RVS_C_NH_KEPT);
		return nat_send(ctx, nh->oif, nh->dmac, nh->smac);
	}
	struct bpf_fib_lookup fib;
	long rc = fib_ask(ctx, p, l4, p->len, &fib);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return via_kernel(ctx, fib.ifindex);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) {
		count(RVS_C_TOO_BIG);
		return XDP_DROP;
	}
	if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
		count(RVS_C_NO_ROUTE);
		return XDP_DROP;
	}
	__u32 oif = fib.ifindex;
	int verdict = nat_send(ctx, oif, fib.dmac, fib.smac);
	if (nh && gen && (verdict == XDP_TX || verdict == XDP_REDIRECT) &&
	    oif < RVS_MAX_IFINDEX && ctx->ingress_ifindex < RVS_MAX_IFINDEX) {
		nh->gen = 0;
		nh->iif = ctx->ingress_ifindex;
		nh->oif = oif;
		nh->tag = tag;
		__builtin_memcpy(nh->dmac, fib.dmac, ETH_ALEN);
		__builtin_memcpy(nh->smac, fib.smac, ETH_ALEN);
		/* the MTU: asked with the longest IP packet, the FIB answers FRAG_NEEDED with it
		 * (before it looks at neighbours), or SUCCESS when the way out takes even that */
		long m = fib_ask(ctx, p, l4, 0xffff, &fib);
		__u32 mtu = m == BPF_FIB_LKUP_RET_FRAG_NEEDED ? fib.mtu_result
			    : m == BPF_FIB_LKUP_RET_SUCCESS    ? 0xffff
							       : 0;
		if (mtu >= p->len) {
			nh->mtu = mtu > 0xffff ? 0xffff : mtu;
			/* the generation last, fully ordered (an atomic exchange): an entry half
			 * written is of no generation */
			__sync_lock_test_and_set(&nh->gen, gen);
		}
	}
	return verdict;
}

/* A destination address folded to 32 bits (the whole of an IPv4 one), the `tag` of the next
 * hop kept toward it. */
static __always_inline __u32 addr_tag(const __u32 *a)
{
	return a[0] ^ a[1] ^ a[2] ^ a[3];
}

/* The other side of a NAT flow: for a client's packet the real server (its address and port),
 * for a reply the virtual service. Passed to the NAT functions below, which are global
 * functions (the verifier checks each once, and their stack frames are their own). */
struct nat_to {
	__u32 addr[4];
	__u32 dest;        /* index into `rvs_dests` */
	__u32 svc;         /* service id */
	__u16 port;        /* network order */
	__u16 pad;
};

/* The real server side of a client's packet to NAT real server `d` (a port-0 real server
 * keeps the packet's port, as ip_vs_schedule() gives the entry). */
static __always_inline void nat_to_dest(struct nat_to *to, struct pkt *p, struct rvs_dest *d,
					__u32 dest_id, __u32 svc_id)
{
	__builtin_memcpy(to->addr, d->addr, 16);
	to->dest = dest_id;
	to->svc = svc_id;
	to->port = d->port ? d->port : p->key.vport;
	to->pad = 0;
}

/* A client's packet to a NAT real server (ip_vs_nat_xmit): TTL down by one, destination made
 * the real server's address and port, sent on. */
__attribute__((noinline)) int rvs_nat_forward(struct xdp_md *ctx, struct pkt *p, struct nat_to *to)
{
	if (!p || !to)
		return XDP_DROP;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	if (decrement_ttl(data + L3_OFF, end, p->key.family)) {
		count(RVS_C_TTL_EXPIRED);
		return XDP_DROP;
	}
	if (nat_rewrite(ctx, p, 1, to->addr, to->port)) {
		count(RVS_C_MALFORMED);
		return XDP_DROP;
	}
	__u32 dest = to->dest;
	/* per real server and CPU: the control plane clears the slot with its real server */
	return nat_xmit(ctx, p, p->key.proto, bpf_map_lookup_elem(&rvs_nh_dest, &dest), 0);
}

/* The key of a NAT flow's reply entry: the real server's address and port (`to`) as source,
 * the client's as destination (how its replies parse). */
static __always_inline void reply_key(struct pkt *p, struct nat_to *to, struct rvs_flow_key *k)
{
	__builtin_memcpy(k->caddr, to->addr, 16);
	__builtin_memcpy(k->vaddr, p->key.caddr, 16);
	k->cport = to->port;
	k->vport = p->key.cport;
	k->proto = p->key.proto;
	k->family = p->key.family;
	k->pad = 0;
}

/* Makes the reply entry of a new NAT flow (before its first entry: a reply never finds a flow
 * without its way back). Returns non-zero when the flow map has no room. */
__attribute__((noinline)) int rvs_nat_pair(struct pkt *p, struct nat_to *to)
{
	if (!p || !to)
		return -1;
	struct rvs_flow_key rk;
	reply_key(p, to, &rk);
	struct rvs_flow rv = {.dest = to->dest, .svc = to->svc, .flags = RVS_FLOW_REPLY,
			      .vport = p->key.vport};
	__builtin_memcpy(rv.vaddr, p->key.vaddr, 16);
	return bpf_map_update_elem(&rvs_flows, &rk, &rv, BPF_ANY) ? -1 : 0;
}

/* Deletes the reply entry of the packet's NAT flow with the real server side `to`. */
__attribute__((noinline)) int rvs_nat_unpair(struct pkt *p, struct nat_to *to)
{
	if (!p || !to)
		return 0;
	struct rvs_flow_key rk;
	reply_key(p, to, &rk);
	bpf_map_delete_elem(&rvs_flows, &rk);
	return 0;
}

/* The first entry (key `k`) of the NAT flow that a packet from the real server's side belongs
 * to, found from its reply entry (`to`: the virtual address and port, the real server's
 * dest); NULL when that flow is gone or bound to another real server since (the reply entry
 * outlived it): the packet is then none of the flow's, as the kernel finds no connection. */
static __always_inline struct rvs_flow *reply_flow(struct pkt *p, struct nat_to *to,
						   struct rvs_flow_key *k)
{
	__builtin_memcpy(k->caddr, p->key.vaddr, 16);
	__builtin_memcpy(k->vaddr, to->addr, 16);
	k->cport = p->key.vport;
	k->vport = to->port;
	k->proto = p->key.proto;
	k->family = p->key.family;
	k->pad = 0;
	struct rvs_flow *f = bpf_map_lookup_elem(&rvs_flows, k);
	if (!f || f->dest != to->dest || (f->flags & RVS_FLOW_REPLY))
		return NULL;
	return f;
}

/* A reply of a NAT real server (`r`: its reply entry) on its way to the client (the kernel's
 * ip_vs_out with handle_response): its flow's state moves by the OUTPUT rows, it is counted
 * as OutPkts / OutBytes, and it leaves from the virtual address and port. A reply whose flow
 * is gone (or went to another real server since) is the kernel's, untouched. */
__attribute__((noinline)) int rvs_nat_reply(struct xdp_md *ctx, struct pkt *p, struct nat_to *to,
					    struct rvs_nexthop *nh)
{
	if (!p || !to)
		return XDP_DROP;
	struct rvs_flow_key k = {};
	struct rvs_flow *f = reply_flow(p, to, &k);
	if (!f) {
		count(RVS_C_STALE_REPLY);
		return XDP_PASS;
	}
	if (!iface_of(ctx)) {
		count(RVS_C_NO_IFACE);
		return XDP_PASS;
	}
	__u32 dest = to->dest;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	/* the kernel's forwarding drops an expiring packet before IPVS sees a reply */
	if (decrement_ttl(data + L3_OFF, end, p->key.family)) {
		count(RVS_C_TTL_EXPIRED);
		return XDP_DROP;
	}
	if (p->frag == FRAG_FIRST) {
		struct rvs_frag_key fk;
		frag_key(p, &fk);
		struct rvs_frag v = {.dest = dest, .flags = RVS_FLOW_REPLY};
		__builtin_memcpy(v.vaddr, to->addr, 16);
		bpf_map_update_elem(&rvs_frags, &fk, &v, BPF_ANY);
	}
	flow_packet(f, &k, p, ROWS_OUTPUT, RVS_DIR_OUTPUT, bpf_ktime_get_coarse_ns());
	dest_stats_out(dest, p->len);
	count(RVS_C_NAT_REPLY);
	if (nat_rewrite(ctx, p, 0, to->addr, to->port)) {
		count(RVS_C_MALFORMED);
		return XDP_DROP;
	}
	return nat_xmit(ctx, p, p->key.proto, nh, addr_tag(p->key.vaddr));
}

/* Whether the ICMP message at p->l4_off (`len` bytes; IPv6: with its pseudo-header) sums to
 * a correct checksum (`check` 0), or its checksum computed afresh (`check` 1, the field
 * zeroed first). Returns -1 on a wrong sum or a packet that moved out of reach. */
static __always_inline int icmp_csum(struct xdp_md *ctx, struct pkt *p, __u32 len, int check)
{
	__u32 off = p->l4_off;
	__u32 sum = 0;
	if (off > 255 || len > RVS_SUM_MAX)
		return -1;
	if (p->key.family == RVS_AF_INET6 && pseudo_sum(ctx, RVS_AF_INET6, IPPROTO_ICMPV6, len, &sum))
		return -1;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u16 *field = data + off + 2;
	if ((void *)(field + 1) > end)
		return -1;
	if (!check)
		*field = 0;
	__u16 c = csum_fold(rvs_sum(ctx, off, len, sum));
	if (check)
		return c ? -1 : 0;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	field = data + off + 2;
	if ((void *)(field + 1) > end)
		return -1;
	*field = c;
	return 0;
}

/* An ICMP error about a NAT flow, translated as ip_vs_nat_icmp() does. From the client's side
 * (`reply` 0: it quotes a reply VIP:vport -> client) the outer destination and the quoted
 * source become the real server's address, the quoted source port its port; from the real
 * server's side (`reply` 1: it quotes client -> RS:rport) the outer source and the quoted
 * destination become the virtual address, the quoted destination port the virtual port. The
 * IPv4 headers' checksums follow; the ICMP checksum is checked (a wrong one drops the packet,
 * as the kernel's does) and computed again. Counted, TTL down by one, sent on. An error from
 * the real server's side about a flow that is gone (its reply entry left over) is the
 * kernel's, untouched, as a reply of it is. */
__attribute__((noinline)) int rvs_icmp_nat(struct xdp_md *ctx, struct pkt *p, struct nat_to *to,
					   int reply)
{
	if (!p || !to)
		return XDP_DROP;
	/* from the real server's side: only while its flow lives (a stale reply entry is not a
	 * connection; the kernel passes such an error on untouched) */
	struct rvs_flow_key k = {};
	if (reply && !reply_flow(p, to, &k)) {
		count(RVS_C_STALE_REPLY);
		return XDP_PASS;
	}
	__u32 dest = to->dest;
	__u16 port = to->port;
	__u32 *addr = to->addr;
	__u32 len = p->len - (p->l4_off - L3_OFF);
	if (icmp_csum(ctx, p, len, 1)) {
		count(RVS_C_BAD_CSUM);
		return XDP_DROP;
	}
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	if (decrement_ttl(data + L3_OFF, end, p->key.family)) {
		count(RVS_C_TTL_EXPIRED);
		return XDP_DROP;
	}
	__u32 diff = 0;
	if (set_addr(ctx, L3_OFF, p->key.family, !reply, addr, &diff) ||
	    set_addr(ctx, p->inner_off, p->key.family, reply, addr, &diff))
		goto bad;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	__u32 off = p->inner_l4;
	if (off > 255)
		goto bad;
	__u16 *ports = data + off;
	if ((void *)(ports + 2) > end)
		goto bad;
	if (reply)
		ports[1] = port;
	else
		ports[0] = port;
	if (icmp_csum(ctx, p, len, 0))
		goto bad;
	if (reply)
		dest_stats_out(dest, p->len);
	else
		dest_stats(dest, p->len, 0);
	count(RVS_C_ICMP_STEERED);
	return nat_xmit(ctx, p, p->key.family == RVS_AF_INET ? IPPROTO_ICMP : IPPROTO_ICMPV6, NULL, 0);
bad:
	count(RVS_C_MALFORMED);
	return XDP_DROP;
}

/* An ICMP error about a packet a real server sent from a virtual service (direct routing and
 * tunnels answer clients directly, so errors about the answers reach the VIP, which is the
 * director): it goes to the real server that owns the flow, by the quoted header. */
static __always_inline int steer_icmp(struct xdp_md *ctx, struct pkt *p)
{
	struct rvs_flow *f = bpf_map_lookup_elem(&rvs_flows, &p->key);
	struct rvs_iface *me = iface_of(ctx);
	if (!f || !me) {
		count(RVS_C_PASS_NO_SERVICE);
		return XDP_PASS;
	}
	__u32 dest_id = f->dest;
	if (f->flags & RVS_FLOW_REPLY) {
		/* from the real server's side, about a packet the director sent it (NAT) */
		struct nat_to to = {.dest = dest_id, .svc = f->svc, .port = f->vport};
		__builtin_memcpy(to.addr, f->vaddr, 16);
		return rvs_icmp_nat(ctx, p, &to, 1);
	}
	struct rvs_dest *dest = bpf_map_lookup_elem(&rvs_dests, &dest_id);
	if (!dest || !(dest->flags & RVS_DEST_AVAILABLE) || !forwardable(dest, p->key.family, me)) {
		count(RVS_C_PASS_NO_SERVICE);
		return XDP_PASS;
	}
	if (dest->fwd == RVS_FWD_MASQ) {
		struct nat_to to;
		nat_to_dest(&to, p, dest, dest_id, f->svc);
		return rvs_icmp_nat(ctx, p, &to, 0);
	}
	count(RVS_C_ICMP_STEERED);
	return forward(ctx, p, dest, me);
}


/* A fragment after the first (no ports to find its flow by): it follows its first fragment
 * to that real server; without one seen, the kernel has it. */
static __always_inline int later_fragment(struct xdp_md *ctx, struct pkt *p)
{
	struct rvs_frag_key k;
	frag_key(p, &k);
	struct rvs_frag *to = bpf_map_lookup_elem(&rvs_frags, &k);
	struct rvs_iface *me = iface_of(ctx);
	if (!to || !me) {
		count(RVS_C_FRAGMENT);
		return XDP_PASS;
	}
	__u32 dest_id = to->dest;
	if (to->flags & RVS_FLOW_REPLY) {
		/* a NAT reply's: from the virtual address, as its first fragment */
		__u32 vaddr[4];
		__builtin_memcpy(vaddr, to->vaddr, 16);
		void *data = (void *)(long)ctx->data;
		void *end = (void *)(long)ctx->data_end;
		if (decrement_ttl(data + L3_OFF, end, p->key.family)) {
			count(RVS_C_TTL_EXPIRED);
			return XDP_DROP;
		}
		count(RVS_C_FRAG_FORWARDED);
		dest_stats_out(dest_id, p->len);
		if (nat_rewrite(ctx, p, 0, vaddr, 0)) {
			count(RVS_C_MALFORMED);
			return XDP_DROP;
		}
		return nat_xmit(ctx, p, p->key.proto, NULL, 0);
	}
	struct rvs_dest *dest = bpf_map_lookup_elem(&rvs_dests, &dest_id);
	if (!dest || !(dest->flags & RVS_DEST_AVAILABLE) || !forwardable(dest, p->key.family, me)) {
		count(RVS_C_FRAGMENT);
		return XDP_PASS;
	}
	count(RVS_C_FRAG_FORWARDED);
	dest_stats(dest_id, p->len, 0);
	if (dest->fwd == RVS_FWD_MASQ) {
		struct nat_to nt;
		nat_to_dest(&nt, p, dest, dest_id, 0);
		return rvs_nat_forward(ctx, p, &nt);
	}
	return forward(ctx, p, dest, me);
}

/* Makes the entry of a new flow (its first packet at `now`, to real server `dest` of service
 * `svc`, in TCP state `state`). A global function: the entry is built on a stack frame of its
 * own, not the main program's. Returns non-zero when the flow map has no room. */
__attribute__((noinline)) int rvs_flow_put(struct pkt *p, __u32 dest, __u32 svc, __u32 state,
					   __u64 now)
{
	if (!p)
		return -1;
	struct rvs_flow f = {.dest = dest, .svc = svc, .state = state, .last_ns = now, .packets = 1,
			     .reported_packets = 1, .reported_ns = now};
	return bpf_map_update_elem(&rvs_flows, &p->key, &f, BPF_ANY) ? -1 : 0;
}

SEC("xdp")
int rvs_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct pkt p = {};
	enum parsed r;

	count(RVS_C_PACKETS);
	if ((void *)(eth + 1) > end) {
		count(RVS_C_PASS_NOT_IP);
		return XDP_PASS;
	}
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		r = parse_v4(eth + 1, end, &p);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		r = parse_v6(eth + 1, end, &p);
	} else {
		count(RVS_C_PASS_NOT_IP);
		return XDP_PASS;
	}
	switch (r) {
	case P_OK:
		break;
	case P_PASS:
		count(RVS_C_PASS_NO_SERVICE);
		return XDP_PASS;
	case P_FRAG:
		return later_fragment(ctx, &p);
	case P_EXT:
		count(RVS_C_IP_OPTIONS);
		return XDP_PASS;
	case P_ICMP:
		return steer_icmp(ctx, &p);
	default:
		/* Too short or inconsistent to say whose it is: the kernel's checks drop it too. */
		count(RVS_C_MALFORMED);
		return XDP_PASS;
	}

	/* A known flow first: its packets need no service lookup (and a flow outlives its
	 * service's rules as an IPVS connection does; a removed real server is caught below). */
	int new_conn = 0;
	struct rvs_flow *f = bpf_map_lookup_elem(&rvs_flows, &p.key);
	if (f && (f->flags & RVS_FLOW_REPLY)) {
		struct nat_to back = {.dest = f->dest, .svc = f->svc, .port = f->vport};
		__builtin_memcpy(back.addr, f->vaddr, 16);
		return rvs_nat_reply(ctx, &p, &back, &f->nh);
	}
	__u32 dest_id, svc_id = 0, svc_flags = 0, old_dest = RVS_NO_DEST;
	if (f && reused(f, &p)) {
		count(RVS_C_REUSED);
		old_dest = f->dest;
		f = NULL;
	}
	if (f) {
		count(RVS_C_FLOW_HIT);
		dest_id = f->dest;
	} else {
		struct rvs_service *svc = find_service(&p);
		if (!svc) {
			count(RVS_C_PASS_NO_SERVICE);
			return XDP_PASS;
		}
		/* Only a SYN starts a TCP flow (IPVS without sloppy_tcp): other segments of
		 * unknown flows are the kernel's. UDP: any datagram. */
		if (p.key.proto == IPPROTO_TCP && !(p.tcp_flags & TCP_SYN)) {
			count(RVS_C_PASS_NO_SERVICE);
			return XDP_PASS;
		}
		int d = svc->flags & RVS_SVC_PERSISTENT ? sched_persist(svc, &p, bpf_ktime_get_coarse_ns())
							  : rvs_schedule(svc, &p);
		if (d < 0) {
			count(RVS_C_NO_DEST);
			return XDP_DROP;
		}
		dest_id = d;
		svc_id = svc->id;
		svc_flags = svc->flags;
		new_conn = 1;
		count(RVS_C_FLOW_NEW);
	}

	struct rvs_dest *dest = bpf_map_lookup_elem(&rvs_dests, &dest_id);
	if (!dest || !(dest->flags & RVS_DEST_AVAILABLE)) {
		/* its real server was removed: IPVS drops the flow's packets (expire_nodest_conn 0) */
		count(RVS_C_NO_DEST);
		return XDP_DROP;
	}
	struct rvs_iface *me = iface_of(ctx);
	if (!me) {
		/* an interface the control plane did not set up: the kernel's */
		count(RVS_C_NO_IFACE);
		return XDP_PASS;
	}
	if (!forwardable(dest, p.key.family, me)) {
		count(RVS_C_UNSUPPORTED_FWD);
		return XDP_PASS;
	}

	if (p.frag == FRAG_FIRST) {
		struct rvs_frag_key k;
		frag_key(&p, &k);
		struct rvs_frag v = {.dest = dest_id};
		bpf_map_update_elem(&rvs_frags, &k, &v, BPF_ANY);
	}
	int nat = dest->fwd == RVS_FWD_MASQ;
	__u32 rows = nat ? ROWS_INPUT : ROWS_INPUT_ONLY;
	struct nat_to to;
	if (nat)
		nat_to_dest(&to, &p, dest, dest_id, f ? f->svc : svc_id);
	/* the coarse clock (a tick's resolution, a few ms) costs a fraction of the precise one;
	 * the control plane keeps time in milliseconds and timeouts in seconds */
	__u64 now = bpf_ktime_get_coarse_ns();
	if (f) {
		flow_packet(f, &p.key, &p, rows, RVS_DIR_INPUT, now);
	} else {
		__u8 state = p.key.proto == IPPROTO_TCP ? next_state(RVS_S_NONE, p.tcp_flags, rows)
							: RVS_S_NONE;
		/* a tuple taken over from a NAT flow of another real server: that one's replies
		 * are nobody's now */
		if (old_dest != RVS_NO_DEST && old_dest != dest_id) {
			struct rvs_dest *od = bpf_map_lookup_elem(&rvs_dests, &old_dest);
			if (od && od->fwd == RVS_FWD_MASQ) {
				struct nat_to old;
				nat_to_dest(&old, &p, od, old_dest, 0);
				rvs_nat_unpair(&p, &old);
			}
		}
		/* a one-packet datagram leaves no flow: the next one is scheduled again (and, as
		 * in the kernel, whose entry is not in its table, its replies are not translated) */
		if (!(svc_flags & RVS_SVC_ONEPACKET) || p.key.proto != IPPROTO_UDP) {
			if (nat && rvs_nat_pair(&p, &to)) {
				count(RVS_C_FLOW_FULL);
				return XDP_DROP;
			}
			if (rvs_flow_put(&p, dest_id, svc_id, state, now)) {
				if (nat)
					rvs_nat_unpair(&p, &to);
				count(RVS_C_FLOW_FULL);
				return XDP_DROP;
			}
		}
		/* the connection exists now: once its NEW event is on its way, the next choices
		 * count it until the core's counts do (a packet handed to the kernel above, or
		 * dropped for want of room, made none; a connection whose event is lost counts
		 * once the walk of the flows takes it up in the core) */
		if (report(&p, RVS_EV_NEW, dest_id, svc_id, state, now) == 0) {
			struct rvs_dest_sched *sc = bpf_map_lookup_elem(&rvs_sched, &dest_id);
			if (sc && p.key.proto == IPPROTO_TCP)
				__sync_fetch_and_add(&sc->active, 1);
			else if (sc)
				__sync_fetch_and_add(&sc->inactive, 1);
		}
	}
	/* counted before the transmit, as ip_vs_in() counts before the packet's TTL is looked at */
	dest_stats(dest_id, p.len, new_conn);
	if (nat)
		return rvs_nat_forward(ctx, &p, &to);
	return forward(ctx, &p, dest, me);
}

/* The kernel's way out for a packet the XDP program rewrote but could not send itself (the
 * next hop's Ethernet address is not resolved yet, or the way out is an interface the program
 * does not run on): on the interface it arrived by, tc finds the program's note in the
 * packet's metadata and sends the packet out of the interface named there through the
 * kernel's neighbour code (bpf_redirect_neigh resolves the next hop, holding the packet
 * meanwhile). XDP cannot wait for a neighbour; an skb can. */
SEC("classifier")
int rvs_tc_neigh(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	struct rvs_meta *m = (void *)(long)skb->data_meta;
	if ((void *)(m + 1) > data)
		return TC_ACT_OK;
	if (m->magic != RVS_META_MAGIC)
		return TC_ACT_OK;
	return bpf_redirect_neigh(m->ifindex, NULL, 0, 0);
}

char _license[] SEC("license") = "GPL";
