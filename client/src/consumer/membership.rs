//! Group membership as the consumer sees it: subscribing, committing, and reconciling its
//! fetch tasks with the assignment the group hands it, telling a [`RebalanceListener`].

use super::*;

/// Told of partitions moving in and out of a subscribed consumer, from inside `poll`.
///
/// ```
/// use streamhouse_client::{RebalanceListener, TopicPartition};
///
/// /// Commits what the application has processed, not what poll returned.
/// struct CommitProcessed(std::collections::HashMap<TopicPartition, i64>);
///
/// impl RebalanceListener for CommitProcessed {
///     fn on_partitions_revoked(&mut self, revoked: &[(TopicPartition, i64)]) -> Vec<(TopicPartition, i64)> {
///         revoked
///             .iter()
///             .filter_map(|(tp, _)| self.0.get(tp).map(|next| (tp.clone(), *next)))
///             .collect()
///     }
/// }
/// ```
pub trait RebalanceListener: Send + Sync {
    /// Before these partitions are given up, with the position `poll` reached in each.
    /// Returns offsets to commit for them (each the next offset to process); they are
    /// committed, after auto-commit's positions and in their place, before another member
    /// may have the partitions.
    fn on_partitions_revoked(
        &mut self,
        revoked: &[(TopicPartition, i64)],
    ) -> Vec<(TopicPartition, i64)> {
        let _ = revoked;
        Vec::new()
    }

    /// After these partitions were assigned, with their positions set.
    fn on_partitions_assigned(&mut self, assigned: &[TopicPartition]) {
        let _ = assigned;
    }

    /// The consumer's session ran out: these partitions may already be another member's,
    /// and nothing can be committed for them.
    fn on_partitions_lost(&mut self, lost: &[TopicPartition]) {
        let _ = lost;
    }
}

impl fmt::Debug for dyn RebalanceListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RebalanceListener")
    }
}

impl Consumer {
    /// Joins the builder's group for `topics`: the group assigns this consumer a share of
    /// their partitions and moves them as members come and go. Positions start after the
    /// group's committed offsets (or at `auto_offset_reset` where nothing is committed).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), streamhouse_client::ClientError> {
    /// let mut consumer = streamhouse_client::Consumer::builder()
    ///     .bootstrap("127.0.0.1:9660")
    ///     .group_id("analytics")
    ///     .build()
    ///     .await?;
    /// consumer.subscribe(vec!["events".into()]).await?;
    /// let records = consumer.poll(std::time::Duration::from_millis(500)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn subscribe(&mut self, topics: Vec<String>) -> Result<()> {
        let Some(group_id) = self.config.group_id.clone() else {
            return Err(ClientError::InvalidConfig(
                "subscribe needs a group_id; use assign for partitions of your own".into(),
            ));
        };
        if topics.is_empty() {
            return Err(ClientError::InvalidConfig(
                "subscribe to at least one topic".into(),
            ));
        }
        if let Some(mut old) = self.group.take() {
            old.stop().await;
        }
        for (_, a) in self.partitions.drain() {
            a.task.abort();
        }
        self.buffered.clear();
        self.group = Some(Group::start(
            self.cluster.clone(),
            GroupConfig {
                group_id,
                client_id: self.config.client_id.clone(),
                topics,
                assignors: self.config.assignors.clone(),
                session_timeout: self.config.session_timeout,
                heartbeat_interval: self.config.heartbeat_interval,
                max_poll_interval: self.config.max_poll_interval,
            },
        ));
        self.last_auto_commit = Instant::now();
        Ok(())
    }

    /// As [`Consumer::subscribe`], telling `listener` of partitions revoked, assigned and
    /// lost.
    ///
    /// ```no_run
    /// # async fn example(mut consumer: streamhouse_client::Consumer) -> Result<(), streamhouse_client::ClientError> {
    /// struct Log;
    /// impl streamhouse_client::RebalanceListener for Log {
    ///     fn on_partitions_assigned(&mut self, assigned: &[streamhouse_client::TopicPartition]) {
    ///         println!("now reading {assigned:?}");
    ///     }
    /// }
    /// consumer.subscribe_with_listener(vec!["events".into()], Log).await?;
    /// # Ok(()) }
    /// ```
    pub async fn subscribe_with_listener(
        &mut self,
        topics: Vec<String>,
        listener: impl RebalanceListener + 'static,
    ) -> Result<()> {
        self.listener = Some(Box::new(listener));
        self.subscribe(topics).await
    }

    /// The group's member id and generation, once the group has answered.
    ///
    /// ```no_run
    /// # async fn example(consumer: streamhouse_client::Consumer) {
    /// if let Some((member, generation)) = consumer.membership() {
    ///     println!("{member} at generation {generation}");
    /// }
    /// # }
    /// ```
    pub fn membership(&self) -> Option<(String, i64)> {
        let g = self.group.as_ref()?;
        let s = g.lock();
        (!s.member_id.is_empty()).then(|| (s.member_id.clone(), s.generation))
    }

    /// Where `poll` has got to in every owned partition: the offsets a commit would store.
    pub(super) fn positions(&self) -> Vec<(TopicPartition, i64)> {
        let mut v: Vec<(TopicPartition, i64)> = self
            .partitions
            .iter()
            .map(|(tp, a)| (tp.clone(), a.position))
            .collect();
        v.sort();
        v
    }

    /// Commits the positions `poll` has reached in every owned partition, at the member's
    /// generation; a commit from a member that has since lost a partition is refused.
    ///
    /// ```no_run
    /// # async fn example(mut consumer: streamhouse_client::Consumer) -> Result<(), streamhouse_client::ClientError> {
    /// for record in consumer.poll(std::time::Duration::from_millis(500)).await? {
    ///     // process the record...
    /// }
    /// consumer.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn commit(&mut self) -> Result<()> {
        let positions = self.positions();
        self.commit_offsets(&positions).await
    }

    /// Commits these offsets (each the next offset to process) for the group.
    ///
    /// ```no_run
    /// # async fn example(mut consumer: streamhouse_client::Consumer) -> Result<(), streamhouse_client::ClientError> {
    /// let tp = streamhouse_client::TopicPartition::new("events", 0);
    /// consumer.commit_offsets(&[(tp, 42)]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn commit_offsets(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        let group_id = self
            .config
            .group_id
            .clone()
            .ok_or_else(|| ClientError::InvalidConfig("committing needs a group_id".into()))?;
        if offsets.is_empty() {
            return Ok(());
        }
        let current = |group: &Option<Group>| match group {
            Some(g) => {
                let s = g.lock();
                (s.member_id.clone(), s.generation)
            }
            // Not subscribed: a commit for a group without live members.
            None => (String::new(), -1),
        };
        let (member, generation) = current(&self.group);
        let first = group::commit(&self.cluster, &group_id, &member, generation, offsets).await;
        // A heartbeat answered with a new generation while the commit was on its way: try
        // once more at that generation (refused if the partitions moved meanwhile).
        match first {
            Err(ClientError::Agent {
                code: streamhouse_proto::pb::ErrorCode::StaleGeneration,
                ..
            }) if current(&self.group) != (member.clone(), generation) => {
                let (member, generation) = current(&self.group);
                group::commit(&self.cluster, &group_id, &member, generation, offsets).await
            }
            other => other,
        }
    }

    /// The group's committed offsets for `tps` (`None`: nothing committed).
    ///
    /// ```no_run
    /// # async fn example(consumer: streamhouse_client::Consumer) -> Result<(), streamhouse_client::ClientError> {
    /// let tp = streamhouse_client::TopicPartition::new("events", 0);
    /// let committed = consumer.committed(&[tp]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn committed(
        &self,
        tps: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, Option<i64>)>> {
        let group_id = self.config.group_id.clone().ok_or_else(|| {
            ClientError::InvalidConfig("committed offsets belong to a group_id".into())
        })?;
        let topics: Vec<String> = tps
            .iter()
            .map(|tp| tp.topic.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let all: HashMap<TopicPartition, i64> =
            group::fetch_committed(&self.cluster, &group_id, &topics)
                .await?
                .into_iter()
                .collect();
        Ok(tps
            .iter()
            .map(|tp| (tp.clone(), all.get(tp).copied()))
            .collect())
    }

    pub(super) async fn auto_commit(&mut self) {
        if !self.config.enable_auto_commit
            || self.group.is_none()
            || self.last_auto_commit.elapsed() < self.config.auto_commit_interval
        {
            return;
        }
        self.last_auto_commit = Instant::now();
        if let Err(e) = self.commit().await {
            tracing::warn!(error = %e, "auto-commit failed; it is tried again");
        }
    }

    /// Applies the group's latest answer: gives up what is no longer assigned (committing
    /// first), takes on what is newly assigned (from the committed offsets), and lets the
    /// heartbeat task report the change.
    pub(super) async fn reconcile(&mut self) -> Result<()> {
        let Some(g) = &self.group else {
            return Ok(());
        };
        let (target, lost, fatal, member, generation) = {
            let s = g.lock();
            (
                s.target.clone(),
                s.lost,
                s.fatal.clone(),
                s.member_id.clone(),
                s.generation,
            )
        };
        if let Some(e) = fatal {
            return Err(e);
        }
        let owned: BTreeSet<TopicPartition> = self.partitions.keys().cloned().collect();
        let Some(target) = target else {
            return Ok(());
        };
        if target == owned && !lost {
            return Ok(());
        }
        let group_id = g.config.group_id.clone();
        // Lost: everything goes, uncommitted; what is still assigned comes back below from
        // the committed offsets.
        let revoked: Vec<TopicPartition> = if lost {
            owned.iter().cloned().collect()
        } else {
            owned.difference(&target).cloned().collect()
        };
        if !revoked.is_empty() {
            if lost {
                if let Some(l) = self.listener.as_mut() {
                    l.on_partitions_lost(&revoked);
                }
            } else {
                let positions: Vec<(TopicPartition, i64)> = revoked
                    .iter()
                    .map(|tp| (tp.clone(), self.partitions[tp].position))
                    .collect();
                let mut commits: HashMap<TopicPartition, i64> = if self.config.enable_auto_commit {
                    positions.iter().cloned().collect()
                } else {
                    HashMap::new()
                };
                if let Some(l) = self.listener.as_mut() {
                    commits.extend(l.on_partitions_revoked(&positions));
                }
                if !commits.is_empty() {
                    let mut list: Vec<(TopicPartition, i64)> = commits.into_iter().collect();
                    list.sort();
                    if let Err(e) =
                        group::commit(&self.cluster, &group_id, &member, generation, &list).await
                    {
                        tracing::warn!(error = %e, "commit before giving partitions up failed");
                    }
                }
            }
            for tp in &revoked {
                if let Some(a) = self.partitions.remove(tp) {
                    a.task.abort();
                }
            }
            self.buffered.retain(|(tp, _)| !revoked.contains(tp));
            self.errors.retain(|(tp, _)| !revoked.contains(tp));
        }
        let g = self.group.as_ref().expect("checked above");
        {
            let mut s = g.lock();
            for tp in &revoked {
                s.owned.remove(tp);
            }
            if lost {
                s.lost = false;
            }
        }
        g.wake.notify_one();

        let now_owned: BTreeSet<TopicPartition> = self.partitions.keys().cloned().collect();
        let added: Vec<TopicPartition> = target.difference(&now_owned).cloned().collect();
        if added.is_empty() {
            return Ok(());
        }
        let topics: Vec<String> = added
            .iter()
            .map(|tp| tp.topic.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let committed: HashMap<TopicPartition, i64> =
            group::fetch_committed(&self.cluster, &group_id, &topics)
                .await?
                .into_iter()
                .collect();
        for tp in &added {
            let position = match committed.get(tp) {
                Some(o) => *o,
                None => {
                    let (start, end) = self.bounds(tp).await?;
                    match self.config.auto_offset_reset {
                        OffsetReset::Earliest => start,
                        OffsetReset::Latest => end,
                        OffsetReset::None => {
                            return Err(ClientError::InvalidConfig(format!(
                                "{tp} has no committed offset and auto_offset_reset is none"
                            )));
                        }
                    }
                }
            };
            let a = self.start(tp, position);
            self.partitions.insert(tp.clone(), a);
        }
        // A newer answer may have taken some of them back while the offsets were read:
        // those are dropped before poll returns a record of theirs.
        let mut kept = Vec::with_capacity(added.len());
        if let Some(g) = &self.group {
            let mut s = g.lock();
            let current = s.target.clone().unwrap_or_default();
            for tp in added {
                if current.contains(&tp) && !s.lost {
                    s.owned.insert(tp.clone());
                    kept.push(tp);
                } else if let Some(a) = self.partitions.remove(&tp) {
                    a.task.abort();
                }
            }
        }
        if let Some(l) = self.listener.as_mut() {
            l.on_partitions_assigned(&kept);
        }
        Ok(())
    }
}
