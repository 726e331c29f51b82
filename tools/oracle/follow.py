#!/usr/bin/env python3
"""Per-connection stream digests from tshark's `follow,tcp,raw`: the oracle for
tcpsight's in-order payload (Observer::on_payload).

For each TCP stream tshark reassembles, one row: stream index, the two endpoints as
tshark names them (node 0 sent the stream's first packet), and for each node the number
of payload bytes tshark delivers and their FNV-1a 64 hash. tshark leaves lost bytes out
(no filler), so the digest is over the delivered bytes only.

    tools/oracle/follow.py testdata/captures/zeek/wikipedia.pcap > testdata/oracle/follow/zeek__wikipedia.tsv
"""
import re
import subprocess
import sys

MISSING = re.compile(rb"^\[(\d+) bytes missing in capture file\]\x00$")

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3


def fnv(data: bytes) -> int:
    h = FNV_OFFSET
    for b in data:
        h ^= b
        h = (h * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h


def streams(path):
    out = subprocess.run(
        ["tshark", "-n", "-r", path, "-Y", "tcp", "-T", "fields", "-e", "tcp.stream"],
        check=True, capture_output=True, text=True).stdout
    return sorted({int(x) for x in out.split()})


def follow(path, ids):
    args = ["tshark", "-n", "-r", path, "-q"]
    for i in ids:
        args += ["-z", f"follow,tcp,raw,{i}"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    blocks = out.split("===================================================================")
    rows = []
    for b in blocks:
        lines = b.strip("\n").split("\n")
        if not any(l.startswith("Filter: tcp.stream eq") for l in lines):
            continue
        sid = next(int(l.split()[-1]) for l in lines if l.startswith("Filter:"))
        nodes = [l.split(": ", 1)[1] for l in lines if l.startswith("Node ")]
        data = [bytearray(), bytearray()]
        missing = [0, 0]
        for l in lines:
            if not l or l.startswith(("Follow:", "Filter:", "Node ")):
                continue
            side = 1 if l.startswith("\t") else 0
            chunk = bytes.fromhex(l.strip())
            m = MISSING.match(chunk)
            if m:
                missing[side] += int(m.group(1))
            else:
                data[side] += chunk
        rows.append((sid, nodes, data, missing))
    return rows


def main():
    path = sys.argv[1]
    ids = streams(path)
    print("stream\tnode0\tnode1\tbytes0\tfnv0\tmissing0\tbytes1\tfnv1\tmissing1")
    for k in range(0, len(ids), 200):
        for sid, nodes, data, missing in sorted(follow(path, ids[k:k + 200])):
            # ICMP errors quoting TCP make streams of their own, with no endpoints.
            if len(nodes) < 2 or nodes[0].startswith(":"):
                continue
            print(f"{sid}\t{nodes[0]}\t{nodes[1]}"
                  f"\t{len(data[0])}\t{fnv(data[0]):016x}\t{missing[0]}"
                  f"\t{len(data[1])}\t{fnv(data[1]):016x}\t{missing[1]}")


if __name__ == "__main__":
    main()
