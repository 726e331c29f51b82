//! Bad input never panics: any bytes, any header length, any ports, through the guess
//! and the table.

use proptest::prelude::*;
use tcpsight_core::{Addr, Datagram, Endpoint};
use tcpsight_udp::{UdpConfig, UdpTable, guess};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn guess_never_panics(data in proptest::collection::vec(any::<u8>(), 0..1500),
                          extra in 0u32..70_000, sport: u16, dport: u16) {
        // The header's length may be shorter than the bytes (a bad header) or longer
        // (a snaplen cut).
        let _ = guess(&data, data.len() as u32, sport, dport);
        let _ = guess(&data, extra, sport, dport);
    }

    /// Bytes that start like a protocol's header, then anything.
    #[test]
    fn guess_never_panics_on_near_misses(kind in 0usize..6,
                                         tail in proptest::collection::vec(any::<u8>(), 0..300)) {
        let heads: [&[u8]; 6] = [
            &[0xc0, 0, 0, 0, 1],
            &[0x80, 0, 0, 0, 0, 20],
            &[0x0d, 1, 2, 3, 4, 5, 6, 7, 8, b'Q', b'0', b'4', b'3'],
            &[0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0],
            &[0x30, 0x82],
            &[0, 1, b'a', 0],
        ];
        let mut b = heads[kind].to_vec();
        b.extend_from_slice(&tail);
        let _ = guess(&b, b.len() as u32, 1, 2);
    }

    /// Random datagrams with a tiny bound and timeout: the table never holds more than
    /// the bound, and every datagram ends up in exactly one record.
    #[test]
    fn table_accounts_for_every_datagram(dgs in proptest::collection::vec(
        (0u64..50, 0u8..6, 0u8..6, 0u16..3, 0u32..2000), 1..300)) {
        let mut t = UdpTable::new(UdpConfig { idle_timeout_ns: 10, max_flows: 4 });
        let mut pkts = 0;
        let mut ts = 0;
        for (dt, a, b, p, len) in &dgs {
            ts += dt;
            let ep = |x: u8| Endpoint { addr: Addr::from_v4([10, 0, 0, x]), port: 1000 + *p };
            let d = Datagram { ts_ns: ts, src: ep(*a), dst: ep(*b), vlan: 0, len: *len, data: &[] };
            t.on_datagram(&d, &mut |r| pkts += r.c2s.pkts + r.s2c.pkts);
            prop_assert!(t.active() <= 4);
        }
        t.finish(&mut |r| pkts += r.c2s.pkts + r.s2c.pkts);
        prop_assert_eq!(pkts, dgs.len() as u64);
    }
}
