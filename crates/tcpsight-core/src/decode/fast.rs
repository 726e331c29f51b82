//! A straight-line decoder for the most common frame: untagged Ethernet, a 20-byte IPv4
//! header, not a fragment, TCP, at least 20 bytes of TCP header captured. It reads fixed
//! offsets after one length check and gives up (returns `None`) on anything else, which
//! then goes through the general decoder. Both give the same answer on every frame this
//! one accepts (unit test below, and the `decode` property test).

use super::TcpSegment;
use super::tcp::{TcpFlags, TcpOptions, parse_options, sack_blocks};
use crate::addr::Addr;
use crate::decode::LinkType;
use crate::seq::Seq;

const ETH: usize = 14;
const IP: usize = ETH;
const TCP: usize = ETH + 20;

#[inline(always)]
fn be16(d: &[u8; TCP + 20], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

#[inline(always)]
fn be32(d: &[u8; TCP + 20], at: usize) -> u32 {
    u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

#[inline(always)]
pub(super) fn ethernet_ipv4_tcp(link: LinkType, data: &[u8], orig_len: u32) -> Option<TcpSegment> {
    if link != LinkType::ETHERNET {
        return None;
    }
    let d: &[u8; TCP + 20] = data.get(..TCP + 20)?.try_into().ok()?;
    // Ethertype IPv4, version 4 with IHL 5, protocol TCP, no fragment offset.
    if be16(d, 12) != 0x0800 || d[IP] != 0x45 || d[IP + 9] != 6 || be16(d, IP + 6) & 0x1fff != 0 {
        return None;
    }
    let total = be16(d, IP + 2) as u32;
    let off_flags = be16(d, TCP + 12);
    let doff = ((off_flags >> 12) as u32) * 4;
    // Leave the unusual (TSO length 0, impossible lengths) to the general decoder.
    if total < 20 + doff || doff < 20 {
        return None;
    }
    let flags = TcpFlags(off_flags & 0x01ff);
    let end = (TCP + doff as usize).min(data.len());
    let opts = data.get(TCP + 20..end).unwrap_or(&[]);
    let (options, sack) = if flags.syn() {
        (parse_options(opts), 0)
    } else if doff > 20 {
        (TcpOptions::default(), sack_blocks(opts))
    } else {
        (TcpOptions::default(), 0)
    };
    Some(TcpSegment {
        src: Addr::from_v4([d[IP + 12], d[IP + 13], d[IP + 14], d[IP + 15]]),
        dst: Addr::from_v4([d[IP + 16], d[IP + 17], d[IP + 18], d[IP + 19]]),
        sport: be16(d, TCP),
        dport: be16(d, TCP + 2),
        vlan: 0,
        tunnel: 0,
        seq: Seq(be32(d, TCP + 4)),
        ack: Seq(be32(d, TCP + 8)),
        flags,
        window: Some(be16(d, TCP + 14)),
        payload_len: total - 20 - doff,
        options,
        sack_blocks: sack,
        ttl: d[IP + 8],
        truncated: (data.len() as u64) < orig_len as u64 || data.len() < TCP + doff as usize,
        payload_at: TCP as u32 + doff,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{Tcp, tcp_frame};
    use crate::decode::{Decoded, decode_general};

    #[test]
    fn agrees_with_the_general_decoder() {
        let mut accepted = 0;
        for flags in [
            TcpFlags::SYN,
            TcpFlags::SYN | TcpFlags::ACK,
            TcpFlags::ACK,
            TcpFlags::FIN | TcpFlags::ACK,
        ] {
            for len in [0usize, 1, 100, 1460] {
                let mut t = Tcp::new(
                    "10.1.2.3".parse().unwrap(),
                    1234,
                    "10.9.8.7".parse().unwrap(),
                    80,
                );
                t.flags = flags;
                t.seq = 0xdead_beef;
                t.ack = 7;
                t.payload_len = len;
                t.syn_options = flags & TcpFlags::SYN != 0;
                let f = tcp_frame(&t);
                for cut in [f.len(), 54, 60, 68, 74] {
                    let cut = cut.min(f.len());
                    let data = &f[..cut];
                    if let Some(seg) = ethernet_ipv4_tcp(LinkType::ETHERNET, data, f.len() as u32) {
                        accepted += 1;
                        assert_eq!(
                            decode_general(LinkType::ETHERNET, data, f.len() as u32),
                            Ok(Decoded::Tcp(seg))
                        );
                    }
                }
            }
        }
        assert!(accepted > 40);
        // VLAN-tagged and IPv6 frames are not for the fast path.
        let mut t = Tcp::new(
            "10.1.2.3".parse().unwrap(),
            1,
            "10.9.8.7".parse().unwrap(),
            2,
        );
        t.vlan = Some(5);
        assert!(ethernet_ipv4_tcp(LinkType::ETHERNET, &tcp_frame(&t), 80).is_none());
        let t6 = Tcp::new("fd00::1".parse().unwrap(), 1, "fd00::2".parse().unwrap(), 2);
        assert!(ethernet_ipv4_tcp(LinkType::ETHERNET, &tcp_frame(&t6), 80).is_none());
    }
}
