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
