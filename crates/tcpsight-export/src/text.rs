//! Number and address formatting for the record writers (and the CLI's tables).

/// Appends an integer (itoa: the std formatter costs several times more, and a flow
/// record has about 70 numbers).
#[inline]
pub fn int(n: u64, out: &mut String) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// Appends `n` zero-padded to `width` digits.
pub fn padded(n: u64, width: usize, out: &mut String) {
    let mut b = itoa::Buffer::new();
    let s = b.format(n);
    for _ in s.len()..width {
        out.push('0');
    }
    out.push_str(s);
}

/// Epoch seconds with `digits` decimals (6 for microsecond captures, 9 for nanosecond).
pub fn epoch(ns: u64, digits: u8, out: &mut String) {
    let digits = digits.clamp(1, 9) as u32;
    int(ns / 1_000_000_000, out);
    out.push('.');
    padded(
        (ns % 1_000_000_000) / 10u64.pow(9 - digits),
        digits as usize,
        out,
    );
}

/// Microseconds from nanoseconds: an integer when exact, else up to 3 decimals.
pub fn micros(ns: u64, out: &mut String) {
    int(ns / 1000, out);
    let rem = ns % 1000;
    if rem != 0 {
        out.push('.');
        let (mut v, mut w) = (rem, 3);
        while v % 10 == 0 {
            v /= 10;
            w -= 1;
        }
        padded(v, w, out);
    }
}

/// Microseconds from fractional nanoseconds, 3 decimals at most.
pub fn micros_f(ns: f64, out: &mut String) {
    micros(ns.max(0.0).round() as u64, out);
}

/// Appends an address: IPv4 digit by digit, IPv6 through the standard formatter.
pub fn addr(a: tcpsight_core::Addr, out: &mut String) {
    match a.ip() {
        std::net::IpAddr::V4(v4) => {
            for (i, o) in v4.octets().iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                int(*o as u64, out);
            }
        }
        v6 => {
            use std::fmt::Write;
            let _ = write!(out, "{v6}");
        }
    }
}
