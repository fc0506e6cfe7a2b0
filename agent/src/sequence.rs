//! Idempotent producers: what a partition remembers of each producer (its epoch and its last
//! few batches) and the verdict on a batch that arrives, as plain functions.
//!
//! A producer numbers its records per partition; a batch carries the sequence of its first
//! record. The partition's leader appends a batch whose first sequence follows the last one
//! written, answers a batch it has already written with that batch's original offset, and
//! refuses anything else, so a batch retried after a lost answer or a failover is stored once.

use std::collections::VecDeque;

/// Batches remembered per producer and partition (see [`DEDUPE_WINDOW`]).
pub const WINDOW: usize = DEDUPE_WINDOW;

pub use streamhouse_proto::batch::{DEDUPE_WINDOW, next_sequence};

/// One batch a producer wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: i64,
}

/// What a partition knows of one producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// The last batches written, oldest first; never empty.
    pub recent: VecDeque<Written>,
}

/// What to do with an arriving batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New and next in line: store it.
    Append,
    /// Already stored: answer with its original offset, store nothing.
    Duplicate { base_offset: i64 },
    /// Neither next nor a recent batch: a gap, or a retry too old to recognise.
    OutOfOrder { expected: i32 },
    /// A newer epoch of this producer has written here; this one is a zombie.
    Fenced { current_epoch: i16 },
}

/// The verdict on a batch of `records` records from `epoch` starting at `first`.
pub fn check(entry: Option<&ProducerEntry>, epoch: i16, first: i32, records: i32) -> Verdict {
    let Some(entry) = entry else {
        return if first == 0 {
            Verdict::Append
        } else {
            Verdict::OutOfOrder { expected: 0 }
        };
    };
    if epoch < entry.epoch {
        return Verdict::Fenced {
            current_epoch: entry.epoch,
        };
    }
    if epoch > entry.epoch {
        // A new epoch starts its sequences afresh.
        return if first == 0 {
            Verdict::Append
        } else {
            Verdict::OutOfOrder { expected: 0 }
        };
    }
    let last = entry.recent.back().map_or(-1, |w| w.last_sequence);
    let expected = next_sequence(last, 1);
    if first == expected {
        return Verdict::Append;
    }
    let last_of_this = next_sequence(first, records - 1);
    match entry
        .recent
        .iter()
        .find(|w| w.first_sequence == first && w.last_sequence == last_of_this)
    {
        Some(w) => Verdict::Duplicate {
            base_offset: w.base_offset,
        },
        None => Verdict::OutOfOrder { expected },
    }
}

impl ProducerEntry {
    /// The entry after its first batch.
    pub fn new(epoch: i16, written: Written) -> Self {
        ProducerEntry {
            epoch,
            recent: VecDeque::from([written]),
        }
    }

    /// Remembers a batch just written (whose verdict was [`Verdict::Append`]).
    pub fn record(&mut self, epoch: i16, written: Written) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.recent.clear();
        }
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(written);
    }

    /// The last batch written.
    pub fn last(&self) -> Written {
        // `recent` is never empty: every constructor puts a batch in it.
        self.recent.back().copied().unwrap_or(Written {
            first_sequence: -1,
            last_sequence: -1,
            base_offset: -1,
        })
    }

    /// The window as stored in the metadata store: `first:last:offset` per batch, `,` between.
    pub fn encode_recent(&self) -> String {
        self.recent
            .iter()
            .map(|w| format!("{}:{}:{}", w.first_sequence, w.last_sequence, w.base_offset))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Reads an entry back from its stored form.
    pub fn decode(epoch: i16, recent: &str) -> Option<Self> {
        let mut out = VecDeque::new();
        for item in recent.split(',').filter(|s| !s.is_empty()) {
            let mut parts = item.split(':');
            let w = Written {
                first_sequence: parts.next()?.parse().ok()?,
                last_sequence: parts.next()?.parse().ok()?,
                base_offset: parts.next()?.parse().ok()?,
            };
            if parts.next().is_some() {
                return None;
            }
            out.push_back(w);
        }
        (!out.is_empty()).then_some(ProducerEntry { epoch, recent: out })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn w(first: i32, last: i32, off: i64) -> Written {
        Written {
            first_sequence: first,
            last_sequence: last,
            base_offset: off,
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(check(None, 0, 0, 10), Verdict::Append);
        assert_eq!(check(None, 0, 5, 10), Verdict::OutOfOrder { expected: 0 });
        let mut e = ProducerEntry::new(0, w(0, 9, 100));
        e.record(0, w(10, 19, 250));
        assert_eq!(check(Some(&e), 0, 20, 5), Verdict::Append);
        assert_eq!(
            check(Some(&e), 0, 10, 10),
            Verdict::Duplicate { base_offset: 250 }
        );
        assert_eq!(
            check(Some(&e), 0, 0, 10),
            Verdict::Duplicate { base_offset: 100 }
        );
        // Same start, other length: not the batch we stored.
        assert_eq!(
            check(Some(&e), 0, 10, 3),
            Verdict::OutOfOrder { expected: 20 }
        );
        assert_eq!(
            check(Some(&e), 0, 21, 1),
            Verdict::OutOfOrder { expected: 20 }
        );
        assert_eq!(
            check(Some(&e), 1, 20, 1),
            Verdict::OutOfOrder { expected: 0 }
        );
        assert_eq!(check(Some(&e), 1, 0, 1), Verdict::Append);
        e.record(1, w(0, 0, 300));
        assert_eq!(e.recent.len(), 1);
        assert_eq!(
            check(Some(&e), 0, 20, 1),
            Verdict::Fenced { current_epoch: 1 }
        );
    }

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(next_sequence(i32::MAX, 1), 0);
        assert_eq!(next_sequence(i32::MAX - 1, 3), 1);
        let e = ProducerEntry::new(0, w(i32::MAX - 4, i32::MAX, 7));
        assert_eq!(check(Some(&e), 0, 0, 10), Verdict::Append);
        let e = ProducerEntry::new(0, w(i32::MAX - 1, 1, 7));
        assert_eq!(
            check(Some(&e), 0, i32::MAX - 1, 4),
            Verdict::Duplicate { base_offset: 7 }
        );
        assert_eq!(check(Some(&e), 0, 2, 1), Verdict::Append);
    }

    #[test]
    fn stored_form_round_trips_and_refuses_garbage() {
        let mut e = ProducerEntry::new(3, w(0, 9, 100));
        e.record(3, w(10, 19, 250));
        let back = ProducerEntry::decode(3, &e.encode_recent()).unwrap();
        assert_eq!(back, e);
        assert!(ProducerEntry::decode(0, "").is_none());
        assert!(ProducerEntry::decode(0, "1:2").is_none());
        assert!(ProducerEntry::decode(0, "1:2:3:4").is_none());
        assert!(ProducerEntry::decode(0, "a:2:3").is_none());
    }

    proptest! {
        /// A producer's batches, each sent once or several times, in order, with duplicates
        /// arriving only within the window: each is stored exactly once, at dense offsets.
        #[test]
        fn retries_are_stored_once(sizes in prop::collection::vec(1i32..50, 1..40),
                                   repeats in prop::collection::vec(0usize..WINDOW, 1..40)) {
            let mut entry: Option<ProducerEntry> = None;
            let mut next_offset = 0i64;
            let mut seq = 0i32;
            let mut sent: Vec<(i32, i32, i64)> = Vec::new(); // (first, count, offset)
            for (i, &n) in sizes.iter().enumerate() {
                match check(entry.as_ref(), 0, seq, n) {
                    Verdict::Append => {
                        let written = w(seq, next_sequence(seq, n - 1), next_offset);
                        match &mut entry {
                            Some(e) => e.record(0, written),
                            None => entry = Some(ProducerEntry::new(0, written)),
                        }
                        sent.push((seq, n, next_offset));
                        next_offset += i64::from(n);
                    }
                    other => prop_assert!(false, "fresh batch refused: {:?}", other),
                }
                seq = next_sequence(seq, n);
                // Resend one of the last few batches: recognised with its original offset.
                let back = repeats[i % repeats.len()].min(sent.len() - 1);
                let (first, count, offset) = sent[sent.len() - 1 - back];
                prop_assert_eq!(
                    check(entry.as_ref(), 0, first, count),
                    Verdict::Duplicate { base_offset: offset }
                );
            }
        }
    }
}
