//! N engines on N threads, one input. The calling thread reads the source, applies the
//! packet filter and taps, and routes each frame by [`shard_of`] (a symmetric hash of
//! its connection's flow key, an ICMP error by the connection it quotes, so no frame is
//! copied to several shards). Workers run an engine each. Their reports come back per
//! batch and are merged into exactly the order a single engine gives, so every output
//! is the same with any number of threads:
//!
//! - each shard's engine is given the whole input's clock with every frame (the
//!   largest timestamp so far), so it decides timeouts and expiries at the same capture
//!   times as one engine would;
//! - an engine reports in the order (time, packets before deadlines, frame number or
//!   flow key) ([`tcpsight_core::Cause`]); workers label each report with that key and
//!   the calling thread sorts each batch's reports by it. Every report of a batch
//!   sorts before every report of the next, because each batch ends by moving every
//!   engine's clock to the batch's end.
//!
//! What is serial: reading and routing (one decode and hash per frame) and the
//! observers (per connection and per exchange, not per packet). What is parallel: the
//! engine's per-packet work, most of the time.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Duration;

use tcpsight_core::{
    CaptureStats, Cause, Config, ConnRecord, Datagram, Engine, EngineCounts, ExchangeEvent,
    FlowKey, HandshakeEvent, LinkType, Observer, Payload,
};

use tcpsight_core::names::index_of;

use crate::run::{Runner, Stopped, Tap};
use crate::source::{FrameSource, Next};

/// Which of `shards` engines the frame goes to. Frames of no connection (ARP, UDP,
/// undecodable) go to shard 0, which counts them. Bits 24-55 of the hash choose: the
/// engine's table uses the low bits and hashbrown's tag the top 7, so a shard's
/// connections still spread over its whole table.
#[inline]
pub fn shard_of(link: LinkType, data: &[u8], orig_len: u32, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    match tcpsight_core::connection_hash(link, data, orig_len) {
        Some(h) => ((((h >> 24) & 0xffff_ffff) * shards as u64) >> 32) as usize,
        None => 0,
    }
}

/// Frames per batch (all shards together): large enough that channel hand-offs cost
/// nothing per frame, small enough that a live run's reports wait little.
const BATCH_FRAMES: usize = 16384;
/// Batches in flight before the reader waits for the oldest one's reports.
const IN_FLIGHT: usize = 8;

/// One frame in a batch: where its bytes are, and the input's clock and frame number.
struct Meta {
    ts_ns: u64,
    link: LinkType,
    orig_len: u32,
    start: u32,
    len: u32,
    clock: u64,
    index: u64,
    /// Index into the batch's `interfaces` (NO_INTERFACE: unknown).
    interface: u16,
}

const NO_INTERFACE: u16 = u16::MAX;

#[derive(Default)]
struct Batch {
    metas: Vec<Meta>,
    data: Vec<u8>,
    /// The interface names the batch's frames came from (a few at most).
    interfaces: Vec<Box<str>>,
    /// The input's clock and frame count at the batch's end.
    end_clock: u64,
    end_index: u64,
    /// Ticks due in this batch, already keyed (shard 0's batch carries them).
    ticks: Vec<(Key, u64)>,
}

impl Batch {
    fn push(&mut self, f: &tcpsight_io::FrameRef, clock: u64, index: u64) {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(f.data);
        let interface = f
            .interface
            .and_then(|name| index_of(&mut self.interfaces, name, NO_INTERFACE as usize))
            .map_or(NO_INTERFACE, |i| i as u16);
        self.metas.push(Meta {
            ts_ns: f.ts_ns,
            link: f.link,
            orig_len: f.orig_len,
            start,
            len: f.data.len() as u32,
            clock,
            index,
            interface,
        });
    }

    fn clear(&mut self) {
        self.metas.clear();
        self.data.clear();
        self.interfaces.clear();
        self.ticks.clear();
    }
}

/// The order of a report (see the module docs); `seq` keeps a shard's own order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    time: u64,
    class: u8,
    /// Frame number (packets) or first-packet time (end of input).
    n: u64,
    flow: Option<FlowKey>,
    seq: u64,
}

enum Report {
    Handshake(HandshakeEvent),
    Exchange(ExchangeEvent),
    Connection(Box<ConnRecord>),
    Interim(Box<ConnRecord>),
    Tick(u64),
    /// Payload copied out of its frame (only with `Config::payload`): the event with
    /// its bytes apart.
    Payload(Box<(Payload<'static>, Vec<u8>)>),
    /// A UDP datagram copied out of its frame (only with `Config::datagrams`).
    Datagram(Box<(Datagram<'static>, Vec<u8>)>),
}

/// A worker's observer: labels every report with its order key.
struct Recorder {
    out: Vec<(Key, Report)>,
    cause: Cause,
    clock: u64,
    index: u64,
    seq: u64,
}

impl Recorder {
    fn push(&mut self, r: Report) {
        self.seq += 1;
        let key = match self.cause {
            Cause::Packet => Key {
                time: self.clock,
                class: 0,
                n: self.index,
                flow: None,
                seq: self.seq,
            },
            Cause::Deadline { at, key } => Key {
                time: at,
                class: 1,
                n: 0,
                flow: Some(key),
                seq: self.seq,
            },
            Cause::End { first, key } => Key {
                time: u64::MAX,
                class: 2,
                n: first,
                flow: Some(key),
                seq: self.seq,
            },
        };
        self.out.push((key, r));
    }
}

impl Observer for Recorder {
    fn on_handshake(&mut self, e: &HandshakeEvent) {
        self.push(Report::Handshake(*e));
    }
    fn on_exchange(&mut self, e: &ExchangeEvent) {
        self.push(Report::Exchange(*e));
    }
    fn on_connection(&mut self, r: &ConnRecord) {
        self.push(Report::Connection(Box::new(r.clone())));
    }
    fn on_interim(&mut self, r: &ConnRecord) {
        self.push(Report::Interim(Box::new(r.clone())));
    }
    fn on_tick(&mut self, ts_ns: u64) {
        self.push(Report::Tick(ts_ns));
    }
    fn on_cause(&mut self, c: Cause) {
        self.cause = c;
    }
    /// The router's observers decide what they want; the worker cannot ask them, so it
    /// keeps delivering (the cost of payload in a sharded run: a copy per chunk).
    fn on_payload(&mut self, p: &Payload) -> bool {
        let head = Payload { data: &[], ..*p };
        self.push(Report::Payload(Box::new((head, p.data.to_vec()))));
        true
    }
    fn on_datagram(&mut self, d: &Datagram) {
        let head = Datagram { data: &[], ..*d };
        self.push(Report::Datagram(Box::new((head, d.data.to_vec()))));
    }
}

enum ToWorker {
    Batch(Batch),
    Finish { clock: u64, index: u64 },
}

struct FromWorker {
    reports: Vec<(Key, Report)>,
    /// The engine's counts so far (live health counters).
    counts: EngineCounts,
    /// The batch's buffers, for reuse.
    batch: Option<Batch>,
    /// After `Finish`: the engine's statistics and frames processed.
    done: Option<(CaptureStats, u64)>,
}

fn worker(cfg: Config, shard: u16, rx: Receiver<ToWorker>, tx: SyncSender<FromWorker>) {
    // Ticks come from the router, which sees the whole input's clock.
    let mut engine = Engine::for_shard(Config { tick_ns: 0, ..cfg }, shard);
    let mut rec = Recorder {
        out: Vec::new(),
        cause: Cause::Packet,
        clock: 0,
        index: 0,
        seq: 0,
    };
    let mut frames = 0u64;
    for msg in rx {
        match msg {
            ToWorker::Batch(mut b) => {
                for m in &b.metas {
                    rec.clock = m.clock;
                    rec.index = m.index;
                    let data = &b.data[m.start as usize..(m.start + m.len) as usize];
                    engine.advance(m.clock, &mut rec);
                    let f = tcpsight_io::FrameRef {
                        ts_ns: m.ts_ns,
                        link: m.link,
                        data,
                        orig_len: m.orig_len,
                        interface: b.interfaces.get(m.interface as usize).map(|n| &**n),
                    };
                    crate::run::feed(&mut engine, &f, &mut rec);
                }
                frames += b.metas.len() as u64;
                // Every engine reaches the batch's end: what is due before it is
                // reported in this batch, so batches never interleave.
                rec.clock = b.end_clock;
                rec.index = b.end_index;
                engine.advance(b.end_clock, &mut rec);
                rec.out
                    .extend(b.ticks.drain(..).map(|(k, t)| (k, Report::Tick(t))));
                b.clear();
                let reports = std::mem::take(&mut rec.out);
                if tx
                    .send(FromWorker {
                        reports,
                        counts: engine.counts(),
                        batch: Some(b),
                        done: None,
                    })
                    .is_err()
                {
                    return;
                }
            }
            ToWorker::Finish { clock, index } => {
                rec.clock = clock;
                rec.index = index;
                engine.advance(clock, &mut rec);
                engine.finish(&mut rec);
                let reports = std::mem::take(&mut rec.out);
                let _ = tx.send(FromWorker {
                    reports,
                    counts: engine.counts(),
                    batch: None,
                    done: Some((engine.stats(), frames)),
                });
                return;
            }
        }
    }
}

/// What a sharded run counted.
pub struct ShardedRun {
    pub stopped: Stopped,
    /// The engines' statistics, merged.
    pub stats: CaptureStats,
    /// Frames each shard processed.
    pub frames_per_shard: Vec<u64>,
}

/// The calling thread's side: routes frames, collects and orders reports.
struct Router<'o, O> {
    to: Vec<SyncSender<ToWorker>>,
    from: Vec<Receiver<FromWorker>>,
    current: Vec<Batch>,
    pool: Vec<Vec<Batch>>,
    in_flight: usize,
    pending: usize,
    clock: u64,
    index: u64,
    tick_every: u64,
    next_tick: u64,
    merged: Vec<(Key, Report)>,
    /// Each shard's counts as of its last batch.
    counts: Vec<EngineCounts>,
    obs: &'o mut O,
}

impl<O: Observer + Tap> Router<'_, O> {
    fn counts(&self) -> EngineCounts {
        self.counts
            .iter()
            .fold(EngineCounts::default(), |a, c| a + *c)
    }

    /// A tick when the clock crosses a boundary, as one engine gives it: first frame
    /// only sets the origin; `n` places it before frame `n`'s reports (after what was
    /// due before it).
    fn tick(&mut self, n: u64) {
        let every = self.tick_every;
        if every == 0 || self.clock < self.next_tick {
            return;
        }
        let boundary = self.clock - self.clock % every;
        if self.next_tick != 0 {
            let key = Key {
                time: self.clock,
                class: 0,
                n,
                flow: None,
                seq: 0,
            };
            self.current[0].ticks.push((key, boundary));
        }
        self.next_tick = boundary.saturating_add(every);
    }

    fn flush(&mut self) -> Result<(), String> {
        if self.pending == 0 {
            return Ok(());
        }
        for (i, tx) in self.to.iter().enumerate() {
            let mut b =
                std::mem::replace(&mut self.current[i], self.pool[i].pop().unwrap_or_default());
            b.end_clock = self.clock;
            b.end_index = self.index;
            tx.send(ToWorker::Batch(b))
                .map_err(|_| "a shard thread ended early".to_string())?;
        }
        self.pending = 0;
        self.in_flight += 1;
        while self.in_flight > IN_FLIGHT {
            self.collect()?;
        }
        Ok(())
    }

    /// Takes the oldest batch's reports from every shard and delivers them in order.
    fn collect(&mut self) -> Result<Option<Vec<(CaptureStats, u64)>>, String> {
        self.merged.clear();
        let mut done = Vec::new();
        for (i, rx) in self.from.iter().enumerate() {
            let r = rx
                .recv()
                .map_err(|_| "a shard thread panicked".to_string())?;
            self.merged.extend(r.reports);
            self.counts[i] = r.counts;
            if let Some(b) = r.batch {
                self.pool[i].push(b);
            }
            if let Some(d) = r.done {
                done.push(d);
            }
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        self.merged.sort_unstable_by_key(|(k, _)| *k);
        for (_, r) in self.merged.drain(..) {
            match r {
                Report::Handshake(e) => self.obs.on_handshake(&e),
                Report::Exchange(e) => self.obs.on_exchange(&e),
                Report::Connection(r) => self.obs.on_connection(&r),
                Report::Interim(r) => self.obs.on_interim(&r),
                Report::Tick(t) => self.obs.on_tick(t),
                Report::Payload(p) => {
                    let (head, data) = &*p;
                    self.obs.on_payload(&Payload { data, ..*head });
                }
                Report::Datagram(d) => {
                    let (head, data) = &*d;
                    self.obs.on_datagram(&Datagram { data, ..*head });
                }
            }
        }
        Ok((!done.is_empty()).then_some(done))
    }

    fn finish(&mut self) -> Result<Vec<(CaptureStats, u64)>, String> {
        self.flush()?;
        while self.in_flight > 0 {
            self.collect()?;
        }
        for tx in &self.to {
            tx.send(ToWorker::Finish {
                clock: self.clock,
                index: self.index,
            })
            .map_err(|_| "a shard thread ended early".to_string())?;
        }
        Ok(self.collect()?.unwrap_or_default())
    }
}

/// Runs `src` through `shards` engines on as many threads (the calling thread reads
/// and routes), with `runner`'s packet filter and limits; `obs` gets every report in
/// a single engine's order, `obs`'s taps every frame in input order.
pub fn run_sharded<S, O>(
    runner: &mut Runner,
    src: &mut S,
    cfg: Config,
    shards: usize,
    obs: &mut O,
) -> Result<ShardedRun, String>
where
    S: FrameSource + ?Sized,
    O: Observer + Tap,
{
    let shards = shards.clamp(1, u16::MAX as usize);
    std::thread::scope(|scope| {
        let mut to = Vec::new();
        let mut from = Vec::new();
        for shard in 0..shards {
            let (tx, rx) = sync_channel::<ToWorker>(IN_FLIGHT + 1);
            let (rtx, rrx) = sync_channel::<FromWorker>(IN_FLIGHT + 1);
            std::thread::Builder::new()
                .name(format!("tcpsight-shard-{shard}"))
                .spawn_scoped(scope, move || worker(cfg, shard as u16, rx, rtx))
                .map_err(|e| format!("cannot start a shard thread: {e}"))?;
            to.push(tx);
            from.push(rrx);
        }
        let mut router = Router {
            to,
            from,
            current: (0..shards).map(|_| Batch::default()).collect(),
            pool: (0..shards).map(|_| Vec::new()).collect(),
            in_flight: 0,
            pending: 0,
            clock: 0,
            index: 0,
            tick_every: cfg.tick_ns,
            next_tick: 0,
            merged: Vec::new(),
            counts: vec![EngineCounts::default(); shards],
            obs,
        };
        let stopped = route(runner, src, shards, &mut router);
        // Whatever stopped the run, the engines finish and report what they saw.
        let done = router.finish()?;
        let stopped = stopped?;
        let mut stats = CaptureStats::default();
        let mut frames_per_shard = Vec::with_capacity(shards);
        for (s, n) in &done {
            stats.merge(s);
            frames_per_shard.push(*n);
        }
        Ok(ShardedRun {
            stopped,
            stats,
            frames_per_shard,
        })
    })
}

fn route<S, O>(
    runner: &mut Runner,
    src: &mut S,
    shards: usize,
    router: &mut Router<'_, O>,
) -> Result<Stopped, String>
where
    S: FrameSource + ?Sized,
    O: Observer + Tap,
{
    loop {
        if runner.frames_read.is_multiple_of(1024)
            && let Some(s) = runner.limits.reached(runner.frames)
        {
            return Ok(s);
        }
        match src.next_frame()? {
            Next::Frame(f) => {
                if !runner.accept(&f, router.obs)? {
                    continue;
                }
                router.clock = router.clock.max(f.ts_ns);
                router.index += 1;
                router.tick(router.index);
                let s = shard_of(f.link, f.data, f.orig_len, shards);
                router.current[s].push(&f, router.clock, router.index);
                router.pending += 1;
                if router.pending >= BATCH_FRAMES {
                    router.flush()?;
                }
                if runner.progress_due() {
                    router
                        .obs
                        .on_progress(&runner.progress(src, router.counts()));
                }
                if runner.count_reached() {
                    return Ok(Stopped::Count);
                }
            }
            Next::Idle { clock_ns, wait } => {
                if let Some(c) = clock_ns {
                    router.clock = router.clock.max(c);
                    router.tick(router.index + 1);
                    // An empty batch still moves every engine's clock.
                    router.pending = router.pending.max(1);
                    router.flush()?;
                    router.obs.on_idle(c);
                }
                router
                    .obs
                    .on_progress(&runner.progress(src, router.counts()));
                if let Some(s) = runner.limits.reached(runner.frames) {
                    return Ok(s);
                }
                if !wait.is_zero() {
                    std::thread::sleep(wait.min(Duration::from_millis(100)));
                }
            }
            Next::End => return Ok(Stopped::End),
        }
    }
}
