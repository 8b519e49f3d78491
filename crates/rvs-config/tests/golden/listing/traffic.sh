#!/bin/sh
# Golden --rate / --stats listings with non-zero counters: a NAT service gets a burst of real
# connections and datagrams, then the estimator runs (sleep) and every counter mode is listed.
# The rates and byte counts depend on the VM's timing: the test compares these listings with
# the numbers masked (layout only); the numbers' formatting is unit-tested.
# Each command is printed as "### <command>" followed by what it printed and "### rc=N".
# Recorded with: ipvs-oracle run traffic.sh > traffic.out
. /oracle/topo.sh
run() { echo "### $*"; "$@" 2>&1; echo "### rc=$?"; }
topo_nat 2 > /dev/null 2>&1
for i in 1 2; do serve_name "rs$i" 80; serve_name "rs$i" 53 udp; done
sleep 1
run ipvsadm -A -t 192.168.50.100:80 -s rr
run ipvsadm -a -t 192.168.50.100:80 -r 10.1.1.2:80 -m
run ipvsadm -a -t 192.168.50.100:80 -r 10.1.2.2:80 -m -w 2
run ipvsadm -A -u 192.168.50.100:53 -s rr
run ipvsadm -a -u 192.168.50.100:53 -r 10.1.1.2:53 -m
run ipvsadm -a -u 192.168.50.100:53 -r 10.1.2.2:53 -m
ip netns exec cl python3 -c "
import socket
for i in range(200):
    s=socket.create_connection(('192.168.50.100',80),timeout=3); s.recv(64); s.close()
for i in range(100):
    u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); u.settimeout(3); u.sendto(b'?'*100,('192.168.50.100',53)); u.recv(64); u.close()
"
sleep 4
for m in "--rate" "--rate --exact" "--stats" "--stats --exact"; do
  run ipvsadm -L -n $m
  run ipvsadm -L -n --nosort $m
done
run ipvsadm -L -n -t 192.168.50.100:80 --rate
run ipvsadm -L -n -u 192.168.50.100:53 --stats
