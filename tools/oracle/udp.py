#!/usr/bin/env python3
"""udp.py — UDP conversations from tshark, the oracle of `analyze --udp-flows`.

    tools/oracle/udp.py CAPTURE OUT.tsv

One row per conversation of `tshark -n -q -z conv,udp` (endpoints a and b as tshark
orders them; no idle timeout): frames a->b and b->a from conv,udp, and the UDP payload
bytes each way (sum of udp.length - 8 over the same frames, from a field pass that
leaves out UDP headers quoted inside ICMP errors, which conv,udp does not count either).
The script fails if the two passes disagree on a conversation's frames. Needs tshark
(tested with 4.0.17).
"""
import collections
import re
import subprocess
import sys

cap, out = sys.argv[1], sys.argv[2]
env = {"WIRESHARK_CONFIG_DIR": "/nonexistent", "PATH": "/usr/bin:/bin"}


def tshark(*args):
    return subprocess.run(["tshark", "-n", "-r", cap, *args], check=True,
                          capture_output=True, text=True, env=env).stdout


line = re.compile(r"^(\S+):(\d+)\s+<->\s+(\S+):(\d+)\s+(\d+)\s+\d+ (?:bytes|[kMG]B)\s+(\d+)\s+\d+ (?:bytes|[kMG]B)")
conv = {}
for l in tshark("-q", "-z", "conv,udp").splitlines():
    m = line.match(l)
    if m:
        a, b = (m[1], int(m[2])), (m[3], int(m[4]))
        # conv,udp's "<-" column is b->a frames, "->" a->b.
        conv[(a, b)] = {"ab": int(m[6]), "ba": int(m[5])}

fields = tshark("-Y", "udp and not icmp and not icmpv6", "-T", "fields", "-E", "separator=\t",
                "-e", "ip.src", "-e", "ipv6.src", "-e", "udp.srcport",
                "-e", "ip.dst", "-e", "ipv6.dst", "-e", "udp.dstport", "-e", "udp.length")
frames = collections.Counter()
payload = collections.Counter()
for l in fields.splitlines():
    f = l.split("\t")
    # Tunnels give several values per field: the innermost UDP is the last.
    pick = lambda v4, v6: (v6 or v4).split(",")[-1]
    src = (pick(f[0], f[1]), int(f[2].split(",")[-1]))
    dst = (pick(f[3], f[4]), int(f[5].split(",")[-1]))
    n = int(f[6].split(",")[-1]) - 8
    frames[(src, dst)] += 1
    payload[(src, dst)] += n

with open(out, "w") as o:
    o.write("a_ip\ta_port\tb_ip\tb_port\tframes_ab\tbytes_ab\tframes_ba\tbytes_ba\n")
    for (a, b), c in sorted(conv.items()):
        for d, k in (("ab", (a, b)), ("ba", (b, a))):
            if frames[k] != c[d]:
                sys.exit(f"{cap}: {a}<->{b}: conv,udp says {c[d]} frames {d}, fields {frames[k]}")
        o.write(f"{a[0]}\t{a[1]}\t{b[0]}\t{b[1]}\t{c['ab']}\t{payload[(a, b)]}\t{c['ba']}\t{payload[(b, a)]}\n")
