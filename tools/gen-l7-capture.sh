#!/usr/bin/env bash
# gen-l7-capture.sh — generate a small capture of real kernel TCP/UDP traffic carrying
# application-layer (L7) protocols, for HTTP / TLS / DNS / protocol-identification tests.
#
#   client ns "tsl7-cli" (10.78.0.1, fd78::1)  <== veth ==>  server ns "tsl7-srv" (10.78.0.2, fd78::2)
#
# A veth pair with every offload off (ethtool -K ... tso gso gro tx rx off, in each namespace),
# so frames are MTU-sized and carry valid checksums. tcpdump captures on the client-side veth
# (full snaplen). No delay, no loss. Nothing has a default route; the namespaces only reach
# each other. Everything below runs one step after the other, so tcp.stream numbers come out in
# the same order on every run (ports, timestamps, TLS randoms and keys differ).
#
# Traffic (each step bounded by --max-time / socket timeouts; about 3 s in all):
#   1. nginx (nginx-light: http_ssl + http_v2) on 10.78.0.2 and [fd78::2]: :80 HTTP/1.1
#      keep-alive, :443 TLS 1.2/1.3 with http2 (ALPN h2 or http/1.1), self-signed cert made
#      here by openssl (CN and SAN l7.test; throwaway key, deleted at the end)
#   2. one curl --http1.1 run, one connection: GET 200, GET 404, HEAD, POST with
#      Expect: 100-continue and a 2000-byte body, GET with If-None-Match -> 304
#   3. HTTPS: curl --http1.1 (ALPN http/1.1), --http2 (ALPN h2), --tlsv1.2 --tls-max 1.2,
#      --tlsv1.3, and one over IPv6; SNI l7.test (--resolve)
#   4. pipelined HTTP/1.1: three requests in one write on one socket to nginx, read to the close
#   5. python3 http.server (HTTP/1.1) on 10.78.0.2:8080: /chunked (Transfer-Encoding: chunked,
#      4 chunks, one with a chunk extension), /slow (200 ms sleep before the first response byte),
#      /close (body delimited by connection close, no Content-Length); one keep-alive curl run
#   6. DNS: python3 server on 10.78.0.2:53 udp+tcp; www.l7.test -> CNAME edge.cdn.l7.test ->
#      A 10.78.0.2 (TTL 300), api.l7.test -> AAAA fd78::2, nx.l7.test -> NXDOMAIN; the client
#      resolves over UDP (and www A once over TCP), then curls the answered addresses with the
#      name as Host header
#   7. protocol openings on real kernel TCP with fake python3 servers: SSH banner exchange
#      (:22), SMTP 220/EHLO/250/QUIT/221 (:25), Redis PING/+PONG (:6379)
#
# Usage (root):  OUT=$PWD/testdata/captures/generated/l7-mix.pcap tools/gen-l7-capture.sh
# Needs: iproute2, ethtool, tcpdump, nginx (with http_ssl and http_v2), curl, openssl, python3
#   DEBIAN_FRONTEND=noninteractive apt-get install -y nginx-light curl openssl tcpdump ethtool python3
# Env knobs: OUT (pcap path)  SNAPLEN (0 = full)  KEEP_LOGS (1: tool logs -> ${OUT%.pcap}.logs/)
set -euo pipefail

OUT=${OUT:-$PWD/l7-mix.pcap}
SNAPLEN=${SNAPLEN:-0}
KEEP_LOGS=${KEEP_LOGS:-0}

NS_C=tsl7-cli NS_S=tsl7-srv
DEV_C=tsl7c0 DEV_S=tsl7s0
IP_C=10.78.0.1 IP_S=10.78.0.2
IP6_C=fd78::1 IP6_S=fd78::2

[[ $(id -u) = 0 ]] || { echo "run as root" >&2; exit 1; }
for t in ip ethtool tcpdump nginx curl openssl; do
  command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done
# the system python3 (stdlib only); a pyenv shim also works but starts slower
PY=${PY:-$( [[ -x /usr/bin/python3 ]] && echo /usr/bin/python3 || command -v python3 )}
[[ -n $PY ]] || { echo "missing tool: python3" >&2; exit 1; }
nginx -V 2>&1 | grep -q -- --with-http_v2_module || { echo "nginx lacks http_v2" >&2; exit 1; }
nginx -V 2>&1 | grep -q -- --with-http_ssl_module || { echo "nginx lacks http_ssl" >&2; exit 1; }

OUT=$(realpath -m "$OUT")
mkdir -p "$(dirname "$OUT")"
WORK=$(mktemp -d -t tsl7.XXXXXX)
PIDS=()

cleanup() {
  local rc=$? p i
  set +e
  trap - EXIT
  for ((i=${#PIDS[@]}-1; i>=0; i--)); do kill -TERM "${PIDS[i]}" 2>/dev/null; done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  ip netns del "$NS_C" 2>/dev/null
  ip netns del "$NS_S" 2>/dev/null
  if [[ $KEEP_LOGS = 1 ]]; then
    mkdir -p "${OUT%.pcap}.logs" && cp "$WORK"/*.log "${OUT%.pcap}.logs/" 2>/dev/null
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ip netns del "$NS_C" 2>/dev/null || true
ip netns del "$NS_S" 2>/dev/null || true
ip netns add "$NS_C"
ip netns add "$NS_S"
C() { ip netns exec "$NS_C" "$@"; }
S() { ip netns exec "$NS_S" "$@"; }
for ns in "$NS_C" "$NS_S"; do
  ip -n "$ns" link set lo up
  # no router solicitations / autoconf chatter on the test link
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.router_solicitations=0 \
    net.ipv6.conf.default.accept_ra=0 net.ipv6.conf.default.autoconf=0
done
ip -n "$NS_C" link add "$DEV_C" type veth peer name "$DEV_S" netns "$NS_S"
ip -n "$NS_C" link set "$DEV_C" address 02:78:00:00:00:01
ip -n "$NS_S" link set "$DEV_S" address 02:78:00:00:00:02
C ethtool -K "$DEV_C" tso off gso off gro off tx off rx off >/dev/null 2>&1 || \
  C ethtool -K "$DEV_C" tso off gso off gro off tx off rx off
S ethtool -K "$DEV_S" tso off gso off gro off tx off rx off >/dev/null 2>&1 || \
  S ethtool -K "$DEV_S" tso off gso off gro off tx off rx off
ip -n "$NS_C" addr add "$IP_C/24" dev "$DEV_C"
ip -n "$NS_S" addr add "$IP_S/24" dev "$DEV_S"
ip -n "$NS_C" -6 addr add "$IP6_C/64" dev "$DEV_C" nodad
ip -n "$NS_S" -6 addr add "$IP6_S/64" dev "$DEV_S" nodad
ip -n "$NS_C" link set "$DEV_C" up
ip -n "$NS_S" link set "$DEV_S" up

# ---------------------------------------------------------------- content, cert
DOC=$WORK/www
mkdir -p "$DOC"
printf '<html><body>l7 index</body></html>\n' > "$DOC/index.html"
printf '<html><body>page a</body></html>\n' > "$DOC/a.html"
printf '{"name":"b","n":2}\n' > "$DOC/b.json"
printf 'plain text c\n' > "$DOC/c.txt"
for f in index.html a.html b.json c.txt; do touch -d '2024-01-02 03:04:05 UTC' "$DOC/$f"; done
# nginx's ETag is "<mtime hex>-<size hex>"; computed here so one curl run can send If-None-Match
ETAG=$(printf '"%x-%x"' "$(stat -c %Y "$DOC/a.html")" "$(stat -c %s "$DOC/a.html")")
head -c 2000 /dev/zero | tr '\0' 'x' > "$WORK/post-body.txt"
chmod -R a+rX "$WORK"

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=l7.test \
  -addext "subjectAltName=DNS:l7.test" \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>"$WORK/openssl.log"

cat > "$WORK/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
user nobody nogroup;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 64; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log $WORK/nginx-access.log;
  client_body_temp_path $WORK/ngx-body;
  proxy_temp_path $WORK/ngx-proxy;
  fastcgi_temp_path $WORK/ngx-fcgi;
  uwsgi_temp_path $WORK/ngx-uwsgi;
  scgi_temp_path $WORK/ngx-scgi;
  server_tokens off;
  keepalive_requests 100;
  keepalive_timeout 5s;
  sendfile off;
  server {
    listen $IP_S:80;
    listen [$IP6_S]:80;
    listen $IP_S:443 ssl http2;
    listen [$IP6_S]:443 ssl http2;
    server_name l7.test www.l7.test api.l7.test;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    root $DOC;
    # POST to a static file: nginx reads (and discards) the body, answering 100 Continue
    # first; the 405 becomes a 200 with the file
    error_page 405 =200 \$uri;
  }
}
EOF

# ---------------------------------------------------------------- python3 servers
cat > "$WORK/apps.py" <<'PY'
# fake application servers in the server namespace (python3 stdlib only)
import http.server, socket, socketserver, struct, sys, threading, time
IP = sys.argv[1]

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True   # TCP_NODELAY: each write is a segment, no wait for delayed ACKs
    server_version = "l7-py/1.0"
    sys_version = ""
    def log_message(self, fmt, *a):
        sys.stderr.write("http %s\n" % (fmt % a))
    def do_GET(self):
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i, (ext, data) in enumerate([("", b"first chunk\n"), (";name=value", b"second chunk, with an extension\n"),
                                             ("", b"third\n"), ("", b"x" * 300 + b"\n")]):
                self.wfile.write(b"%x%s\r\n%s\r\n" % (len(data), ext.encode(), data))
                self.wfile.flush()
                time.sleep(0.01)
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/slow":
            time.sleep(0.200)  # exactly 200 ms between the request and the first response byte
            body = b"slow response after 200 ms\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/close":
            # body delimited by the connection close (no Content-Length, no chunking)
            self.close_connection = True
            self.wfile.write(b"HTTP/1.1 200 OK\r\nServer: l7-py/1.0\r\nContent-Type: text/plain\r\n"
                             b"Connection: close\r\n\r\n")
            for i in range(3):
                self.wfile.write(b"line %d of a body that ends when the server closes\n" % i)
                time.sleep(0.01)
        else:
            self.send_error(404)

class TS(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

# ---- DNS (authoritative for l7.test, answers with name compression)
TTL = 300
def qname_at(msg, off):
    labels = []
    while True:
        n = msg[off]
        if n == 0:
            return ".".join(labels), off + 1
        labels.append(msg[off + 1:off + 1 + n].decode())
        off += 1 + n

def enc(name):
    return b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"

def rr(name_bytes, rtype, rdata):
    return name_bytes + struct.pack("!HHIH", rtype, 1, TTL, len(rdata)) + rdata

def answer(q):
    qid, flags, qd = struct.unpack("!HHH", q[:6])
    name, end = qname_at(q, 12)
    qtype, qclass = struct.unpack("!HH", q[end:end + 4])
    question = q[12:end + 4]
    lname = name.lower()
    ans, rcode = [], 0
    P_QNAME = b"\xc0\x0c"                      # pointer to the question name
    if lname == "www.l7.test":
        # www.l7.test CNAME edge.cdn.l7.test ("edge.cdn" + pointer to "l7.test" at offset 16)
        cname_rdata = b"\x04edge\x03cdn\xc0\x10"
        ans.append(rr(P_QNAME, 5, cname_rdata))
        # offset of the CNAME rdata: header 12 + question + name(2) + type/class/ttl/len(10)
        p_edge = struct.pack("!H", 0xC000 | (12 + len(question) + 2 + 10))
        if qtype == 1:
            ans.append(rr(p_edge, 1, socket.inet_pton(socket.AF_INET, IP)))
    elif lname == "api.l7.test":
        if qtype == 28:
            ans.append(rr(P_QNAME, 28, socket.inet_pton(socket.AF_INET6, "fd78::2")))
    elif lname == "edge.cdn.l7.test":
        if qtype == 1:
            ans.append(rr(P_QNAME, 1, socket.inet_pton(socket.AF_INET, IP)))
    else:
        rcode = 3                                # NXDOMAIN
    rflags = 0x8000 | (flags & 0x7900) | 0x0400 | rcode   # QR, opcode+RD copied, AA
    hdr = struct.pack("!HHHHHH", qid, rflags, 1, len(ans), 0, 0)
    return hdr + question + b"".join(ans)

def dns_udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((IP, 53))
    while True:
        q, peer = s.recvfrom(2048)
        s.sendto(answer(q), peer)

def dns_tcp_conn(c):
    with c:
        c.settimeout(3)
        while True:
            ln = c.recv(2)
            if len(ln) < 2:
                return
            n = struct.unpack("!H", ln)[0]
            q = b""
            while len(q) < n:
                d = c.recv(n - len(q))
                if not d:
                    return
                q += d
            a = answer(q)
            c.sendall(struct.pack("!H", len(a)) + a)

# ---- line-protocol fakes
def readline(c):
    buf = b""
    while not buf.endswith(b"\n"):
        d = c.recv(1)
        if not d:
            break
        buf += d
    return buf

def ssh_conn(c):
    with c:
        c.settimeout(3)
        c.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
        readline(c)                              # the client's identification string, then close

def smtp_conn(c):
    with c:
        c.settimeout(3)
        c.sendall(b"220 l7.test ESMTP\r\n")
        while True:
            line = readline(c)
            if not line:
                return
            verb = line.split(b" ")[0].strip().upper()
            if verb in (b"EHLO", b"HELO"):
                c.sendall(b"250-l7.test Hello\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif verb == b"QUIT":
                c.sendall(b"221 2.0.0 Bye\r\n")
                return
            else:
                c.sendall(b"502 5.5.2 Error: command not recognized\r\n")

def redis_conn(c):
    with c:
        c.settimeout(3)
        buf = b""
        while True:
            d = c.recv(4096)
            if not d:
                return
            buf += d
            while b"PING\r\n" in buf:
                buf = buf.split(b"PING\r\n", 1)[1]
                c.sendall(b"+PONG\r\n")

def tcp_listener(port, handler, fam=socket.AF_INET, addr=IP):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(16)
    def loop():
        while True:
            c, _ = s.accept()
            threading.Thread(target=handler, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()

tcp_listener(53, dns_tcp_conn)
tcp_listener(22, ssh_conn)
tcp_listener(25, smtp_conn)
tcp_listener(6379, redis_conn)
threading.Thread(target=dns_udp, daemon=True).start()
httpd = TS((IP, 8080), H)
open(sys.argv[2], "w").write("ready\n")
httpd.serve_forever()
PY

cat > "$WORK/cli.py" <<'PY'
# clients in the client namespace (python3 stdlib only)
import socket, struct, sys, time
IP = "10.78.0.2"

def recv_all(s):
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            return out
        out += d

def pipeline():
    reqs = b"".join(b"GET %s HTTP/1.1\r\nHost: l7.test\r\nUser-Agent: l7-pipeline/1.0\r\n%s\r\n"
                    % (p, b"Connection: close\r\n" if i == 2 else b"")
                    for i, p in enumerate([b"/a.html", b"/b.json", b"/c.txt"]))
    s = socket.create_connection((IP, 80), timeout=3)
    s.sendall(reqs)                              # all three requests in one write
    data = recv_all(s)
    s.close()
    print("pipeline: %d responses, %d bytes" % (data.count(b"HTTP/1.1 "), len(data)))

def enc(name):
    return b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"

def name_at(msg, off):
    labels, jumped, end = [], False, None
    while True:
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if end is None:
                end = off + 2
            off = struct.unpack("!H", msg[off:off + 2])[0] & 0x3FFF
            continue
        if n == 0:
            return ".".join(labels), (end if end is not None else off + 1)
        labels.append(msg[off + 1:off + 1 + n].decode())
        off += 1 + n

def parse(msg):
    qid, flags, qd, an = struct.unpack("!HHHH", msg[:8])
    off = 12
    for _ in range(qd):
        _, off = name_at(msg, off)
        off += 4
    out = []
    for _ in range(an):
        name, off = name_at(msg, off)
        t, c, ttl, ln = struct.unpack("!HHIH", msg[off:off + 10])
        off += 10
        rd = msg[off:off + ln]
        if t == 1:
            out.append((name, "A", socket.inet_ntop(socket.AF_INET, rd), ttl))
        elif t == 28:
            out.append((name, "AAAA", socket.inet_ntop(socket.AF_INET6, rd), ttl))
        elif t == 5:
            out.append((name, "CNAME", name_at(msg, off)[0], ttl))
        off += ln
    return flags & 0xF, out

def query(qid, name, qtype, tcp=False):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + enc(name) + struct.pack("!HH", qtype, 1)
    if tcp:
        s = socket.create_connection((IP, 53), timeout=3)
        s.sendall(struct.pack("!H", len(q)) + q)
        n = struct.unpack("!H", s.recv(2))[0]
        r = b""
        while len(r) < n:
            r += s.recv(n - len(r))
        s.close()
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(3)
        s.sendto(q, (IP, 53))
        r, _ = s.recvfrom(2048)
        s.close()
    rcode, ans = parse(r)
    sys.stderr.write("dns %s %s %s rcode=%d %s\n" % ("tcp" if tcp else "udp", name, qtype, rcode, ans))
    return ans

def dns():
    # prints "name address" lines for the shell to connect to
    www = query(0x1701, "www.l7.test", 1)
    query(0x1702, "www.l7.test", 28)
    api = query(0x1703, "api.l7.test", 28)
    query(0x1704, "nx.l7.test", 1)
    query(0x1705, "www.l7.test", 1, tcp=True)
    print("www.l7.test", [a[2] for a in www if a[1] == "A"][0])
    print("api.l7.test", [a[2] for a in api if a[1] == "AAAA"][0])

def lines(port, send, expect_close=True):
    s = socket.create_connection((IP, port), timeout=3)
    got = b""
    for msg in send:
        if msg is None:                          # wait for a server line first
            while not got.endswith(b"\n"):
                got += s.recv(4096)
            continue
        s.sendall(msg)
        if expect_close:
            time.sleep(0.02)
    got += recv_all(s) if expect_close else s.recv(4096)
    s.close()
    return got

def ssh():
    print(lines(22, [None, b"SSH-2.0-l7client_1.0\r\n"]).decode().strip())

def smtp():
    s = socket.create_connection((IP, 25), timeout=3)
    f = s.makefile("rb")
    banner = f.readline()
    s.sendall(b"EHLO client.l7.test\r\n")
    ehlo = []
    while True:
        ln = f.readline()
        ehlo.append(ln)
        if ln[3:4] != b"-":
            break
    s.sendall(b"QUIT\r\n")
    bye = f.readline()
    f.close()
    s.close()
    print((banner + b"".join(ehlo) + bye).decode().strip())

def redis():
    s = socket.create_connection((IP, 6379), timeout=3)
    s.sendall(b"*1\r\n$4\r\nPING\r\n")
    r = s.recv(64)
    s.close()
    print(r.decode().strip())

globals()[sys.argv[1]]()
PY

# background jobs are started with ip netns exec directly (it execs), so $! is the server itself
ip netns exec "$NS_S" nginx -c "$WORK/nginx.conf" -p "$WORK" 2> "$WORK/nginx.log" &
PIDS+=($!)
ip netns exec "$NS_S" "$PY" "$WORK/apps.py" "$IP_S" "$WORK/apps.ready" 2> "$WORK/apps.log" &
PIDS+=($!)
for _ in $(seq 50); do
  [[ -e $WORK/apps.ready ]] && S bash -c "exec 3<>/dev/tcp/$IP_S/443" 2>/dev/null && break
  sleep 0.1
done
[[ -e $WORK/apps.ready ]] || { echo "python servers did not start" >&2; cat "$WORK/apps.log" >&2; exit 1; }
S bash -c "exec 3<>/dev/tcp/$IP_S/443" || { echo "nginx did not start" >&2; cat "$WORK/nginx.log" "$WORK/nginx-error.log" >&2; exit 1; }
# neighbour entries in place before the capture (no ARP/NDP in it, except refreshes)
C ping -c1 -W1 "$IP_S" >/dev/null 2>&1 || true
C ping -c1 -W1 "$IP6_S" >/dev/null 2>&1 || true

# ---------------------------------------------------------------- capture
ip netns exec "$NS_C" tcpdump -n -i "$DEV_C" -s "$SNAPLEN" -Z root --immediate-mode -U -w "$OUT" 2> "$WORK/tcpdump.log" &
TCPDUMP_PID=$!
PIDS+=($!)
for _ in $(seq 50); do grep -q listening "$WORK/tcpdump.log" 2>/dev/null && break; sleep 0.1; done
sleep 0.3

step() { echo "== $*"; }
CURL=(curl -s --max-time 5)

step "1-2. HTTP/1.1 keep-alive to nginx: 200, 404, HEAD, POST + Expect: 100-continue, 304"
C "${CURL[@]}" --http1.1 -A "l7-curl/keepalive" \
  -o /dev/null -w '%{http_code} %{num_connects}\n' "http://$IP_S/a.html" \
  --next -s --max-time 5 --http1.1 -A "l7-curl/keepalive" -o /dev/null -w '%{http_code} %{num_connects}\n' "http://$IP_S/missing" \
  --next -s --max-time 5 --http1.1 -A "l7-curl/keepalive" -I -o /dev/null -w '%{http_code} %{num_connects}\n' "http://$IP_S/b.json" \
  --next -s --max-time 5 --http1.1 -A "l7-curl/keepalive" -o /dev/null -w '%{http_code} %{num_connects}\n' \
     -H 'Expect: 100-continue' -H 'Content-Type: text/plain' --data-binary "@$WORK/post-body.txt" "http://$IP_S/c.txt" \
  --next -s --max-time 5 --http1.1 -A "l7-curl/keepalive" -o /dev/null -w '%{http_code} %{num_connects}\n' \
     -H "If-None-Match: $ETAG" "http://$IP_S/a.html"

step "3. HTTPS to nginx (SNI l7.test)"
R4=(--resolve "l7.test:443:$IP_S")
C "${CURL[@]}" -k --http1.1 -A l7-curl/tls-h1 "${R4[@]}" -o /dev/null -w '%{http_version} %{http_code}\n' https://l7.test/
C "${CURL[@]}" -k --http2 -A l7-curl/tls-h2 "${R4[@]}" -o /dev/null -w '%{http_version} %{http_code}\n' https://l7.test/
C "${CURL[@]}" -k --http1.1 --tlsv1.2 --tls-max 1.2 -A l7-curl/tls12 "${R4[@]}" -o /dev/null -w '%{http_version} %{http_code}\n' https://l7.test/a.html
C "${CURL[@]}" -k --http2 --tlsv1.3 -A l7-curl/tls13 "${R4[@]}" -o /dev/null -w '%{http_version} %{http_code}\n' https://l7.test/b.json
C "${CURL[@]}" -k --http2 -A l7-curl/tls-v6 --resolve "l7.test:443:[$IP6_S]" -o /dev/null -w '%{http_version} %{http_code}\n' https://l7.test/

step "4. pipelined HTTP/1.1 (3 requests, one write)"
C "$PY" "$WORK/cli.py" pipeline

step "5. chunked / slow / close on python3 http.server :8080 (one connection)"
C "${CURL[@]}" --http1.1 -A l7-curl/py -o /dev/null -w '%{http_code} %{num_connects} %{time_starttransfer}\n' "http://$IP_S:8080/chunked" \
  --next -s --max-time 5 --http1.1 -A l7-curl/py -o /dev/null -w '%{http_code} %{num_connects} %{time_starttransfer}\n' "http://$IP_S:8080/slow" \
  --next -s --max-time 5 --http1.1 -A l7-curl/py -o /dev/null -w '%{http_code} %{num_connects} %{time_starttransfer}\n' "http://$IP_S:8080/close"

step "6. DNS, then connect to the answers"
C "$PY" "$WORK/cli.py" dns > "$WORK/dns.out" 2> "$WORK/dns.log"
cat "$WORK/dns.log"
while read -r name addr; do
  [[ $addr = *:* ]] && url="http://[$addr]/" || url="http://$addr/"
  C "${CURL[@]}" --http1.1 -A l7-curl/dns -H "Host: $name" -o /dev/null -w "$name $addr %{http_code}\n" "$url"
done < "$WORK/dns.out"

step "7. SSH banner, SMTP EHLO, Redis PING"
C "$PY" "$WORK/cli.py" ssh
C "$PY" "$WORK/cli.py" smtp
C "$PY" "$WORK/cli.py" redis

sleep 1.2   # last FIN/ACKs; and packets still queued in the capture ring
kill -INT "$TCPDUMP_PID" 2>/dev/null || true
for _ in $(seq 50); do kill -0 "$TCPDUMP_PID" 2>/dev/null || break; sleep 0.1; done
kill -TERM "$TCPDUMP_PID" 2>/dev/null || true
wait "$TCPDUMP_PID" 2>/dev/null || true
cat "$WORK/tcpdump.log" >&2
# every packet the filter saw must be in the file
cap=$(sed -n 's/^\([0-9]*\) packets captured.*/\1/p' "$WORK/tcpdump.log")
rcv=$(sed -n 's/^\([0-9]*\) packets received by filter.*/\1/p' "$WORK/tcpdump.log")
[[ -n $cap && $cap = "$rcv" ]] || { echo "tcpdump wrote $cap of $rcv packets" >&2; exit 1; }
ls -l "$OUT"
