//! The line parser on arbitrary input: never panics, and a well-formed line round-trips.

use proptest::prelude::*;
use tcpsight_probe::{Line, parse_line};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_string_never_panics(s in "\\PC{0,200}") {
        let _ = parse_line(&s);
    }

    #[test]
    fn any_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_line(&String::from_utf8_lossy(&b));
    }

    #[test]
    fn mutated_real_lines_never_panic(cut in 0usize..400, junk in "[ :=\\[\\].0-9a-z-]{0,20}") {
        let line = "           <...>-10898   [001] ..s2.  9108.793729: tcp_probe: family=AF_INET src=127.0.0.1:33189 dest=127.0.0.1:60516 mark=0x0 data_len=32741 snd_nxt=0xc2d610b2 snd_una=0xc2d610b2 snd_cwnd=10 ssthresh=2147483647 snd_wnd=65536 srtt=50 rcv_wnd=65483";
        let cut = cut.min(line.len()); // the line is ASCII
        let s = format!("{}{}{}", &line[..cut], junk, &line[cut..]);
        if let Ok(Line::Event(e)) = parse_line(&s) {
            let _ = e.endpoints();
            let _ = e.uint("srtt");
        }
    }

    #[test]
    fn well_formed_lines_round_trip(
        task in "[a-zA-Z][a-zA-Z0-9 _.-]{0,14}",
        pid in 1i32..4_000_000,
        cpu in 0u32..256,
        secs in 0u64..10_000_000,
        usecs in 0u32..1_000_000,
        cwnd in any::<u32>(),
        sport in any::<u16>(),
    ) {
        let task = task.trim_end().to_string();
        prop_assume!(!task.is_empty());
        let line = format!(
            "{task:>16}-{pid:<7} [{cpu:03}] ..s1. {secs:5}.{usecs:06}: tcp_probe: family=AF_INET src=10.1.2.3:{sport} dest=10.3.2.1:80 snd_cwnd={cwnd} srtt=7"
        );
        match parse_line(&line) {
            Ok(Line::Event(e)) => {
                prop_assert_eq!(e.task.trim(), task.trim());
                prop_assert_eq!(e.pid, Some(pid));
                prop_assert_eq!(e.cpu, Some(cpu));
                prop_assert_eq!(e.name.as_str(), "tcp_probe");
                prop_assert!((e.ts - (secs as f64 + usecs as f64 / 1e6)).abs() < 1e-3);
                prop_assert_eq!(e.uint("snd_cwnd"), Some(cwnd as u64));
                prop_assert_eq!(e.endpoints().unwrap().0.port(), sport);
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }
}
