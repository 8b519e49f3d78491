#!/bin/bash
# Recorded with the IPVS oracle (a VM whose kernel has IPVS, ipvsadm 1.31):
#   ipvs-oracle run crates/rvsd/tests/golden/dr-wrr-seed.sh > crates/rvsd/tests/golden/dr-wrr-seed.golden
# The seed's DR director rules (wrr, real servers added with weights 2, 5, 5, in that order,
# direct routing) on a bridge LAN; 24 TCP connections from one client, one after another;
# prints the real server that answered each (rs1, rs2, rs3: the first, second and third added).
set -e
. /oracle/topo.sh
topo_dr 3 >/dev/null
ipvsadm -A -t 192.168.50.100:80 -s wrr
ipvsadm -a -t 192.168.50.100:80 -r 10.2.0.11 -g -w 2
ipvsadm -a -t 192.168.50.100:80 -r 10.2.0.12 -g -w 5
ipvsadm -a -t 192.168.50.100:80 -r 10.2.0.13 -g -w 5
for i in 1 2 3; do serve_name rs$i 80; done
sleep 1
for n in $(seq 1 24); do ask 192.168.50.100 80; done
