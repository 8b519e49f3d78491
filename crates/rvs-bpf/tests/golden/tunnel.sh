#!/bin/sh
# Oracle job (../../../../../shared/ipvs-oracle): the frames the kernel's IPVS puts on the wire
# for direct routing and every tunnel type, recorded as hex on the director's bridge.
#   ipvs-oracle run crates/rvs-bpf/tests/golden/tunnel.sh > crates/rvs-bpf/tests/golden/tunnel.golden
# Client 10.2.0.254 -> VIP 192.168.50.100, real server 10.2.0.11; one service per case.
. /oracle/topo.sh
topo_dr 1 >/dev/null 2>&1
modprobe ip_vs 2>/dev/null
V=192.168.50.100 R=10.2.0.11
ipvsadm -A -t $V:80 -s rr; ipvsadm -a -t $V:80 -r $R -g
ipvsadm -A -t $V:81 -s rr; ipvsadm -a -t $V:81 -r $R -i
ipvsadm -A -u $V:82 -s rr; ipvsadm -a -u $V:82 -r $R -i
ipvsadm -A -u $V:83 -s rr; ipvsadm -a -u $V:83 -r $R -i --tun-type gue --tun-port 6080 --tun-nocsum
ipvsadm -A -u $V:84 -s rr; ipvsadm -a -u $V:84 -r $R -i --tun-type gue --tun-port 6080 --tun-csum
ipvsadm -A -u $V:85 -s rr; ipvsadm -a -u $V:85 -r $R -i --tun-type gue --tun-port 6080 --tun-remcsum
ipvsadm -A -u $V:86 -s rr; ipvsadm -a -u $V:86 -r $R -i --tun-type gre --tun-csum
ipvsadm -A -u $V:87 -s rr; ipvsadm -a -u $V:87 -r $R -i --tun-type gre --tun-nocsum
ipvsadm -Ln --tun-info
# every frame the director sends toward the real server, as hex, one per line
# every IPv4 frame the director itself sends on the bridge (its MAC as source), as hex
python3 -c "
import socket, time
me = bytes.fromhex(open('/sys/class/net/br0/address').read().strip().replace(':', ''))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(('br0', 0)); s.settimeout(0.5)
end = time.time() + 8
while time.time() < end:
    try: f = s.recv(4096)
    except socket.timeout: continue
    if f[6:12] == me and f[12:14] == b'\x08\x00' and f[23] in (4, 6, 17, 47):
        print('frame', f.hex(), flush=True)
" > /tmp/frames &
sleep 1
# TCP SYN (DF set by the stack, TTL 64, TOS 0x10) to the DR and IPIP services
ip netns exec cl python3 -c "
import socket
for port in (80, 81):
    s = socket.socket(); s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x10); s.settimeout(0.3)
    try: s.connect(('$V', port))
    except Exception: pass
    s.close()
"
# UDP datagrams (no DF: IP_PMTUDISC_DONT), TOS 0xbb (DSCP 46, ECN CE), TTL 9, 13 bytes of payload
ip netns exec cl python3 -c "
import socket
for port in range(82, 88):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0xbb)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 9)
    s.setsockopt(socket.IPPROTO_IP, 10, 0)
    s.bind(('10.2.0.254', 40000 + port))
    s.sendto(b'hello, tunnel', ('$V', port))
"
wait
sort -u /tmp/frames | head -40
