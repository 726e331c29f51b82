//! In-order payload of one connection, per direction: what application-layer parsers
//! read (HTTP, TLS, DNS over TCP). Kept only when `Config::payload` asks for it and
//! only while an observer wants more.
//!
//! Positions are the direction's unwrapped sequence offsets (`dir.rs`: the SYN, real
//! or virtual, at 0, the first payload byte at 1), so reassembly shares the sequence
//! analysis's view of the stream. Each byte is delivered once, in stream order:
//! - a segment that only repeats delivered bytes delivers nothing (retransmissions,
//!   keep-alives);
//! - one that overlaps delivers only its new tail;
//! - one that starts beyond the next byte (the capture reordered or lost what comes
//!   before) waits, copied, until the bytes before it arrive. It waits at most until
//!   the peer acknowledges beyond the hole (the receiver got bytes the capture never
//!   will), until [`MAX_PENDING_BYTES`] or [`MAX_PENDING_SEGMENTS`] wait, or until the
//!   connection ends; then the hole is delivered as a gap and the rest follows;
//! - bytes the snaplen cut are a gap right after the captured part.
//!
//! Copies are made only for segments that wait; in-order segments are passed straight
//! from the frame.

/// Bytes of one direction held while they wait for a hole before them.
pub const MAX_PENDING_BYTES: usize = 64 * 1024;
/// Segments of one direction held while they wait for a hole before them.
pub const MAX_PENDING_SEGMENTS: usize = 64;

/// A segment that arrived before the bytes preceding it.
#[derive(Debug)]
struct Pending {
    start: u64,
    /// The segment's end on the wire (captured or not).
    end: u64,
    bytes: Box<[u8]>,
}

/// One direction's delivery state.
#[derive(Debug)]
pub(crate) struct StreamDir {
    /// Offset of the next byte to deliver.
    next: u64,
    /// Highest offset the peer acknowledged: bytes below it were received, so a hole
    /// below it is a capture gap and nothing waits for it.
    acked: u64,
    /// Waiting segments, by start.
    pending: Vec<Pending>,
    pending_bytes: usize,
}

impl Default for StreamDir {
    fn default() -> Self {
        StreamDir {
            next: 1,
            acked: 0,
            pending: Vec::new(),
            pending_bytes: 0,
        }
    }
}

/// Both directions, and whether the observers still want them.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    pub dirs: [StreamDir; 2],
    /// No observer wants more of this connection.
    pub done: bool,
}

impl Streams {
    /// No more deliveries: what waits is freed.
    pub fn stop(&mut self) {
        self.done = true;
        self.dirs = Default::default();
    }
}

/// Receives the chunks of one direction in order: `gap` bytes were not captured just
/// before `data` (which may be empty when only a gap is told), and `offset` is the
/// stream offset of `data`'s first byte (0-based: the first payload byte is 0).
/// Returns whether more is wanted.
pub(crate) trait Deliver {
    fn chunk(&mut self, offset: u64, gap: u64, data: &[u8]) -> bool;
}

impl<F: FnMut(u64, u64, &[u8]) -> bool> Deliver for F {
    fn chunk(&mut self, offset: u64, gap: u64, data: &[u8]) -> bool {
        self(offset, gap, data)
    }
}

impl StreamDir {
    /// A segment covering `start..start + len` on the wire, of which `captured` (a
    /// prefix) was captured. Returns whether more is wanted.
    pub fn on_segment(
        &mut self,
        start: u64,
        len: u64,
        captured: &[u8],
        out: &mut impl Deliver,
    ) -> bool {
        let end = start + len;
        if len == 0 || end <= self.next {
            return true;
        }
        if start > self.next {
            let room = self.pending.len() < MAX_PENDING_SEGMENTS
                && self.pending_bytes + captured.len() <= MAX_PENDING_BYTES;
            // Below the peer's ACK the hole's bytes were received: they will not come.
            if room && start > self.acked {
                let at = self.pending.partition_point(|p| p.start <= start);
                self.pending.insert(
                    at,
                    Pending {
                        start,
                        end,
                        bytes: captured.into(),
                    },
                );
                self.pending_bytes += captured.len();
                return true;
            }
            // What waits before this segment goes first, holes as gaps.
            if !self.flush_until(start, out) {
                return false;
            }
        }
        self.deliver(start, end, captured, out) && self.drain(out)
    }

    /// The peer acknowledged up to `ack` (an offset of this direction): what waits
    /// behind a hole below it will not get the hole's bytes.
    pub fn on_acked(&mut self, ack: u64, out: &mut impl Deliver) -> bool {
        if ack <= self.acked {
            return true;
        }
        self.acked = ack;
        if self.pending.first().is_some_and(|p| p.start < ack) {
            return self.flush_until(ack, out);
        }
        true
    }

    /// The connection ends: everything waiting is delivered, holes as gaps.
    pub fn finish(&mut self, out: &mut impl Deliver) -> bool {
        self.flush_until(u64::MAX, out)
    }

    /// Delivers waiting segments that start before `limit`, with the holes before
    /// them as gaps, then whatever became contiguous.
    fn flush_until(&mut self, limit: u64, out: &mut impl Deliver) -> bool {
        while self.pending.first().is_some_and(|p| p.start < limit) {
            let p = self.pending.remove(0);
            self.pending_bytes -= p.bytes.len();
            if !self.deliver(p.start, p.end, &p.bytes, out) {
                return false;
            }
        }
        self.drain(out)
    }

    /// Delivers waiting segments that now touch the delivered bytes.
    fn drain(&mut self, out: &mut impl Deliver) -> bool {
        while self.pending.first().is_some_and(|p| p.start <= self.next) {
            let p = self.pending.remove(0);
            self.pending_bytes -= p.bytes.len();
            if !self.deliver(p.start, p.end, &p.bytes, out) {
                return false;
            }
        }
        true
    }

    /// Delivers the new part of `start..end` (with `captured` its captured prefix):
    /// a gap up to `start` if it lies beyond the next byte, the captured bytes not yet
    /// delivered, and the uncaptured rest as a gap.
    fn deliver(&mut self, start: u64, end: u64, captured: &[u8], out: &mut impl Deliver) -> bool {
        if end <= self.next {
            return true;
        }
        let gap = start.saturating_sub(self.next);
        let from = self.next.max(start);
        let captured_end = start + captured.len() as u64;
        let data = if from < captured_end {
            &captured[(from - start) as usize..]
        } else {
            &[][..]
        };
        if gap > 0 || !data.is_empty() {
            // Offsets are 1-based on the wire (the SYN takes 0); streams count from 0.
            if !out.chunk(from - 1, gap, data) {
                return false;
            }
        }
        let delivered_to = from + data.len() as u64;
        self.next = delivered_to;
        if delivered_to < end {
            // The snaplen cut the rest: a gap, told now (nothing else will fill it).
            if !out.chunk(end - 1, end - delivered_to, &[]) {
                return false;
            }
            self.next = end;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What a consumer reassembles: the bytes with gaps as zeros, and the gap total.
    #[derive(Default)]
    struct Sink {
        stream: Vec<u8>,
        gaps: u64,
        chunks: usize,
    }

    impl Deliver for Sink {
        fn chunk(&mut self, offset: u64, gap: u64, data: &[u8]) -> bool {
            assert_eq!(offset, self.stream.len() as u64 + gap, "chunks in order");
            self.stream.resize(self.stream.len() + gap as usize, 0);
            self.stream.extend_from_slice(data);
            self.gaps += gap;
            self.chunks += 1;
            true
        }
    }

    fn byte(i: u64) -> u8 {
        (i % 251) as u8 + 1
    }

    fn segment(d: &mut StreamDir, sink: &mut Sink, start: u64, len: u64, cap: u64) {
        // Offsets on the wire are 1-based; `start` is the 0-based stream offset.
        let data: Vec<u8> = (start..start + cap.min(len)).map(byte).collect();
        assert!(d.on_segment(start + 1, len, &data, sink));
    }

    #[test]
    fn in_order_retransmitted_and_overlapping_segments_deliver_each_byte_once() {
        let (mut d, mut s) = (StreamDir::default(), Sink::default());
        segment(&mut d, &mut s, 0, 100, 100);
        segment(&mut d, &mut s, 0, 100, 100); // retransmission
        segment(&mut d, &mut s, 50, 100, 100); // overlap: 100..150 new
        segment(&mut d, &mut s, 150, 10, 10);
        assert_eq!(s.stream, (0..160).map(byte).collect::<Vec<_>>());
        assert_eq!(s.gaps, 0);
        assert_eq!(s.chunks, 3);
    }

    #[test]
    fn reordered_segments_wait_for_the_hole() {
        let (mut d, mut s) = (StreamDir::default(), Sink::default());
        segment(&mut d, &mut s, 0, 10, 10);
        segment(&mut d, &mut s, 20, 10, 10);
        segment(&mut d, &mut s, 30, 10, 10);
        assert_eq!(s.stream.len(), 10, "waits");
        segment(&mut d, &mut s, 10, 10, 10);
        assert_eq!(s.stream, (0..40).map(byte).collect::<Vec<_>>());
        assert_eq!(s.gaps, 0);
        assert_eq!(d.pending_bytes, 0);
    }

    #[test]
    fn an_ack_beyond_a_hole_makes_it_a_gap() {
        let (mut d, mut s) = (StreamDir::default(), Sink::default());
        segment(&mut d, &mut s, 0, 10, 10);
        segment(&mut d, &mut s, 20, 10, 10);
        // The peer acknowledged through byte 30: bytes 10..20 reached it, not us.
        assert!(d.on_acked(31, &mut s));
        assert_eq!(s.gaps, 10);
        assert_eq!(s.stream.len(), 30);
        assert_eq!(&s.stream[20..], &(20..30).map(byte).collect::<Vec<_>>()[..]);
        // Later data beyond a known-lost hole does not wait either.
        assert!(d.on_acked(61, &mut s));
        segment(&mut d, &mut s, 50, 10, 10);
        assert_eq!((s.stream.len(), s.gaps), (60, 30));
    }

    #[test]
    fn snaplen_cut_bytes_are_a_gap_after_the_captured_part() {
        let (mut d, mut s) = (StreamDir::default(), Sink::default());
        segment(&mut d, &mut s, 0, 1000, 14);
        segment(&mut d, &mut s, 1000, 500, 0);
        assert_eq!(s.gaps, 986 + 500);
        assert_eq!(s.stream.len(), 1500);
        assert_eq!(&s.stream[..14], &(0..14).map(byte).collect::<Vec<_>>()[..]);
    }

    #[test]
    fn waiting_is_bounded() {
        let (mut d, mut s) = (StreamDir::default(), Sink::default());
        // A hole at 0..1000 that never fills, then far more than the bound behind it.
        for i in 0..200u64 {
            segment(&mut d, &mut s, 1000 + i * 1000, 1000, 1000);
            assert!(d.pending_bytes <= MAX_PENDING_BYTES);
            assert!(d.pending.len() <= MAX_PENDING_SEGMENTS);
        }
        assert!(d.finish(&mut s));
        assert_eq!(s.stream.len(), 201_000);
        assert_eq!(s.gaps, 1000);
    }

    #[test]
    fn a_consumer_that_stops_stops_delivery() {
        let mut d = StreamDir::default();
        let mut calls = 0;
        let mut once = |_: u64, _: u64, _: &[u8]| {
            calls += 1;
            false
        };
        assert!(!d.on_segment(1, 10, &[1; 10], &mut once));
        assert_eq!(calls, 1);
    }

    proptest! {
        /// Any order, overlap, repetition and loss of segments: the delivered stream
        /// is the original bytes where they were seen, gaps elsewhere, in order, and
        /// the bound holds.
        #[test]
        fn any_arrival_order_reassembles_the_stream(
            cuts in proptest::collection::vec(1u64..400, 1..40),
            order in proptest::collection::vec(any::<u16>(), 0..80),
            acks in proptest::collection::vec(any::<bool>(), 0..80),
        ) {
            let mut segs = Vec::new();
            let mut at = 0;
            for c in &cuts {
                segs.push((at, *c));
                at += c;
            }
            let total = at;
            let (mut d, mut s) = (StreamDir::default(), Sink::default());
            let mut seen = vec![false; total as usize];
            for (k, o) in order.iter().enumerate() {
                let (start, len) = segs[*o as usize % segs.len()];
                segment(&mut d, &mut s, start, len, len);
                for b in start..start + len {
                    seen[b as usize] = true;
                }
                if acks.get(k) == Some(&true) {
                    prop_assert!(d.on_acked(start + len + 1, &mut s));
                }
                prop_assert!(d.pending_bytes <= MAX_PENDING_BYTES);
            }
            prop_assert!(d.finish(&mut s));
            let top = seen.iter().rposition(|&b| b).map_or(0, |i| i + 1);
            prop_assert_eq!(s.stream.len(), top);
            for (i, b) in s.stream.iter().enumerate() {
                if *b != 0 {
                    prop_assert_eq!(*b, byte(i as u64));
                    prop_assert!(seen[i]);
                }
            }
        }
    }
}
