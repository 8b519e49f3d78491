// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The real server's side of IP tunnelling, for kernels without the ipip (or fou, gre)
 * module: a tc ingress program that takes the outer header off packets a director tunnelled
 * to this host's virtual addresses (IPIP, IPv6 in IPv6, GUE on a configured UDP port, GRE)
 * and lets the inner packet go up the stack, where the virtual address on lo accepts it.
 *
 * Only a packet whose inner destination is a configured virtual address (`rvs_decap_vips`)
 * is opened, so the host does not become an open tunnel endpoint; everything else goes on
 * untouched (TC_ACT_OK). The outer and inner families must be the same.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "rvs_abi.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RVS_MAX_SERVICES);
	__type(key, struct rvs_decap_vip);
	__type(value, __u8);
} rvs_decap_vips SEC(".maps");

/* GUE ports (network order) this host takes tunnelled packets on. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u16);
	__type(value, __u8);
} rvs_decap_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RVS_D_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} rvs_decap_counters SEC(".maps");

static __always_inline void count(__u32 c)
{
	__u64 *v = bpf_map_lookup_elem(&rvs_decap_counters, &c);
	if (v)
		*v += 1;
}

/* The length of the encapsulation after the outer IP header at `h` for IP protocol `proto`,
 * the inner packet being of family `inner` (ETH_P_IP or ETH_P_IPV6); -1: not ours. */
static __always_inline int encap_len(__u8 *h, void *end, __u8 proto, __u16 inner)
{
	if (proto == IPPROTO_IPIP)
		return inner == ETH_P_IP ? 0 : -1;
	if (proto == IPPROTO_IPV6)
		return inner == ETH_P_IPV6 ? 0 : -1;
	if (proto == IPPROTO_GRE) {
		if (h + 4 > (__u8 *)end)
			return -1;
		__u16 flags = bpf_ntohs(*(__u16 *)h);
		if (flags & 0x4fff) /* routing, strict route, recursion, flags, version: not version 0 GRE */
			return -1;
		if (bpf_ntohs(*(__u16 *)(h + 2)) != inner)
			return -1;
		return 4 + (flags & 0x8000 ? 4 : 0) + (flags & 0x2000 ? 4 : 0) + (flags & 0x1000 ? 4 : 0);
	}
	if (proto == IPPROTO_UDP) {
		struct udphdr *u = (void *)h;
		__u8 *gue = h + sizeof(*u);
		if (gue + 4 > (__u8 *)end)
			return -1;
		__u16 port = u->dest;
		if (!bpf_map_lookup_elem(&rvs_decap_ports, &port))
			return -1;
		/* GUE version 0, a data message (C clear), the inner protocol */
		if (gue[0] & 0xe0)
			return -1;
		if (gue[1] != (inner == ETH_P_IP ? IPPROTO_IPIP : IPPROTO_IPV6))
			return -1;
		return sizeof(*u) + 4 + (gue[0] & 0x1f) * 4;
	}
	return -1;
}

/* Whether the inner packet at `in` (family `inner`) goes to a configured virtual address. */
static __always_inline int to_vip(__u8 *in, void *end, __u16 inner)
{
	struct rvs_decap_vip k = {};
	if (inner == ETH_P_IP) {
		struct iphdr *ip = (void *)in;
		if ((void *)(ip + 1) > end || ip->version != 4)
			return 0;
		k.addr[0] = ip->daddr;
		k.family = RVS_AF_INET;
	} else {
		struct ipv6hdr *ip6 = (void *)in;
		if ((void *)(ip6 + 1) > end || ip6->version != 6)
			return 0;
		__builtin_memcpy(k.addr, &ip6->daddr, 16);
		k.family = RVS_AF_INET6;
	}
	return bpf_map_lookup_elem(&rvs_decap_vips, &k) != 0;
}

SEC("classifier")
int rvs_decap(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return TC_ACT_OK;
	__u8 *l3 = (void *)(eth + 1);
	__u32 hlen;
	__u8 proto;
	__u16 inner;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)l3;
		if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl < 5)
			return TC_ACT_OK;
		if (ip->frag_off & bpf_htons(0x3fff))
			return TC_ACT_OK; /* a fragment: the kernel reassembles nothing for us */
		hlen = ip->ihl * 4;
		proto = ip->protocol;
		inner = ETH_P_IP;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)l3;
		if ((void *)(ip6 + 1) > end || ip6->version != 6)
			return TC_ACT_OK;
		hlen = sizeof(*ip6);
		proto = ip6->nexthdr;
		inner = ETH_P_IPV6;
	} else {
		return TC_ACT_OK;
	}
	if (hlen > 60 || l3 + hlen > (__u8 *)end)
		return TC_ACT_OK;
	int elen = encap_len(l3 + hlen, end, proto, inner);
	if (elen < 0 || elen > 64)
		return TC_ACT_OK;
	__u32 outer = hlen + elen;
	if (outer > 128 || l3 + outer > (__u8 *)end)
		return TC_ACT_OK;
	if (!to_vip(l3 + outer, end, inner)) {
		count(RVS_D_NOT_VIP);
		return TC_ACT_OK;
	}
	if (bpf_skb_adjust_room(skb, -(int)outer, BPF_ADJ_ROOM_MAC, 0)) {
		count(RVS_D_FAILED);
		return TC_ACT_SHOT;
	}
	count(RVS_D_DECAPSULATED);
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
