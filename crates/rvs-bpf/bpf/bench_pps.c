// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The packets-per-second benchmark's own XDP programs (bench/xdp-pps.sh, driven by
 * examples/pktgen.rs); none of them is part of the data plane.
 *
 * pps_gen     the generator: run by BPF_PROG_TEST_RUN in live-frames mode on a prepared UDP
 *             frame, it writes the frame's headers, gives it the next source port of its
 *             range and transmits it (XDP_TX) out of the test run's ingress interface.
 * pps_bare    the limit of the setup: on the director, rewrite the Ethernet addresses toward
 *             one real server and transmit (XDP_TX); no parsing, no lookup.
 * pps_sink    on a real server: count an IPv4 packet and drop it, so that the receivers'
 *             stack costs nothing and the count is exact (anything else goes to the stack).
 * pps_echo    on a real server (request/response): count an IPv4 UDP datagram and send it
 *             back where it came from, Ethernet and IP addresses and UDP ports swapped
 *             (XDP_TX); the checksums stay right (their sums do not change).
 * pps_nat     the NAT limit of the setup (bench/xdp-nat.sh): on the director's two
 *             interfaces, a fixed rewrite without lookups: a UDP datagram from the front
 *             gets the real server's address and port and leaves by the back (XDP_REDIRECT),
 *             one from the back gets the virtual address and port as source and leaves by the
 *             front; checksums updated incrementally, Ethernet addresses from the loader.
 * pps_switch  the L2 segment: a switch between veth ports (a devmap) with a static address
 *             table, in a namespace of its own; broadcast and unknown destinations are
 *             flooded.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Ethernet + IPv4 (no options) + UDP headers: the generator's frame starts with these. */
#define GEN_HDR 42

/* Set by the loader (read-only after loading). */
volatile const __u16 gen_hdr[GEN_HDR / 2];   /* the frame's headers, UDP checksum 0 (none) */
volatile const __u16 gen_port_base = 10000; /* first source port, host order */
volatile const __u32 gen_port_count = 256;  /* source ports used, a power of two */
volatile const __u8 bare_src[ETH_ALEN];     /* the director's address */
volatile const __u8 bare_dst[ETH_ALEN];     /* the real server's address */
volatile const __u8 gen_csum;               /* 1: the frame has a UDP checksum (port 0's) */
/* pps_nat: ifindexes, the virtual and real server's address (network order) and port (network
 * order), and the Ethernet addresses of each way out (source: the director's interface) */
volatile const __u32 nat_front, nat_back;
volatile const __u32 nat_vip, nat_rip;
volatile const __u16 nat_vport, nat_rport;
volatile const __u8 nat_front_src[ETH_ALEN], nat_front_dst[ETH_ALEN];
volatile const __u8 nat_back_src[ETH_ALEN], nat_back_dst[ETH_ALEN];

/* pps_gen: packets sent, per CPU (the source port of the next one). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pps_seq SEC(".maps");

/* pps_sink: packets received, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pps_count SEC(".maps");

struct mac {
	__u8 a[ETH_ALEN];
	__u16 pad;
};

/* pps_switch: Ethernet address -> port (ifindex), filled by the loader: the script knows
 * every station (a learning switch would learn the client's address from frames that the
 * director's programs rewrote, see pps_gen). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct mac);
	__type(value, __u32);
} pps_fdb SEC(".maps");

/* pps_switch: the ports, keyed by ifindex. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
} pps_ports SEC(".maps");

/* ~(a + b) in ones' complement arithmetic, 16 bits. */
static __always_inline __u16 csum16(__u32 a, __u32 b)
{
	__u32 s = a + b;
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

/* A checksum `check` after a 16-bit word covered by it changed from `old` to `new`. */
static __always_inline __u16 csum_replace16(__u16 check, __u16 old, __u16 new)
{
	return csum16(csum16((__u16)~check, (__u16)~old) ^ 0xffff, new);
}

/* The same for a 32-bit word (an IPv4 address), as two 16-bit ones. */
static __always_inline __u16 csum_replace32(__u16 check, __u32 old, __u32 new)
{
	check = csum_replace16(check, (__u16)old, (__u16)new);
	return csum_replace16(check, (__u16)(old >> 16), (__u16)(new >> 16));
}

SEC("xdp")
int pps_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u16 *w = data;
	struct udphdr *udp = data + GEN_HDR - sizeof(*udp);
	__u32 zero = 0;
	__u64 *seq;

	if (data + GEN_HDR > end)
		return XDP_ABORTED;
	/* live frames are recycled pages, and a frame that reached the director comes back
	 * rewritten (the MACs by XDP, the addresses and TTL by the kernel's forwarding or NAT):
	 * every header byte is written anew, through the volatile global */
	for (int i = 0; i < GEN_HDR / 2; i++)
		w[i] = gen_hdr[i];
	seq = bpf_map_lookup_elem(&pps_seq, &zero);
	if (!seq)
		return XDP_ABORTED;
	udp->source = bpf_htons(gen_port_base + (__u16)(*seq & (gen_port_count - 1)));
	if (gen_csum) {
		/* the header's checksum is source port 0's: add the port (RFC 1624) */
		__u16 c = csum16((__u16)~udp->check, udp->source);
		udp->check = c ? c : 0xffff;
	}
	*seq += 1;
	return XDP_TX;
}

SEC("xdp")
int pps_bare(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return XDP_DROP;
	/* byte by byte through the volatile globals: a memcpy would let the compiler fold in
	 * their compile-time value */
	for (int i = 0; i < ETH_ALEN; i++) {
		eth->h_dest[i] = bare_dst[i];
		eth->h_source[i] = bare_src[i];
	}
	return XDP_TX;
}

SEC("xdp")
int pps_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 zero = 0;
	__u64 *n;

	/* ARP goes on to the stack: a real server still answers for its address */
	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	n = bpf_map_lookup_elem(&pps_count, &zero);
	if (n)
		*n += 1;
	return XDP_DROP;
}

SEC("xdp")
int pps_echo(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u8 mac[ETH_ALEN];
	__u32 zero = 0, a;
	__u16 port;
	__u64 *n;

	if ((void *)(udp + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 ||
	    ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	a = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = a;
	port = udp->source;
	udp->source = udp->dest;
	udp->dest = port;
	n = bpf_map_lookup_elem(&pps_count, &zero);
	if (n)
		*n += 1;
	return XDP_TX;
}

SEC("xdp")
int pps_nat(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	int in = ctx->ingress_ifindex == nat_front;
	__u32 addr = in ? nat_rip : nat_vip, old;
	__u16 port = in ? nat_rport : nat_vport, oldp;

	if ((void *)(udp + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 ||
	    ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	old = in ? ip->daddr : ip->saddr;
	oldp = in ? udp->dest : udp->source;
	if (in) {
		ip->daddr = addr;
		udp->dest = port;
	} else {
		ip->saddr = addr;
		udp->source = port;
	}
	ip->check = csum_replace32(ip->check, old, addr);
	if (udp->check) {
		__u16 c = csum_replace32(udp->check, old, addr);
		c = csum_replace16(c, oldp, port);
		udp->check = c ? c : 0xffff;
	}
	for (int i = 0; i < ETH_ALEN; i++) {
		eth->h_dest[i] = in ? nat_back_dst[i] : nat_front_dst[i];
		eth->h_source[i] = in ? nat_back_src[i] : nat_front_src[i];
	}
	return bpf_redirect_map(&pps_ports, in ? nat_back : nat_front, 0);
}

SEC("xdp")
int pps_switch(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct mac dst = {};
	__u32 *port;

	if ((void *)(eth + 1) > end)
		return XDP_DROP;
	__builtin_memcpy(dst.a, eth->h_dest, ETH_ALEN);
	port = bpf_map_lookup_elem(&pps_fdb, &dst);
	if (port) {
		if (*port == ctx->ingress_ifindex)
			return XDP_DROP;
		return bpf_redirect_map(&pps_ports, *port, 0);
	}
	return bpf_redirect_map(&pps_ports, 0, BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS);
}

char _license[] SEC("license") = "GPL";
