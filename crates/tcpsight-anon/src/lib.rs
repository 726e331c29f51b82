//! tcpsight-anon: prefix-preserving anonymization of IP addresses (CryptoPAn) for every
//! output tcpsight writes: records, L7 logs, tables, IPFIX, ClickHouse rows.
//!
//! [`CryptoPan`] is the scheme of Xu, Fan, Ammar and Moon ("Prefix-preserving IP address
//! anonymization", 2002): two addresses sharing a k-bit prefix map to two addresses
//! sharing a k-bit prefix, and nothing more is shared. Bit i of the output is bit i of
//! the input XOR the first bit of AES-128(first i input bits, then the pad's bits).
//! The 32-byte key is the AES key (bytes 0..16) and the pad's seed (16..32, encrypted
//! once). It gives the reference implementation's output on its sample trace
//! (tests/vectors.rs) and, over 128 bits, IPv6 as the common implementations do.
//!
//! [`Anonymizer`] is what the faces hold: the scheme, a bounded cache (an IPv4 address
//! costs 32 AES blocks, an IPv6 one 128), which addresses to map (`--anonymize-only`,
//! `--keep-clear`, as Tstat's -Y and -W) and, optionally, host names replaced by a keyed
//! hash.

use std::net::IpAddr;

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
use foldhash::fast::FixedState;
use hashbrown::HashMap;
use sha2::{Digest, Sha256};
use tcpsight_core::{Addr, ConnRecord, Endpoint};

/// The CryptoPAn mapping for one 32-byte key.
#[derive(Clone)]
pub struct CryptoPan {
    aes: Aes128,
    pad: [u8; 16],
}

impl CryptoPan {
    pub fn new(key: &[u8; 32]) -> CryptoPan {
        let aes = Aes128::new(GenericArray::from_slice(&key[..16]));
        let mut pad = GenericArray::clone_from_slice(&key[16..]);
        aes.encrypt_block(&mut pad);
        let mut p = [0u8; 16];
        p.copy_from_slice(&pad);
        CryptoPan { aes, pad: p }
    }

    /// Maps the first `bits` bits of `addr` (big-endian bytes, `bits` = 8 * len).
    fn map_bits<const N: usize>(&self, addr: [u8; N]) -> [u8; N] {
        let mut otp = [0u8; N];
        let mut input = GenericArray::clone_from_slice(&self.pad);
        for pos in 0..N * 8 {
            // input = the first `pos` bits of addr, then the pad's bits.
            let (byte, bit) = (pos / 8, pos % 8);
            input[..byte].copy_from_slice(&addr[..byte]);
            let keep = if bit == 0 { 0 } else { 0xffu8 << (8 - bit) };
            input[byte] = (addr[byte] & keep) | (self.pad[byte] & !keep);
            let mut out = input;
            self.aes.encrypt_block(&mut out);
            otp[byte] |= (out[0] >> 7) << (7 - bit);
        }
        let mut r = addr;
        for (r, o) in r.iter_mut().zip(otp) {
            *r ^= o;
        }
        r
    }

    pub fn v4(&self, a: [u8; 4]) -> [u8; 4] {
        self.map_bits(a)
    }

    pub fn v6(&self, a: [u8; 16]) -> [u8; 16] {
        self.map_bits(a)
    }

    pub fn ip(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(a) => IpAddr::V4(self.v4(a.octets()).into()),
            IpAddr::V6(a) => IpAddr::V6(self.v6(a.octets()).into()),
        }
    }
}

/// Reads a key: 32 raw bytes (a binary file, or a 32-character line as Tstat's key
/// file), 64 hex digits, or base64 of 32 bytes (as Tstat's --keybase64). Surrounding
/// white space is ignored in the text forms.
pub fn parse_key(data: &[u8]) -> Result<[u8; 32], String> {
    if data.len() == 32 {
        return Ok(data.try_into().expect("32 bytes"));
    }
    let text = std::str::from_utf8(data)
        .map_err(|_| format!("a key is 32 bytes, 64 hex digits or base64 of 32 bytes (this one is {} bytes of binary)", data.len()))?
        .trim();
    let bytes = if text.len() == 32 {
        Some(text.as_bytes().to_vec())
    } else if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Some(
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap_or(0))
                .collect(),
        )
    } else {
        base64(text).filter(|b| b.len() == 32)
    };
    match bytes {
        Some(b) => Ok(b.try_into().expect("32 bytes")),
        None => Err(format!(
            "a key is 32 bytes, 64 hex digits or base64 of 32 bytes (this one is {} characters)",
            text.len()
        )),
    }
}

/// Reads a key file (see [`parse_key`]).
pub fn load_key(path: &str) -> Result<[u8; 32], String> {
    let data = std::fs::read(path).map_err(|e| format!("{path}: cannot read the key: {e}"))?;
    parse_key(&data).map_err(|e| format!("{path}: {e}"))
}

/// Standard base64 (RFC 4648, padding optional); `None` on anything else.
fn base64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut n) = (0u32, 0);
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | v as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((acc >> n) as u8);
        }
    }
    Some(out)
}

/// An address block (`10.0.0.0/8`, `2001:db8::/32`, or one address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    len: u8,
}

impl Net {
    pub fn parse(s: &str) -> Result<Net, String> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s}: not an address block (10.0.0.0/8, 2001:db8::/32)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            None => max,
            Some(l) => l
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&l| l <= max)
                .ok_or_else(|| format!("{s}: prefix length must be 0 to {max}"))?,
        };
        Ok(Net { addr, len })
    }

    /// A comma-separated list.
    pub fn parse_list(s: &str) -> Result<Vec<Net>, String> {
        s.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(Net::parse)
            .collect()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (a, b, width) = match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => (u32::from(n) as u128, u32::from(a) as u128, 32),
            (IpAddr::V6(n), IpAddr::V6(a)) => (u128::from(n), u128::from(a), 128),
            _ => return false,
        };
        if self.len == 0 {
            return true;
        }
        let shift = width - self.len as u32;
        (a >> shift) == (b >> shift)
    }
}

/// Cached mappings kept before the cache starts over.
const CACHE_ENTRIES: usize = 1 << 16;

/// What a face holds to anonymize its outputs (see the crate docs).
#[derive(Clone)]
pub struct Anonymizer {
    pan: CryptoPan,
    key: [u8; 32],
    /// Only addresses in these blocks are mapped (empty: all).
    only: Vec<Net>,
    /// Addresses in these blocks are never mapped.
    keep: Vec<Net>,
    names: bool,
    cache: HashMap<Addr, Addr, FixedState>,
}

impl Anonymizer {
    pub fn new(key: &[u8; 32]) -> Anonymizer {
        Anonymizer {
            pan: CryptoPan::new(key),
            key: *key,
            only: Vec::new(),
            keep: Vec::new(),
            names: false,
            cache: HashMap::with_hasher(FixedState::default()),
        }
    }

    /// Only addresses in `nets` are anonymized (Tstat's -Y).
    pub fn only(mut self, nets: Vec<Net>) -> Self {
        self.only = nets;
        self
    }

    /// Addresses in `nets` stay as they are (Tstat's -W).
    pub fn keep_clear(mut self, nets: Vec<Net>) -> Self {
        self.keep = nets;
        self
    }

    /// Host names (SNI, HTTP Host, DNS names) replaced by a keyed hash too.
    pub fn with_names(mut self, on: bool) -> Self {
        self.names = on;
        self
    }

    pub fn hashes_names(&self) -> bool {
        self.names
    }

    fn wanted(&self, ip: IpAddr) -> bool {
        (self.only.is_empty() || self.only.iter().any(|n| n.contains(ip)))
            && !self.keep.iter().any(|n| n.contains(ip))
    }

    pub fn addr(&mut self, a: Addr) -> Addr {
        if let Some(m) = self.cache.get(&a) {
            return *m;
        }
        let ip = a.ip();
        let m = if self.wanted(ip) {
            Addr::from(self.pan.ip(ip))
        } else {
            a
        };
        if self.cache.len() >= CACHE_ENTRIES {
            self.cache.clear();
        }
        self.cache.insert(a, m);
        m
    }

    /// [`Anonymizer::addr`] without the cache, for callers holding it shared (a table
    /// drawn a few times a second): 32 AES blocks per IPv4 address, 128 per IPv6.
    pub fn map(&self, a: Addr) -> Addr {
        let ip = a.ip();
        if self.wanted(ip) {
            Addr::from(self.pan.ip(ip))
        } else {
            a
        }
    }

    pub fn endpoint(&mut self, e: Endpoint) -> Endpoint {
        Endpoint {
            addr: self.addr(e.addr),
            port: e.port,
        }
    }

    /// A host name as a keyed hash when names are hashed (else as it is): 16 hex digits
    /// of HMAC-SHA-256 under the key, and `.anon`, so equal names stay equal.
    pub fn name(&self, name: &str) -> String {
        if !self.names {
            return name.to_string();
        }
        let mac = hmac_sha256(&self.key, name.to_ascii_lowercase().as_bytes());
        let mut s = String::with_capacity(21);
        for b in &mac[..8] {
            s.push_str(&format!("{b:02x}"));
        }
        s.push_str(".anon");
        s
    }

    /// A record with its addresses (and names, when hashed) anonymized.
    pub fn record(&mut self, r: &mut ConnRecord) {
        r.client = self.addr(r.client);
        r.server = self.addr(r.server);
        if self.names {
            for n in [&mut r.app.server_name, &mut r.app.dns_name]
                .into_iter()
                .flatten()
            {
                *n = self.name(n).into();
            }
        }
    }
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    k[..key.len().min(64)].copy_from_slice(&key[..key.len().min(64)]);
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_every_form() {
        let raw: Vec<u8> = (0u8..32).collect();
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(parse_key(&raw).unwrap().to_vec(), raw);
        assert_eq!(
            parse_key(format!("{hex}\n").as_bytes()).unwrap().to_vec(),
            raw
        );
        let b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        assert_eq!(parse_key(b64.as_bytes()).unwrap().to_vec(), raw);
        assert_eq!(
            parse_key(b"abcdefghijklmnopqrstuvwxyz012345\n")
                .unwrap()
                .to_vec(),
            b"abcdefghijklmnopqrstuvwxyz012345".to_vec()
        );
        for bad in [&b"short"[..], &[0xff; 40][..], b"", &[b'!'; 44][..]] {
            assert!(parse_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn nets() {
        let n = Net::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.1.2.3".parse().unwrap()));
        assert!(!n.contains("::1".parse().unwrap()));
        assert!(
            Net::parse("0.0.0.0/0")
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
        assert!(
            Net::parse("2001:db8::/32")
                .unwrap()
                .contains("2001:db8:1::5".parse().unwrap())
        );
        assert!(Net::parse("10.0.0.0/33").is_err());
        assert!(Net::parse("nonsense").is_err());
        assert_eq!(Net::parse_list("10.0.0.0/8, 192.168.1.1").unwrap().len(), 2);
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn only_and_keep_clear() {
        let key = [7u8; 32];
        let mut a = Anonymizer::new(&key)
            .only(Net::parse_list("10.0.0.0/8").unwrap())
            .keep_clear(Net::parse_list("10.9.0.0/16").unwrap());
        let x = |s: &str| Addr::from(s.parse::<IpAddr>().unwrap());
        assert_eq!(a.addr(x("192.0.2.1")), x("192.0.2.1"));
        assert_eq!(a.addr(x("10.9.1.1")), x("10.9.1.1"));
        assert_ne!(a.addr(x("10.1.1.1")), x("10.1.1.1"));
        // Cached and uncached give the same.
        let first = a.addr(x("10.1.1.1"));
        assert_eq!(a.addr(x("10.1.1.1")), first);
    }
}
