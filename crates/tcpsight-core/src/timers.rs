//! The engine's deadlines: a calendar of 67 ms buckets in front of a small heap.
//!
//! A connection's next deadline (handshake timeout, expiry, interim record) is pushed
//! once per state change and re-pushed lazily when it comes up stale, so pushes happen
//! a few times per connection. A binary heap over every open connection cost 1.8 µs per
//! connection in sift-downs that missed the cache (10 % of the run with 300,000
//! connections). Here a push into a future bucket is an append, and only the entries of
//! buckets the clock has reached sit in a heap (`near`), which stays small and hot.
//! Deadlines beyond the calendar's 9 minutes wait in `far` (idle timeouts past that are
//! rare). Pops come in exactly a heap's order: (deadline, slot, generation).

use core::cmp::Reverse;
use std::collections::BinaryHeap;

/// (deadline in capture ns, slot, generation).
pub(crate) type Entry = (u64, u32, u32);

/// Bucket width: 2^26 ns, about 67 ms.
const SHIFT: u32 = 26;
/// Buckets in the calendar: 8192 x 67 ms, about 9 minutes.
const RING: u64 = 8192;

pub(crate) struct Timers {
    /// Every entry whose bucket is at most `cursor`.
    near: BinaryHeap<Reverse<Entry>>,
    /// Entries of buckets `cursor + 1 ..= cursor + RING`, by bucket modulo RING.
    ring: Vec<Vec<Entry>>,
    /// Entries further ahead.
    far: BinaryHeap<Reverse<Entry>>,
    cursor: u64,
    len: usize,
}

impl Timers {
    pub fn new() -> Timers {
        Timers {
            near: BinaryHeap::new(),
            ring: (0..RING).map(|_| Vec::new()).collect(),
            far: BinaryHeap::new(),
            cursor: 0,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn push(&mut self, e: Entry) {
        self.len += 1;
        let b = e.0 >> SHIFT;
        if b <= self.cursor {
            self.near.push(Reverse(e));
        } else if b - self.cursor <= RING {
            self.ring[(b % RING) as usize].push(e);
        } else {
            self.far.push(Reverse(e));
        }
    }

    /// Brings every entry of the buckets up to the one holding `now` into `near`.
    #[inline]
    fn reach(&mut self, now: u64) {
        let target = now >> SHIFT;
        if target > self.cursor {
            self.reach_bucket(target);
        }
    }

    #[cold]
    fn reach_bucket(&mut self, target: u64) {
        if target - self.cursor >= RING {
            // A jump past the whole calendar: every bucket comes due.
            for slot in &mut self.ring {
                self.near.extend(slot.drain(..).map(Reverse));
            }
        } else {
            for b in self.cursor + 1..=target {
                let slot = &mut self.ring[(b % RING) as usize];
                self.near.extend(slot.drain(..).map(Reverse));
            }
        }
        self.cursor = target;
        while let Some(&Reverse(e)) = self.far.peek() {
            if e.0 >> SHIFT > self.cursor + RING {
                break;
            }
            self.far.pop();
            let b = e.0 >> SHIFT;
            if b <= self.cursor {
                self.near.push(Reverse(e));
            } else {
                self.ring[(b % RING) as usize].push(e);
            }
        }
    }

    /// The earliest entry if its deadline is before `now`.
    #[inline]
    pub fn peek_before(&mut self, now: u64) -> Option<Entry> {
        self.reach(now);
        match self.near.peek() {
            Some(&Reverse(e)) if e.0 < now => Some(e),
            _ => None,
        }
    }

    /// Removes the earliest entry if its deadline is before `now`.
    #[inline]
    pub fn pop_before(&mut self, now: u64) -> Option<Entry> {
        let e = self.peek_before(now)?;
        self.near.pop();
        self.len -= 1;
        Some(e)
    }

    /// Removes the earliest entry, however far ahead.
    pub fn pop_earliest(&mut self) -> Option<Entry> {
        if self.near.is_empty() {
            // The first bucket with entries: every bucket before it is empty.
            let next = (1..=RING)
                .map(|d| self.cursor + d)
                .find(|b| !self.ring[(b % RING) as usize].is_empty());
            match next {
                Some(b) => self.reach_bucket(b),
                None => {
                    let Reverse(e) = self.far.pop()?;
                    self.len -= 1;
                    return Some(e);
                }
            }
        }
        let Reverse(e) = self.near.pop()?;
        self.len -= 1;
        Some(e)
    }

    pub fn clear(&mut self) {
        self.near.clear();
        self.far.clear();
        for s in &mut self.ring {
            s.clear();
        }
        self.len = 0;
    }

    /// Replaces every entry (stale ones purged by the caller).
    pub fn rebuild(&mut self, entries: impl Iterator<Item = Entry>) {
        self.clear();
        for e in entries {
            self.push(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Against a plain heap: pushes at any times (never before the last pop, as the
        /// engine does), pops before advancing clocks, earliest-pops: the same entries in
        /// the same order.
        #[test]
        fn pops_in_a_heaps_order(ops in proptest::collection::vec((0u8..4, 0u64..1_000_000_000_000u64), 1..400)) {
            let mut t = Timers::new();
            let mut h: BinaryHeap<Reverse<Entry>> = BinaryHeap::new();
            let mut now = 0u64;
            let mut n = 0u32;
            for (op, x) in ops {
                match op {
                    0 | 1 => {
                        // A deadline from now to far ahead (up to ~17 minutes).
                        let e = (now + x, n, n / 3);
                        n += 1;
                        t.push(e);
                        h.push(Reverse(e));
                    }
                    2 => {
                        now += x / 4;
                        loop {
                            let a = t.pop_before(now);
                            let b = match h.peek() {
                                Some(&Reverse(e)) if e.0 < now => { h.pop(); Some(e) }
                                _ => None,
                            };
                            prop_assert_eq!(a, b);
                            if a.is_none() { break; }
                        }
                    }
                    _ => {
                        let a = t.pop_earliest();
                        let b = h.pop().map(|Reverse(e)| e);
                        prop_assert_eq!(a, b);
                        if let Some(e) = a { now = now.max(e.0); }
                    }
                }
                prop_assert_eq!(t.len(), h.len());
            }
        }
    }

    #[test]
    fn a_jump_of_hours_brings_everything_due() {
        let mut t = Timers::new();
        t.push((5_000_000_000, 1, 0));
        t.push((400_000_000_000, 2, 0));
        t.push((3_600_000_000_000, 3, 0)); // an hour: beyond the calendar
        let later = 10 * 3_600_000_000_000;
        assert_eq!(t.pop_before(later), Some((5_000_000_000, 1, 0)));
        assert_eq!(t.pop_before(later), Some((400_000_000_000, 2, 0)));
        assert_eq!(t.pop_before(later), Some((3_600_000_000_000, 3, 0)));
        assert_eq!(t.pop_before(later), None);
        assert_eq!(t.len(), 0);
    }
}
