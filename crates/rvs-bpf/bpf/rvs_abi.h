/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The one description of everything the XDP programs and the Rust control plane share:
 * map layouts, value structs, constants. The Rust side (src/abi.rs) mirrors each struct with
 * #[repr(C)] and asserts its size and field offsets at compile time, so a change here that is
 * not made there fails the build instead of corrupting a map.
 *
 * Byte order: addresses and ports are kept in network order, exactly as they sit in packets,
 * so the programs compare and copy them without conversion. Everything else is host order.
 */
#ifndef RVS_ABI_H
#define RVS_ABI_H

#ifdef __BPF__
#include <linux/types.h>
#else
#include <stdint.h>
typedef uint8_t __u8;
typedef uint16_t __u16;
typedef uint32_t __u32;
typedef uint64_t __u64;
#endif

/* Map sizes. */
#define RVS_MAX_SERVICES 4096
#define RVS_MAX_DESTS 16384
/* Entries of all schedule sequences together (see struct rvs_service). */
#define RVS_SEQ_SLOTS 262144
#define RVS_MAX_FLOWS 1048576
/* Interface indexes the program can serve (`rvs_ifaces` is an array indexed by them). */
#define RVS_MAX_IFINDEX 65536
#define RVS_MAX_TEMPLATES 262144
#define RVS_MAX_FRAGS 65536
/* Bytes of the event ring (a power of two pages): about 130,000 events of 64 bytes. */
#define RVS_EVENT_RING (8 << 20)
/* A flow that keeps sending reports itself (RVS_EV_TOUCH) at most this often. */
#define RVS_TOUCH_NS 1000000000ULL

/* Address families, as the kernel numbers them. */
#define RVS_AF_INET 2
#define RVS_AF_INET6 10

/* Forwarding methods of a real server (IP_VS_CONN_F_* values of the kernel). */
#define RVS_FWD_MASQ 0
#define RVS_FWD_LOCALNODE 1
#define RVS_FWD_TUNNEL 2
#define RVS_FWD_DROUTE 3

/* rvs_service.flags: the kernel's IP_VS_SVC_F_* values */
#define RVS_SVC_PERSISTENT 0x1
#define RVS_SVC_ONEPACKET 0x4
#define RVS_SVC_SCHED1 0x8   /* sh-fallback, mh-fallback */
#define RVS_SVC_SCHED2 0x10  /* sh-port, mh-port */

/* rvs_service.sched: how a new flow's real server is chosen */
#define RVS_SCHED_SEQ 0      /* the next entry of the service's sequence (rr, wrr) */
#define RVS_SCHED_SH 1       /* bucket of the source address (and port): ip_vs_sh */
#define RVS_SCHED_DH 2       /* bucket of the destination address: ip_vs_dh */
#define RVS_SCHED_MH 3       /* Maglev slot of the source address (and port): ip_vs_mh */
/* The connection-count schedulers scan the service's real servers (the sequence holds the
 * list in the kernel's order) with their counts from `rvs_conns`. */
#define RVS_SCHED_LC 4       /* least overhead (active × 256 + inactive): ip_vs_lc */
#define RVS_SCHED_WLC 5      /* least overhead / weight: ip_vs_wlc */
#define RVS_SCHED_SED 6      /* least (active + 1) / weight: ip_vs_sed */
#define RVS_SCHED_NQ 7       /* an idle server, else as sed: ip_vs_nq */
#define RVS_SCHED_FO 8       /* the highest weight: ip_vs_fo */
#define RVS_SCHED_OVF 9      /* the highest weight with active < weight: ip_vs_ovf */
/* The locality schedulers keep a table keyed by the packet's destination address (for a
 * service the XDP program serves, its virtual address) in `rvs_lblc` / `rvs_lblcr`, and take
 * the wlc choice of the list when it has no usable entry. */
#define RVS_SCHED_LBLC 10    /* the cached real server, else wlc: ip_vs_lblc */
#define RVS_SCHED_LBLCR 11   /* the least loaded of the cached set, else wlc added: ip_vs_lblcr */
/* Weighted random two choices, the one with the lower overhead / weight: ip_vs_twos. */
#define RVS_SCHED_TWOS 12

/* The longest list a connection-count scheduler scans. */
#define RVS_MAX_LIST 4096

/* Entries of `rvs_lblc` and of `rvs_lblcr` (all services together). */
#define RVS_MAX_LOCALITY 65536
/* Members an lblcr set holds at most (the kernel's sets are unbounded; a full set makes room
 * for a new member by dropping its oldest). */
#define RVS_LBLCR_SET 16

/* Slots of an mh table (the prime of CONFIG_IP_VS_MH_TAB_INDEX 12). */
#define RVS_MH_TAB_SIZE 4093

/* Buckets of an sh or dh table (CONFIG_IP_VS_SH_TAB_BITS, CONFIG_IP_VS_DH_TAB_BITS: 8). */
#define RVS_HASH_TAB_BITS 8
#define RVS_HASH_TAB_SIZE (1 << RVS_HASH_TAB_BITS)

/* An empty bucket or sequence entry. */
#define RVS_NO_DEST 0xffffffff

/* Tunnel types of a real server (IP_VS_CONN_F_TUNNEL_TYPE_*). */
#define RVS_TUN_IPIP 0
#define RVS_TUN_GUE 1
#define RVS_TUN_GRE 2

/* rvs_dest.flags */
#define RVS_DEST_AVAILABLE 0x1  /* in its service (not deleted) */
#define RVS_DEST_OVERLOAD 0x2   /* over its upper connection threshold */

/* Flow states kept by the programs (the kernel's input-only TCP table, IP_VS_TCP_S_*). */
#define RVS_S_NONE 0
#define RVS_S_ESTABLISHED 1
#define RVS_S_SYN_SENT 2
#define RVS_S_SYN_RECV 3
#define RVS_S_FIN_WAIT 4
#define RVS_S_TIME_WAIT 5
#define RVS_S_CLOSE 6
#define RVS_S_CLOSE_WAIT 7
#define RVS_S_LAST_ACK 8
#define RVS_S_LISTEN 9
#define RVS_S_SYNACK 10

/* Global counters (index into the per-CPU array `rvs_counters`). */
enum rvs_counter {
	RVS_C_PACKETS = 0,      /* every packet the program saw */
	RVS_C_PASS_NOT_IP,      /* not IPv4/IPv6: to the kernel */
	RVS_C_PASS_NO_SERVICE,  /* no virtual service for its destination: to the kernel */
	RVS_C_MALFORMED,        /* truncated or inconsistent headers: dropped */
	RVS_C_FRAGMENT,         /* a later fragment whose first one was not seen: to the kernel */
	RVS_C_IP_OPTIONS,       /* IPv4 options or IPv6 extension headers before L4 */
	RVS_C_NO_DEST,          /* service without an available real server: dropped */
	RVS_C_FLOW_NEW,         /* first packet of a flow: scheduled */
	RVS_C_FLOW_HIT,         /* packet of a known flow */
	RVS_C_FLOW_FULL,        /* the flow map is full: a new flow's first packet dropped */
	RVS_C_TX,               /* forwarded (XDP_TX) */
	RVS_C_UNSUPPORTED_FWD,  /* real server's method not handled by this program: to the kernel */
	RVS_C_NO_ROOM,          /* no headroom for a tunnel header: dropped */
	RVS_C_TTL_EXPIRED,      /* TTL / hop limit 1 or 0 on a packet to forward: dropped */
	RVS_C_NO_IFACE,         /* arrived on an interface the control plane did not set up: to the kernel */
	RVS_C_ICMP_STEERED,     /* an ICMP error about a flow: sent to the flow's real server */
	RVS_C_PERSIST_HIT,      /* a new flow went where its persistence template said */
	RVS_C_EVENT_LOST,       /* the event ring was full: the control plane missed an event */
	RVS_C_REUSED,           /* a SYN on a closed flow's tuple: scheduled as a new flow */
	RVS_C_FRAG_FORWARDED,   /* a later fragment sent where its first fragment went */
	RVS_C_NAT_REPLY,        /* a real server's reply of a NAT flow: its source made the VIP's again */
	RVS_C_REDIRECT,         /* forwarded out of another interface (XDP_REDIRECT) */
	RVS_C_VIA_KERNEL,       /* next hop not resolved yet: handed to tc, which sends it through the
				 * kernel's neighbour code (bpf_redirect_neigh) */
	RVS_C_NO_ROUTE,         /* NAT: no route to the packet's new destination (or forwarding off on
				 * the interface it came in by): dropped */
	RVS_C_TOO_BIG,          /* NAT: longer than the way out's MTU: dropped */
	RVS_C_BAD_CSUM,         /* an ICMP error about a NAT flow with a wrong checksum: dropped */
	RVS_C_STALE_REPLY,      /* a reply whose flow is gone or bound elsewhere: to the kernel untouched */
	RVS_C_NH_KEPT,          /* NAT: sent by a kept next hop, without asking the FIB (rvs_nexthop) */
	RVS_C_COUNT
};

/* Key of `rvs_services`: the virtual address, port and protocol. IPv4 uses addr[0]. */
struct rvs_vip {
	__u32 addr[4];
	__u16 port;   /* network order; 0: a port-0 (all ports) service */
	__u8 proto;   /* IPPROTO_TCP, IPPROTO_UDP */
	__u8 family;  /* RVS_AF_INET, RVS_AF_INET6 */
};

/* Value of `rvs_services`. */
struct rvs_service {
	__u32 id;          /* index of its slot in the per-service arrays */
	__u32 flags;       /* RVS_SVC_* */
	__u32 sched;       /* RVS_SCHED_* */
	/* The schedule, `seq_len` entries of `rvs_seq` from `seq_off`: for RVS_SCHED_SEQ the
	 * real servers chosen for new flows in the kernel's order, taken in turn; for
	 * RVS_SCHED_SH and RVS_SCHED_DH the RVS_HASH_TAB_SIZE buckets of the kernel's table. */
	__u32 seq_off;
	__u32 seq_len;
	__u32 persist_timeout; /* seconds, with RVS_SVC_PERSISTENT */
	__u32 netmask;         /* persistence granularity: IPv4 mask (network order) or IPv6 prefix length */
	__u32 expire_ms;       /* RVS_SCHED_LBLCR: lblcr_expiration, after which a set that was not
				* changed loses its most loaded member */
};

/* Value of `rvs_dests` (an array indexed by real server number). */
struct rvs_dest {
	__u32 addr[4];     /* the real server; IPv4 uses addr[0] */
	__u16 port;        /* network order */
	__u8 family;
	__u8 fwd;          /* RVS_FWD_* */
	__u8 mac[6];       /* next hop's Ethernet address (direct routing: the real server's) */
	__u16 pad;
	__u32 flags;       /* RVS_DEST_* */
	__u32 svc;         /* its service's id */
	__s32 weight;      /* its IPVS weight: 0 takes no new flows */
	__u8 tun_type;     /* RVS_TUN_*, with RVS_FWD_TUNNEL */
	__u8 tun_flags;    /* the kernel's IP_VS_TUNNEL_ENCAP_FLAG_* */
	__u16 tun_port;    /* GUE/GRE-over-UDP port, network order */
};

/* A next hop the program looked up in the kernel's FIB (bpf_fib_lookup), kept so that the
 * next packet the same way skips the lookup: for a packet that arrived on interface `iif`,
 * send it out of `oif` from Ethernet address `smac` to `dmac`; a packet longer than `mtu` is
 * too big. Good while `gen` equals the generation in `rvs_nh_gen`, which the control plane
 * moves on whenever the kernel's links, neighbours, addresses, routes, rules or forwarding
 * settings change (and keeps at 0, which no entry matches, where the FIB's answer could
 * depend on more than the destination: policy routing rules, routes by source or TOS,
 * multipath routes). `tag`: the destination address folded to 32 bits, checked on use (a
 * flow entry freed and reused under a packet that was writing it cannot lend its next hop to
 * another client). */
struct rvs_nexthop {
	__u32 gen;
	__u16 iif;
	__u16 oif;
	__u8 dmac[6];
	__u8 smac[6];
	__u16 mtu;
	__u16 pad;
	__u32 tag;
};

/* Key of `rvs_flows`: a client's flow to a virtual service. */
struct rvs_flow_key {
	__u32 caddr[4];
	__u32 vaddr[4];
	__u16 cport;       /* network order */
	__u16 vport;       /* network order */
	__u8 proto;
	__u8 family;
	__u16 pad;
};

/* Value of `rvs_flows`. A NAT flow has two entries: the client's (its key: client and virtual
 * service) and its real server's replies' (key: the real server's address and port as source,
 * the client's as destination; flag RVS_FLOW_REPLY), which names the virtual address and port
 * the replies go out from and so leads to the first entry. Only the first holds state and
 * counts. */
struct rvs_flow {
	__u32 dest;        /* index into `rvs_dests` */
	__u32 svc;         /* service id */
	__u8 state;        /* RVS_S_* */
	__u8 flags;        /* RVS_FLOW_* */
	__u16 vport;       /* RVS_FLOW_REPLY: the virtual port (network order) */
	__u32 vaddr[4];    /* RVS_FLOW_REPLY: the virtual address */
	struct rvs_nexthop nh; /* RVS_FLOW_REPLY: the way to the client, as last looked up */
	__u64 last_ns;     /* bpf_ktime_get_coarse_ns() of the last packet */
	__u64 packets;     /* packets of the flow */
	__u64 reported_packets; /* `packets` when the flow last sent an event */
	__u64 reported_ns; /* when the flow last sent an event */
};

/* What the program tells the control plane through the ring `rvs_events`, so that rvs-core's
 * connection table (listings, ActiveConn/InActConn, expiry, the schedulers' counts) follows
 * the flows the program handles on its own. */
#define RVS_EV_NEW 1    /* a packet was scheduled (a new flow, or a one-packet datagram) */
#define RVS_EV_STATE 2  /* a packet moved its flow to another TCP state */
#define RVS_EV_TOUCH 3  /* a packet of a flow that reported nothing for RVS_TOUCH_NS */

#define RVS_FLOW_REPLY 0x1  /* rvs_flow.flags: the reply entry of a NAT flow */

/* rvs_event.dir: which way the packet went (the kernel's IP_VS_DIR_*) */
#define RVS_DIR_INPUT 0   /* client to real server */
#define RVS_DIR_OUTPUT 1  /* a NAT real server's reply to the client */

struct rvs_event {
	struct rvs_flow_key key;
	__u32 dest;        /* index into `rvs_dests` */
	__u32 svc;         /* service id */
	__u64 ns;          /* bpf_ktime_get_coarse_ns() of the packet */
	__u32 len;         /* its IP length */
	__u8 kind;         /* RVS_EV_* */
	__u8 tcp_flags;    /* its TCP flags (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10) */
	__u8 state;        /* the flow's state after it */
	__u8 dir;          /* RVS_DIR_* */
};

/* Key of `rvs_templates`, a persistence template: the client's address under the service's
 * netmask, the virtual address, and the virtual port (0 for a port-0 service: one template
 * for all its ports). */
struct rvs_tmpl_key {
	__u32 caddr[4];
	__u32 vaddr[4];
	__u16 vport;       /* network order */
	__u8 proto;
	__u8 family;
};

/* Value of `rvs_frags`: where a fragmented packet's first fragment went. */
struct rvs_frag {
	__u32 dest;        /* index into `rvs_dests` */
	__u32 flags;       /* RVS_FLOW_REPLY: a NAT reply, whose source becomes `vaddr` */
	__u32 vaddr[4];
};

/* Key of `rvs_frags`: a fragmented packet (its addresses, identification and protocol). */
struct rvs_frag_key {
	__u32 saddr[4];
	__u32 daddr[4];
	__u32 id;          /* IPv4: the 16-bit ID in the first two bytes; IPv6: the 32-bit one */
	__u8 proto;
	__u8 family;
	__u16 pad;
};

/* Value of `rvs_templates`. A template lives until the control plane deletes it, when
 * rvs-core's template expires (persist_timeout after its last use, longer while it still
 * controls connections), so both follow the kernel's rules. */
struct rvs_tmpl {
	__u32 dest;        /* index into `rvs_dests` */
	__u32 pad;
	__u64 last_ns;     /* when a connection last used it */
};

/* Key of `rvs_lblc` and `rvs_lblcr`: a service and a packet destination address. */
struct rvs_loc_key {
	__u32 addr[4];     /* network order; IPv4 uses addr[0] */
	__u32 svc;         /* service id */
	__u8 family;
	__u8 pad[3];
};

/* Value of `rvs_lblc`: the real server last chosen for the address. The control plane
 * deletes entries as the kernel's garbage collection does (idle for lblc_expiration, or for
 * six minutes while a service holds more than 16384 entries). */
struct rvs_lblc {
	__u32 dest;        /* index into `rvs_dests` */
	__u32 pad;
	__u64 last_ns;     /* bpf_ktime_get_ns() of its last use */
};

/* Value of `rvs_lblcr`: the set of real servers of the address, oldest member first (the
 * kernel's list is newest first: its scans go from dests[n - 1] down to dests[0]). */
struct rvs_lblcr {
	__u64 last_ns;     /* last use */
	__u64 lastmod_ns;  /* last change of the set */
	__u32 n;           /* members */
	__u32 pad;
	__u32 dests[RVS_LBLCR_SET];
};

/* Value of `rvs_ifaces`, keyed by ifindex: the director's own Ethernet address there, and
 * the addresses tunnels leave from (their outer source; 0 / :: when it has none). */
struct rvs_iface {
	__u8 mac[6];
	__u16 flags;       /* RVS_IFACE_ON: set up by the control plane */
	__u32 addr4;
	__u32 addr6[4];
};

#define RVS_IFACE_ON 0x1

/* Value of `rvs_conns` (an array indexed like `rvs_dests`, written by the control plane): a
 * real server's connection counts as rvs-core last had them, and how many of the connections
 * the program scheduled there (`rvs_sched`) those counts include. The connection-count
 * schedulers count active + (rvs_sched.active - seen_active), and the same for inactive: the
 * core's counts plus the connections the core has not heard of yet. TCP connections count as
 * active (a new entry is SYN_RECV, an active state), UDP ones as inactive (a UDP entry never
 * leaves the inactive counter). */
struct rvs_dest_conns {
	__u32 active;
	__u32 inactive;
	__u32 seen_active;
	__u32 seen_inactive;
};

/* Value of `rvs_sched` (an array indexed like `rvs_dests`): the connections the program
 * scheduled to the real server whose NEW event it sent, TCP and UDP, counting up (and
 * wrapping) for as long as the program runs. Only the program writes it, so no write of the
 * control plane can lose one; a connection whose event was lost is not in it (the core counts
 * it once the walk of the flows takes it up). */
struct rvs_dest_sched {
	__u32 active;
	__u32 inactive;
};

/* Value of the per-CPU array `rvs_dest_stats`, indexed like `rvs_dests`: connections
 * scheduled to the real server, packets and bytes (IP lengths) of its flows toward it and
 * (NAT) of its replies. */
struct rvs_dest_stats {
	__u64 conns;
	__u64 packets;
	__u64 bytes;
	__u64 out_packets;
	__u64 out_bytes;
};

/* What the XDP program leaves in a packet's metadata when it hands a rewritten packet to the
 * kernel to be sent on (the next hop's Ethernet address is not known yet): the tc program on
 * the same interface sends it out of `ifindex` through the kernel's neighbour code. */
struct rvs_meta {
	__u32 magic;       /* RVS_META_MAGIC */
	__u32 ifindex;
};

#define RVS_META_MAGIC 0x52565331

/* The real server's decapsulation program (tc_decap.c). */

/* Key of `rvs_decap_vips`: a virtual address this host serves (IPv4 uses addr[0]). */
struct rvs_decap_vip {
	__u32 addr[4];
	__u8 family;
	__u8 pad[3];
};

/* Its counters (index into the per-CPU array `rvs_decap_counters`). */
enum rvs_decap_counter {
	RVS_D_DECAPSULATED = 0, /* outer header removed, inner packet delivered */
	RVS_D_NOT_VIP,          /* a tunnel packet to an address that is not a configured VIP: left alone */
	RVS_D_FAILED,           /* the kernel refused to shrink the packet: dropped */
	RVS_D_COUNT
};

#endif /* RVS_ABI_H */
