//! Connection filters for `analyze`: server port, client/server volume, start time.

use tcpsight_core::ConnRecord;

/// A point in capture time given on the command line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TimeSpec {
    /// Seconds since midnight UTC, on the day the capture starts.
    TimeOfDay(u64),
    /// Nanoseconds since the epoch.
    Absolute(u64),
}

/// Parses `HH:MM[:SS]`, `YYYY-MM-DD HH:MM[:SS]` (or with a `T`), or epoch seconds; UTC.
pub fn parse_time(s: &str) -> Result<TimeSpec, String> {
    let s = s.trim();
    let bad = || format!("{s:?}: expected HH:MM:SS, YYYY-MM-DD HH:MM:SS or epoch seconds (UTC)");
    if let Ok(secs) = s.parse::<f64>() {
        if secs >= 0.0 && secs.is_finite() {
            return Ok(TimeSpec::Absolute((secs * 1e9) as u64));
        }
        return Err(bad());
    }
    let tod = |t: &str| -> Option<u64> {
        let p: Vec<&str> = t.split(':').collect();
        if !(2..=3).contains(&p.len()) {
            return None;
        }
        let h: u64 = p[0].parse().ok()?;
        let m: u64 = p[1].parse().ok()?;
        let sec: u64 = if p.len() == 3 { p[2].parse().ok()? } else { 0 };
        (h < 24 && m < 60 && sec < 61).then_some(h * 3600 + m * 60 + sec)
    };
    if let Some((date, time)) = s.split_once([' ', 'T']) {
        let d: Vec<&str> = date.split('-').collect();
        if d.len() != 3 {
            return Err(bad());
        }
        let (Ok(y), Ok(mo), Ok(day)) = (
            d[0].parse::<i64>(),
            d[1].parse::<u32>(),
            d[2].parse::<u32>(),
        ) else {
            return Err(bad());
        };
        if !(1..=12).contains(&mo) || !(1..=31).contains(&day) {
            return Err(bad());
        }
        let t = tod(time).ok_or_else(bad)?;
        let days = crate::format::days_from_civil(y, mo, day);
        if days < 0 {
            return Err(bad());
        }
        return Ok(TimeSpec::Absolute(
            (days as u64 * 86_400 + t) * 1_000_000_000,
        ));
    }
    tod(s).map(TimeSpec::TimeOfDay).ok_or_else(bad)
}

impl TimeSpec {
    /// The absolute time, placing a time of day on the UTC date of `capture_start_ns`.
    pub fn resolve(self, capture_start_ns: u64) -> u64 {
        match self {
            TimeSpec::Absolute(ns) => ns,
            TimeSpec::TimeOfDay(s) => {
                let day = capture_start_ns / 1_000_000_000 / 86_400;
                (day * 86_400 + s) * 1_000_000_000
            }
        }
    }
}

/// Which connections `analyze` reports.
#[derive(Clone, Debug, Default)]
pub struct ConnFilter {
    pub port: Option<u16>,
    pub client_bytes_min: Option<u64>,
    pub client_bytes_max: Option<u64>,
    pub server_bytes_min: Option<u64>,
    pub server_bytes_max: Option<u64>,
    pub since: Option<TimeSpec>,
    pub until: Option<TimeSpec>,
}

impl ConnFilter {
    pub fn is_active(&self) -> bool {
        self.port.is_some()
            || self.client_bytes_min.is_some()
            || self.client_bytes_max.is_some()
            || self.server_bytes_min.is_some()
            || self.server_bytes_max.is_some()
            || self.since.is_some()
            || self.until.is_some()
    }

    /// Whether a finished connection is reported; `capture_start_ns` places times of day.
    /// Bytes are the exact unique bytes each side sent; time is the connection's start.
    pub fn matches(&self, r: &ConnRecord, capture_start_ns: u64) -> bool {
        let within = |v: u64, lo: Option<u64>, hi: Option<u64>| {
            lo.is_none_or(|l| v >= l) && hi.is_none_or(|h| v <= h)
        };
        self.port.is_none_or(|p| r.server_port == p)
            && within(
                r.c2s.unique_bytes,
                self.client_bytes_min,
                self.client_bytes_max,
            )
            && within(
                r.s2c.unique_bytes,
                self.server_bytes_min,
                self.server_bytes_max,
            )
            && self
                .since
                .is_none_or(|t| r.ts_first_ns >= t.resolve(capture_start_ns))
            && self
                .until
                .is_none_or(|t| r.ts_first_ns < t.resolve(capture_start_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("12:01:30"), Ok(TimeSpec::TimeOfDay(43_290)));
        assert_eq!(parse_time("12:01"), Ok(TimeSpec::TimeOfDay(43_260)));
        assert_eq!(
            parse_time("2026-11-22 12:01:30"),
            Ok(TimeSpec::Absolute(1_795_348_890_000_000_000))
        );
        assert_eq!(
            parse_time("2026-11-22T12:01:30"),
            parse_time("2026-11-22 12:01:30")
        );
        assert_eq!(
            parse_time("1700000000.5"),
            Ok(TimeSpec::Absolute(1_700_000_000_500_000_000))
        );
        assert!(parse_time("25:00").is_err());
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2026-13-01 00:00").is_err());
        // A time of day lands on the capture's first day.
        let start = 1_795_348_861_184_018_000; // 2026-11-22 12:01:01 UTC
        assert_eq!(
            TimeSpec::TimeOfDay(43_290).resolve(start),
            1_795_348_890_000_000_000
        );
    }
}
