//! Zeek's conn.log `history` string: one letter per event kind, upper case for the
//! originator (client), lower case for the responder (server).

use crate::flow::Side;

/// Zeek's histories are rarely past 20 letters; longer ones are cut here.
const CAP: usize = 32;

/// Kinds of history events; the letter is the originator's (upper case) form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    Syn = b'S' as isize,
    SynAck = b'H' as isize,
    Ack = b'A' as isize,
    Data = b'D' as isize,
    Fin = b'F' as isize,
    Rst = b'R' as isize,
    Retransmit = b'T' as isize,
    ZeroWindow = b'W' as isize,
    Gap = b'G' as isize,
    Inconsistent = b'I' as isize,
    MultiFlag = b'Q' as isize,
}

/// Fixed-capacity history (no allocation on the packet path), with Zeek's repetition
/// rules: a, d, i, q once per side; s, h, f, r again when the sequence number changes;
/// t, w, g logarithmically (1st, 10th, 100th... occurrence).
#[derive(Clone, Debug)]
pub struct History {
    buf: [u8; CAP],
    len: u8,
    /// Bit per (side, once-only letter) already recorded.
    once: u16,
    /// Per side: sequence number of the last recorded s/h/f/r (valid where `seq_set`
    /// has the bit).
    last_seq: [[u32; 4]; 2],
    seq_set: u8,
    /// Per side: counts for the logarithmic letters t, w, g.
    counts: [[u32; 3]; 2],
}

impl Default for History {
    fn default() -> Self {
        History {
            buf: [0; CAP],
            len: 0,
            once: 0,
            last_seq: [[0; 4]; 2],
            seq_set: 0,
            counts: [[0; 3]; 2],
        }
    }
}

impl History {
    pub fn flipped(&mut self) {
        self.push(b'^');
    }

    fn push(&mut self, c: u8) {
        if (self.len as usize) < CAP {
            self.buf[self.len as usize] = c;
            self.len += 1;
        }
    }

    fn letter(mark: Mark, side: Side) -> u8 {
        let c = mark as u8;
        if side == Side::Client {
            c
        } else {
            c.to_ascii_lowercase()
        }
    }

    #[inline]
    pub fn mark(&mut self, side: Side, mark: Mark, seq: u32) {
        // Fast path: the once-per-side letters, after the first time, are most packets.
        let once_slot = match mark {
            Mark::Ack => Some(0),
            Mark::Data => Some(1),
            _ => None,
        };
        if let Some(slot) = once_slot
            && self.once & (1u16 << (slot + 4 * side.index())) != 0
        {
            return;
        }
        self.mark_slow(side, mark, seq);
    }

    fn mark_slow(&mut self, side: Side, mark: Mark, seq: u32) {
        let s = side.index();
        let record = match mark {
            Mark::Ack | Mark::Data | Mark::Inconsistent | Mark::MultiFlag => {
                let slot = match mark {
                    Mark::Ack => 0,
                    Mark::Data => 1,
                    Mark::Inconsistent => 2,
                    _ => 3,
                };
                let bit = 1u16 << (slot + 4 * s);
                let fresh = self.once & bit == 0;
                self.once |= bit;
                fresh
            }
            Mark::Syn | Mark::SynAck | Mark::Fin | Mark::Rst => {
                let slot = match mark {
                    Mark::Syn => 0,
                    Mark::SynAck => 1,
                    Mark::Fin => 2,
                    _ => 3,
                };
                let bit = 1u8 << (slot + 4 * s);
                let last = &mut self.last_seq[s][slot];
                let fresh = self.seq_set & bit == 0 || *last != seq;
                *last = seq;
                self.seq_set |= bit;
                fresh
            }
            Mark::Retransmit | Mark::ZeroWindow | Mark::Gap => {
                let slot = match mark {
                    Mark::Retransmit => 0,
                    Mark::ZeroWindow => 1,
                    _ => 2,
                };
                let n = &mut self.counts[s][slot];
                *n += 1;
                // 1, 10, 100, 1000...: record when n is a power of ten.
                let mut p = 1u32;
                while p < *n {
                    p = p.saturating_mul(10);
                }
                p == *n
            }
        };
        if record {
            self.push(Self::letter(mark, side));
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII letters and '^' are ever pushed.
        core::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }
}
