#!/usr/bin/env python3
"""Golden per-connection oracle files from tshark and tcptrace.

    extract.py CAPTURE OUTDIR [--name NAME]   one capture -> NAME.tshark.csv, NAME.tcptrace.csv
    extract.py --all [--root DIR] [--out DIR] every capture under DIR (default testdata/captures)
                                               -> OUT (default testdata/oracle) + OUT/SUMMARY.md

Python 3 standard library only; needs `tshark` (4.0) and `tcptrace` (6.6.7) on PATH.
A CAPTURE ending in .gz is gunzipped to a temporary file under the system temp dir
(removed afterwards). Column meanings: tools/oracle/README.md.
"""

import argparse
import csv
import gzip
import ipaddress
import os
import re
import shutil
import subprocess
import sys
import tempfile
from decimal import Decimal, ROUND_HALF_UP

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEFAULT_ROOT = os.path.join(REPO, "testdata", "captures")
DEFAULT_OUT = os.path.join(REPO, "testdata", "oracle")
CAPTURE_EXTS = (".pcap", ".pcapng", ".cap")

# Frames whose TCP layer is not a real TCP segment of the trace: TCP headers quoted inside
# ICMP/ICMPv6 errors, and packet headers sampled inside sFlow datagrams.
TSHARK_FILTER = "tcp and not icmp and not icmpv6 and not sflow"

TSHARK_FIELDS = [
    "frame.number",
    "frame.protocols",
    "frame.time_epoch",
    "tcp.stream",
    "ip.src",
    "ipv6.src",
    "ip.dst",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags.syn",
    "tcp.flags.ack",
    "tcp.len",
    "tcp.analysis.initial_rtt",
    "tcp.analysis.retransmission",
    "tcp.analysis.fast_retransmission",
    "tcp.analysis.spurious_retransmission",
    "tcp.analysis.out_of_order",
    "tcp.analysis.duplicate_ack",
    "tcp.analysis.lost_segment",
]
FLAGS = [  # (tshark field, output column stem)
    ("tcp.analysis.retransmission", "retransmission"),
    ("tcp.analysis.fast_retransmission", "fast_retransmission"),
    ("tcp.analysis.spurious_retransmission", "spurious_retransmission"),
    ("tcp.analysis.out_of_order", "out_of_order"),
    ("tcp.analysis.duplicate_ack", "dup_ack"),
    ("tcp.analysis.lost_segment", "lost_segment"),
]

TSHARK_COLUMNS = (
    "stream,first_ts,client_ip,client_port,server_ip,server_port,syn_seen,initial_rtt_us,"
    "c2s_pkts,s2c_pkts,c2s_payload_bytes,s2c_payload_bytes,"
    "c2s_retransmission,c2s_fast_retransmission,c2s_spurious_retransmission,c2s_out_of_order,"
    "s2c_retransmission,s2c_fast_retransmission,s2c_spurious_retransmission,s2c_out_of_order,"
    "c2s_dup_ack,s2c_dup_ack,c2s_lost_segment,s2c_lost_segment"
).split(",")

TCPTRACE_COLUMNS = (
    "conn,first_ts,client_ip,client_port,server_ip,server_port,complete,"
    "c2s_unique_bytes,s2c_unique_bytes,c2s_actual_data_bytes,s2c_actual_data_bytes,"
    "c2s_rexmt_data_pkts,s2c_rexmt_data_pkts,"
    "c2s_rtt_samples,c2s_rtt_min_us,c2s_rtt_avg_us,c2s_rtt_max_us,c2s_rtt_std_us,"
    "s2c_rtt_samples,s2c_rtt_min_us,s2c_rtt_avg_us,s2c_rtt_max_us,s2c_rtt_std_us,rtt_3whs_us"
).split(",")


def warn(msg):
    print("extract.py: " + msg, file=sys.stderr)


def round_int(dec):
    return int(dec.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def is_true(v):
    return v in ("1", "True", "true")


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


# ---------------------------------------------------------------- tshark

# Protocols left enabled by default (everything else is written to the temporary profile's
# disabled_protos): link layers found in the captures, IPv4/IPv6 (with extension headers), TCP.
# Application dissectors can split one TCP connection into two tcp.stream values (tshark 4.0's
# VNC dissector does so on ndpi/vnc-pcapng-named-pcap.pcap); with them off, tcp.stream follows TCP only.
# Tunnels and the other link types tcpsight decodes are kept too (their inner TCP is what
# is compared); none of the public captures carries TCP inside them, so their rows are
# the same with or without these dissectors.
KEEP_PROTOCOLS = re.compile(
    r"frame|eth|ethertype|vlan|ieee8021ad|null|sll|raw|ip|ipv6(\..*)?|tcp"
    r"|udp|gre|erspan|vxlan|geneve|gtp|mpls|pwethheuristic|pwethcw|pwethnocw|pw_eth|pweth"
    r"|pppoes|pppoed|pppoe|ppp|chdlc|fr|wlan|wlan_radio|radiotap|ppi|nflog|juniper|ieee8021ah|vntag|llc")
ALL_DISSECTORS = False  # --all-dissectors: tshark's default protocol set


def write_disabled_protos(confdir):
    p = subprocess.run(["tshark", "-G", "protocols"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, universal_newlines=True, check=True)
    names = [l.split("\t")[2] for l in p.stdout.splitlines() if l.count("\t") >= 2]
    with open(os.path.join(confdir, "disabled_protos"), "w") as f:
        for n in names:
            if not KEEP_PROTOCOLS.fullmatch(n):
                f.write(n + "\n")


def run_tshark(capture):
    """Returns (frames, message). frames: list of dicts (field -> string) in file order."""
    confdir = tempfile.mkdtemp(prefix="oracle-wsconf-")  # fresh profile = default preferences
    try:
        if not ALL_DISSECTORS:
            write_disabled_protos(confdir)
        # occurrence=l: inside tunnels, the innermost IP header's addresses (see frame_src).
        cmd = ["tshark", "-n", "-r", capture,
               "-o", "tcp.relative_sequence_numbers:TRUE",
               "-o", "tcp.analyze_sequence_numbers:TRUE",
               "-Y", TSHARK_FILTER,
               "-T", "fields", "-E", "separator=,", "-E", "occurrence=l", "-E", "header=n"]
        for fld in TSHARK_FIELDS:
            cmd += ["-e", fld]
        env = dict(os.environ, WIRESHARK_CONFIG_DIR=confdir)
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, env=env)
    finally:
        shutil.rmtree(confdir, ignore_errors=True)
    err = "\n".join(l for l in p.stderr.splitlines()
                    if l.strip() and not l.startswith("Running as user"))
    frames = []
    for line in p.stdout.splitlines():
        vals = line.split(",")
        if len(vals) != len(TSHARK_FIELDS):
            raise RuntimeError("unexpected tshark line: %r" % line)
        frames.append(dict(zip(TSHARK_FIELDS, vals)))
    if p.returncode != 0:
        err = "tshark exit %d: %s" % (p.returncode, err)
    return frames, err


# Inside tunnels a frame has several IP headers: fields are read at their last
# occurrence (-E occurrence=l), and the family of the innermost IP header (the last "ip"
# or "ipv6" in frame.protocols) says which of ip.* and ipv6.* is the connection's.
def inner_family(f):
    for p in reversed(f["frame.protocols"].split(":")):
        if p in ("ip", "ipv6"):
            return p
    return "ip"


def frame_src(f):
    fam = inner_family(f)
    return (f[fam + ".src"] or f["ip.src"] or f["ipv6.src"], f["tcp.srcport"])


def frame_dst(f):
    fam = inner_family(f)
    return (f[fam + ".dst"] or f["ip.dst"] or f["ipv6.dst"], f["tcp.dstport"])


def is_pure_syn(f):
    return is_true(f["tcp.flags.syn"]) and not is_true(f["tcp.flags.ack"])


def tshark_rows(frames):
    streams = {}
    for f in frames:
        streams.setdefault(int(f["tcp.stream"]), []).append(f)
    rows = []
    for sid in sorted(streams):
        fr = streams[sid]
        syn = next((f for f in fr if is_pure_syn(f)), None)
        ref = syn if syn is not None else fr[0]
        client, server = frame_src(ref), frame_dst(ref)
        rtts = [f["tcp.analysis.initial_rtt"] for f in fr if f["tcp.analysis.initial_rtt"]]
        if len(set(rtts)) > 1:
            warn("stream %d: several initial_rtt values %s; using the first" % (sid, sorted(set(rtts))))
        rtt = str(round_int(Decimal(rtts[0]) * 1000000)) if rtts else ""
        cnt = {d: {"pkts": 0, "bytes": 0} for d in ("c2s", "s2c")}
        for d in cnt:
            for _, col in FLAGS:
                cnt[d][col] = 0
        for f in fr:
            d = "c2s" if frame_src(f) == client else "s2c"
            if d == "s2c" and frame_src(f) != server:
                warn("stream %d frame %s: endpoint %s is neither client nor server"
                     % (sid, f["frame.number"], frame_src(f)))
            cnt[d]["pkts"] += 1
            cnt[d]["bytes"] += int(f["tcp.len"] or 0)
            for fld, col in FLAGS:
                if f[fld] != "":
                    cnt[d][col] += 1
        c, s = cnt["c2s"], cnt["s2c"]
        rows.append([sid, fr[0]["frame.time_epoch"], client[0], client[1], server[0], server[1],
                     1 if syn is not None else 0, rtt,
                     c["pkts"], s["pkts"], c["bytes"], s["bytes"],
                     c["retransmission"], c["fast_retransmission"], c["spurious_retransmission"],
                     c["out_of_order"],
                     s["retransmission"], s["fast_retransmission"], s["spurious_retransmission"],
                     s["out_of_order"],
                     c["dup_ack"], s["dup_ack"], c["lost_segment"], s["lost_segment"]])
    return rows


# ---------------------------------------------------------------- tcptrace

def run_tcptrace(args):
    p = subprocess.run(["tcptrace"] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, errors="replace")
    return p.returncode, p.stdout, p.stderr


def tcptrace_time(s):
    """tcptrace --csv prints times as printf("%lu.%lu", tv_sec, tv_usec): the microseconds are
    not zero-padded (629503200.30 means 629503200.000030). Returns (Decimal, 'sec.usec6')."""
    sec, _, usec = s.partition(".")
    text = "%s.%06d" % (sec, int(usec or 0))
    return Decimal(text), text


def norm_ip(addr):
    """RFC 5952 form. tcptrace prints IPv6 addresses with zero-padded groups (2001:0db8:0001::0001)
    and drops one colon of a leading '::' (::1 comes out as ':0001')."""
    for cand in (addr, ":" + addr):
        try:
            return ipaddress.ip_address(cand).compressed
        except ValueError:
            pass
    return addr


def ms_to_us(ms):
    return round_int(Decimal(ms) * 1000)


def tcptrace_rows(capture, frames, tshark_tcp_frames):
    """Returns (rows, info, error). rows is None when tcptrace could not read the capture."""
    rc, out_csv, err_csv = run_tcptrace(["-l", "-r", "-n", "--csv", capture])
    rc2, out_txt, err_txt = run_tcptrace(["-l", "-r", "-n", capture])
    allout = out_csv + "\n" + err_csv
    m = re.search(r"(\d+) packets seen, (\d+) TCP packets traced", allout)
    info = {"seen": int(m.group(1)) if m else None, "traced": int(m.group(2)) if m else None}
    pcap_err = re.search(r"^.*PCAP error.*$", allout, re.M)
    if rc != 0 or rc2 != 0:
        lines = [l.strip() for l in (err_csv + "\n" + out_csv).splitlines()
                 if l.strip() and not l.startswith(("#", "1 arg remaining", "Ostermann"))]
        return None, info, "exit %d: %s" % (rc or rc2, lines[0] if lines else "")
    if pcap_err:
        return None, info, "%s (stops reading; %s packets seen)" % (pcap_err.group(0).strip(),
                                                                     info["seen"])
    if info["traced"] == 0 and tshark_tcp_frames > 0:
        return None, info, ("%s packets seen, 0 TCP packets traced (tshark: %d TCP frames)"
                            % (info["seen"], tshark_tcp_frames))

    # --csv: '#' comment lines, one header line starting conn_#, then one line per connection.
    header, recs = None, []
    for line in out_csv.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        vals = [v.strip() for v in line.split(",")]
        if header is None:
            if vals[0] == "conn_#":
                header = vals
            continue
        recs.append(dict(zip(header, vals)))

    # Long text form: "complete conn:" (not in --csv) and host a/b for a consistency check.
    complete, hosts, cur = {}, {}, None
    for line in out_txt.splitlines():
        mm = re.match(r"TCP connection (\d+):", line)
        if mm:
            cur = mm.group(1)
            continue
        mm = re.match(r"\s+host [a-z]+:\s+(\S+)", line)  # labels run a,b / c,d / ... aa,ab
        if mm and cur:
            h = hosts.setdefault(cur, {})
            h["b" if "a" in h else "a"] = mm.group(1)
        mm = re.match(r"\s+complete conn:\s+(\S+)", line)
        if mm and cur:
            complete[cur] = mm.group(1).lower()

    # Which side sent the first pure SYN (SYN set, ACK clear)? tcptrace does not say (its SYN
    # counts include SYN-ACKs), so the pure SYNs are taken from the tshark frames and assigned to
    # the tcptrace connection on the same address/port pair: the earliest-ending connection whose
    # last packet is not before the SYN (else the pair's last connection). With port reuse this
    # splits SYNs between successive connections; it also survives SYNs whose timestamp is earlier
    # than the connection's first packet (timestamps out of file order).
    slack = Decimal("0.000001")  # tcptrace prints times in microseconds
    by_pair = {}
    for r in recs:
        a = (norm_ip(r["host_a"]), r["port_a"])
        b = (norm_ip(r["host_b"]), r["port_b"])
        r["_a"], r["_b"] = a, b
        r["_last"] = tcptrace_time(r["last_packet"])[0]
        by_pair.setdefault(frozenset((a, b)), []).append(r)
    for lst in by_pair.values():
        lst.sort(key=lambda r: r["_last"])
    for f in frames:  # file order
        if not is_pure_syn(f):
            continue
        src = (norm_ip(f["ip.src"] or f["ipv6.src"]), f["tcp.srcport"])
        dst = (norm_ip(f["ip.dst"] or f["ipv6.dst"]), f["tcp.dstport"])
        lst = by_pair.get(frozenset((src, dst)))
        if not lst:
            continue
        t = Decimal(f["frame.time_epoch"])
        r = next((r for r in lst if r["_last"] + slack >= t), lst[-1])
        r.setdefault("_syn_from", src)

    rows = []
    last_client = {}
    for r in recs:
        conn = r["conn_#"]
        h = hosts.get(conn, {})
        if (h.get("a") != "%s:%s" % (r["host_a"], r["port_a"])
                or h.get("b") != "%s:%s" % (r["host_b"], r["port_b"])):
            raise RuntimeError("tcptrace csv/text mismatch for connection %s: %s %s"
                               % (conn, r, h))
        a, b = r["_a"], r["_b"]
        first_text = tcptrace_time(r["first_packet"])[1]
        # client = sender of the first pure SYN; without one, the client of the previous
        # connection on the same address/port pair (tcptrace starts a new connection on a SYN-ACK
        # after a FIN/RST, or after 4 minutes idle); else host a (the first packet's sender).
        pair = frozenset((a, b))
        client = r.get("_syn_from") or last_client.get(pair) or a
        last_client[pair] = client
        client_is_a = client == a
        c, s = ("a2b", "b2a") if client_is_a else ("b2a", "a2b")
        ch, sh = (a, b) if client_is_a else (b, a)

        def rtt(d):
            n = int(r["RTT_samples_" + d])
            if n == 0:
                return [n, "", "", "", ""]
            return [n] + [ms_to_us(r["RTT_%s_%s" % (k, d)]) for k in ("min", "avg", "max", "stdev")]

        w3 = r["RTT_from_3WHS_" + c]
        rtt3 = "" if Decimal(w3) == 0 else ms_to_us(w3)
        rows.append([conn, first_text, ch[0], ch[1], sh[0], sh[1], complete.get(conn, ""),
                     r["unique_bytes_sent_" + c], r["unique_bytes_sent_" + s],
                     r["actual_data_bytes_" + c], r["actual_data_bytes_" + s],
                     r["rexmt_data_pkts_" + c], r["rexmt_data_pkts_" + s]]
                    + rtt(c) + rtt(s) + [rtt3])
    return rows, info, ""


# ---------------------------------------------------------------- driver

def oracle_name(capture, root):
    cap = os.path.abspath(capture)
    root = os.path.abspath(root)
    rel = os.path.relpath(cap, root) if cap.startswith(root + os.sep) else os.path.basename(cap)
    if rel.endswith(".gz"):
        rel = rel[:-3]
    for ext in CAPTURE_EXTS:
        if rel.endswith(ext):
            rel = rel[:-len(ext)]
            break
    return rel.replace(os.sep, "__")


def extract(capture, outdir, name):
    """Writes NAME.tshark.csv and (if tcptrace can read it) NAME.tcptrace.csv. Returns a summary dict."""
    os.makedirs(outdir, exist_ok=True)
    tmpdir = None
    path = capture
    try:
        if capture.endswith(".gz"):
            tmpdir = tempfile.mkdtemp(prefix="oracle-gunzip-")
            path = os.path.join(tmpdir, os.path.basename(capture)[:-3])
            with gzip.open(capture, "rb") as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        frames, ts_err = run_tshark(path)
        ts_rows = tshark_rows(frames)
        write_csv(os.path.join(outdir, name + ".tshark.csv"), TSHARK_COLUMNS, ts_rows)
        tt_path = os.path.join(outdir, name + ".tcptrace.csv")
        tt_rows, tt_info, tt_err = tcptrace_rows(path, frames, len(frames))
        if tt_rows is None:
            if os.path.exists(tt_path):
                os.remove(tt_path)
        else:
            write_csv(tt_path, TCPTRACE_COLUMNS, tt_rows)
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
    col = {c: i for i, c in enumerate(TSHARK_COLUMNS)}
    tcol = {c: i for i, c in enumerate(TCPTRACE_COLUMNS)}
    return {
        "name": name,
        "tshark_frames": len(frames),
        "tshark_streams": len(ts_rows),
        "tshark_err": ts_err,
        "retrans": sum(r[col["c2s_retransmission"]] + r[col["s2c_retransmission"]] for r in ts_rows),
        "fast": sum(r[col["c2s_fast_retransmission"]] + r[col["s2c_fast_retransmission"]] for r in ts_rows),
        "spurious": sum(r[col["c2s_spurious_retransmission"]] + r[col["s2c_spurious_retransmission"]]
                        for r in ts_rows),
        "tcptrace_conns": None if tt_rows is None else len(tt_rows),
        "tcptrace_traced": tt_info.get("traced"),
        "tcptrace_rexmt": None if tt_rows is None else sum(
            int(r[tcol["c2s_rexmt_data_pkts"]]) + int(r[tcol["s2c_rexmt_data_pkts"]]) for r in tt_rows),
        "tcptrace_err": tt_err,
    }


def find_captures(root):
    out = []
    for d, _, files in os.walk(root):
        for fn in files:
            base = fn[:-3] if fn.endswith(".gz") else fn
            if base.endswith(CAPTURE_EXTS):
                out.append(os.path.join(d, fn))
    return sorted(out, key=lambda p: os.path.relpath(p, root))


def write_summary(path, root, results):
    def cell(v):
        return "-" if v is None else str(v)

    lines = [
        "# Oracle summary",
        "",
        "Generated by `tools/oracle/extract.py --all` (tshark 4.0, tcptrace 6.6.7) from the captures",
        "under `testdata/captures/`. See `tools/oracle/README.md` for the columns.",
        "",
        "* tshark TCP frames: frames kept by `-Y \"%s\"` with only link-layer, IP and TCP"
        % TSHARK_FILTER,
        "  dissectors enabled.",
        "* retrans flags: frames with `tcp.analysis.retransmission` (both directions, all streams);",
        "  fast / spurious: frames with `tcp.analysis.fast_retransmission` / `spurious_retransmission`",
        "  (tshark sets the plain retransmission field on these too, so they are included in retrans).",
        "* tcptrace rexmt: sum of `rexmt data pkts` over both directions of all connections.",
        "* tcptrace TCP pkts traced: from tcptrace's `N packets seen, M TCP packets traced` line.",
        "* `-` = no file written (the oracle could not read the capture; reason in the last column).",
        "* Why stream and connection counts differ on some captures: `tools/oracle/README.md`,",
        "  \"Known differences\".",
        "",
        "| capture | tshark streams | tshark TCP frames | retrans flags | of which fast | of which spurious "
        "| tcptrace conns | tcptrace TCP pkts traced | tcptrace rexmt | oracle problems |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for res in results:
        probs = []
        if res["tshark_err"]:
            probs.append("tshark: " + res["tshark_err"].replace("\n", " / "))
        if res["tcptrace_err"]:
            probs.append("tcptrace: " + res["tcptrace_err"])
        lines.append("| %s | %d | %d | %d | %d | %d | %s | %s | %s | %s |" % (
            res["capture"], res["tshark_streams"], res["tshark_frames"], res["retrans"], res["fast"],
            res["spurious"], cell(res["tcptrace_conns"]), cell(res["tcptrace_traced"]),
            cell(res["tcptrace_rexmt"]), "; ".join(probs).replace("|", "\\|")))
    unread = [r for r in results if r["tcptrace_conns"] is None or r["tshark_err"]]
    lines += ["", "## Captures an oracle could not read", ""]
    if not unread:
        lines.append("None.")
    for r in unread:
        if r["tcptrace_conns"] is None:
            lines.append("* `%s`: tcptrace: %s" % (r["capture"], r["tcptrace_err"]))
        if r["tshark_err"]:
            lines.append("* `%s`: tshark: %s" % (r["capture"], r["tshark_err"]))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture", nargs="?", help="pcap / pcapng file (optionally .gz)")
    ap.add_argument("outdir", nargs="?", help="output directory")
    ap.add_argument("--name", help="output base name (default: derived from the path under --root)")
    ap.add_argument("--all", action="store_true", help="process every capture under --root")
    ap.add_argument("--all-dissectors", action="store_true",
                    help="keep all of tshark's dissectors enabled (default: link layers, IP, TCP only)")
    ap.add_argument("--root", default=DEFAULT_ROOT, help="captures root (default %(default)s)")
    ap.add_argument("--out", default=DEFAULT_OUT, help="output dir for --all (default %(default)s)")
    a = ap.parse_args()
    global ALL_DISSECTORS
    ALL_DISSECTORS = a.all_dissectors
    if a.all:
        results = []
        for cap in find_captures(a.root):
            name = oracle_name(cap, a.root)
            print("%s -> %s" % (os.path.relpath(cap, a.root), name), file=sys.stderr)
            res = extract(cap, a.out, name)
            res["capture"] = os.path.relpath(cap, a.root)
            results.append(res)
        write_summary(os.path.join(a.out, "SUMMARY.md"), a.root, results)
        return 0
    if not a.capture or not a.outdir:
        ap.error("need CAPTURE and OUTDIR, or --all")
    res = extract(a.capture, a.outdir, a.name or oracle_name(a.capture, a.root))
    print("%s: %d tshark streams, tcptrace: %s" % (
        res["name"], res["tshark_streams"],
        res["tcptrace_err"] or "%d connections" % res["tcptrace_conns"]), file=sys.stderr)
    if res["tshark_err"]:
        print("tshark: " + res["tshark_err"], file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
