#!/usr/bin/env python3
"""Expected Tstat-style per-direction columns from tshark's dissected fields.

    tstat_columns.py CAPTURE... > testdata/oracle/tstat-columns.csv

For every tshark stream seen from its SYN (no SYN: left out) and each direction:
lowest/highest ip.ttl (ipv6.hlim), tcp.window_size of the first packet and its
lowest/highest (RST packets left out), the number of SACK blocks (tcp.options.sack_le
values), pure ACKs (ACK, no payload, no SYN/FIN/RST), packets with payload, the first and
last payload packet's time after the first SYN (microseconds, rounded), and the in-flight
maximum: at each payload packet (not RST), the highest raw sequence number sent so far (end of
payload, SYN and FIN counted) minus the peer's latest raw ACK number. Needs tshark 4.0.
"""

import csv
import os
import subprocess
import sys
from decimal import Decimal, ROUND_HALF_UP

FIELDS = ["tcp.stream", "frame.time_epoch", "ip.src", "ipv6.src", "tcp.srcport",
          "ip.ttl", "ipv6.hlim", "tcp.flags.syn", "tcp.flags.ack", "tcp.flags.fin",
          "tcp.flags.reset", "tcp.len", "tcp.window_size", "tcp.options.sack_le",
          "tcp.seq_raw", "tcp.ack_raw"]

COLS = ["ttl_min", "ttl_max", "win_first", "win_min", "win_max", "sack_blocks",
        "pure_acks", "data_pkts", "first_payload_us", "last_payload_us",
        "inflight_max_bytes"]


def us(t):
    return int((t * 1_000_000).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def main():
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(["capture", "client_ip", "client_port", "server_ip", "server_port"]
               + ["c2s_" + c for c in COLS] + ["s2c_" + c for c in COLS])
    for cap in sys.argv[1:]:
        out = subprocess.run(
            ["tshark", "-r", cap, "-Y", "tcp and not icmp and not icmpv6", "-T", "fields",
             "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"]
            + sum([["-e", f] for f in FIELDS], []),
            check=True, capture_output=True, text=True).stdout
        streams = {}
        for line in out.splitlines():
            v = dict(zip(FIELDS, line.split("|")))
            streams.setdefault(int(v["tcp.stream"]), []).append(v)
        name = os.path.relpath(cap, os.path.join(os.path.dirname(__file__), "..", "..",
                                                 "testdata", "captures"))
        for sid in sorted(streams):
            pk = streams[sid]
            syns = [p for p in pk if p["tcp.flags.syn"] == "1" and p["tcp.flags.ack"] == "0"]
            if not syns:
                continue
            t0 = Decimal(syns[0]["frame.time_epoch"])
            client = (syns[0]["ip.src"] or syns[0]["ipv6.src"], syns[0]["tcp.srcport"])
            server = None
            d = {}
            top = {}
            last_ack = {}
            for p in pk:
                src = (p["ip.src"] or p["ipv6.src"], p["tcp.srcport"])
                if src != client:
                    server = src
                side = "c2s" if src == client else "s2c"
                s = d.setdefault(side, {"ttl": [], "win": [], "sack": 0, "pure": 0,
                                        "data": 0, "first": None, "last": None, "infl": 0})
                s["ttl"].append(int(p["ip.ttl"] or p["ipv6.hlim"]))
                syn, ack, fin, rst = (p["tcp.flags." + f] == "1"
                                      for f in ("syn", "ack", "fin", "reset"))
                ln = int(p["tcp.len"] or 0)
                if not rst and p["tcp.window_size"]:
                    s["win"].append(int(p["tcp.window_size"]))
                if p["tcp.options.sack_le"]:
                    s["sack"] += len(p["tcp.options.sack_le"].split(","))
                if ack and ln == 0 and not (syn or fin or rst):
                    s["pure"] += 1
                seq = int(p["tcp.seq_raw"])
                end = (seq + ln + syn + fin) % 2**32
                if ln + syn + fin > 0 and not rst:
                    if side not in top or ((end - top[side]) % 2**32) < 2**31:
                        top[side] = end
                t = Decimal(p["frame.time_epoch"]) - t0
                peer = "s2c" if side == "c2s" else "c2s"
                if ln > 0:
                    s["data"] += 1
                    s["first"] = t if s["first"] is None else s["first"]
                    s["last"] = t
                    if not rst and peer in last_ack and side in top:
                        f = (top[side] - last_ack[peer]) % 2**32
                        if f < 2**31:
                            s["infl"] = max(s["infl"], f)
                last_ack[side] = int(p["tcp.ack_raw"]) if ack else None
                if last_ack[side] is None:
                    del last_ack[side]
            if server is None:
                continue
            row = [name, client[0], client[1], server[0], server[1]]
            for side in ("c2s", "s2c"):
                s = d.get(side)
                if s is None:
                    row += [""] * 5 + [0, 0, 0, "", "", 0]
                    continue
                row += [min(s["ttl"]), max(s["ttl"])]
                row += [s["win"][0], min(s["win"]), max(s["win"])] if s["win"] else [""] * 3
                row += [s["sack"], s["pure"], s["data"]]
                row += [us(s["first"]), us(s["last"])] if s["first"] is not None else ["", ""]
                row += [s["infl"]]
            w.writerow(row)


main()
