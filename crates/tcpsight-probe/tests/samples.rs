//! The parser, summary and plots on the stored samples in testdata/probe.

use std::path::PathBuf;

use tcpsight_probe::Summary;
use tcpsight_probe::plot::{self, PlotOptions};
use tcpsight_probe::read::read_file;

fn sample(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/probe")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn count(ev: &[tcpsight_probe::Event], name: &str) -> usize {
    ev.iter().filter(|e| e.name == name).count()
}

#[test]
fn loopback_sample_from_this_kernel() {
    for f in ["loopback-lossy-6.18.txt", "loopback-lossy-6.18.txt.gz"] {
        let (ev, st) = read_file(&sample(f)).unwrap();
        assert_eq!(
            (st.lines, st.events, st.garbage, st.lost),
            (198, 198, 0, 0),
            "{f}"
        );
        assert_eq!(count(&ev, "tcp_probe"), 177);
        assert_eq!(count(&ev, "tcp_retransmit_skb"), 5);
        assert_eq!(count(&ev, "tcp_send_reset"), 1);
        assert_eq!(count(&ev, "tcp_receive_reset"), 1);
        assert_eq!(count(&ev, "inet_sock_set_state"), 14);
        // Task names with spaces, as the kernel printed them.
        assert!(ev.iter().any(|e| e.task.contains(' ') && e.pid.is_some()));
        assert!(ev.iter().all(|e| e.endpoints().is_some()));
        let s = Summary::from_events(&ev);
        assert_eq!(s.conns.len(), 4);
        let (_, sender) = s.conns.iter().find(|(k, _)| k.1.port() == 47001).unwrap();
        assert_eq!(sender.retransmits, 5);
        assert_eq!(sender.cwnd_min, Some(1));
        assert!(sender.srtt_p50().unwrap() > 0);
        assert_eq!(
            sender.state_path(),
            "CLOSE>SYN_SENT>ESTABLISHED>FIN_WAIT1>FIN_WAIT2>CLOSE"
        );
        let (_, refused) = s.conns.iter().find(|(k, _)| k.1.port() == 47002).unwrap();
        assert_eq!(refused.resets_received, 1);
        assert_eq!(refused.state_path(), "CLOSE>SYN_SENT>CLOSE");
        let (_, closed) = s.conns.iter().find(|(k, _)| k.0.port() == 47002).unwrap();
        assert_eq!(closed.resets_sent, 1);
    }
}

#[test]
fn tcp_probe_format_sample_with_garbage() {
    let (ev, st) = read_file(&sample("tcp_probe-format.txt")).unwrap();
    assert_eq!(
        (st.lines, st.events, st.garbage, st.comments, st.lost),
        (31, 25, 4, 1, 12)
    );
    assert_eq!(st.first_garbage.as_ref().unwrap(), &(11, "^C".to_string()));
    assert_eq!(count(&ev, "tcp_probe"), 20);
    let web: Vec<_> = ev.iter().filter(|e| e.task == "Web Content").collect();
    assert_eq!(web.len(), 4);
    assert_eq!(web[0].pid, Some(4242));
    let (l, r) = web[0].endpoints().unwrap();
    assert_eq!(
        (l.to_string(), r.to_string()),
        ("[2001:db8::10]:50112".into(), "[2001:db8::1]:443".into())
    );
    // The 4.19 layout has no family=, the old retransmit layout no skbaddr: both parse.
    let first = &ev[0];
    assert_eq!(first.get("family"), None);
    assert_eq!(first.uint("snd_nxt"), Some(0x3d9e3a5));
    assert_eq!(first.uint("srtt"), Some(2034));
    let s = Summary::from_events(&ev);
    let (_, iperf) = s.conns.iter().find(|(k, _)| k.0.port() == 58760).unwrap();
    assert_eq!(iperf.retransmits, 1);
    assert_eq!((iperf.cwnd_min, iperf.cwnd_max), (Some(8), Some(17)));
    assert_eq!(iperf.ssthresh_min, Some(8));
    assert_eq!(iperf.events, 19);
}

#[test]
fn plots_of_the_samples() {
    let d = tempfile::tempdir().unwrap();
    let (ev, _) = read_file(&sample("tcp_probe-format.txt")).unwrap();
    let r = plot::plot(
        &ev,
        &PlotOptions {
            out_dir: d.path().to_path_buf(),
            width: 1000,
            height: 750,
            ..PlotOptions::default()
        },
    )
    .unwrap();
    // iperf3 and the IPv6 one; ssh left out; the reset-only one has nothing to draw.
    assert_eq!(r.files.len(), 2);
    assert_eq!((r.ssh_skipped, r.without_probes), (1, 1));
    for f in &r.files {
        assert_eq!(plot::png_size(f), Some((1000, 750)), "{}", f.display());
    }
    let (ev, _) = read_file(&sample("loopback-lossy-6.18.txt.gz")).unwrap();
    let r = plot::plot(
        &ev,
        &PlotOptions {
            out_dir: d.path().join("svg"),
            svg: true,
            conn: Some("-> 127.0.0.1:47001".into()),
            ..PlotOptions::default()
        },
    )
    .unwrap();
    assert_eq!(r.files.len(), 1);
    let texts = plot::svg_texts(&std::fs::read_to_string(&r.files[0]).unwrap());
    for name in ["snd_cwnd", "srtt", "snd_wnd", "rcv_wnd", "retransmit"] {
        assert!(texts.iter().any(|t| t == name), "{name}: {texts:?}");
    }
    // The title, with its arrow escaped.
    assert!(texts.iter().any(|t| t.ends_with("-&gt; 127.0.0.1:47001")));
}
