//! The one run loop: frame in, packet filter, taps, engine, observers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tcpsight_bpf::LinkFilter;
use tcpsight_core::{Engine, EngineCounts, Observer};
use tcpsight_io::FrameRef;

use crate::source::{FrameSource, Next};

/// Sees every frame the loop accepts, before the engine does, and the idle clock.
/// Both default to doing nothing.
pub trait Tap {
    /// A frame passed the packet filter. An error stops the run (a capture file that
    /// can no longer be written, say).
    fn on_frame(&mut self, _frame: &FrameRef) -> Result<(), String> {
        Ok(())
    }
    /// The source was idle and capture time reached `clock_ns`.
    fn on_idle(&mut self, _clock_ns: u64) {}
    /// Every [`Runner::progress_every`] frames and whenever the source is idle.
    fn on_progress(&mut self, _p: &Progress) {}
}

/// How far a run has come, for progress bars and live health counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    /// Frames read from the source.
    pub frames_read: u64,
    /// Frames that passed the packet filter.
    pub frames: u64,
    /// TCP packets the engines have processed (a sharded run's lag its batches).
    pub tcp_packets: u64,
    /// Connections the engines evicted at their memory bound (`Config::max_connections`).
    pub evicted: u64,
    /// Frames the engines could not decode.
    pub undecodable: u64,
    /// Raw input bytes consumed (files).
    pub bytes_read: u64,
    /// The kernel's (delivered, dropped) counters (live).
    pub kernel: Option<(u64, u64)>,
    /// Frames dropped as copies from another interface (live `any`).
    pub copies: Option<u64>,
}

impl<A: Tap, B: Tap> Tap for (A, B) {
    fn on_frame(&mut self, f: &FrameRef) -> Result<(), String> {
        self.0.on_frame(f)?;
        self.1.on_frame(f)
    }
    fn on_idle(&mut self, clock_ns: u64) {
        self.0.on_idle(clock_ns);
        self.1.on_idle(clock_ns);
    }
    fn on_progress(&mut self, p: &Progress) {
        self.0.on_progress(p);
        self.1.on_progress(p);
    }
}

impl<T: Tap + ?Sized> Tap for &mut T {
    fn on_frame(&mut self, f: &FrameRef) -> Result<(), String> {
        (**self).on_frame(f)
    }
    fn on_idle(&mut self, clock_ns: u64) {
        (**self).on_idle(clock_ns);
    }
    fn on_progress(&mut self, p: &Progress) {
        (**self).on_progress(p);
    }
}

/// No tap.
impl Tap for () {}

/// Collecting records needs no tap.
impl Tap for tcpsight_core::Collect {}

/// A flag that stops a run when set: a signal handler's static, or one shared with
/// another thread.
pub enum StopFlag {
    Static(&'static AtomicBool),
    Shared(std::sync::Arc<AtomicBool>),
}

impl StopFlag {
    fn is_set(&self) -> bool {
        match self {
            StopFlag::Static(f) => f.load(Ordering::Relaxed),
            StopFlag::Shared(f) => f.load(Ordering::Relaxed),
        }
    }
}

/// When a run stops before its input ends.
#[derive(Default)]
pub struct Limits {
    /// Set by a signal handler (SIGINT, SIGTERM...) or another thread: the run
    /// finishes and reports.
    pub stop: Option<StopFlag>,
    /// Wall-clock deadline (`-t SECONDS` live).
    pub deadline: Option<Instant>,
    /// At most this many frames (after the packet filter; `-c COUNT`).
    pub max_frames: Option<u64>,
}

impl Limits {
    pub(crate) fn reached(&self, frames: u64) -> Option<Stopped> {
        if self.stop.as_ref().is_some_and(StopFlag::is_set) {
            return Some(Stopped::Signal);
        }
        if self.max_frames.is_some_and(|m| frames >= m) {
            return Some(Stopped::Count);
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Some(Stopped::Deadline);
        }
        None
    }
}

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// The input ended.
    End,
    Signal,
    Deadline,
    Count,
}

/// What one [`Runner::step`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The budget ran out with frames still coming: call again.
    Busy,
    /// The source is idle: nothing more for `wait` (zero: it has waited already).
    Idle(Duration),
    /// The run is over (the engine is finished).
    Done(Stopped),
}

/// The loop, resumable: [`Runner::run`] goes to the end; [`Runner::step`] works for a
/// time budget and returns (a screen interleaves drawing with it).
pub struct Runner {
    pub(crate) limits: Limits,
    pub(crate) filter: Option<LinkFilter>,
    /// Frames read from the source.
    pub frames_read: u64,
    /// Frames that passed the filter and went to the engine.
    pub frames: u64,
    done: Option<Stopped>,
    /// `Tap::on_progress` when the frame count has these bits clear (a power of two
    /// minus one; u64::MAX: only when idle). A mask, not a division: this is per frame.
    pub(crate) progress_mask: u64,
}

/// Frames between checks of the limits' clock and flag.
const CHECK_EVERY: u64 = 1024;

impl Runner {
    pub fn new(limits: Limits, filter: Option<LinkFilter>) -> Runner {
        Runner {
            limits,
            filter,
            frames_read: 0,
            frames: 0,
            done: None,
            progress_mask: u64::MAX,
        }
    }

    /// Calls `Tap::on_progress` every `frames` frames, rounded up to a power of two
    /// (and whenever the source is idle).
    pub fn progress_every(mut self, frames: u64) -> Runner {
        self.progress_mask = frames.max(1).next_power_of_two() - 1;
        self
    }

    #[inline]
    pub(crate) fn progress_due(&self) -> bool {
        self.frames & self.progress_mask == 0
    }

    /// The run's progress now, with the engines' counts.
    pub fn progress<S: FrameSource + ?Sized>(&self, src: &mut S, counts: EngineCounts) -> Progress {
        Progress {
            frames_read: self.frames_read,
            frames: self.frames,
            tcp_packets: counts.tcp_packets,
            evicted: counts.evicted,
            undecodable: counts.undecodable,
            bytes_read: src.bytes_read(),
            kernel: src.kernel_stats(),
            copies: src.copies_dropped(),
        }
    }

    /// The packet filter, with its count of rejected frames.
    pub fn filter(&self) -> Option<&LinkFilter> {
        self.filter.as_ref()
    }

    /// Runs to the end of input or a limit, then finishes the engine.
    pub fn run<S, O>(
        &mut self,
        src: &mut S,
        engine: &mut Engine,
        obs: &mut O,
    ) -> Result<Stopped, String>
    where
        S: FrameSource + ?Sized,
        O: Observer + Tap,
    {
        loop {
            match self.step(src, engine, obs, None)? {
                Step::Busy => {}
                Step::Idle(wait) => {
                    if !wait.is_zero() {
                        std::thread::sleep(wait.min(Duration::from_millis(100)));
                    }
                }
                Step::Done(s) => return Ok(s),
            }
        }
    }

    /// Feeds frames for at most `budget` (None: until the source is idle or ends).
    pub fn step<S, O>(
        &mut self,
        src: &mut S,
        engine: &mut Engine,
        obs: &mut O,
        budget: Option<Duration>,
    ) -> Result<Step, String>
    where
        S: FrameSource + ?Sized,
        O: Observer + Tap,
    {
        if let Some(s) = self.done {
            return Ok(Step::Done(s));
        }
        let start = budget.map(|_| Instant::now());
        loop {
            if self.frames_read.is_multiple_of(CHECK_EVERY)
                && let Some(s) = self.limits.reached(self.frames)
            {
                return Ok(self.end(engine, obs, s));
            }
            let next = match src.next_frame() {
                Ok(n) => n,
                Err(e) => {
                    // Report what was seen before the source failed.
                    self.end(engine, obs, Stopped::End);
                    return Err(e);
                }
            };
            match next {
                Next::Frame(f) => {
                    match self.accept(&f, obs) {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(e) => {
                            self.end(engine, obs, Stopped::End);
                            return Err(e);
                        }
                    }
                    feed(engine, &f, obs);
                    if self.progress_due() {
                        obs.on_progress(&self.progress(src, engine.counts()));
                    }
                    if self.count_reached() {
                        return Ok(self.end(engine, obs, Stopped::Count));
                    }
                }
                Next::Idle { clock_ns, wait } => {
                    if let Some(s) = self.limits.reached(self.frames) {
                        return Ok(self.end(engine, obs, s));
                    }
                    if let Some(c) = clock_ns {
                        engine.advance(c, obs);
                        obs.on_idle(c);
                    }
                    obs.on_progress(&self.progress(src, engine.counts()));
                    return Ok(Step::Idle(wait));
                }
                Next::End => return Ok(self.end(engine, obs, Stopped::End)),
            }
            if let Some(t0) = start
                && self.frames_read.is_multiple_of(64)
                && budget.is_some_and(|b| t0.elapsed() >= b)
            {
                return Ok(Step::Busy);
            }
        }
    }

    /// A frame from the source: counted, filtered, shown to the taps. Whether it goes on
    /// to an engine (single and sharded runs alike).
    #[inline]
    pub(crate) fn accept<O: Tap>(&mut self, f: &FrameRef, obs: &mut O) -> Result<bool, String> {
        self.frames_read += 1;
        if let Some(pf) = &mut self.filter
            && !pf.accepts(f.link.0, f.data, f.orig_len)
        {
            return Ok(false);
        }
        self.frames += 1;
        obs.on_frame(f)?;
        Ok(true)
    }

    /// Whether `-c COUNT` frames have gone to the engines.
    #[inline]
    pub(crate) fn count_reached(&self) -> bool {
        self.limits.max_frames.is_some_and(|m| self.frames >= m)
    }

    fn end<O: Observer>(&mut self, engine: &mut Engine, obs: &mut O, why: Stopped) -> Step {
        engine.finish(obs);
        self.done = Some(why);
        Step::Done(why)
    }

    /// Whether the run is over.
    pub fn is_done(&self) -> bool {
        self.done.is_some()
    }
}

/// The one place frames enter an engine (single and sharded runs alike).
#[inline]
pub(crate) fn feed<O: Observer>(engine: &mut Engine, f: &FrameRef, obs: &mut O) {
    engine.set_interface(f.interface);
    engine.process(f.ts_ns, f.link, f.data, f.orig_len, obs);
}
