//! Tunnels and link types on real traffic: a kernel VXLAN capture and two public captures
//! wrapped in every encapsulation and link type (testdata/captures/generated/tunnels,
//! tools/gen-tunnel-captures.sh). Per connection, the oracle test compares them with
//! tshark; here: the `tunnel` field, the key rule (two VXLAN networks with the same
//! connections), and the summary's frame counts per encapsulation (tshark's counts of
//! the same frames, written below).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::common::{data, tcpsight, text};

/// analyze's records of a capture as JSON objects.
fn records(rel: &str) -> Vec<Value> {
    let out = tcpsight(&["analyze", &data(rel), "--flows", "-", "--no-progress"]);
    assert!(out.status.success(), "{rel}: {}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn summary(rel: &str) -> Value {
    let out = tcpsight(&["analyze", &data(rel), "--json", "--no-progress"]);
    assert!(out.status.success(), "{rel}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// How many connections of the tshark oracle file `name` there are.
fn tshark_connections(name: &str) -> usize {
    let p = data(&format!("oracle/{name}.tshark.csv"));
    std::fs::read_to_string(p).unwrap().lines().count() - 1
}

#[test]
fn every_connection_says_its_tunnel() {
    // (capture, tunnel when the connection's first packet went from the smaller address
    // to the larger, tunnel the other way, which families it holds). Only GTP-U TEIDs
    // and MPLS labels differ by direction (tcpsight-wrap adds 1 and 1000 the other way);
    // a connection keeps its first packet's.
    let (v4, v6, both) = ((true, false), (false, true), (true, true));
    let cases: &[(&str, &str, &str, (bool, bool))] = &[
        ("gre", "gre", "gre", both),
        ("gre-key-seq", "gre:42", "gre:42", both),
        ("gretap-ipv6", "gretap:5001", "gretap:5001", both),
        ("erspan1", "erspan1", "erspan1", both),
        ("erspan2", "erspan2:100", "erspan2:100", both),
        ("erspan3", "erspan3:200", "erspan3:200", both),
        ("ipip", "ipip", "ipip", v4),
        ("4in6", "4in6", "4in6", v4),
        ("6in4", "6in4", "6in4", v6),
        ("6in6", "6in6", "6in6", v6),
        ("geneve", "geneve:77", "geneve:77", both),
        ("gtpu", "gtpu:1000", "gtpu:1001", both),
        ("mpls", "mpls:16/1000", "mpls:1016/2000", both),
        ("mpls-pw", "mpls:40>pw", "mpls:1040>pw", both),
        ("pppoe", "pppoe:4660", "pppoe:4660", both),
        ("pbb", "pbb:65536", "pbb:65536", both),
        ("vntag", "vntag", "vntag", both),
        ("vxlan-gre", "vxlan:4711>gre", "vxlan:4711>gre", both),
        ("link-ppp-mpls", "mpls:30", "mpls:1030", v4),
    ];
    let first_upward = |r: &Value| {
        let ip = |k: &str| r[k].as_str().unwrap().parse::<std::net::IpAddr>().unwrap();
        let (c, s) = (ip("client_ip"), ip("server_ip"));
        if r["history"].as_str().unwrap().starts_with('^') {
            s < c
        } else {
            c < s
        }
    };
    // The unwrapped captures' records: every field but the tunnel must come out the same.
    let plain: Vec<Value> = [
        "captures/zeek/wikipedia.pcap",
        "captures/zeek/ipv6-http-atomic-frag.pcap",
    ]
    .iter()
    .flat_map(|c| records(c))
    .collect();
    let is_v6 = |r: &Value| r["client_ip"].as_str().unwrap().contains(':');
    let without_tunnel = |r: &Value| {
        let mut r = r.clone();
        r.as_object_mut().unwrap().remove("tunnel");
        r.to_string()
    };
    for (name, up, down, (has4, has6)) in cases {
        let rel = format!("captures/generated/tunnels/{name}.pcap.gz");
        let recs = records(&rel);
        assert_eq!(
            recs.len(),
            tshark_connections(&format!("generated__tunnels__{name}")),
            "{name}: connections"
        );
        for r in &recs {
            let want = if first_upward(r) { up } else { down };
            assert_eq!(r["tunnel"], *want, "{name}: {r}");
        }
        let mut got: Vec<String> = recs.iter().map(without_tunnel).collect();
        let mut want: Vec<String> = plain
            .iter()
            .filter(|r| if is_v6(r) { *has6 } else { *has4 })
            .map(without_tunnel)
            .collect();
        got.sort();
        want.sort();
        assert_eq!(
            got, want,
            "{name}: records differ from the unwrapped capture's"
        );
    }
    // Other link types: no tunnel, every connection as tshark sees it.
    for link in [
        "ppp", "ppp-hdlc", "chdlc", "frelay", "wlan", "radiotap", "ppi", "nflog", "juniper",
    ] {
        let name = format!("link-{link}");
        let recs = records(&format!("captures/generated/tunnels/{name}.pcap.gz"));
        assert_eq!(
            recs.len(),
            tshark_connections(&format!("generated__tunnels__{name}")),
            "{name}"
        );
        assert!(recs.iter().all(|r| r["tunnel"].is_null()), "{name}");
        let mut got: Vec<String> = recs.iter().map(without_tunnel).collect();
        let mut want: Vec<String> = plain.iter().map(without_tunnel).collect();
        got.sort();
        want.sort();
        assert_eq!(
            got, want,
            "{name}: records differ from the unwrapped capture's"
        );
    }
    // Real kernel VXLAN: 5 HTTP connections (3 IPv4, 2 IPv6) and a refused one.
    let recs = records("captures/generated/vxlan-netns.pcap.gz");
    assert_eq!(recs.len(), tshark_connections("generated__vxlan-netns"));
    assert_eq!(recs.len(), 6);
    assert!(recs.iter().all(|r| r["tunnel"] == "vxlan:4711"));
    assert_eq!(
        recs.iter().filter(|r| r["outcome"] == "rejected").count(),
        1
    );
    // Outside tunnels the field is null.
    let recs = records("captures/zeek/wikipedia.pcap");
    assert!(recs.iter().all(|r| r["tunnel"].is_null()));
}

/// The same 10 connections in VXLAN networks 100 and 200 (every frame twice, 1 us apart):
/// 20 connections, each with exactly the packets and bytes tshark counted for it in the
/// unwrapped capture (tshark itself merges the two networks into 10 conversations of
/// twice the packets).
#[test]
fn two_virtual_networks_keep_their_connections_apart() {
    let recs = records("captures/generated/tunnels/vxlan-two-vnis.pcap.gz");
    assert_eq!(recs.len(), 20);
    let oracle = std::fs::read_to_string(data("oracle/zeek__wikipedia.tshark.csv")).unwrap();
    let mut lines = oracle.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col =
        |row: &[&str], name: &str| row[header.iter().position(|h| *h == name).unwrap()].to_string();
    // Keyed by (from, to) both ways, so either end may be our client.
    type Ends = (String, String, String, String);
    let mut want: BTreeMap<Ends, (String, String, String, String)> = BTreeMap::new();
    for l in lines {
        let row: Vec<&str> = l.split(',').collect();
        let (c, cp, s, sp) = (
            col(&row, "client_ip"),
            col(&row, "client_port"),
            col(&row, "server_ip"),
            col(&row, "server_port"),
        );
        let (cpk, spk, cb, sb) = (
            col(&row, "c2s_pkts"),
            col(&row, "s2c_pkts"),
            col(&row, "c2s_payload_bytes"),
            col(&row, "s2c_payload_bytes"),
        );
        want.insert(
            (s.clone(), sp.clone(), c.clone(), cp.clone()),
            (spk.clone(), cpk.clone(), sb.clone(), cb.clone()),
        );
        want.insert((c, cp, s, sp), (cpk, spk, cb, sb));
    }
    for vni in ["vxlan:100", "vxlan:200"] {
        let mine: Vec<&Value> = recs.iter().filter(|r| r["tunnel"] == vni).collect();
        assert_eq!(mine.len() * 2, want.len(), "{vni}");
        for r in mine {
            let key = (
                r["client_ip"].as_str().unwrap().to_string(),
                r["client_port"].to_string(),
                r["server_ip"].as_str().unwrap().to_string(),
                r["server_port"].to_string(),
            );
            let w = &want[&key];
            let got = (
                r["c2s_pkts"].to_string(),
                r["s2c_pkts"].to_string(),
                r["c2s_payload_bytes"].to_string(),
                r["s2c_payload_bytes"].to_string(),
            );
            assert_eq!(&got, w, "{vni} {key:?}");
            assert_eq!(
                r["c2s_retx_pkts"], 0,
                "{vni} {key:?}: the other network's copy is no retransmission"
            );
        }
    }
}

#[test]
fn the_summary_counts_frames_per_encapsulation() {
    // tshark -r FILE -Y PROTO | wc -l, for each.
    type Counts = &'static [(&'static str, u64)];
    let cases: &[(&str, Counts, Counts)] = &[
        ("generated/vxlan-netns.pcap.gz", &[("vxlan", 248)], &[]),
        (
            "generated/tunnels/vxlan-gre.pcap.gz",
            &[("gre", 168), ("vxlan", 168)],
            &[],
        ),
        (
            "generated/tunnels/vxlan-two-vnis.pcap.gz",
            &[("vxlan", 270)],
            &[],
        ),
        ("generated/tunnels/gtpu.pcap.gz", &[("gtpu", 162)], &[]),
        ("generated/tunnels/mpls.pcap.gz", &[("mpls", 162)], &[]),
        (
            "generated/tunnels/erspan3.pcap.gz",
            &[("erspan3", 172)],
            &[],
        ),
        // tshark: 16 frames with mpls, 10 of them with pwethcw (ICMP inside, no TCP).
        ("tcpreplay/test.pcap", &[("mpls", 16), ("pw", 10)], &[]),
        // tshark -Y "wlan.fc.protected == 1": 16.
        (
            "generated/tunnels/link-wlan.pcap.gz",
            &[],
            &[("802.11 protected (encrypted) data", 16)],
        ),
    ];
    for (rel, encaps, unknown) in cases {
        let v = summary(&format!("captures/{rel}"));
        let want: serde_json::Map<String, Value> = encaps
            .iter()
            .map(|(k, n)| (k.to_string(), (*n).into()))
            .collect();
        assert_eq!(v["encapsulations"], Value::Object(want), "{rel}");
        let want: serde_json::Map<String, Value> = unknown
            .iter()
            .map(|(k, n)| (k.to_string(), (*n).into()))
            .collect();
        assert_eq!(v["not_understood"], Value::Object(want), "{rel}");
        assert_eq!(v["undecodable"], 0, "{rel}");
    }
    // The text summary says it in one line; nothing on captures without tunnels.
    let out = tcpsight(&["analyze", &data("captures/tcpreplay/test.pcap")]);
    assert!(
        text(&out.stdout).contains("Tunnels   frames: mpls 16, pw 10; 0 tunnel fragments"),
        "{}",
        text(&out.stdout)
    );
    let out = tcpsight(&["analyze", &data("captures/zeek/wikipedia.pcap")]);
    assert!(!text(&out.stdout).contains("Tunnels"));
}

#[test]
fn link_types_are_named_in_the_summary() {
    for (name, link) in [
        ("link-ppp", "PPP"),
        ("link-ppp-hdlc", "PPP_SERIAL"),
        ("link-chdlc", "C_HDLC"),
        ("link-frelay", "FRELAY"),
        ("link-wlan", "IEEE802_11"),
        ("link-radiotap", "IEEE802_11_RADIO"),
        ("link-ppi", "PPI"),
        ("link-nflog", "NFLOG"),
        ("link-juniper", "JUNIPER_ETHER"),
    ] {
        let v = summary(&format!("captures/generated/tunnels/{name}.pcap.gz"));
        assert_eq!(v["link_types"], serde_json::json!([link]), "{name}");
        assert!(v["tcp_packets"].as_u64().unwrap() > 100, "{name}");
    }
}
