#!/bin/sh
# Golden listings *without* -n: the VM resolves names only from the files below (hosts and
# services through NSS "files"), so every name is deterministic. The test's Names resolver
# holds the same two tables (tests/render_names.rs).
# Each command is printed as "### <command>" followed by what it printed and "### rc=N".
# Recorded with: ipvs-oracle run names.sh > names.out
run() { echo "### $*"; "$@" 2>&1; echo "### rc=$?"; }
printf 'hosts: files\nservices: files\n' > /etc/nsswitch.conf
cat > /etc/hosts <<'H'
127.0.0.1 localhost
10.0.0.1 vip-one.example vip1
10.1.0.1 rs1.example rs1
10.1.0.2 a-very-long-real-server-name-for-truncation.example.org
10.0.0.9 a-very-long-virtual-service-name.example.org
10.0.0.10 exactly-twenty-seven-chars.x
2001:db8::80 vip6.example
2001:db8::a0a0 rs6.example
2001:db8::a0a1 a-very-long-ipv6-real-server-name-that-is-long.example.org
H
cat > /etc/services <<'S'
http		80/tcp		www
http		80/udp
domain		53/tcp
domain		53/udp
https		443/tcp
ssh		22/tcp
sip		5060/tcp
sip		5060/udp
sip		5060/sctp
a-very-long-service-name-for-the-listing	8080/tcp
S
run ipvsadm -A -t 10.0.0.1:80 -s wlc
run ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1
run ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.2:8080 -m -w 3 -x 100 -y 50
run ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.3:22 -m -w 2
run ipvsadm -A -t 10.0.0.9:8080 -s rr -p 300
run ipvsadm -a -t 10.0.0.9:8080 -r 10.1.0.2 -i --tun-type gue --tun-port 6080 --tun-csum
run ipvsadm -a -t 10.0.0.9:8080 -r 10.0.0.10 -g
run ipvsadm -A -t 10.0.0.10:443 -s sh -b sh-port
run ipvsadm -a -t 10.0.0.10:443 -r 10.0.0.10 -g
run ipvsadm -A -u 10.0.0.1:53 -s rr
run ipvsadm -a -u 10.0.0.1:53 -r 10.1.0.1:53 -m
run ipvsadm -A -u 10.0.0.1:5060 -s rr -p 60 --pe sip
run ipvsadm -A --sctp-service 10.0.0.1:5060 -s rr
run ipvsadm -a --sctp-service 10.0.0.1:5060 -r 10.1.0.1:5060 -m
run ipvsadm -A -u 10.0.0.1:80 -s rr
run ipvsadm -A -t [2001:db8::80]:80 -s wlc
run ipvsadm -a -t [2001:db8::80]:80 -r [2001:db8::a0a0]:443 -m
run ipvsadm -a -t [2001:db8::80]:80 -r [2001:db8::a0a1]:8080 -m
run ipvsadm -a -t [2001:db8::80]:80 -r [2001:db8::a0a2]:80 -m
run ipvsadm -A -t [2001:db8::81]:22 -s rr
run ipvsadm -A -f 7 -s rr
run ipvsadm -a -f 7 -r 10.1.0.1:0 -m
run ipvsadm -a -f 7 -r 10.1.0.2:80 -m
run ipvsadm -A -f 8 -6 -s rr
run ipvsadm -a -f 8 -6 -r [2001:db8::a0a0]:0 -m
run ipvsadm -A -t 127.0.0.1:22 -s rr
for m in "" --stats --rate --thresholds --persistent-conn --tun-info "--stats --exact"; do
  run ipvsadm -L $m
done
run ipvsadm -L --nosort
run ipvsadm -L -n --nosort
run ipvsadm -S
run ipvsadm -S -n
run ipvsadm -L -t 10.0.0.9:8080
run ipvsadm -L -u 10.0.0.1:53 --stats
run ipvsadm -L -t [2001:db8::80]:80 --tun-info
run ipvsadm -L -f 7
run ipvsadm -L -c
run ipvsadm -L --timeout
