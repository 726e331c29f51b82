//! The monitor's output directory: one folder per rotation period, named by the
//! period's start in UTC capture time (`2026_12_01_18_00`, Tstat's layout idea), files
//! that appear only when complete, and retention by age and by size.
//!
//! A file is written as `.NAME.part` and renamed to `NAME` when its period closes, so a
//! reader listing the folder never sees half a file (rename is atomic within a
//! filesystem). A period folder that already exists (a restart into the same
//! directory) is never written into: the new one is `NAME_1`, `NAME_2`, ...

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes `dir/NAME` whole or not at all: into `.NAME.part`, then renamed.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    let part = dir.join(format!(".{name}.part"));
    let path = dir.join(name);
    let r = (|| {
        let mut f = File::create(&part)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&part, &path)
    })();
    if r.is_err() {
        let _ = fs::remove_file(&part);
    }
    r.map(|()| path)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Hinnant's
/// civil_from_days).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + (m <= 2) as i64;
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A period's folder name: its start in UTC, to the minute (to the second when the
/// start is not on a minute).
pub fn period_name(start_ns: u64) -> String {
    let secs = (start_ns / 1_000_000_000) as i64;
    let (y, mo, d) = civil(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let (h, mi, s) = (sod / 3600, sod % 3600 / 60, sod % 60);
    let mut n = format!("{y:04}_{mo:02}_{d:02}_{h:02}_{mi:02}");
    if s != 0 {
        n.push_str(&format!("_{s:02}"));
    }
    n
}

/// The start of the period a folder name gives (suffixes `_N` after a restart and the
/// seconds field are understood); None for names that are not periods.
pub fn parse_period_name(name: &str) -> Option<u64> {
    let base = match name.rsplit_once("_r") {
        Some((b, n)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => b,
        _ => name,
    };
    let parts: Vec<&str> = base.split('_').collect();
    let digits = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !(5..=6).contains(&parts.len()) || !parts.iter().all(digits) || parts[0].len() != 4 {
        return None;
    }
    let num = |i: usize| parts.get(i).map_or(Some(0), |p| p.parse::<i64>().ok());
    let (y, mo, d, h, mi, s) = (num(0)?, num(1)?, num(2)?, num(3)?, num(4)?, num(5)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + s;
    (secs >= 0).then_some(secs as u64 * 1_000_000_000)
}

/// The root directory of a monitor's output.
pub struct OutputDir {
    root: PathBuf,
}

impl OutputDir {
    pub fn open(root: &Path) -> Result<OutputDir, String> {
        fs::create_dir_all(root).map_err(|e| {
            format!(
                "{}: cannot create the output directory: {e}",
                root.display()
            )
        })?;
        Ok(OutputDir {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the folder of the period starting at `start_ns`, never one that exists.
    pub fn new_period(&self, start_ns: u64) -> io::Result<PathBuf> {
        let base = period_name(start_ns);
        for n in 0..10_000 {
            let name = if n == 0 {
                base.clone()
            } else {
                format!("{base}_r{n}")
            };
            let p = self.root.join(&name);
            match fs::create_dir(&p) {
                Ok(()) => return Ok(p),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other("10,000 folders of the same period"))
    }

    /// The period folders, oldest first: (start, path, bytes).
    pub fn periods(&self) -> Vec<(u64, PathBuf, u64)> {
        let Ok(rd) = fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut v: Vec<(u64, PathBuf, u64)> = rd
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let start = parse_period_name(&name)?;
                let p = e.path();
                let bytes = dir_bytes(&p);
                Some((start, p, bytes))
            })
            .collect();
        v.sort();
        v
    }

    /// Removes the oldest periods (never `current`) older than `keep_ns` before
    /// `now_ns`, then while the whole exceeds `max_bytes`; says what it removed.
    pub fn retain(
        &self,
        now_ns: u64,
        keep_ns: Option<u64>,
        max_bytes: Option<u64>,
        current: Option<&Path>,
    ) -> Vec<String> {
        let mut said = Vec::new();
        let mut periods = self.periods();
        periods.retain(|(_, p, _)| Some(p.as_path()) != current);
        let mut total: u64 =
            periods.iter().map(|p| p.2).sum::<u64>() + current.map_or(0, dir_bytes);
        for (start, path, bytes) in periods {
            let old = keep_ns.is_some_and(|k| start.saturating_add(k) < now_ns);
            let big = max_bytes.is_some_and(|m| total > m);
            if !(old || big) {
                continue;
            }
            match fs::remove_dir_all(&path) {
                Ok(()) => {
                    total = total.saturating_sub(bytes);
                    said.push(format!(
                        "removed {} ({} KB): {}",
                        path.display(),
                        bytes.div_ceil(1024),
                        if old {
                            "older than --keep"
                        } else {
                            "over --max-disk"
                        }
                    ));
                }
                Err(e) => said.push(format!("cannot remove {}: {e}", path.display())),
            }
        }
        said
    }
}

fn dir_bytes(p: &Path) -> u64 {
    fs::read_dir(p).map_or(0, |rd| {
        rd.filter_map(Result::ok)
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        // 2026-12-01 18:00:00 UTC
        let t = 1_796_148_000u64 * 1_000_000_000;
        assert_eq!(period_name(t), "2026_12_01_18_00");
        assert_eq!(parse_period_name("2026_12_01_18_00"), Some(t));
        assert_eq!(parse_period_name("2026_12_01_18_00_r2"), Some(t));
        assert_eq!(period_name(t + 30_000_000_000), "2026_12_01_18_00_30");
        assert_eq!(
            parse_period_name("2026_12_01_18_00_30"),
            Some(t + 30_000_000_000)
        );
        assert_eq!(
            parse_period_name("2026_12_01_18_00_30_r1"),
            Some(t + 30_000_000_000)
        );
        assert_eq!(period_name(0), "1970_01_01_00_00");
        for bad in [
            "notes",
            "2026_13_01_00_00",
            "2026_12_01",
            "26_12_01_18_00",
            ".x",
        ] {
            assert_eq!(parse_period_name(bad), None, "{bad}");
        }
        for days in [-1000i64, 0, 59, 60, 365, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn periods_never_overwrite_and_retention_removes_oldest() {
        let tmp = tempfile::tempdir().unwrap();
        let out = OutputDir::open(tmp.path()).unwrap();
        let h = 3_600_000_000_000u64;
        let t0 = 1_796_148_000u64 * 1_000_000_000;
        let a = out.new_period(t0).unwrap();
        let a2 = out.new_period(t0).unwrap();
        assert_ne!(a, a2);
        write_atomic(&a, "flows.jsonl", &[b'x'; 5000]).unwrap();
        assert!(a.join("flows.jsonl").exists() && !a.join(".flows.jsonl.part").exists());
        let b = out.new_period(t0 + h).unwrap();
        let c = out.new_period(t0 + 2 * h).unwrap();
        fs::write(c.join("x"), [0u8; 100]).unwrap();
        assert_eq!(out.periods().len(), 4);
        // Keep 90 minutes at t0+2h: the two folders of t0 go, b stays.
        let said = out.retain(t0 + 2 * h, Some(h * 3 / 2), None, Some(&c));
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(b.exists() && c.exists() && !a.exists() && !a2.exists());
        // Over the size limit: the oldest (b) goes, never the current one.
        fs::write(b.join("y"), [0u8; 300]).unwrap();
        let said = out.retain(t0 + 2 * h, None, Some(200), Some(&c));
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(!b.exists() && c.exists());
    }
}
