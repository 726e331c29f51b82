//! The sender thread of the network sinks (ClickHouse, IPFIX): records go through a
//! bounded queue, so the thread that analyses packets never waits for a network; a
//! record that finds the queue full is dropped and counted. The sink's `finish` closes
//! the queue and waits for the thread at most until a deadline; what is still
//! undelivered then is counted as failed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a sink delivered, shared by the caller and its thread.
#[derive(Default)]
pub struct Stats {
    /// Records delivered (inserted, or handed to the network for UDP).
    pub sent: AtomicU64,
    /// Records dropped because the queue was full (a long outage).
    pub dropped: AtomicU64,
    /// Records given up after the deadline or refused by the other side.
    pub failed: AtomicU64,
    /// Attempts that failed (each retried later).
    pub errors: AtomicU64,
    /// Messages, batches or datagrams sent.
    pub batches: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    /// When `finish` stops waiting.
    pub deadline: Mutex<Option<Instant>>,
    /// The last attempt failed (the thread sets and clears it).
    pub failing: std::sync::atomic::AtomicBool,
    /// When the request in flight started (None: none).
    pub in_flight: Mutex<Option<Instant>>,
}

/// A request slower than this makes a waiting producer drop instead.
pub const SLOW_PEER: Duration = Duration::from_secs(2);

impl Stats {
    /// Whether the peer is taking what is sent: no failure, no request stuck.
    pub fn healthy(&self) -> bool {
        !self.failing.load(Ordering::Relaxed)
            && self
                .in_flight
                .lock()
                .ok()
                .and_then(|t| *t)
                .is_none_or(|t| t.elapsed() < SLOW_PEER)
    }

    pub fn start_request(&self) {
        if let Ok(mut t) = self.in_flight.lock() {
            *t = Some(Instant::now());
        }
    }

    pub fn end_request(&self, ok: bool) {
        if let Ok(mut t) = self.in_flight.lock() {
            *t = None;
        }
        self.failing.store(!ok, Ordering::Relaxed);
    }

    pub fn past_deadline(&self) -> bool {
        self.deadline
            .lock()
            .ok()
            .and_then(|d| *d)
            .is_some_and(|d| Instant::now() >= d)
    }

    pub fn error(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut l) = self.last_error.lock() {
            *l = Some(e);
        }
    }

    pub fn get(&self, c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// "9,092 records sent in 3 batches; 12 dropped (queue full); ...", for reports.
    pub fn summary(&self, unit: &str) -> String {
        let batches = self.get(&self.batches);
        let unit = if batches == 1 {
            match unit {
                "batches" => "batch",
                u => u.strip_suffix('s').unwrap_or(u),
            }
        } else {
            unit
        };
        let mut s = format!("{} records sent in {batches} {unit}", self.get(&self.sent));
        let (d, f, e) = (
            self.get(&self.dropped),
            self.get(&self.failed),
            self.get(&self.errors),
        );
        if d > 0 {
            s.push_str(&format!("; {d} dropped (queue full)"));
        }
        if f > 0 {
            s.push_str(&format!("; {f} not delivered"));
        }
        if e > 0 {
            let last = self
                .last_error
                .lock()
                .ok()
                .and_then(|l| l.clone())
                .unwrap_or_default();
            s.push_str(&format!("; {e} failed attempts (last: {last})"));
        }
        s
    }

    pub fn lost(&self) -> u64 {
        self.get(&self.dropped) + self.get(&self.failed)
    }
}

/// A warning sink for the thread: one line per outage, not per attempt.
pub type Warn = Arc<dyn Fn(&str) + Send + Sync>;

pub fn stderr_warn() -> Warn {
    Arc::new(|line: &str| eprintln!("tcpsight: {line}"))
}

/// The caller's end of a sender thread carrying `T`.
pub struct Worker<T: Send + 'static> {
    tx: Option<SyncSender<T>>,
    thread: Option<JoinHandle<()>>,
    /// Says the thread has ended (it may be stuck in a slow peer's read).
    done: Receiver<()>,
    /// Records accepted by the queue.
    queued: u64,
    /// With a full queue and a peer that accepts, wait for room instead of dropping
    /// (faces reading files: nothing is lost by waiting; never for live capture).
    wait_when_full: bool,
    pub stats: Arc<Stats>,
}

impl<T: Send + 'static> Worker<T> {
    /// Starts `run(queue, stats)` on a thread with a queue of `capacity` items.
    pub fn start(
        name: &str,
        capacity: usize,
        run: impl FnOnce(Receiver<T>, Arc<Stats>) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(capacity.max(1));
        let (done_tx, done) = sync_channel(1);
        let stats = Arc::new(Stats::default());
        let s = stats.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                run(rx, s);
                let _ = done_tx.send(());
            })?;
        Ok(Worker {
            tx: Some(tx),
            thread: Some(thread),
            done,
            queued: 0,
            wait_when_full: false,
            stats,
        })
    }

    /// See the field; off by default.
    pub fn wait_when_full(mut self, on: bool) -> Self {
        self.wait_when_full = on;
        self
    }

    /// Queues an item without waiting: a full queue drops it (counted); with
    /// `wait_when_full`, it waits for room while the peer accepts what is sent.
    pub fn push(&mut self, item: T) {
        let Some(tx) = self.tx.as_ref() else {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut item = item;
        loop {
            match tx.try_send(item) {
                Ok(()) => {
                    self.queued += 1;
                    return;
                }
                Err(TrySendError::Full(back)) if self.wait_when_full && self.stats.healthy() => {
                    item = back;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(_) => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    /// Closes the queue and waits for the thread to deliver what it has, giving up at
    /// `wait` from now: what is not delivered by then (queued, or in a request to a
    /// peer that does not answer) is counted as failed, and the thread is left to end
    /// on its own.
    pub fn finish(&mut self, wait: Duration) {
        if self.tx.is_none() {
            return;
        }
        if let Ok(mut d) = self.stats.deadline.lock() {
            *d = Some(Instant::now() + wait);
        }
        self.tx = None;
        let ended = self
            .done
            .recv_timeout(wait + Duration::from_millis(300))
            .is_ok();
        if let Some(t) = self.thread.take()
            && ended
        {
            let _ = t.join();
        }
        let sent = self.stats.get(&self.stats.sent);
        self.stats
            .failed
            .store(self.queued.saturating_sub(sent), Ordering::Relaxed);
    }
}

impl<T: Send + 'static> Worker<T> {
    /// A network sink's `RecordSink::finish`: delivers what it can within `wait`, and is
    /// an error naming `peer` when records were lost (`unit`: what the sink sends).
    pub fn finish_sink(&mut self, wait: Duration, peer: &str, unit: &str) -> std::io::Result<()> {
        self.finish(wait);
        if self.stats.lost() > 0 {
            return Err(std::io::Error::other(self.report(peer, unit)));
        }
        Ok(())
    }

    /// The one line a network sink reports: `peer`, then what was delivered and lost.
    pub fn report(&self, peer: &str, unit: &str) -> String {
        format!("{peer}: {}", self.stats.summary(unit))
    }
}

impl<T: Send + 'static> Drop for Worker<T> {
    fn drop(&mut self) {
        self.finish(Duration::ZERO);
    }
}

/// Sleeps `d`, in short steps so a deadline stops it early; false when past it.
pub fn sleep_unless_deadline(stats: &Stats, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stats.past_deadline() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20).min(end - Instant::now()));
    }
    !stats.past_deadline()
}
