#!/usr/bin/env python3
"""Builds the fuzz seed corpora in fuzz/seeds/<target>/ from testdata/captures.

Run from the repository root:  python3 fuzz/make_seeds.py
It rewrites fuzz/seeds/{decode,engine,reader}/ from scratch (standard library only,
plus the `zstd` command for one compressed reader seed when it is installed).

- decode: single frames, `[link index, 0] + frame` (fuzz_targets/decode.rs), the first
  few frames of captures covering every link type the decoder knows (RAW, IPV4/IPV6
  and LOOP frames are re-wrapped from Ethernet ones), VLAN/QinQ, IPv6 with fragment
  headers, ICMP errors quoting TCP, snaplen-cut headers.
- reader: whole small captures (< 20 kB), the first frames of a few larger ones
  rewritten as small pcaps, and gzip/zstd-compressed copies of two of them.
- engine: the same traces in the engine target's length-prefixed format
  (fuzz_targets/engine.rs).
"""

import gzip
import os
import shutil
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAPS = os.path.join(ROOT, "testdata", "captures")
SEEDS = os.path.join(ROOT, "fuzz", "seeds")

# Same order as LINKS in fuzz_targets/{decode,engine}.rs.
LINKS = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 147, 127, 105, 9, 239, 192, 50, 51, 104, 107, 178]
START_NS = 1_700_000_000_000_000_000


def read_capture(path, limit=None):
    """Frames of a pcap or pcapng file: [(ts_ns, link, data, orig_len)]."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    frames = []
    if raw[:4] == b"\x0a\x0d\x0d\x0a":
        at, e, ifaces = 0, "<", []
        while at + 12 <= len(raw):
            if raw[at:at + 4] == b"\x0a\x0d\x0d\x0a":
                e = ">" if raw[at + 8:at + 12] == b"\x1a\x2b\x3c\x4d" else "<"
                ifaces = []
            kind, blen = struct.unpack(e + "II", raw[at:at + 8])
            body = raw[at + 8:at + blen - 4]
            if kind == 1:
                link = struct.unpack(e + "H", body[:2])[0]
                res = 1_000_000
                opts = body[8:]
                while len(opts) >= 4:
                    code, olen = struct.unpack(e + "HH", opts[:4])
                    if code == 0:
                        break
                    if code == 9 and olen == 1:
                        v = opts[4]
                        res = 2 ** (v & 0x7F) if v & 0x80 else 10 ** v
                    opts = opts[4 + olen + (-olen % 4):]
                ifaces.append((link, res))
            elif kind == 6:
                iface, hi, lo, cap, orig = struct.unpack(e + "IIIII", body[:20])
                link, res = ifaces[iface]
                t = (hi << 32) | lo
                frames.append((t * 1_000_000_000 // res, link, body[20:20 + cap], orig))
            elif kind == 3:
                orig = struct.unpack(e + "I", body[:4])[0]
                data = body[4:4 + orig]
                link = ifaces[0][0]
                frames.append((frames[-1][0] if frames else 0, link, data, orig))
            at += blen
            if limit and len(frames) >= limit:
                break
    else:
        magic = raw[:4]
        e = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        nanos = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
        link = struct.unpack(e + "I", raw[20:24])[0]
        at = 24
        while at + 16 <= len(raw):
            sec, frac, cap, orig = struct.unpack(e + "IIII", raw[at:at + 16])
            data = raw[at + 16:at + 16 + cap]
            frames.append((sec * 1_000_000_000 + (frac if nanos else frac * 1000), link, data, orig))
            at += 16 + cap
            if limit and len(frames) >= limit:
                break
    return frames


def write_pcap(frames):
    """A microsecond pcap of frames that all share one link type."""
    link = frames[0][1]
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, link))
    for ts, _, data, orig in frames:
        out += struct.pack("<IIII", ts // 1_000_000_000, ts % 1_000_000_000 // 1000, len(data), orig)
        out += data
    return bytes(out)


def engine_input(frames):
    """frames in the engine target's format (see fuzz_targets/engine.rs)."""
    out = bytearray()
    prev = START_NS
    for i, (ts, link, data, orig) in enumerate(frames):
        ctrl = LINKS.index(link) if link in LINKS else 10
        d = ts - prev
        if i > 0 and 0 <= d and d // 1_000_000 < 65536:
            ctrl |= 0 << 4
            tsf = struct.pack("<H", d // 1_000_000)
            prev += d // 1_000_000 * 1_000_000
        elif i > 0 and 0 <= d and d // 1_000_000_000 < 65536:
            ctrl |= 1 << 4
            tsf = struct.pack("<H", d // 1_000_000_000)
            prev += d // 1_000_000_000 * 1_000_000_000
        elif i > 0 and d < 0 and -d // 1_000_000 < 65536:
            ctrl |= 2 << 4
            tsf = struct.pack("<H", -d // 1_000_000)
            prev -= -d // 1_000_000 * 1_000_000
        else:
            ctrl |= 3 << 4
            tsf = struct.pack("<Q", ts)
            prev = ts
        extra = b""
        if orig > len(data):
            ctrl |= 0x40
            extra = bytes([min(255, (orig - len(data) - 1) // 64)])
        out += bytes([ctrl]) + tsf + struct.pack("<H", len(data)) + extra + data
    return bytes(out)


def strip_ethernet(frame):
    """(ethertype, IP packet) of an Ethernet frame, skipping up to two VLAN tags."""
    et, off = struct.unpack(">H", frame[12:14])[0], 14
    while et in (0x8100, 0x88A8, 0x9100) and len(frame) >= off + 4:
        et, off = struct.unpack(">H", frame[off + 2:off + 4])[0], off + 4
    return et, frame[off:]


def main():
    if os.path.isdir(SEEDS):
        for t in ("decode", "engine", "reader"):
            shutil.rmtree(os.path.join(SEEDS, t), ignore_errors=True)
    dirs = {t: os.path.join(SEEDS, t) for t in ("decode", "engine", "reader")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)

    def put(target, name, data):
        with open(os.path.join(dirs[target], name), "wb") as f:
            f.write(data)

    # --- reader and engine: whole small captures.
    small = [
        "zeek/tcp-syn-only.pcap",
        "zeek/tcp-syn-then-rst.pcap",
        "tcpdump/tcp-handshake-nano.pcap",
        "zeek/tcp-fin_retransmission.pcap",
        "zeek/tcp-retransmit-timeout.pcapng",
        "zeek/tcp-rst-inject-rae.pcap",
        "zeek/pcapng-multi-interface.pcapng",
        "zeek/http-get-to-ssh-server-nsec.pcap",
        "zeek/tcp-truncated-header-snaplen68.pcap",
        "gopacket/pcapng-be-test100.pcapng",
        "zeek/tcp-retransmit-fast009.pcap",
        "zeek/tls-openjdk-sll2.pcap",
        "zeek/ipv6-http-atomic-frag.pcap",
        "zeek/tcp-handshake-reorder.pcap",
        "zeek/http-vlan-0.pcap",
        "zeek/http-qinq-0.pcap",
        "zeek/tcp-missing-syn.pcap",
    ]
    for rel in small:
        path = os.path.join(CAPS, rel)
        assert os.path.getsize(path) < 20_000, rel
        name = rel.replace("/", "-")
        with open(path, "rb") as f:
            put("reader", name, f.read())
        put("engine", name + ".bin", engine_input(read_capture(path)))

    # --- reader and engine: the first frames of larger captures (other link types,
    # ICMP errors quoting TCP, SYN scans, RST storms, IPv6, many interfaces).
    heads = [
        ("suricata-verify/http-range-multiflows.pcap", 40),  # NULL
        ("gopacket/test_loopback-null.pcap", 10),  # NULL, IPv6
        ("ndpi/KakaoTalk_talk-sll.pcap", 30),  # LINUX_SLL
        ("suricata-verify/decode-sll2-02.pcap", 8),  # LINUX_SLL2
        ("suricata-verify/filestore-5408-icmp-unreach.pcap", 60),
        ("ndpi/synscan.pcap", 80),
        ("ndpi/ethereum.pcap", 60),
        ("ndpi/reddit-ipv6.pcap", 30),
        ("tcpreplay/test.pcap", 60),
    ]
    for rel, n in heads:
        frames = read_capture(os.path.join(CAPS, rel), n)
        # Keep seeds small: cut very large frames to 1500 bytes (orig_len stays).
        frames = [(t, l, d[:1500], o) for t, l, d, o in frames]
        name = rel.replace("/", "-").rsplit(".", 1)[0] + f"-head{n}"
        put("reader", name + ".pcap", write_pcap(frames))
        put("engine", name + ".bin", engine_input(frames))

    # ICMP errors quoting TCP, out of a larger trace.
    gnutella = read_capture(os.path.join(CAPS, "ndpi/gnutella.pcap"))
    icmp = [f for f in gnutella if len(f[2]) > 23 and f[2][12:14] == b"\x08\x00" and f[2][23] == 1]
    put("engine", "ndpi-gnutella-icmp.bin", engine_input(icmp[:8]))
    put("reader", "ndpi-gnutella-icmp.pcap", write_pcap(icmp[:8]))

    # Compressed copies.
    with open(os.path.join(CAPS, "zeek/tcp-syn-then-rst.pcap"), "rb") as f:
        put("reader", "zeek-tcp-syn-then-rst.pcap.gz", gzip.compress(f.read(), mtime=0))
    src = os.path.join(CAPS, "zeek/tcp-retransmit-timeout.pcapng")
    if shutil.which("zstd"):
        z = subprocess.run(["zstd", "-q", "-c", src], check=True, capture_output=True).stdout
        put("reader", "zeek-tcp-retransmit-timeout.pcapng.zst", z)

    # --- decode: single frames.
    def dec(name, link, frame):
        put("decode", name, bytes([LINKS.index(link), 0]) + frame[:1600])

    for rel, n in [
        ("zeek/tcp-syn-then-rst.pcap", 2),
        ("tcpdump/tcp-handshake-nano.pcap", 3),  # SLL
        ("zeek/tls-openjdk-sll2.pcap", 2),  # SLL2
        ("suricata-verify/http-range-multiflows.pcap", 2),  # NULL
        ("gopacket/test_loopback-null.pcap", 2),  # NULL IPv6
        ("zeek/http-vlan-0.pcap", 2),
        ("zeek/http-qinq-0.pcap", 2),
        ("zeek/ipv6-http-atomic-frag.pcap", 3),  # IPv6 fragment header
        ("zeek/tcp-truncated-header-snaplen68.pcap", 2),
        ("zeek/tcp-retransmit-timeout.pcapng", 1),
    ]:
        for i, (_, link, data, orig) in enumerate(read_capture(os.path.join(CAPS, rel), n)):
            name = rel.replace("/", "-").rsplit(".", 1)[0] + f"-{i}"
            # The snaplen-cut capture's frames are marked truncated (orig_len > len).
            seed = bytes([LINKS.index(link), 0 if orig <= len(data) else 1]) + data
            put("decode", name, seed)
    for i, f in enumerate(icmp[:2]):
        dec(f"ndpi-gnutella-icmp-{i}", 1, f[2])

    # Tunnels and the other link types: the first two frames of each generated capture
    # (a SYN and its SYN/ACK inside GRE, VXLAN, MPLS..., or on PPP, 802.11...).
    tdir = os.path.join(CAPS, "generated/tunnels")
    for f in sorted(os.listdir(tdir)):
        for i, (_, link, data, _) in enumerate(read_capture(os.path.join(tdir, f), 2)):
            dec("tunnel-" + f.split(".")[0] + f"-{i}", link, data)
    for i, (_, link, data, _) in enumerate(read_capture(os.path.join(CAPS, "generated/vxlan-netns.pcap.gz"), 6)):
        dec(f"vxlan-netns-{i}", link, data)

    # RAW / IPV4 / IPV6 / LOOP frames re-wrapped from Ethernet ones (SYN with options).
    v4 = read_capture(os.path.join(CAPS, "zeek/tcp-syn-then-rst.pcap"), 1)[0][2]
    v6 = read_capture(os.path.join(CAPS, "zeek/ipv6-http-atomic-frag.pcap"), 1)[0][2]
    _, ip4 = strip_ethernet(v4)
    _, ip6 = strip_ethernet(v6)
    dec("raw101-v4", 101, ip4)
    dec("raw101-v6", 101, ip6)
    dec("raw12-v4", 12, ip4)
    dec("raw14-v6", 14, ip6)
    dec("ipv4-228", 228, ip4)
    dec("ipv6-229", 229, ip6)
    dec("loop108-v4", 108, struct.pack(">I", 2) + ip4)
    dec("loop108-v6", 108, struct.pack(">I", 24) + ip6)
    dec("null0-v4-be", 0, struct.pack(">I", 2) + ip4)
    dec("unknown-link", 147, v4)

    total = sum(os.path.getsize(os.path.join(d, f)) for d in dirs.values() for f in os.listdir(d))
    counts = {t: len(os.listdir(d)) for t, d in dirs.items()}
    print(f"seeds: {counts}, {total} bytes")
    if total > 1_000_000:
        sys.exit("seed corpus over 1 MB")


if __name__ == "__main__":
    main()
