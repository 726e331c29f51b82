//! Several capture files read as one trace, in timestamp order.

use crate::error::ReadError;
use crate::reader::{CaptureReader, FrameRef, Recorded};

/// Merges readers by the timestamp of their current frame (ties: file order). With one
/// reader this is a plain pass-through.
pub struct MergedReader {
    readers: Vec<CaptureReader>,
    /// Index of the reader whose frame was handed out last; it advances next time.
    last: Option<usize>,
    /// Errors met so far (a damaged file stops; the others go on).
    pub errors: Vec<ReadError>,
}

impl MergedReader {
    /// Takes readers already opened (their first frame loaded).
    pub fn new(readers: Vec<CaptureReader>) -> MergedReader {
        MergedReader {
            readers,
            last: None,
            errors: Vec::new(),
        }
    }

    pub fn readers(&self) -> &[CaptureReader] {
        &self.readers
    }

    /// The files' statistics as one trace's: the latest end time, the counters summed
    /// (each file counts its own span: tcpsight's rotated files do).
    pub fn recorded(&self) -> Recorded {
        let mut all = Recorded::default();
        for r in self.readers.iter().map(CaptureReader::recorded) {
            all.end_ns = all.end_ns.max(r.end_ns);
            for (sum, v) in [
                (&mut all.received, r.received),
                (&mut all.dropped, r.dropped),
            ] {
                if let Some(v) = v {
                    *sum = Some(sum.unwrap_or(0).saturating_add(v));
                }
            }
        }
        all
    }

    /// The frame the last [`next_frame`](Self::next_frame) handed out, again.
    #[inline(always)]
    pub fn current(&self) -> Option<FrameRef<'_>> {
        self.last.and_then(|i| self.readers[i].current())
    }

    /// The next frame of the merged trace, or `None` when every file is done.
    #[inline(always)]
    pub fn next_frame(&mut self) -> Option<FrameRef<'_>> {
        if let Some(i) = self.last.take()
            && let Err(e) = self.readers[i].advance()
        {
            self.errors.push(e);
        }
        // One file (the usual case): no merging to do.
        if self.readers.len() == 1 {
            self.last = Some(0);
            return self.readers[0].current();
        }
        let mut best: Option<(u64, usize)> = None;
        for (i, r) in self.readers.iter().enumerate() {
            if let Some(f) = r.current()
                && best.is_none_or(|(t, _)| f.ts_ns < t)
            {
                best = Some((f.ts_ns, i));
            }
        }
        let (_, i) = best?;
        self.last = Some(i);
        self.readers[i].current()
    }
}
