#!/bin/sh
# ipvs-oracle job: records how the real ipvsadm 1.31 answers many invocations (command-line
# parsing, errors, help, and what the kernel refuses). Run on the host:
#   ipvs-oracle run crates/rvs-config/tests/golden/cli/cli.sh > crates/rvs-config/tests/golden/cli/cli.golden
# Each case line is "SETUP[@ARGV0] [<<STDIN] ARGS..." (ARGS shell-quoted; STDIN a Python
# string literal; ARGV0 the program path to run, default `ipvsadm`). SETUP "none" starts from
# an empty table, "svc" from the small setup below.
# Record format (lengths in bytes, so texts without a final newline survive):
#   === ARGS            (shell-quoted as run)
#   --- setup NAME
#   --- argv0 PATH      (only with @ARGV0)
#   --- stdin LEN       (only with STDIN) followed by the bytes
#   --- status N
#   --- stdout LEN      followed by the bytes
#   --- stderr LEN      followed by the bytes
#   --- save LEN        `ipvsadm -Sn` afterwards, followed by the bytes
mkdir -p /tmp/cli && cd /tmp/cli || exit 1
# a fixed name environment (the VM has none): the replay test's resolver knows the same names
printf 'hosts: files\nservices: files\n' > /etc/nsswitch.conf
printf '127.0.0.1 localhost\n10.0.0.2 vip2\n10.0.1.7 rs7\n255.255.255.0 mask24\n' > /etc/hosts
printf 'http 80/tcp\ndomain 53/udp\ndomain 53/tcp\nsip 5060/udp\nwebcache 8080/tcp\n' > /etc/services
cat > run.py <<'RVS_CLI_EOF'
import ast, re, shlex, subprocess, sys

SETUP = {
    "none": [],
    "svc": [
        "-A -t 10.0.0.1:80 -s rr",
        "-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m",
        "-A -u 10.0.0.1:53",
        "-A -f 7",
        "-A -t [2001:db8::1]:80",
    ],
}

def ipvsadm(args, stdin=None, argv0="ipvsadm"):
    p = subprocess.run([argv0] + args, input=stdin, capture_output=True, timeout=30)
    rc = p.returncode if p.returncode >= 0 else 128 - p.returncode
    return rc, p.stdout, p.stderr

def section(out, name, data):
    out.write(("--- %s %d\n" % (name, len(data))).encode())
    out.write(data)

def case(out, line):
    setup, rest = line.split(" ", 1) if " " in line else (line, "")
    setup, _, argv0 = setup.partition("@")
    stdin = None
    if rest.startswith("<<"):
        m = re.match(r"<<('(?:[^'\\]|\\.)*')\s*(.*)$", rest)
        stdin = ast.literal_eval(m.group(1)).encode()
        rest = m.group(2)
    args = shlex.split(rest)
    ipvsadm(["-C"])
    for s in SETUP[setup]:
        ipvsadm(s.split())
    rc, so, se = ipvsadm(args, stdin, argv0 or "ipvsadm")
    out.write(("=== %s\n--- setup %s\n" % (" ".join(shlex.quote(a) for a in args), setup)).encode())
    if argv0:
        out.write(("--- argv0 %s\n" % argv0).encode())
    if stdin is not None:
        section(out, "stdin", stdin)
    out.write(("--- status %d\n" % rc).encode())
    section(out, "stdout", so)
    section(out, "stderr", se)
    section(out, "save", ipvsadm(["-Sn"])[1])
    ipvsadm(["--stop-daemon", "master"])
    ipvsadm(["--stop-daemon", "backup"])

out = sys.stdout.buffer
for line in open("cases.txt"):
    line = line.rstrip("\n")
    if line and not line.startswith("#"):
        case(out, line)
out.flush()
RVS_CLI_EOF
cat > cases.txt <<'RVS_CLI_EOF'
# --- no command, help, version
none
none -h
none --help
none -v
none --version
none -h -A
none -v -L
none -A -h
none -L -v
none -V
none --foo
none foo
none -
none --
none -- -L
none -A --foo
none -L --json
none -Lq
none -A -t
none -A --tcp-service
none -A -t -s rr
none --lis
none --list=foo
none -C -n
none -C foo
none -C -- foo
none -L -L
none -L -A
none -LA
none -L -l
none -A -t 10.0.0.2:80 -A
# --- bundling and argument forms
none -At 10.0.0.2:80
none -A -t10.0.0.2:80
none -A -t=10.0.0.2:80
none -A --tcp-service=10.0.0.2:80
none -A --tcp-service 10.0.0.2:80
none -A -t 10.0.0.2:80 --ops=1
none -Ln
svc -Lnt 10.0.0.1:80
svc -Ltn
none -Ap -t 10.0.0.2:80
none -A -t 10.0.0.2:80 -ps rr
none -A -t 10.0.0.2:80 -p10
# --- repeated options
none -A -t 10.0.0.2:80 -s rr -s wrr
none -A -t 10.0.0.2:80 -u 10.0.0.2:80
none -A -t 10.0.0.2:80 -f 3
none -A -t 10.0.0.2:80 -p -p
none -A -t 10.0.0.2:80 -M 255.0.0.0 -M 255.0.0.0 -p
none -A -t 10.0.0.2:80 -o -o
none -A -t 10.0.0.2:80 --pe sip --pe sip -p
none -A -t 10.0.0.2:80 -b flag-1 -b flag-2
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -g -m
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -w 1 -w 2
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -r 10.0.1.3
svc -L -n -n
none -L --sort --sort
svc -L --stats --stats
# --- service specifiers
none -A -t 10.0.0.2:80
none -A -u 10.0.0.2:53
none --add-service --sctp-service 10.0.0.2:80
none -A -t 10.0.0.2
none -A -t 10.0.0.2:0
none -A -t 10.0.0.2:0 -p
none -A -t 10.0.0.2 -p 60
none -A -t 1234
none -A -t 1234:80
none -A -t ''
none -A -t :80
none -A -t 10.1:80
none -A -t 10:80
none -A -t 0x0a000002:80
none -A -t 10.0.0.2:65535
none -A -t 10.0.0.2:65536
none -A -t 10.0.0.2:-1
none -A -t 10.0.0.2:http
none -A -u 10.0.0.2:domain
none -A -t 10.0.0.2:nosuchservice
none -A -t 10.0.0.2:80x
none -A -t 10.0.0.256:80
none -A -t localhost:80
none -A -t [2001:db8::2]:80
none -A -t [2001:db8::2]
none -A -t [2001:db8::2:80
none -A -t 2001:db8::2
none -A -t 2001:db8::2 -p
none -A -t [10.0.0.2]:80
none -A -t [::ffff:10.0.0.2]:80
none -A -f 5
none -A -f 0
none -A -f -1
none -A -f abc
none -A -f 12abc
none -A -f ''
none -A -f 4294967295
none -A -f 4294967296
none -A -f 0x10
none -A -f 5 -6
none -A -f 5 --ipv6
none -A -6 -f 5
none -A -t 10.0.0.2:80 -6
none -A -f 5 -6 -6
none -A -f 5 -6 -M 64 -p
none -A -f 5 -M 64 -6 -p
# --- scheduler, persistence, netmask, pe, flags, ops
none -A -t 10.0.0.2:80 -s rr
none -A -t 10.0.0.2:80 -s nosuch
none -A -t 10.0.0.2:80 -s ''
none -A -t 10.0.0.2:80 -s abcdefghijklmnop
none -A -t 10.0.0.2:80 -s none
none -A -t 10.0.0.2:80 -p
none -A -t 10.0.0.2:80 -p 100
none -A -t 10.0.0.2:80 --persistent=100
none -A -t 10.0.0.2:80 --persistent 100
none -A -t 10.0.0.2:80 -p 0
none -A -t 10.0.0.2:80 -p 1
none -A -t 10.0.0.2:80 -p 2678400
none -A -t 10.0.0.2:80 -p 2678401
none -A -t 10.0.0.2:80 -p abc
none -A -t 10.0.0.2:80 -p -s rr
none -A -t 10.0.0.2:80 -p -5
none -A -t 10.0.0.2:80 -p 100 200
none -A -t 10.0.0.2:80 -p -M 255.255.255.0
none -A -t 10.0.0.2:80 -p -M 24
none -A -t 10.0.0.2:80 -p -M 255.0.255.0
none -A -t 10.0.0.2:80 -p -M bad
none -A -t 10.0.0.2:80 -p -M localhost
none -A -t 10.0.0.2:80 -M 255.255.255.0
none -M 255.255.255.0 -A -t 10.0.0.2:80
none -A -t [2001:db8::2]:80 -p -M 64
none -A -t [2001:db8::2]:80 -p -M 0
none -A -t [2001:db8::2]:80 -p -M 129
none -A -t [2001:db8::2]:80 -p -M abc
none -A -t [2001:db8::2]:80 -p -M 64abc
none -A -M 64 -t [2001:db8::2]:80 -p
none -A -t 10.0.0.2:80 -p --pe sip
none -A -u 10.0.0.2:5060 -p --pe sip
none -A -t 10.0.0.2:80 --pe sip
none -A -t 10.0.0.2:80 -p --pe nosuch
none -A -t 10.0.0.2:80 -s sh -b sh-port
none -A -t 10.0.0.2:80 -s sh -b sh-fallback,sh-port
none -A -t 10.0.0.2:80 -b sh-port
none -A -t 10.0.0.2:80 -b sh-port -s sh
none -A -t 10.0.0.2:80 -s mh -b mh-fallback,mh-port
none -A -t 10.0.0.2:80 -s sh -b mh-port
none -A -t 10.0.0.2:80 -b flag-1,flag-2,flag-3
none -A -t 10.0.0.2:80 -b flag-1,bogus
none -A -t 10.0.0.2:80 -b ''
none -A -t 10.0.0.2:80 -b flag-1,,flag-2
none -A -t 10.0.0.2:80 -b ,
none -A -u 10.0.0.2:53 -o
none -A -t 10.0.0.2:80 -o
none -A -f 9 -o
none --add-service --udp-service 10.0.0.2:53 --ops --scheduler rr --persistent 30
# --- edit/delete service
svc -A -t 10.0.0.1:80
svc -E -t 10.0.0.1:80
svc -E -t 10.0.0.1:80 -s wrr -p 20
svc -E -t 10.0.0.9:80
svc -E -t 10.0.0.1:80 -r 10.0.1.1
svc -D -t 10.0.0.1:80
svc -D -t 10.0.0.9:80
svc -D -f 7
svc -D -t 10.0.0.1:80 -s rr
none -D
none -E
svc --delete-service -u 10.0.0.1:53
svc -D -t [2001:db8::1]:80
# --- real servers
svc -a -t 10.0.0.1:80 -r 10.0.1.2
svc -a -t 10.0.0.1:80 -r 10.0.1.2:8080 -m
svc -a -t 10.0.0.1:80 -r 10.0.1.2:8080 -g
svc -a -t 10.0.0.1:80 -r 10.0.1.2:8080 -i
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -m
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -w 0
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -w 65535
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -w 65536
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -w -1
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -w x
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -w ''
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -x 10 -y 5
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -x 5 -y 10
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -y 10
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -x 2147483647
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -x 2147483648
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -y abc
svc --add-server --tcp-service 10.0.0.1:80 --real-server 10.0.1.2 --masquerading --weight 3 --u-threshold 9 --l-threshold 2
svc -a -t 10.0.0.1:80
svc -a -r 10.0.1.2
svc -a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m
svc -a -t 10.0.0.9:80 -r 10.0.1.2
svc -a -t 10.0.0.1:80 -r [2001:db8::5]:80
svc -a -t 10.0.0.1:80 -r [2001:db8::5]:80 -i
svc -a -t [2001:db8::1]:80 -r 10.0.1.2 -m
svc -a -t [2001:db8::1]:80 -r [2001:db8::5]:8080 -m
svc -a -t [2001:db8::1]:80 -r 2001:db8::5 -m
svc -a -t 10.0.0.1:80 -r 1234
svc -a -t 10.0.0.1:80 -r 10.0.1.2:http -m
svc -a -t 10.0.0.1:80 -r 10.0.1.2:99999 -m
svc -a -t 10.0.0.1:80 -r 0.0.0.0
svc -a -t 10.0.0.1:80 -r 224.0.0.1
svc -a -t 10.0.0.1:80 -r 255.255.255.255
svc -a -f 7 -r 10.0.1.3
svc -a -f 7 -r 10.0.1.3:99 -g
svc -a -f 7 -r 10.0.1.3:99 -m
svc -a -f 8 -r 10.0.1.3
svc -a -u 10.0.0.1:53 -r 10.0.1.4 -s rr
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -n
# --- tunnels
svc -a -t 10.0.0.1:80 -r 10.0.1.2 --tun-type gue
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -m --tun-csum
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gue
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gue --tun-port 6080
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gue --tun-port 6080 --tun-csum
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gue --tun-port 6080 --tun-remcsum
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gue --tun-port 6080 --tun-csum --tun-nocsum
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gue --tun-port 6080 --tun-remcsum --tun-csum
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gue --tun-port 0
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gue --tun-port 65536
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-port 6080
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type ipip
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type ipip --tun-nocsum
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gre
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gre --tun-csum
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gre --tun-remcsum
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gre --tun-port 1
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type foo
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gre --tun-type gre
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-csum --tun-type gre
# --- edit/delete real servers
svc -e -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 5
svc -e -t 10.0.0.1:80 -r 10.0.1.1:8080
svc -e -t 10.0.0.1:80 -r 10.0.1.9:8080 -m
svc -e -t 10.0.0.9:80 -r 10.0.1.1:8080 -m
svc -e -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -x 1 -y 2
svc -d -t 10.0.0.1:80 -r 10.0.1.1:8080
svc -d -t 10.0.0.1:80 -r 10.0.1.1
svc -d -t 10.0.0.1:80 -r 10.0.1.9:8080
svc -d -t 10.0.0.9:80 -r 10.0.1.1:8080
svc -d -t 10.0.0.1:80 -r 10.0.1.1:8080 -w 1
svc -d -t 10.0.0.1:80 -r 10.0.1.1:8080 -m
svc -d -t 10.0.0.1:80
svc --delete-server --tcp-service 10.0.0.1:80 --real-server 10.0.1.1:8080
# --- list
svc -L
svc -l
svc --list
svc -L -n
svc -L -c
svc -L --timeout
svc -L --daemon
svc -L -c --timeout
svc -L --timeout --daemon
svc -L -t 10.0.0.1:80 -c
svc -L -c -t 10.0.0.1:80
svc -L -t 10.0.0.1:80 --daemon
svc -L -c --stats
svc -L --timeout --rate
svc -L --daemon --thresholds
svc -L --timeout --persistent-conn
svc -L -c --persistent-conn
svc -L -t 10.0.0.9:80
svc -L -t 10.0.0.1:80 -n
svc -L -s rr
svc -L -r 10.0.1.1
svc -L -n --stats --rate --thresholds --persistent-conn --nosort --exact --tun-info --sort
svc -L -n -X
svc -L --syncid 3
svc -L --syncid 300
svc -L -o
svc -L -6
svc -L -f 7 -6 -n
svc -L foo
# --- save, zero, clear, set
svc -S
svc -S -n
svc -Sn
svc -S -c
svc -S -t 10.0.0.1:80
svc -Z
svc -Z -t 10.0.0.1:80
svc -Z -t 10.0.0.9:80
svc -Z -n
svc -Z -f 7
svc -C
svc --clear
none --set 100 10 10
none --set 0 0 0
none --set 1 2
none --set
none --set 1 2 3 4
none --set a b c
none --set 1 x 3
none --set 2678400 0 0
none --set 2678401 0 0
none --set -1 0 0
none --set 1 2 3 -n
# --- daemons
none --start-daemon master
none --start-daemon master --mcast-interface lo
none --start-daemon backup --mcast-interface lo --syncid 5
none --start-daemon foo
none --start-daemon
none --start-daemon=master --mcast-interface lo
none --start-daemon master --syncid 256
none --start-daemon master --syncid -1
none --start-daemon master --mcast-interface lo --mcast-group 1.2.3.4
none --start-daemon master --mcast-interface lo --mcast-group 239.1.2.3 --mcast-port 9000 --mcast-ttl 2 --sync-maxlen 1000
none --start-daemon master --mcast-interface lo --mcast-group ff02::1
none --start-daemon master --mcast-interface lo --mcast-group ::1
none --start-daemon master --mcast-interface lo --mcast-group bad
none --start-daemon master --mcast-port 0
none --start-daemon master --mcast-port 65536
none --start-daemon master --mcast-ttl 0
none --start-daemon master --mcast-ttl 256
none --start-daemon master --sync-maxlen 65507 --mcast-interface lo
none --start-daemon master --sync-maxlen 65508
none --start-daemon master -n
none --stop-daemon master
none --stop-daemon backup --syncid 3
none --stop-daemon foo
none --stop-daemon master --mcast-interface lo
none --start-daemon master --mcast-interface abcdefghijklmnopqrst
# --- restore
none <<'-A -t 10.0.0.3:80\n-a -t 10.0.0.3:80 -r 10.0.1.9 -m\n' -R
none <<'ipvsadm -A -t 10.0.0.3:80\n\n   \n\t-A\t-u 10.0.0.3:53 ipvsadm\n' -R
none <<'-A -t 10.0.0.3:80\n# a comment\n-A -u 10.0.0.3:53\n' -R
none <<'-A -t 10.0.0.3:80 # a comment\n' -R
none <<'-A -t 10.0.0.3:80\n-A -t 10.0.0.3:80\n-A -u 10.0.0.3:53\n' -R
none <<'-A -t 10.0.0.3:80\n-A -t 10.0.0.3:80\n' -R
none <<'-A -t 10.0.0.3:80\n-A -t 10.0.0.3 -s rr\n-A -u 10.0.0.3:53\n' -R
none <<'-A -t 10.0.0.3:80\n-R\n-A -u 10.0.0.3:53\n' -R
none <<'-A -t 10.0.0.3:80\n-A -u 10.0.0.3:53' -R
none <<'-A -t 10.0.0.3:80\r\n-A -u 10.0.0.3:53\r\n' -R
none <<'' -R
none <<'-A -t 10.0.0.3:80\n' -R -n
none <<'-A -t 10.0.0.3:80\n' --restore
# --- names (see the environment at the top)
none -A -t vip2:http
none -A -t localhost:80
none -A -u vip2:domain
none -A -t vip2:domain
none -A -u vip2:http
none --add-service --sctp-service vip2:http
none -A -t [2001:db8::2]:http
none -A -t vip2:80 -p -M mask24
none -A -t vip2:80 -p -M nosuchhost
none -A -t nosuchhost:80
svc -a -t 10.0.0.1:80 -r rs7:webcache -m
svc -a -t 10.0.0.1:80 -r rs7 -m
svc -a -f 7 -r rs7:http -m
svc -a -u 10.0.0.1:53 -r rs7:domain -m
svc -a -u 10.0.0.1:53 -r rs7:webcache -m
svc -a -r rs7:http -t 10.0.0.1:80 -m
none <<'ipvsadm -A -t vip2:http -s rr\nipvsadm -a -t vip2:http -r rs7:webcache -m\n' -R
# --- C library number and address forms
none -A -t ' 10.0.0.2:80'
none -A -t '10.0.0.2 :80'
none -A -t '10.0.0.2 x:80'
none -A -t 012.0.0.1:80
none -A -t 10.0.0.08:80
none -A -t 0x:80
none -A -t 10.0.0.2:+80
none -A -t '10.0.0.2: 80'
none -A -t '10.0.0.2:80 '
none -A -t 10.0.0.2:-0 -p
none -A -t 10.0.0.2:80 -p ' 10'
none -A -t 10.0.0.2:80 -p +10
none -A -t 10.0.0.2:80 -p '10 '
none -A -f ' 7'
none -A -f +7
none -A -t 10.0.0.2:80 -p -M 0xffffff00
none -A -t 10.0.0.2:80 -p -M 255.255.255
none -A -t 10.0.0.2:80 -p -M 0
none -A -t [2001:db8::2]:80 -p -M ' 64'
none -A -t [2001:db8::2]:80 -p -M +64
none -A -t [2001:db8::2]:80 -p -M 128
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -w ' 5'
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -w +5
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -w 2147483647
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -w 2147483648
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -w 99999999999999999999
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -x 5 -y 5
svc -a -t 10.0.0.1:80 -r 10.0.1.2:0 -m
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -w 0 -x 0 -y 0
# --- more combinations
none -A -t 10.0.0.2:80 -s sh -b sh-port,flag-3
none -A -u 10.0.0.2:53 -s rr -p 10 -M 255.255.0.0 -b flag-2 -o --pe sip
none -A -t 10.0.0.2:80 --pe ''
none -A -t 10.0.0.2:80 -p --pe sipx
none -A -t 10.0.0.2:80 -s abcdefghijklmno
none -A -t 10.0.0.2:80 -p=100
none -A -t 10.0.0.2:80 --persistent=
none -A -t 10.0.0.2:80 -p ''
none -A -t 10.0.0.2:80 -? 
none -C -C
none --set 1 2 3 -- 4
none --set 1 2 -- 3
svc -E -f 7 -s rr -p
svc -E -t 10.0.0.1:80 -b sh-port -s sh
svc -E -t 10.0.0.1:80 -s mh -b mh-port -p 30 -M 255.255.255.128
svc -E -t [2001:db8::1]:80 -p 60 -M 96
svc -E -u 10.0.0.1:53 -o
svc -a -f 7 -6 -r [2001:db8::9]
svc -a -f 7 -r [2001:db8::9] -i
svc -e -t 10.0.0.1:80 -r 10.0.1.1:8080 -i
svc -e -t 10.0.0.1:80 -r 10.0.1.1:8080 -m --tun-type gue
svc -a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gue --tun-port 6080 --tun-nocsum
svc -a -t 10.0.0.1:80 -r 10.0.1.2 --ipip --tun-type=gre --tun-csum
svc -Z -t 10.0.0.1:80 -u 10.0.0.1:53
svc -L -t 10.0.0.1:80 --timeout
svc -L --daemon --persistent-conn
svc -L -u 10.0.0.1:53 -n --stats
svc -L -f 7 -n
svc -D -f 7 -6
svc -D -t [2001:db8::1]
svc -d -f 7 -r 10.0.1.1
svc -a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 2
svc <<'-D -t 10.0.0.1:80\n-a -t 10.0.0.1:80 -r 10.0.1.3 -m\n-A -t 10.0.0.1:80\n' -R
svc <<'-C\n-A -f 9 -s rr\n-a -f 9 -r 10.0.1.3:99 -m -w 7\n-E -f 9 -s wrr\n' -R
svc <<'-a -t 10.0.0.1:80 -r 10.0.1.3 -m\n-a -t 10.0.0.1:80 -r 10.0.1.3 -w 70000\n-Z\n' -R
# --- the program name in the texts
none@/usr/sbin/ipvsadm -h
none@/usr/sbin/ipvsadm -X
none@/usr/sbin/ipvsadm -A -t 10.0.0.2:80 -s
none@/usr/sbin/ipvsadm <<'-A -t 10.0.0.3:80\n-R\n' -R
none@/usr/sbin/ipvsadm <<'# comment\n' -R
RVS_CLI_EOF
python3 run.py
