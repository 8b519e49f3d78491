#!/bin/bash
# Recorded with the IPVS oracle (a VM whose kernel has IPVS, ipvsadm 1.31):
#   ipvs-oracle run crates/rvsd/tests/golden/nat-seed.sh > crates/rvsd/tests/golden/nat-seed.golden
# The seed's VS-NAT example: three real servers rs1..rs3 (10.1.I.2, each on a network of its
# own with the director 10.1.I.1 as gateway), the client 192.168.50.2, VIP 192.168.50.100 on
# the director; TCP VIP:80 -> :8000 wrr 1/2/3 and UDP VIP:53 -> :5353 rr, masquerading. Also
# VIP:81 -> :8001 rr (servers that greet and never close), VIP:82 -> rs1:8002 (nothing
# listens) and UDP VIP:54 -> rs1:5454 (nothing listens). Every server greets with its name
# (`rsI`, a line). Timeouts are the defaults (900 120 300).
#
# Output, one record a line, words separated by single spaces:
#   timeouts TCP TCPFIN UDP           ipvsadm -L --timeout
#   tcp N rsI                         the N-th of 24 TCP connections to VIP:80, one after
#                                     another, was answered by rsI
#   udp N rsI                         the N-th of 6 UDP requests to VIP:53 (a new socket each)
#   step X PROTO SPORT VIP:PORT GOT   the state scenario: step X (a..f) from the client's fixed
#                                     source port SPORT; GOT is the greeting's name or the
#                                     error the client got (ECONNREFUSED, …):
#     a  TCP VIP:81, greeting read, connection held open
#     b  TCP VIP:81, greeting read, client shuts its write side (the server never closes)
#     c  TCP VIP:80, greeting and the server's end read, the client never closes
#     d  TCP VIP:80, greeting and the server's end read, then the client closes
#     e  TCP VIP:82, where no real server listens (refused)
#     f  UDP VIP:53, one request and its answer
#   conn PROTO STATE SOURCE VIRTUAL DEST   ipvsadm -Lnc after the scenario (1 s to settle),
#                                     the entries of the scenario's source ports only,
#                                     without the expire column, sorted
#   dest PROTO VIP:PORT RIP:PORT FORWARD WEIGHT ACTIVE INACT   ipvsadm -Ln at the same time
#   icmp UDP VIP:54 GOT               a connected UDP socket sends one datagram to VIP:54; GOT is
#                                     what its recv gave (the answer, or the errno's name)
#   stats …                           ipvsadm -Ln --stats --exact at the end (2.5 s after the
#                                     last packet: the kernel copies its counters every 2 s),
#                                     each line of the listing after its three header lines,
#                                     spaces collapsed; for reference only
set -e
. /oracle/topo.sh
topo_nat 3 >/dev/null
V=192.168.50.100
ipvsadm --set 0 0 0
ipvsadm -A -t $V:80 -s wrr
ipvsadm -a -t $V:80 -r 10.1.1.2:8000 -m -w 1
ipvsadm -a -t $V:80 -r 10.1.2.2:8000 -m -w 2
ipvsadm -a -t $V:80 -r 10.1.3.2:8000 -m -w 3
ipvsadm -A -u $V:53 -s rr
for i in 1 2 3; do ipvsadm -a -u $V:53 -r 10.1.$i.2:5353 -m; done
ipvsadm -A -t $V:81 -s rr
for i in 1 2 3; do ipvsadm -a -t $V:81 -r 10.1.$i.2:8001 -m; done
ipvsadm -A -t $V:82 -s rr
ipvsadm -a -t $V:82 -r 10.1.1.2:8002 -m
ipvsadm -A -u $V:54 -s rr
ipvsadm -a -u $V:54 -r 10.1.1.2:5454 -m
ipvsadm -L --timeout | awk '/Timeout/ {print "timeouts", $(NF-2), $(NF-1), $NF}'

# greet with the name, then hold the connection: never read, never close
cat >/tmp/holder.py <<'EOF'
import socket, sys
name, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', port)); s.listen(64)
held = []
while True:
    c, _ = s.accept(); c.sendall((name + '\n').encode()); held.append(c)
EOF
for i in 1 2 3; do
  serve_name rs$i 8000
  serve_name rs$i 5353 udp
  ip netns exec rs$i python3 /tmp/holder.py rs$i 8001 &
done
sleep 1

cat >/tmp/client.py <<'EOF'
import errno, socket, sys, time
V = '192.168.50.100'

def err(e):
    return errno.errorcode.get(e.errno, str(e))

def name(s):
    data = b''
    while not data.endswith(b'\n'):
        chunk = s.recv(64)
        if not chunk:
            break
        data += chunk
    return data.decode().strip()

def tcp(port, sport=0):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('0.0.0.0', sport)); s.settimeout(3); s.connect((V, port))
    return s

def udp(port, sport=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(('0.0.0.0', sport)); s.settimeout(3); s.connect((V, port))
    s.send(b'?')
    try:
        return s.recv(64).decode().strip()
    except OSError as e:
        return err(e)

def eof(s):
    assert s.recv(64) == b''

part = sys.argv[1]
if part == 'tcp':
    for n in range(1, 25):
        s = tcp(80); print('tcp', n, name(s), flush=True); s.close()
elif part == 'udp':
    for n in range(1, 7):
        print('udp', n, udp(53), flush=True)
elif part == 'states':
    held = []
    def step(x, port, sport, f):
        try:
            s = tcp(port, sport)
            got = name(s)
            f(s)
            held.append(s)
        except OSError as e:
            got = err(e)
        print('step', x, 'TCP', sport, '%s:%d' % (V, port), got, flush=True)
        time.sleep(0.3)
    step('a', 81, 20001, lambda s: None)
    step('b', 81, 20002, lambda s: s.shutdown(socket.SHUT_WR))
    step('c', 80, 20003, eof)
    step('d', 80, 20004, lambda s: (eof(s), s.close()))
    step('e', 82, 20005, lambda s: None)
    print('step f UDP 20006 %s:53 %s' % (V, udp(53, 20006)), flush=True)
    open('/tmp/states.ready', 'w').close()
    time.sleep(600)
elif part == 'icmp':
    print('icmp UDP %s:54 %s' % (V, udp(54, 20007)), flush=True)
EOF
ip netns exec cl python3 /tmp/client.py tcp
ip netns exec cl python3 /tmp/client.py udp
ip netns exec cl python3 /tmp/client.py states >/tmp/states.out &
for t in $(seq 1 100); do [ -e /tmp/states.ready ] && break; sleep 0.1; done
sleep 1
cat /tmp/states.out
ipvsadm -Lnc | awk '$4 ~ /:2000[1-6]$/ {print "conn", $1, $3, $4, $5, $6}' | sort
ipvsadm -Ln | awk '/^(TCP|UDP)/ {svc = $1 " " $2} $1 == "->" && $2 != "RemoteAddress:Port" {print "dest", svc, $2, $3, $4, $5, $6}'
ip netns exec cl python3 /tmp/client.py icmp
sleep 2.5
ipvsadm -Ln --stats --exact | tail -n +4 | awk '{$1 = $1; print "stats", $0}'
