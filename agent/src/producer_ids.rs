//! Which idempotent producer ids the cluster issued, so that a batch stamped with an id
//! nobody was given, or with an epoch ahead of the one issued, is refused at the edge
//! instead of claiming a place in the partition's producer table.
//!
//! Issued ids and epochs live in the metadata store's `producer_ids` table; an agent keeps
//! the latest epoch it has seen for the most recently used ids, so a producer's steady stream
//! of batches costs no query. An epoch only grows, so a cached epoch at or above the batch's
//! is proof enough; anything else asks the store once.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use crate::error::{AgentError, Result};
use crate::metadata::MetadataStore;

/// Ids remembered per agent.
const REMEMBERED: usize = 16_384;

/// The agent's memory of issued producer ids and their latest epochs.
#[derive(Debug)]
pub struct IssuedProducers {
    known: Mutex<LruCache<i64, i16>>,
}

impl Default for IssuedProducers {
    fn default() -> Self {
        IssuedProducers {
            known: Mutex::new(LruCache::new(
                NonZeroUsize::new(REMEMBERED).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }
}

/// What the cluster says of a batch's producer id and epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issued {
    /// Issued, and the epoch is not ahead of the latest issued.
    Yes,
    /// The cluster never issued the id (or forgot it after it idled).
    UnknownId,
    /// The epoch is ahead of the latest issued one.
    EpochAhead { issued: i16 },
    /// A negative epoch with a real id.
    NegativeEpoch,
}

impl Issued {
    /// The verdict as the error a producer sees.
    pub fn into_result(self, id: i64, epoch: i16) -> Result<()> {
        match self {
            Issued::Yes => Ok(()),
            Issued::UnknownId => Err(AgentError::UnknownProducerId(id)),
            Issued::EpochAhead { issued } => Err(AgentError::ProducerEpochAhead {
                producer_id: id,
                epoch,
                issued,
            }),
            Issued::NegativeEpoch => Err(AgentError::NegativeProducerEpoch {
                producer_id: id,
                epoch,
            }),
        }
    }
}

impl IssuedProducers {
    /// Whether `id` was issued with an epoch at or above `epoch`; asks the store unless this
    /// agent has already seen such an epoch.
    pub async fn check(&self, meta: &MetadataStore, id: i64, epoch: i16) -> Result<Issued> {
        if epoch < 0 {
            return Ok(Issued::NegativeEpoch);
        }
        let cached = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .copied();
        if cached.is_some_and(|issued| epoch <= issued) {
            return Ok(Issued::Yes);
        }
        let Some(issued) = meta.issued_producer_epoch(id).await? else {
            return Ok(Issued::UnknownId);
        };
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(id, issued);
        Ok(if epoch > issued {
            Issued::EpochAhead { issued }
        } else {
            Issued::Yes
        })
    }
}
