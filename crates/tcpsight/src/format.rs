//! Number formatting shared by every writer.

pub use tcpsight_export::text::epoch;

/// A human duration for tables: "850us", "12.3ms", "4.21s".
pub fn human_duration(ns: u64) -> String {
    let us = ns as f64 / 1000.0;
    if us < 1000.0 {
        format!("{us:.0}us")
    } else if us < 1_000_000.0 {
        format!("{:.1}ms", us / 1000.0)
    } else {
        format!("{:.2}s", us / 1_000_000.0)
    }
}

/// A human byte count for tables, in powers of 1,000 as network tools count: "850",
/// "12.3k", "4.21M", "1.05G".
pub fn human_bytes(n: u64) -> String {
    let x = n as f64;
    if n < 1000 {
        n.to_string()
    } else if x < 1e6 {
        format!("{:.1}k", x / 1e3)
    } else if x < 1e9 {
        format!("{:.1}M", x / 1e6)
    } else if x < 1e12 {
        format!("{:.2}G", x / 1e9)
    } else {
        format!("{:.2}T", x / 1e12)
    }
}

/// Thousands separators: 1234567 -> "1,234,567".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// UTC date and time of an epoch in ns: "2026-11-26 20:19:03.123456".
pub fn utc(ns: u64, digits: u8) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut frac = String::new();
    epoch(ns, digits, &mut frac);
    let frac = frac.split('.').nth(1).unwrap_or("").to_string();
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{frac}",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// (year, month, day) to days since 1970-01-01; Howard Hinnant's algorithm.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Whole seconds in the largest unit that divides them: "90 s", "5 min", "1 h", "1 d".
pub fn duration_words(secs: u64) -> String {
    match secs {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{} d", s / 86_400),
        s if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcpsight_export::text::{addr, micros, micros_f};

    #[test]
    fn formats() {
        let mut s = String::new();
        epoch(1_700_000_000_000_123_000, 6, &mut s);
        assert_eq!(s, "1700000000.000123");
        s.clear();
        epoch(1_700_000_000_000_000_007, 9, &mut s);
        assert_eq!(s, "1700000000.000000007");
        s.clear();
        micros(21_123_000, &mut s);
        assert_eq!(s, "21123");
        s.clear();
        micros(21_123_450, &mut s);
        assert_eq!(s, "21123.45");
        s.clear();
        micros(1_005, &mut s);
        assert_eq!(s, "1.005");
        s.clear();
        micros_f(18_385.4, &mut s);
        assert_eq!(s, "18.385");
        s.clear();
        addr(tcpsight_core::Addr::from_v4([10, 0, 255, 1]), &mut s);
        assert_eq!(s, "10.0.255.1");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
        assert_eq!(utc(0, 6), "1970-01-01 00:00:00.000000");
        assert_eq!(utc(1_700_000_000_500_000_000, 3), "2023-11-14 22:13:20.500");
        assert_eq!(human_duration(21_100_000), "21.1ms");
    }
}
