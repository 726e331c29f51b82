//! The TCP header and its handshake options.

use super::{Bytes, DecodeError, TcpSegment};
use crate::addr::Addr;
use crate::seq::Seq;

/// TCP flag bits, as in the header's 13th byte (plus NS from the 12th).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpFlags(pub u16);

impl TcpFlags {
    pub const FIN: u16 = 0x01;
    pub const SYN: u16 = 0x02;
    pub const RST: u16 = 0x04;
    pub const PSH: u16 = 0x08;
    pub const ACK: u16 = 0x10;
    pub const URG: u16 = 0x20;
    pub const ECE: u16 = 0x40;
    pub const CWR: u16 = 0x80;

    #[inline]
    pub fn has(self, bit: u16) -> bool {
        self.0 & bit != 0
    }
    #[inline]
    pub fn syn(self) -> bool {
        self.has(Self::SYN)
    }
    #[inline]
    pub fn ack(self) -> bool {
        self.has(Self::ACK)
    }
    #[inline]
    pub fn fin(self) -> bool {
        self.has(Self::FIN)
    }
    #[inline]
    pub fn rst(self) -> bool {
        self.has(Self::RST)
    }
}

/// Options that matter for the connection record. Only SYN segments are parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpOptions {
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_ok: bool,
    pub ts_ok: bool,
}

pub(crate) fn parse_options(opts: &[u8]) -> TcpOptions {
    let mut o = TcpOptions::default();
    let mut i = 0;
    while i < opts.len() {
        let kind = opts[i];
        match kind {
            0 => break,
            1 => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let Some(&len) = opts.get(i + 1) else { break };
        let len = len as usize;
        if len < 2 || i + len > opts.len() {
            break;
        }
        let body = &opts[i + 2..i + len];
        match (kind, body.len()) {
            (2, 2) => o.mss = Some(u16::from_be_bytes([body[0], body[1]])),
            (3, 1) => o.wscale = Some(body[0]),
            (4, 0) => o.sack_ok = true,
            (8, 8) => o.ts_ok = true,
            _ => {}
        }
        i += len;
    }
    o
}

/// The number of SACK blocks (RFC 2018: 8 bytes each) in a segment's options; 0 when
/// there is no SACK option or the options are malformed before it.
#[inline]
pub(crate) fn sack_blocks(opts: &[u8]) -> u8 {
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => break,
            1 => {
                i += 1;
                continue;
            }
            kind => {
                let Some(&len) = opts.get(i + 1) else { break };
                let len = len as usize;
                if len < 2 || i + len > opts.len() {
                    break;
                }
                if kind == 5 {
                    return ((len - 2) / 8) as u8;
                }
                i += len;
            }
        }
    }
    0
}

/// Minimum TCP bytes that make a segment useful: ports, sequence, ack, offset, flags.
const TCP_MIN_USEFUL: usize = 14;

#[inline(always)]
pub(crate) fn decode_tcp(
    b: Bytes,
    src: Addr,
    dst: Addr,
    vlan: u32,
    l4_len: u32,
    ttl: u8,
    truncated: bool,
) -> Result<TcpSegment, DecodeError> {
    if b.len() < TCP_MIN_USEFUL {
        return Err(DecodeError::Short("TCP"));
    }
    let (Some(sport), Some(dport), Some(seq), Some(ack), Some(off_flags)) =
        (b.u16(0), b.u16(2), b.u32(4), b.u32(8), b.u16(12))
    else {
        return Err(DecodeError::Short("TCP"));
    };
    let doff = ((off_flags >> 12) as u32) * 4;
    if doff < 20 {
        return Err(DecodeError::Malformed("TCP data offset"));
    }
    // A header longer than the IP packet says the TCP segment is: impossible.
    if doff > l4_len {
        return Err(DecodeError::Malformed("TCP data offset"));
    }
    let flags = TcpFlags(off_flags & 0x01ff);
    let window = b.u16(14);
    let end = (doff as usize).min(b.len());
    let opts = b.0.get(20..end).unwrap_or(&[]);
    let (options, sack) = if flags.syn() {
        (parse_options(opts), 0)
    } else {
        (TcpOptions::default(), sack_blocks(opts))
    };
    Ok(TcpSegment {
        src,
        dst,
        sport,
        dport,
        vlan,
        tunnel: 0,
        seq: Seq(seq),
        ack: Seq(ack),
        flags,
        window,
        payload_len: l4_len - doff,
        options,
        sack_blocks: sack,
        ttl,
        truncated: truncated || b.len() < doff as usize,
        // Relative to the TCP header; the IP and link layers add their offsets.
        payload_at: doff,
    })
}
