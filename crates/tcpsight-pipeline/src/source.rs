//! Frame sources: files, the live ring, a paced replay. One frame type for all
//! ([`FrameRef`]: capture timestamp, link type, bytes, length on the wire).

use std::time::{Duration, Instant};

use tcpsight_core::LinkType;
use tcpsight_io::{FrameRef, MergedReader, ReadError};
use tcpsight_live::LiveCapture;

use crate::dedup::CopyFilter;

/// What a source has for the loop.
pub enum Next<'a> {
    Frame(FrameRef<'a>),
    /// Nothing right now. Capture time has reached `clock_ns` when the source knows it
    /// (a live ring: the wall clock; a paced replay: its schedule), so handshakes time
    /// out and windows slide on a quiet interface. More may come after `wait` (zero:
    /// ask again at once; the source has already waited).
    Idle {
        clock_ns: Option<u64>,
        wait: Duration,
    },
    /// The input ended.
    End,
}

/// Where frames come from.
pub trait FrameSource {
    /// The next frame, or why there is none. An error is fatal for the source (a live
    /// ring that failed); damage inside a file is not an error here: the file source
    /// ends and keeps the damage for [`FrameSource::errors`].
    fn next_frame(&mut self) -> Result<Next<'_>, String>;

    /// Raw input bytes consumed so far (progress reporting).
    fn bytes_read(&self) -> u64 {
        0
    }

    /// The kernel's (delivered, dropped) counters, for live sources.
    fn kernel_stats(&mut self) -> Option<(u64, u64)> {
        None
    }

    /// Damage found in the input (each names the file and byte offset).
    fn errors(&self) -> &[ReadError] {
        &[]
    }

    /// Frames dropped as copies of one seen on another interface (live `any`;
    /// [`crate::dedup`]), or `None` where no such filter runs.
    fn copies_dropped(&self) -> Option<u64> {
        None
    }
}

/// Capture files merged in timestamp order (stdin as `-`). At their end, when a file
/// recorded when its capture stopped (a pcapng Interface Statistics Block's
/// isb_endtime: tcpsight's `-w` and dumpcap write one), capture time moves on to that
/// moment before the input ends, as a live run's clock did on its quiet interface: a
/// handshake whose deadline passed before the stop times out in the replay too.
pub struct FileSource {
    merged: MergedReader,
    /// The recorded end time has been handed out.
    end_given: bool,
}

impl FileSource {
    pub fn new(merged: MergedReader) -> FileSource {
        FileSource {
            merged,
            end_given: false,
        }
    }

    pub fn merged(&self) -> &MergedReader {
        &self.merged
    }
}

impl FrameSource for FileSource {
    #[inline(always)]
    fn next_frame(&mut self) -> Result<Next<'_>, String> {
        if self.end_given {
            return Ok(Next::End);
        }
        // The frame is taken again through `current`: returning the borrow of one arm
        // while the other reads `merged` again is more than the borrow checker allows.
        if self.merged.next_frame().is_some() {
            let f = self.merged.current().expect("the frame just read");
            return Ok(Next::Frame(f));
        }
        self.end_given = true;
        Ok(match self.merged.recorded().end_ns {
            Some(end) => Next::Idle {
                clock_ns: Some(end),
                wait: Duration::ZERO,
            },
            None => Next::End,
        })
    }

    fn bytes_read(&self) -> u64 {
        self.merged
            .readers()
            .iter()
            .map(|r| r.raw_bytes_read())
            .sum()
    }

    fn errors(&self) -> &[ReadError] {
        &self.merged.errors
    }
}

/// The live AF_PACKET ring of one interface, of several, or of `any`. On `any` or a
/// list (unless the capture was opened with [`tcpsight_live::LiveOptions::drop_copies`]
/// off), copies of a packet from two interfaces are dropped and counted
/// ([`CopyFilter`]).
pub struct LiveSource {
    cap: LiveCapture,
    /// How long one poll of an empty ring waits (ms).
    poll_ms: i32,
    copies: Option<CopyFilter>,
    /// Interface names by index, looked up once each (`any` mixes interfaces).
    names: Vec<(i32, Box<str>)>,
    /// The interface's name when it is one interface (not `any`).
    single: Option<Box<str>>,
}

impl LiveSource {
    pub fn new(cap: LiveCapture, poll_ms: i32) -> LiveSource {
        let mixed = tcpsight_live::mixes_interfaces(&cap.interface);
        let copies =
            (mixed && cap.drop_copies).then(|| CopyFilter::new(crate::dedup::DEFAULT_WINDOW_NS));
        let single = (!mixed).then(|| cap.interface.as_str().into());
        LiveSource {
            single,
            cap,
            poll_ms,
            copies,
            names: Vec::new(),
        }
    }

    pub fn capture(&mut self) -> &mut LiveCapture {
        &mut self.cap
    }
}

impl FrameSource for LiveSource {
    #[inline]
    fn next_frame(&mut self) -> Result<Next<'_>, String> {
        let link = self.cap.link;
        let next = match &mut self.copies {
            Some(c) => self.cap.next_where(self.poll_ms, |f| {
                !c.is_copy(f.ts_ns, f.ifindex, f.data, f.orig_len)
            })?,
            None => self.cap.next(self.poll_ms)?,
        };
        Ok(match next {
            Some(f) => {
                let interface = match &self.single {
                    Some(name) => Some(&**name),
                    None => interface_of(&mut self.names, f.ifindex),
                };
                Next::Frame(FrameRef {
                    ts_ns: f.ts_ns,
                    link,
                    data: f.data,
                    orig_len: f.orig_len,
                    interface,
                })
            }
            // Partly filled blocks are handed over after 10 ms, so an empty ring means
            // everything up to about now has been seen.
            None => Next::Idle {
                clock_ns: Some(crate::wall_clock_ns()),
                wait: Duration::ZERO,
            },
        })
    }

    fn kernel_stats(&mut self) -> Option<(u64, u64)> {
        Some(self.cap.stats())
    }

    fn copies_dropped(&self) -> Option<u64> {
        self.copies.as_ref().map(|c| c.copies)
    }
}

/// The name of interface `ifindex`, from the cache or looked up once (an interface gone
/// before the lookup has its number for a name).
fn interface_of(names: &mut Vec<(i32, Box<str>)>, ifindex: i32) -> Option<&str> {
    if ifindex <= 0 {
        return None;
    }
    let i = match names.iter().position(|(k, _)| *k == ifindex) {
        Some(i) => i,
        None => {
            let name =
                tcpsight_live::interface_name(ifindex).unwrap_or_else(|| format!("if{ifindex}"));
            names.push((ifindex, name.into()));
            names.len() - 1
        }
    };
    Some(&names[i].1)
}

/// Replay speed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    /// A factor of the recorded speed (1: as recorded).
    Factor(f64),
    /// As fast as frames can be read.
    Max,
}

/// Seconds as a Duration, never panicking: negative or NaN is zero, too large a year.
pub fn duration_of_secs(s: f64) -> Duration {
    let year = Duration::from_secs(365 * 86_400);
    if s.is_nan() || s <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(s).unwrap_or(year).min(year)
}

/// A replay paced like the original capture (or `factor` times faster): a frame is
/// handed out once its time has come on the wall clock, and meanwhile the replay's
/// clock moves through quiet stretches as a live capture's does on an idle interface.
pub struct Paced<S> {
    inner: S,
    speed: Speed,
    /// (capture time, wall time) of the first frame: the pace's origin.
    origin: Option<(u64, Instant)>,
    /// A frame read but not due yet.
    pending: Option<Owned>,
    /// The frame last handed out (frames borrow from it).
    current: Owned,
    ended: bool,
}

struct Owned {
    ts_ns: u64,
    link: LinkType,
    data: Vec<u8>,
    orig_len: u32,
    interface: Option<Box<str>>,
}

impl Default for Owned {
    fn default() -> Owned {
        Owned {
            ts_ns: 0,
            link: LinkType::ETHERNET,
            data: Vec::new(),
            orig_len: 0,
            interface: None,
        }
    }
}

impl Owned {
    fn set(&mut self, f: &FrameRef) {
        self.ts_ns = f.ts_ns;
        self.link = f.link;
        self.data.clear();
        self.data.extend_from_slice(f.data);
        self.orig_len = f.orig_len;
        // Allocates only when the interface changes (a file has one or a few).
        if self.interface.as_deref() != f.interface {
            self.interface = f.interface.map(Box::from);
        }
    }
}

impl<S: FrameSource> Paced<S> {
    pub fn new(inner: S, speed: Speed) -> Paced<S> {
        Paced {
            inner,
            speed,
            origin: None,
            pending: None,
            current: Owned::default(),
            ended: false,
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// How long until the frame at capture time `ts` is due (None: now).
    fn due_in(&mut self, ts: u64) -> Option<Duration> {
        let Speed::Factor(f) = self.speed else {
            return None;
        };
        let (t0, w0) = *self.origin.get_or_insert((ts, Instant::now()));
        let due = w0 + duration_of_secs(ts.saturating_sub(t0) as f64 / 1e9 / f);
        let now = Instant::now();
        (due > now).then(|| due - now)
    }

    /// The replay's clock now, never past the frame waiting to be due: time read after
    /// its due check may have moved on, and jumping over it could time out a handshake
    /// it completes.
    fn clock(&self) -> Option<u64> {
        let (Speed::Factor(f), Some((t0, w0))) = (self.speed, self.origin) else {
            return None;
        };
        let mut now = t0.saturating_add((w0.elapsed().as_secs_f64() * f * 1e9) as u64);
        if let Some(p) = &self.pending {
            now = now.min(p.ts_ns.saturating_sub(1));
        }
        Some(now)
    }
}

impl<S: FrameSource> FrameSource for Paced<S> {
    fn next_frame(&mut self) -> Result<Next<'_>, String> {
        if self.pending.is_none() && !self.ended {
            match self.inner.next_frame()? {
                Next::Frame(f) => {
                    let mut o = Owned::default();
                    o.set(&f);
                    self.pending = Some(o);
                }
                Next::Idle { clock_ns, wait } => return Ok(Next::Idle { clock_ns, wait }),
                Next::End => self.ended = true,
            }
        }
        let Some(ts) = self.pending.as_ref().map(|p| p.ts_ns) else {
            return Ok(Next::End);
        };
        if let Some(wait) = self.due_in(ts) {
            return Ok(Next::Idle {
                clock_ns: self.clock(),
                wait,
            });
        }
        let p = self.pending.take().expect("pending frame");
        self.current = p;
        let c = &self.current;
        Ok(Next::Frame(FrameRef {
            ts_ns: c.ts_ns,
            link: c.link,
            data: &c.data,
            orig_len: c.orig_len,
            interface: c.interface.as_deref(),
        }))
    }

    fn bytes_read(&self) -> u64 {
        self.inner.bytes_read()
    }

    fn kernel_stats(&mut self) -> Option<(u64, u64)> {
        self.inner.kernel_stats()
    }

    fn errors(&self) -> &[ReadError] {
        self.inner.errors()
    }

    fn copies_dropped(&self) -> Option<u64> {
        self.inner.copies_dropped()
    }
}

/// Frames from memory (tests, benchmarks): (timestamp, link type, bytes, wire length).
pub struct MemorySource {
    frames: Vec<(u64, LinkType, Vec<u8>, u32)>,
    next: usize,
}

impl MemorySource {
    pub fn new(frames: Vec<(u64, LinkType, Vec<u8>, u32)>) -> MemorySource {
        MemorySource { frames, next: 0 }
    }
}

impl FrameSource for MemorySource {
    fn next_frame(&mut self) -> Result<Next<'_>, String> {
        let Some((ts, link, data, orig)) = self.frames.get(self.next) else {
            return Ok(Next::End);
        };
        self.next += 1;
        Ok(Next::Frame(FrameRef {
            ts_ns: *ts,
            link: *link,
            data,
            orig_len: *orig,
            interface: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::interface_of;

    /// A live frame on `any` is named by its interface index, looked up once: the
    /// loopback's index names "lo"; an index no interface has gets its number.
    #[test]
    fn live_frames_are_named_by_their_interface_index() {
        let mut names = Vec::new();
        let lo = tcpsight_live::interface_index("lo").expect("a loopback interface");
        assert_eq!(interface_of(&mut names, lo), Some("lo"));
        assert_eq!(interface_of(&mut names, lo), Some("lo"));
        assert_eq!(names.len(), 1);
        assert_eq!(interface_of(&mut names, 999_999), Some("if999999"));
        assert_eq!(interface_of(&mut names, 0), None);
    }
}
