#!/usr/bin/env python3
"""Golden-data driver for rvs: runs a scenario file against the real kernel IPVS.

This file runs inside the ipvs-oracle VM (Debian 12, kernel 6.1, ipvsadm 1.31), python3
standard library only:  driver.py run FILE.scn  prints the transcript on stdout
(driver.py lint FILE.scn  checks a scenario file on the host without running it).

Each scenario gets brand-new network namespaces: "dir" (the director, where IPVS runs),
"cl" (the client) and "rs1".."rsN" (real servers), so every scenario starts from an empty
IPVS state (no services, no connection entries, no trash, default timeouts). The addressing
is the one of the oracle's topo.sh (see README.md). Everything runs in this one process:
the driver enters the director namespace (setns) to run ipvsadm and read /proc/net/ip_vs*,
creates the client's sockets in the client namespace, and a thread serves sockets created in
the real servers' namespaces: each answers every new TCP connection and every UDP datagram
with the line "rsI PORT" (PORT = the local port that received it) and closes a TCP
connection when the client has closed it.

The transcript format is a contract with the Rust replay test; see README.md.
"""

import ctypes
import ipaddress
import os
import re
import selectors
import shlex
import socket
import struct
import subprocess
import sys
import threading
import time

WAIT = 3.0  # bound of every wait, seconds
GONE_WAIT = 1.0  # bound of the wait after closing a held connection whose entry was gone
STATS_WAIT = 2.2  # sleep of a stats event: longer than the kernel's 2 s estimator period
POLL = 0.005  # polling interval of /proc/net/ip_vs_conn, seconds
CLONE_NEWNET = 0x40000000
IP_PKTINFO = 8  # linux/in.h; not exported by python 3.11's socket module
IP_RECVERR = 11  # linux/in.h
IPV6_RECVERR = 25  # linux/in6.h

# ---------------------------------------------------------------------------------------------
# scenario files


class ScnError(Exception):
    """A malformed scenario file."""


def split_hostport(text):
    """'a.b.c.d:p' or '[v6]:p' -> (address text, port int)."""
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    ipaddress.ip_address(host)
    return host, int(port)


def server_port(text):
    """The port of an ipvsadm -r argument (0 when it has none)."""
    try:
        ipaddress.ip_address(text)
        return 0
    except ValueError:
        pass
    try:
        return split_hostport(text)[1]
    except ValueError:
        return 0


def fmt_hostport(addr, port):
    """Address and port as ipvsadm prints them: a.b.c.d:p or [v6]:p."""
    ip = ipaddress.ip_address(addr)
    if ip.version == 6:
        return "[%s]:%d" % (ip.compressed, port)
    return "%s:%d" % (ip, port)


def addr_range(text):
    """'A-B' (inclusive) or a single address -> list of address texts."""
    lo, _, hi = text.partition("-")
    a = ipaddress.ip_address(lo)
    b = ipaddress.ip_address(hi) if hi else a
    if int(b) < int(a) or int(b) - int(a) > 4096:
        raise ScnError("bad address range " + text)
    return [str(ipaddress.ip_address(int(a) + k)) for k in range(int(b) - int(a) + 1)]


def split_callid(words):
    """Take a trailing callid=TEXT off a conn/repeat line: (TEXT or None, other words)."""
    if words and words[-1].startswith("callid="):
        text = words[-1][len("callid="):]
        if not text:
            raise ScnError("empty callid= (use callid=- for no Call-ID line)")
        return text, words[:-1]
    return None, words


def sip_payload(vaddr, callid):
    """The SIP OPTIONS datagram of a conn line with callid=TEXT (TEXT '-': no Call-ID line)."""
    lines = ["OPTIONS sip:rvs@%s SIP/2.0" % vaddr]
    if callid != "-":
        lines.append("Call-ID: " + callid)
    lines += ["CSeq: 1 OPTIONS", "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


class Scenario:
    """One scenario: a name and its events (repeat lines already expanded)."""

    def __init__(self, name):
        self.name = name
        self.events = []
        self.ids = set()
        self.generated = 0

    def add_conn(self, cid, proto, src, sport, dst, mode, callid=None):
        if cid in self.ids:
            raise ScnError("duplicate connection id %s in %s" % (cid, self.name))
        if proto not in ("tcp", "udp") or mode not in ("hold", "close"):
            raise ScnError("bad conn line in %s" % self.name)
        if callid is not None and (proto != "udp" or mode != "close"):
            raise ScnError("callid= only on udp ... close lines")
        self.ids.add(cid)
        host, port = split_hostport(dst)
        ipaddress.ip_address(src)
        self.events.append(("conn", cid, proto, src, sport, host, port, mode, callid))

    def add_repeat(self, words):
        # repeat N conn PROTO SRC SPORT VIP:VPORT MODE [callid=TEXT]
        callid, words = split_callid(words)
        if len(words) != 8 or words[2] != "conn":
            raise ScnError("bad repeat line: " + " ".join(words))
        count, proto, src, sport, dst, mode = int(words[1]), words[3], words[4], words[5], words[6], words[7]
        sources = addr_range(src[6:]) if src.startswith("cycle:") else [src]
        dests = [dst]
        if dst.startswith("cycle:"):
            # extension: cycle:A-B:PORT (or cycle:[A-B]:PORT) walks destination addresses
            spec, _, port = dst[6:].rpartition(":")
            dests = [fmt_hostport(a, int(port)) for a in addr_range(spec.strip("[]"))]
        for k in range(count):
            self.generated += 1
            if sport == "-":
                port = 0
            elif sport.startswith("seq:"):
                port = int(sport[4:]) + k
            else:
                port = int(sport)
            self.add_conn("r%d" % self.generated, proto, sources[k % len(sources)], port,
                          dests[k % len(dests)], mode, callid)

    def reuses_fixed_tcp_port(self):
        """True when a TCP connection reuses a fixed client address:port of an earlier one."""
        seen = set()
        for ev in self.events:
            if ev[0] == "conn" and ev[2] == "tcp" and ev[4]:
                key = (ev[3], ev[4])
                if key in seen:
                    return True
                seen.add(key)
        return False


class ScnFile:
    """A parsed .scn file: topology, client addresses, marks and scenarios."""

    def __init__(self, path):
        self.topo = None  # (kind, n)
        self.clients = []
        self.marks = []  # (ip_network, mark)
        self.header = []  # normalised global lines, echoed at the top of the transcript
        self.scenarios = []
        with open(path) as f:
            for lineno, raw in enumerate(f, 1):
                # '#' starts a comment at the start of a line or after a blank (so that a
                # Call-ID may contain one)
                line = re.split(r"(?:^|\s)#", raw, maxsplit=1)[0].strip()
                if line:
                    try:
                        self.parse_line(line.split())
                    except (ValueError, IndexError, ScnError) as e:
                        raise ScnError("%s:%d: %s (%s)" % (path, lineno, line, e)) from e
        if self.topo is None:
            raise ScnError("no topo line")

    def parse_line(self, w):
        cur = self.scenarios[-1] if self.scenarios else None
        if w[0] == "topo":
            if w[1] not in ("nat", "dr", "nat6", "tun") or self.topo or self.scenarios:
                raise ScnError("bad or misplaced topo line")
            self.topo = (w[1], int(w[2]))
            self.header.append("topo %s %d" % self.topo)
        elif w[0] in ("clients", "marks") and cur is None:
            if w[0] == "clients":
                for spec in w[1:]:
                    self.clients.extend(addr_range(spec))
            else:
                self.marks.append((ipaddress.ip_network(w[1]), int(w[2])))
            self.header.append(" ".join(w))
        elif w[0] == "scenario":
            if any(s.name == w[1] for s in self.scenarios):
                raise ScnError("duplicate scenario name")
            self.scenarios.append(Scenario(w[1]))
        elif cur is None:
            raise ScnError("event before the first scenario line")
        elif w[0] == "ipvsadm":
            cur.events.append(("ipvsadm", " ".join(w[1:])))
        elif w[0] == "conn":
            callid, w = split_callid(w)
            if len(w) != 7:
                raise ScnError("bad conn line")
            sport = 0 if w[4] == "-" else int(w[4])
            cur.add_conn(w[1], w[2], w[3], sport, w[5], w[6], callid)
        elif w[0] == "repeat":
            cur.add_repeat(w)
        elif w[0] == "close":
            cur.events.append(("close", w[1]))
        elif w[0] == "sleep":
            cur.events.append(("sleep", w[1], float(w[1])))
        elif w[0] == "check" and len(w) == 1:
            cur.events.append(("check",))
        elif w[0] == "stats" and len(w) == 1:
            cur.events.append(("stats",))
        elif w[0] == "sysctl" and len(w) == 3:
            if not re.fullmatch(r"[a-z_]+", w[1]) or not re.fullmatch(r"[0-9]+", w[2]):
                raise ScnError("bad sysctl line")
            cur.events.append(("sysctl", w[1], w[2]))
        else:
            raise ScnError("unknown directive")

    def ports(self, sc):
        """Every port a real server must answer on in scenario sc."""
        ports = {80}
        for ev in sc.events:
            if ev[0] == "conn":
                ports.add(ev[6])
            elif ev[0] == "ipvsadm":
                words = ev[1].split()
                for k, word in enumerate(words[:-1]):
                    if word in ("-r", "--real-server"):
                        ports.add(server_port(words[k + 1]))
        ports.discard(0)
        return sorted(ports)

    def vips(self, sc):
        """Connection destination addresses not covered by a marks prefix."""
        out = []
        for ev in sc.events:
            if ev[0] == "conn":
                ip = ipaddress.ip_address(ev[5])
                if not any(ip in net for net, _ in self.marks) and ev[5] not in out:
                    out.append(ev[5])
        return out


# ---------------------------------------------------------------------------------------------
# namespaces


class Netns:
    """Switches this thread between named network namespaces (setns through ctypes).

    Sockets belong to the namespace they were created in, so the driver creates the client's
    and the real servers' sockets after switching, and otherwise lives in the director's."""

    def __init__(self):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.root = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        self.current = None

    def enter(self, name):
        """Enter namespace name (None: the root namespace); return the previous name."""
        fd = self.root if name is None else os.open("/run/netns/" + name, os.O_RDONLY)
        try:
            if self.libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, "setns %s: %s" % (name, os.strerror(err)))
        finally:
            if fd != self.root:
                os.close(fd)
        prev, self.current = self.current, name
        return prev

    def socket(self, name, family, kind):
        """A socket created in namespace name."""
        prev = self.enter(name)
        try:
            return socket.socket(family, kind)
        finally:
            self.enter(prev)

    def sysctl(self, name, key, value):
        prev = self.enter(name)
        try:
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(str(value))
        finally:
            self.enter(prev)


def run_batch(tool, lines, ns=None):
    """Run many ip/tc commands in one process (-batch); raise with stderr on failure."""
    if not lines:
        return
    argv = [tool] + (["-n", ns] if ns else []) + ["-batch", "-"]
    r = subprocess.run(argv, input="\n".join(lines) + "\n", stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(argv), r.stderr.strip()))


# ---------------------------------------------------------------------------------------------
# topology


class Topo:
    """Fresh namespaces for one scenario, with topo.sh's addressing."""

    def __init__(self, scn, sc, netns):
        self.kind, self.n = scn.topo
        self.scn = scn
        self.netns = netns
        self.ports = scn.ports(sc)
        self.vips = scn.vips(sc)
        self.tw_reuse = sc.reuses_fixed_tcp_port()
        self.rs = ["rs%d" % i for i in range(1, self.n + 1)]
        self.names = ["dir", "cl"] + self.rs
        self.cmds = {}  # namespace -> ip batch lines

    def rs_addr(self, i):
        """The address of real server i as it is configured in IPVS."""
        if self.kind == "nat":
            return "10.1.%d.2" % i
        if self.kind == "nat6":
            return "fd00:1:%x::2" % i
        return "10.2.0.%d" % (10 + i)

    def ip(self, ns, line):
        self.cmds.setdefault(ns, []).append(line)

    def addr(self, ns, cidr, dev):
        self.ip(ns, "addr add %s dev %s%s" % (cidr, dev, " nodad" if ":" in cidr else ""))

    def veth(self, dev, ns, bridge=None):
        self.ip("dir", "link add %s type veth peer name eth0 netns %s" % (dev, ns))
        self.ip("dir", "link set %s %sup" % (dev, "master %s " % bridge if bridge else ""))
        self.ip(ns, "link set eth0 up")

    def up(self):
        run_batch("ip", ["netns add " + name for name in self.names])
        for name in self.names:
            self.ip(name, "link set lo up")
        {"nat": self.up_nat, "nat6": self.up_nat6, "dr": self.up_dr,
         "tun": self.up_dr}[self.kind]()
        self.up_mark_routes()
        for name in self.names:
            run_batch("ip", self.cmds.get(name, []), ns=name)
        for key, value in (("net.ipv4.ip_forward", 1), ("net.ipv4.icmp_ratelimit", 0),
                           ("net.ipv6.conf.all.forwarding", 1), ("net.ipv6.icmp.ratelimit", 0)):
            self.netns.sysctl("dir", key, value)
        if self.tw_reuse:
            # a fixed client port reused after the client closed it (its socket is in
            # TIME_WAIT): connect() may take it over once a second has passed
            self.netns.sysctl("cl", "net.ipv4.tcp_tw_reuse", 1)
        if self.kind == "tun":
            # the client's packets come out of tunl0 with the client's source address
            for ns in self.rs:
                for dev in ("all", "default", "tunl0"):
                    self.netns.sysctl(ns, "net.ipv4.conf.%s.rp_filter" % dev, 0)
        if self.kind in ("dr", "tun"):
            for ns in self.rs:
                self.netns.sysctl(ns, "net.ipv4.conf.all.arp_ignore", 1)
                self.netns.sysctl(ns, "net.ipv4.conf.all.arp_announce", 2)
        self.up_mark_filters()

    def add_clients(self, main, plen):
        """Client addresses; returns the prefixes other than the main one."""
        home = ipaddress.ip_interface("%s/%d" % (main, plen)).network
        extra = []
        for a in [main] + self.scn.clients:
            self.addr("cl", "%s/%d" % (a, plen), "eth0")
            net = ipaddress.ip_interface("%s/%d" % (a, plen)).network
            if net != home and net not in extra:
                extra.append(net)
        return extra

    def route_clients(self, nets, dev, others):
        """On-link routes to extra client prefixes on the director's client-facing device
        (and in the namespaces `others`: DR real servers answer clients directly)."""
        for net in nets:
            self.ip("dir", "route add %s dev %s" % (net, dev))
            for ns in others:
                self.ip(ns, "route add %s dev eth0" % net)

    def up_nat(self):
        self.veth("vcl", "cl")
        self.addr("dir", "192.168.50.1/24", "vcl")
        self.route_clients(self.add_clients("192.168.50.2", 24), "vcl", [])
        self.ip("cl", "route add default via 192.168.50.1")
        for vip in self.vips:
            self.addr("dir", vip + "/32", "lo")
        for i, ns in enumerate(self.rs, 1):
            self.veth("vrs%d" % i, ns)
            self.addr("dir", "10.1.%d.1/24" % i, "vrs%d" % i)
            self.addr(ns, "10.1.%d.2/24" % i, "eth0")
            self.ip(ns, "route add default via 10.1.%d.1" % i)

    def up_nat6(self):
        self.veth("vcl", "cl")
        self.addr("dir", "fd00:50::1/64", "vcl")
        self.route_clients(self.add_clients("fd00:50::2", 64), "vcl", [])
        self.ip("cl", "route add default via fd00:50::1")
        for vip in self.vips:  # on vcl, not lo: neighbour solicitations are answered per device
            self.addr("dir", vip + "/128", "vcl")
        for i, ns in enumerate(self.rs, 1):
            self.veth("vrs%d" % i, ns)
            self.addr("dir", "fd00:1:%x::1/64" % i, "vrs%d" % i)
            self.addr(ns, "fd00:1:%x::2/64" % i, "eth0")
            self.ip(ns, "route add default via fd00:1:%x::1" % i)

    def up_dr(self):
        self.ip("dir", "link add br0 type bridge")
        self.ip("dir", "link set br0 up")
        self.addr("dir", "10.2.0.1/24", "br0")
        self.veth("vcl", "cl", bridge="br0")
        extra = self.add_clients("10.2.0.254", 24)
        for vip in self.vips:
            self.addr("dir", vip + "/32", "br0")
            self.ip("cl", "route add %s/32 via 10.2.0.1" % vip)
        # DR: the VIPs on the real servers' lo; tun: on tunl0 (ipip), which receives the
        # director's IPIP packets
        vip_dev = "tunl0" if self.kind == "tun" else "lo"
        for i, ns in enumerate(self.rs, 1):
            self.veth("vrs%d" % i, ns, bridge="br0")
            self.addr(ns, "10.2.0.%d/24" % (10 + i), "eth0")
            if vip_dev == "tunl0":
                self.ip(ns, "link set tunl0 up")
            for vip in self.vips:
                self.addr(ns, vip + "/32", vip_dev)
        self.route_clients(extra, "br0", self.rs)

    def up_mark_routes(self):
        """Marked prefixes are local on the director (and on DR real servers)."""
        for net, _ in self.scn.marks:
            self.ip("dir", "route add local %s dev lo" % net)
            if self.kind in ("dr", "tun"):
                self.ip("cl", "route add %s via 10.2.0.1" % net)
                for ns in self.rs:
                    self.ip(ns, "route add local %s dev lo" % net)

    def up_mark_filters(self):
        """Mark client packets to each marks prefix on the director's client-facing device."""
        if not self.scn.marks:
            return
        dev = "br0" if self.kind in ("dr", "tun") else "vcl"
        lines = ["qdisc add dev %s clsact" % dev]
        for prio, (net, mark) in enumerate(self.scn.marks, 1):
            lines.append("filter add dev %s ingress protocol %s prio %d flower dst_ip %s "
                         "action skbedit mark %d" % (dev, "ipv6" if net.version == 6 else "ip",
                                                     prio, net, mark))
        run_batch("tc", lines, ns="dir")

    def down(self):
        subprocess.run(["ip", "-force", "-batch", "-"], input="".join(
            "netns del %s\n" % name for name in self.names), text=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# ---------------------------------------------------------------------------------------------
# real servers (a thread serving sockets created in the real servers' namespaces)


class Servers:
    """Every real server answers each new TCP connection and each UDP datagram on every port
    of the scenario with "rsI PORT"; a TCP connection is closed when the client closes it."""

    def __init__(self, topo, netns):
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        self.sel.register(self.wake_r, selectors.EVENT_READ, None)
        af = socket.AF_INET6 if topo.kind == "nat6" else socket.AF_INET
        any_addr = "::" if af == socket.AF_INET6 else "0.0.0.0"
        for ns in topo.rs:
            for port in topo.ports:
                self.listen(netns, ns, af, any_addr, port)
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def listen(self, netns, ns, af, any_addr, port):
        line = ("%s %d\n" % (ns, port)).encode()
        t = netns.socket(ns, af, socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind((any_addr, port))
        t.listen(1024)
        t.setblocking(False)
        self.sel.register(t, selectors.EVENT_READ, ("listen", line))
        u = netns.socket(ns, af, socket.SOCK_DGRAM)
        if af == socket.AF_INET6:
            u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        else:
            u.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        u.bind((any_addr, port))
        u.setblocking(False)
        self.sel.register(u, selectors.EVENT_READ, ("udp", line))

    def loop(self):
        while True:
            for key, _ in self.sel.select():
                if key.data is None:
                    return
                kind, line = key.data
                try:
                    if kind == "listen":
                        c, _ = key.fileobj.accept()
                        c.setblocking(True)
                        c.sendall(line)
                        c.setblocking(False)
                        self.sel.register(c, selectors.EVENT_READ, ("conn", line))
                    elif kind == "conn":
                        self.conn_readable(key.fileobj)
                    else:
                        udp_answer(key.fileobj, line)
                except (BlockingIOError, InterruptedError):
                    pass

    def conn_readable(self, sock):
        try:
            data = sock.recv(4096)
        except (ConnectionResetError, BlockingIOError):
            data = b""
        if not data:
            self.sel.unregister(sock)
            sock.close()

    def stop(self):
        os.write(self.wake_w, b"x")
        self.thread.join()
        for key in list(self.sel.get_map().values()):
            if key.data is not None:
                key.fileobj.close()
        self.sel.close()
        os.close(self.wake_r)
        os.close(self.wake_w)


def udp_answer(sock, line):
    """Answer a datagram from the address it was sent to (matters for DR: the VIP)."""
    _, anc, _, peer = sock.recvmsg(2048, socket.CMSG_SPACE(64))
    cmsg = []
    for level, ctype, data in anc:
        if level == socket.IPPROTO_IP and ctype == IP_PKTINFO:
            _, _, dst = struct.unpack("=i4s4s", data[:12])
            cmsg = [(level, IP_PKTINFO, struct.pack("=i4s4s", 0, dst, b"\0" * 4))]
        elif level == socket.IPPROTO_IPV6 and ctype == socket.IPV6_PKTINFO:
            cmsg = [(level, ctype, data[:16] + struct.pack("=i", 0))]
    sock.sendmsg([line], cmsg, 0, peer)


# ---------------------------------------------------------------------------------------------
# the client (sockets created in the client namespace)


class Client:
    """Opens, holds and closes the scenario's connections."""

    def __init__(self, netns):
        self.netns = netns
        self.held = {}

    def conn(self, proto, src, sport, dst, dport, mode, cid, callid=None):
        """-> (local (addr, port), answer line or None, error word or None)."""
        fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        s = self.netns.socket("cl", fam, kind)
        if sport:
            # only for fixed ports: an ephemeral bind must never land on a TIME_WAIT port
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((src, sport))
        local = tuple(s.getsockname()[:2])
        s.settimeout(WAIT)
        answer, err = None, None
        try:
            if kind == socket.SOCK_DGRAM:
                payload = b"?" if callid is None else sip_payload(dst, callid)
                answer = self.udp_exchange(s, fam, dst, dport, payload)
            else:
                s.connect((dst, dport))
                answer = read_line(s)
                err = None if answer else "eof"
        except ConnectionRefusedError:
            err = "refused"
        except socket.timeout:
            err = "timeout"
        except ConnectionResetError:
            err = "reset"
        except OSError as e:
            err = "error-" + (e.strerror or str(e)).replace(" ", "-")
        if answer and mode == "hold" and kind == socket.SOCK_STREAM:
            self.held[cid] = s
        else:
            s.close()
        return local, answer, err

    @staticmethod
    def udp_exchange(s, fam, dst, dport, payload):
        # unconnected, so that an untranslated reply (one-packet scheduling with NAT: the
        # entry is not hashed) is still read; RECVERR reports ICMP port unreachable
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
        else:
            s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        s.sendto(payload, (dst, dport))
        return s.recv(256).decode().strip()

    def close(self, cid):
        s = self.held.pop(cid, None)
        if s is None:
            return "not held"
        s.close()
        return None

    def close_all(self):
        for s in self.held.values():
            s.close()
        self.held = {}


def read_line(s):
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(256)
        if not chunk:
            break
        data += chunk
    return data.decode().strip() or None


# ---------------------------------------------------------------------------------------------
# the director's view: ipvsadm, /proc/net/ip_vs and /proc/net/ip_vs_conn


def ipvsadm(argv):
    """Run ipvsadm in the current (director) namespace: (status, output lines)."""
    r = subprocess.run(["ipvsadm"] + argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return r.returncode, r.stdout.splitlines()


def listing(out, tag, argv):
    """Append ipvsadm's listing as '  TAG | line' lines to out (and '  TAG-status N' when it
    failed: N < 0 is a signal); return its lines."""
    status, lines = ipvsadm(argv)
    out.extend("  %s | %s" % (tag, s) for s in lines)
    if status:
        out.append("  %s-status %d" % (tag, status))
    return lines


def parse_proc_addr(text):
    """An address as /proc/net/ip_vs* print it (%08X host order, or full IPv6)."""
    text = text.strip("[]")
    if ":" in text:
        return str(ipaddress.IPv6Address(text))
    return str(ipaddress.IPv4Address(int(text, 16)))


def parse_proc_hostport(text):
    host, _, port = text.rpartition(":")
    return parse_proc_addr(host), int(port, 16)


def read_conns():
    """Rows of /proc/net/ip_vs_conn in kernel order, as dicts with decoded addresses."""
    rows = []
    with open("/proc/thread-self/net/ip_vs_conn") as f:
        lines = f.read().splitlines()[1:]
    for line in lines:
        w = line.split()
        rows.append({
            "proto": w[0],
            "c": (parse_proc_addr(w[1]), int(w[2], 16)),
            "v": (parse_proc_addr(w[3]), int(w[4], 16)),
            "d": (parse_proc_addr(w[5]), int(w[6], 16)),
            "state": w[7],
            "expire": w[8],
        })
    return rows


class Service:
    """What the driver needs to know about a configured service (from /proc/net/ip_vs)."""

    def __init__(self, words):
        self.proto = words[0].lower()
        if words[0] == "FWM":
            self.fwmark, self.addr, self.port = int(words[1], 16), None, None
        else:
            self.fwmark = None
            self.addr, self.port = parse_proc_hostport(words[1])
        self.dests = []


def read_services():
    services = []
    with open("/proc/thread-self/net/ip_vs") as f:
        lines = f.read().splitlines()[3:]
    for line in lines:
        w = line.split()
        if w[0] == "->":
            services[-1].dests.append(parse_proc_hostport(w[1]))
        else:
            services.append(Service(w))
    return services


def parse_listing(lines):
    """ipvsadm -Ln (or --persistent-conn) -> list of (vspec, service words, [dest words])."""
    services = []
    for line in lines:
        if line.startswith("  -> "):
            w = line.split()
            if services and w[1] != "RemoteAddress:Port":
                services[-1][2].append(w[1:])
        elif line and not line.startswith(("IP Virtual Server", "Prot ")):
            w = line.split()
            n = 3 if w[0] == "FWM" and len(w) > 2 and w[2] == "IPv6" else 2
            services.append((" ".join(w[:n]), w[n:], []))
    return services


class Director:
    """The driver's view of the director (it runs inside the director namespace)."""

    def __init__(self, scn, topo):
        self.scn = scn
        self.topo = topo
        self.services = None  # None: re-read before use

    def find_service(self, proto, vaddr, vport):
        """The service IPVS would look up for a client packet (fwmark first, then port 0)."""
        if self.services is None:
            self.services = read_services()
        ip = ipaddress.ip_address(vaddr)
        for net, mark in self.scn.marks:
            if ip in net:
                for s in self.services:
                    if s.fwmark == mark and all(ipaddress.ip_address(a).version == ip.version
                                                for a, _ in s.dests):
                        return s
        for port in (vport, 0):
            for s in self.services:
                if s.fwmark is None and s.proto == proto and s.addr == str(ip) and s.port == port:
                    return s
        return None

    def answer_dest(self, proto, vaddr, vport, answer):
        """Map the server's "rsI PORT" answer to the IPVS destination ADDR:PORT."""
        name, port = answer.split()
        addr, port = self.topo.rs_addr(int(name[2:])), int(port)
        svc = self.find_service(proto, vaddr, vport)
        if svc:
            for want in (port, 0):
                for da, dp in svc.dests:
                    if ipaddress.ip_address(da) == ipaddress.ip_address(addr) and dp == want:
                        return fmt_hostport(da, dp)
        return fmt_hostport(addr, port)

    @staticmethod
    def find_conn(proto, local, vaddr, vport):
        key_c = (str(ipaddress.ip_address(local[0])), local[1])
        key_v = (str(ipaddress.ip_address(vaddr)), vport)
        for row in read_conns():
            if row["proto"] == proto.upper() and row["c"] == key_c and row["v"] == key_v:
                return row
        return None

    def wait_state(self, proto, local, vaddr, vport, states, bound=WAIT, absent_ok=False):
        """Poll until the connection entry is in one of states; None or a complaint.
        With absent_ok, an entry still absent when the bound is reached is fine."""
        deadline = time.monotonic() + bound
        while True:
            row = self.find_conn(proto, local, vaddr, vport)
            last = row["state"] if row else "absent"
            if last in states:
                return None
            if time.monotonic() > deadline:
                if absent_ok and row is None:
                    return None
                return "timeout waiting for %s (last %s)" % ("|".join(states), last)
            time.sleep(POLL)

    def final_states(self):
        """States a TCP entry ends in once both sides closed (client closes first)."""
        return ("FIN_WAIT", "CLOSE") if self.topo.kind in ("dr", "tun") else ("TIME_WAIT", "CLOSE")

    @staticmethod
    def check_lines():
        out = []
        raw_l = listing(out, "raw-L", ["-Ln"])
        listing(out, "raw-Lc", ["-Lnc"])
        if any("pe" in words for _, words, _ in parse_listing(raw_l)):
            listing(out, "raw-Lcp", ["-Lnc", "--persistent-conn"])
        _, pers = ipvsadm(["-Ln", "--persistent-conn"])
        rows = read_conns()
        fwd = {}
        for vspec, _, dests in parse_listing(raw_l):
            for d in dests:
                fwd[(vspec, d[0])] = d[1]
        for vspec, _, dests in parse_listing(pers):
            for d in dests:
                out.append("  dest %s %s %s weight=%s active=%s inact=%s persist=%s" % (
                    vspec, d[0], fwd.get((vspec, d[0]), "?"), d[1], d[3], d[4], d[2]))
        for r in rows:
            out.append("  conn %s %s %s %s %s %s" % (
                r["proto"], r["state"], r["expire"], fmt_hostport(*r["c"]), fmt_hostport(*r["v"]),
                fmt_hostport(*r["d"])))
        return out

    @staticmethod
    def stats_lines():
        """ipvsadm -Ln --stats --exact: raw, then the Conns column of every service and server."""
        out = []
        raw = listing(out, "raw-stats", ["-Ln", "--stats", "--exact"])
        for vspec, words, dests in parse_listing(raw):
            out.append("  stats %s conns=%s" % (vspec, words[0]))
            for d in dests:
                out.append("  stats %s %s conns=%s" % (vspec, d[0], d[1]))
        return out


# ---------------------------------------------------------------------------------------------
# running a scenario


class Runner:
    """Performs one scenario's events and prints its transcript."""

    def __init__(self, sc, director, client):
        self.sc, self.d, self.client = sc, director, client
        self.held = {}  # id -> (proto, local, vaddr, vport)
        self.t0 = time.monotonic()

    def stamp(self):
        return "@%d" % int((time.monotonic() - self.t0) * 1000)

    def run(self):
        print("scenario " + self.sc.name)
        self.t0 = time.monotonic()
        for ev in self.sc.events:
            getattr(self, "ev_" + ev[0])(*ev[1:])
            sys.stdout.flush()
        self.ev_check()
        print("end")
        sys.stdout.flush()

    def ev_ipvsadm(self, text):
        at = self.stamp()
        status, lines = ipvsadm(shlex.split(text))
        print("%s ipvsadm %s => %d" % (at, text, status))
        for line in lines:
            print("  | " + line)
        self.d.services = None

    def ev_conn(self, cid, proto, src, sport, vaddr, vport, mode, callid):
        at = self.stamp()
        local, answer, err = self.client.conn(proto, src, sport, vaddr, vport, mode, cid, callid)
        note = None
        if answer:
            result = self.d.answer_dest(proto, vaddr, vport, answer)
            if proto == "tcp":
                # UDP needs no wait: its entry (none with one-packet scheduling) exists
                # before the datagram is forwarded, and it has a single state
                states = ("ESTABLISHED",) if mode == "hold" else self.d.final_states()
                note = self.d.wait_state(proto, local, vaddr, vport, states)
                if mode == "hold":
                    self.held[cid] = (proto, local, vaddr, vport)
        else:
            result = self.failure(proto, local, vaddr, vport, err)
        print("%s conn %s %s %s %s %s%s => %s" % (
            at, cid, proto, fmt_hostport(*local), fmt_hostport(vaddr, vport), mode,
            "" if callid is None else " callid=" + callid, result))
        if note:
            print("  ! " + note)

    def failure(self, proto, local, vaddr, vport, err):
        """'none' when IPVS refused (port unreachable) or dropped (no answer) and holds no
        entry; anything else is spelled out as an anomaly."""
        row = self.d.find_conn(proto, local, vaddr, vport)
        if err == "refused" and row is None:
            return "none"
        if err == "timeout" and row is None:
            return "none (dropped)"
        where = (" (entry to %s)" % fmt_hostport(*row["d"])) if row else ""
        return "%s%s" % (err, where)

    def ev_close(self, cid):
        at = self.stamp()
        gone = False
        if cid in self.held:
            # its entry may be gone already (expired, or flushed by expire_nodest_conn)
            gone = self.d.find_conn(*self.held[cid]) is None
        note = self.client.close(cid)
        if note and cid in self.sc.ids:
            note = None  # a connection that was never held open (unanswered, UDP): no-op
        if cid in self.held:
            proto, local, vaddr, vport = self.held.pop(cid)
            note = self.d.wait_state(proto, local, vaddr, vport, self.d.final_states(),
                                     GONE_WAIT if gone else WAIT, gone)
        print("%s close %s" % (at, cid))
        if note:
            print("  ! " + note)

    def ev_sleep(self, text, secs):
        print("%s sleep %s" % (self.stamp(), text))
        sys.stdout.flush()
        time.sleep(secs)

    def ev_check(self):
        print("%s check" % self.stamp())
        for line in self.d.check_lines():
            print(line)

    def ev_sysctl(self, name, value):
        print("%s sysctl %s %s" % (self.stamp(), name, value))
        with open("/proc/sys/net/ipv4/vs/" + name, "w") as f:
            f.write(value)

    def ev_stats(self):
        time.sleep(STATS_WAIT)  # the estimator samples every counter every 2 s
        print("%s stats" % self.stamp())
        for line in self.d.stats_lines():
            print(line)


def run_scenario(scn, sc, netns):
    topo = Topo(scn, sc, netns)
    servers = client = None
    try:
        topo.up()
        servers = Servers(topo, netns)
        client = Client(netns)
        netns.enter("dir")
        Runner(sc, Director(scn, topo), client).run()
    finally:
        netns.enter(None)
        if client:
            client.close_all()
        if servers:
            servers.stop()
        topo.down()


def lint(scn):
    """Host-side check of a scenario file: counts, and held connections left open."""
    ok = True
    main = {"nat": "192.168.50.2", "dr": "10.2.0.254", "tun": "10.2.0.254",
            "nat6": "fd00:50::2"}[scn.topo[0]]
    sources = {str(ipaddress.ip_address(a)) for a in [main] + scn.clients}
    for sc in scn.scenarios:
        conns = [ev for ev in sc.events if ev[0] == "conn"]
        strangers = sorted({ev[3] for ev in conns} - sources)
        if strangers:
            print("%s: source addresses not on the client: %s" % (sc.name, " ".join(strangers)))
            ok = False
        held = {ev[1] for ev in conns if ev[2] == "tcp" and ev[7] == "hold"}
        closed = {ev[1] for ev in sc.events if ev[0] == "close"}
        unknown = sorted(closed - sc.ids)
        print("%-28s %3d conns, %2d held, never closed: %s%s" % (
            sc.name, len(conns), len(held), " ".join(sorted(held - closed)) or "-",
            ("  UNKNOWN ids closed: " + " ".join(unknown)) if unknown else ""))
        ok = ok and not unknown
    return ok


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("run", "lint"):
        sys.exit("usage: driver.py run|lint FILE.scn")
    scn = ScnFile(sys.argv[2])
    if sys.argv[1] == "lint":
        sys.exit(0 if lint(scn) else 1)
    if scn.topo[0] == "tun":
        # the fallback device tunl0 exists in every namespace once ipip is loaded
        subprocess.run(["modprobe", "ipip"], check=True)
    netns = Netns()
    for line in scn.header:
        print(line)
    sys.stdout.flush()
    for sc in scn.scenarios:
        run_scenario(scn, sc, netns)


if __name__ == "__main__":
    main()
