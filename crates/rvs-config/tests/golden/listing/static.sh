#!/bin/sh
# Golden listings of a static state (no traffic): every scheduler and flag, persistence with
# masks, pe sip, ops, fwmark, IPv4/IPv6, NAT/DR/TUN with ipip/gue/gre and checksum flags,
# thresholds, weights up to 65535, addresses >= 128.0.0.0 for the sort quirk.
# Each command is printed as "### <command>" followed by what it printed and "### rc=N".
# Recorded with: ipvs-oracle run static.sh > static.out
run() { echo "### $*"; "$@" 2>&1; echo "### rc=$?"; }
modprobe ip_vs_pe_sip 2>/dev/null || true
run ipvsadm -A -t 10.0.0.1:80 -s wlc
run ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1
run ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.2:8080 -m -w 3 -x 100 -y 50
run ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.3 -g -w 65535
run ipvsadm -a -t 10.0.0.1:80 -r 200.1.0.4 -i -w 0
run ipvsadm -A -t 200.0.0.1:443 -s rr -p 300 -M 255.255.255.0
run ipvsadm -a -t 200.0.0.1:443 -r 10.1.0.1 -g -w 2
run ipvsadm -A -t 127.0.0.1:80 -s wrr
run ipvsadm -a -t 127.0.0.1:80 -r 127.0.0.1:8080 -m
run ipvsadm -A -t 128.0.0.1:22 -s lc -p
run ipvsadm -A -t 9.255.255.255:65535 -s sed -p 60 -M 255.0.255.0
run ipvsadm -A -u 10.0.0.1:53 -s sh -b sh-fallback,sh-port -o
run ipvsadm -a -u 10.0.0.1:53 -r 10.1.0.5:53 -m -w 5
run ipvsadm -A -u 10.0.0.1:5060 -s rr -p 360 --pe sip -o
run ipvsadm -A -u 10.0.0.2:54 -s mh -b mh-fallback,mh-port
run ipvsadm -A -u 10.0.0.2:55 -s mh -b mh-port
run ipvsadm -A -u 10.0.0.2:56 -s wlc -b flag-1,flag-2,flag-3
run ipvsadm -A -u 10.0.0.2:57 -s rr -b flag-3
run ipvsadm -A --sctp-service 10.0.0.3:9999 -s nq
run ipvsadm -a --sctp-service 10.0.0.3:9999 -r 10.1.0.9:9999 -m -w 7
run ipvsadm -A --sctp-service 10.0.0.3:2905 -s fo
run ipvsadm -A -t 10.0.0.4:80 -s ovf
run ipvsadm -A -t 10.0.0.4:81 -s lblc
run ipvsadm -A -t 10.0.0.4:82 -s lblcr
run ipvsadm -A -t 10.0.0.4:83 -s dh
run ipvsadm -A -t 10.0.0.4:84 -s sh -b sh-port
run ipvsadm -A -t 10.0.0.5:0 -s rr -p 1000
run ipvsadm -A -t 10.0.0.5:1 -s rr -p 2678400 -M 0.0.0.0
run ipvsadm -A -t 10.0.0.6:8080 -s rr
run ipvsadm -a -t 10.0.0.6:8080 -r 10.1.0.6 -i -w 1 --tun-type ipip
run ipvsadm -a -t 10.0.0.6:8080 -r 10.1.0.7 -i -w 2 --tun-type gue --tun-port 6080 --tun-nocsum
run ipvsadm -a -t 10.0.0.6:8080 -r 10.1.0.8 -i -w 3 --tun-type gue --tun-port 6081 --tun-csum
run ipvsadm -a -t 10.0.0.6:8080 -r 10.1.0.9 -i -w 4 --tun-type gue --tun-port 65535 --tun-remcsum
run ipvsadm -a -t 10.0.0.6:8080 -r 10.1.0.10 -i -w 5 --tun-type gre --tun-nocsum
run ipvsadm -a -t 10.0.0.6:8080 -r 10.1.0.11 -i -w 6 --tun-type gre --tun-csum
run ipvsadm -a -t 10.0.0.6:8080 -r 10.1.0.12 -m -w 7 -x 65535 -y 1
run ipvsadm -a -t 10.0.0.6:8080 -r 250.1.0.12 -m -w 8
run ipvsadm -a -t 10.0.0.6:8080 -r 5.1.0.12 -m -w 9
run ipvsadm -a -t 10.0.0.6:8080 -r 10.1.0.12:81 -m -w 10
run ipvsadm -A -f 1 -s rr
run ipvsadm -a -f 1 -r 10.1.0.1:0 -m -w 1
run ipvsadm -A -f 4294967295 -s wlc -p 100 -M 255.255.0.0
run ipvsadm -A -f 2 -6 -s wlc -p 200 -M 64
run ipvsadm -a -f 2 -6 -r 2001:db8::1 -g
run ipvsadm -A -t [2001:db8::80]:80 -s wlc -p 300 -M 64
run ipvsadm -a -t [2001:db8::80]:80 -r [2001:db8::a0a0]:80 -m -w 1
run ipvsadm -a -t [2001:db8::80]:80 -r [2001:db8:1234:5678:9abc:def0:1234:5678]:8080 -m -w 2 -x 10 -y 5
run ipvsadm -a -t [2001:db8::80]:80 -r [2001:db8::a0a1] -i --tun-type gue --tun-port 5555 --tun-csum
run ipvsadm -A -u [ff02::1:ffff:ffff]:65535 -s sh -b sh-fallback
run ipvsadm -A -u [::1]:53 -s rr -p 10 -M 128 -o
run ipvsadm -A -t 123.123.123.123:12345 -s rr
run ipvsadm -a -t 123.123.123.123:12345 -r 123.123.123.124:54321 -m -w 100
run ipvsadm -A --sctp-service [2001:db8:1234:5678:9abc:def0:1234:5678]:65535 -s rr
for m in "" --stats --rate --thresholds --persistent-conn --tun-info "--stats --exact" "--rate --exact" "--stats --rate" "--thresholds --tun-info" "--persistent-conn --tun-info" "--rate --thresholds"; do
  run ipvsadm -L -n $m
  run ipvsadm -L -n --nosort $m
done
run ipvsadm -L -n -t 10.0.0.6:8080
run ipvsadm -L -n -t 10.0.0.6:8080 --tun-info
run ipvsadm -L -n -t 10.0.0.6:8080 --thresholds
run ipvsadm -L -n -t [2001:db8::80]:80 --stats
run ipvsadm -L -n -f 2 -6
run ipvsadm -L -n -u 10.0.0.1:5060 --persistent-conn
run ipvsadm -L -n -t 10.9.9.9:1
run ipvsadm -S -n
run ipvsadm -S
run ipvsadm -L -t 127.0.0.1:80
run ipvsadm -L -n --timeout
run ipvsadm --set 1 2 3
run ipvsadm -L -n --timeout
run ipvsadm --set 0 0 77
run ipvsadm -L --timeout
run ipvsadm -L -n --daemon
run ipvsadm -L -n -c
run ipvsadm -L -n -c --persistent-conn
run ipvsadm -C
run ipvsadm -L -n
run ipvsadm -S -n
run ipvsadm -A -t 127.0.0.1:80 -s rr
run ipvsadm -a -t 127.0.0.1:80 -r 127.0.0.1:22 -m
run ipvsadm -L
run ipvsadm -S
