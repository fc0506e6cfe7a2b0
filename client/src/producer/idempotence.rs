//! Who this producer is to the agents' de-duplication: its producer id and epoch, how they are
//! obtained, and when a new epoch is needed.

use super::*;

/// Who this producer is to the cluster's de-duplication.
#[derive(Debug, Default)]
pub(super) struct Identity {
    /// (producer id, epoch) once the cluster has given them.
    pub(super) current: Option<(i64, i16)>,
    /// A batch with a sequence failed for good, leaving a gap the agents would refuse: new
    /// batches wait for the next epoch, which starts every partition's sequences afresh.
    pub(super) renew: bool,
    pub(super) renewing: bool,
}

impl Inner {
    /// The (id, epoch) to number new batches with, or `None` while there is none yet or a
    /// new epoch is on its way.
    pub(super) fn identity_for_new_batches(&self) -> Option<(i64, i16)> {
        let id = self.identity.lock().unwrap_or_else(|p| p.into_inner());
        if id.renew || id.renewing {
            None
        } else {
            id.current
        }
    }

    /// A numbered batch failed for good: its partition's sequence has a hole.
    pub(super) fn renew_identity_later(&self) {
        if self.config.idempotence {
            self.identity
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .renew = true;
        }
    }

    /// Asks the cluster for a producer id, or for the next epoch of ours, in the background.
    pub(super) fn start_identity_renewal(self: &Arc<Inner>) {
        let current = {
            let mut id = self.identity.lock().unwrap_or_else(|p| p.into_inner());
            if !self.config.idempotence || !id.renew || id.renewing {
                return;
            }
            id.renewing = true;
            id.current
        };
        // Held weakly, so that dropping the producer ends the attempts.
        let weak = Arc::downgrade(self);
        let mut backoff = Backoff::new(self.config.retry_backoff, self.config.retry_backoff_max);
        tokio::spawn(async move {
            let (inner, got) = loop {
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let cluster = inner.cluster.clone();
                let attempt = match init_producer_id(&cluster, current).await {
                    // Our epoch was bumped elsewhere or forgotten: start as a new producer.
                    Err(e) if e.code() == Some(pb::ErrorCode::ProducerFenced) => {
                        init_producer_id(&cluster, None).await
                    }
                    other => other,
                };
                match attempt {
                    Ok(got) => break (inner, got),
                    Err(e) => tracing::debug!(error = %e, "producer id request failed"),
                }
                drop(inner);
                tokio::time::sleep(backoff.next_delay()).await;
            };
            {
                let mut id = inner.identity.lock().unwrap_or_else(|p| p.into_inner());
                id.current = Some(got);
                id.renew = false;
                id.renewing = false;
            }
            tracing::debug!(producer_id = got.0, epoch = got.1, "producer identity");
            inner.wake.notify_one();
        });
    }
}
pub(super) async fn init_producer_id(
    cluster: &Cluster,
    current: Option<(i64, i16)>,
) -> Result<(i64, i16)> {
    let (producer_id, producer_epoch) = current.map_or((-1, -1), |(i, e)| (i, i32::from(e)));
    let resp = cluster
        .any_agent(|mut client| async move {
            client
                .init_producer_id(pb::InitProducerIdRequest {
                    producer_id,
                    producer_epoch,
                })
                .await
        })
        .await?;
    if let Some(e) = ClientError::from_pb(resp.error.as_ref()) {
        return Err(e);
    }
    let epoch = i16::try_from(resp.producer_epoch).map_err(|_| ClientError::Agent {
        code: pb::ErrorCode::Unknown,
        message: format!("producer epoch {} out of range", resp.producer_epoch),
    })?;
    Ok((resp.producer_id, epoch))
}
