//! Facts about the generated messages that agent and client both rely on: which responses
//! carry an [`pb::Error`], and how a set of partitions is listed per topic.

use crate::pb;

/// A response whose `error` field says whether the request succeeded.
///
/// The agent answers a refused request with [`Answer::refused`]; the client reads the outcome
/// with [`Answer::error`]. Every response type of the `StreamHouse` service implements it.
pub trait Answer: Default {
    /// The error the response carries: `None` or code `OK` mean success.
    fn error(&self) -> Option<&pb::Error>;

    /// Replaces the response's error.
    fn set_error(&mut self, error: pb::Error);

    /// An otherwise empty response that carries `error`.
    fn refused(error: pb::Error) -> Self {
        let mut response = Self::default();
        response.set_error(error);
        response
    }
}

macro_rules! answers {
    ($($ty:ident),* $(,)?) => {$(
        impl Answer for pb::$ty {
            fn error(&self) -> Option<&pb::Error> {
                self.error.as_ref()
            }

            fn set_error(&mut self, error: pb::Error) {
                self.error = Some(error);
            }
        }
    )*};
}

answers!(
    ProduceResponse,
    FetchResponse,
    GetMetadataResponse,
    CreateTopicResponse,
    DeleteTopicResponse,
    AlterTopicConfigResponse,
    ListTopicsResponse,
    InitProducerIdResponse,
    DescribeClusterResponse,
    GetAgentStatsResponse,
    ListEventsResponse,
    GroupHeartbeatResponse,
    LeaveGroupResponse,
    CommitOffsetsResponse,
    FetchOffsetsResponse,
    ListGroupsResponse,
    DescribeGroupResponse,
    ResetOffsetsResponse,
    TopicInfo,
);

impl pb::TopicPartitions {
    /// Lists `(topic, partition)` pairs per topic: topics and each topic's partitions in
    /// ascending order, one entry per topic.
    ///
    /// ```
    /// use streamhouse_proto::pb::TopicPartitions;
    /// let listed = TopicPartitions::group([("b", 1), ("a", 2), ("b", 0)]);
    /// assert_eq!(listed.len(), 2);
    /// assert_eq!((listed[0].topic.as_str(), &listed[0].partitions[..]), ("a", &[2][..]));
    /// assert_eq!((listed[1].topic.as_str(), &listed[1].partitions[..]), ("b", &[0, 1][..]));
    /// ```
    pub fn group<'a>(pairs: impl IntoIterator<Item = (&'a str, u32)>) -> Vec<Self> {
        let mut by_topic: std::collections::BTreeMap<&str, Vec<u32>> = Default::default();
        for (topic, partition) in pairs {
            by_topic.entry(topic).or_default().push(partition);
        }
        by_topic
            .into_iter()
            .map(|(topic, mut partitions)| {
                partitions.sort_unstable();
                partitions.dedup();
                pb::TopicPartitions {
                    topic: topic.to_string(),
                    partitions,
                }
            })
            .collect()
    }

    /// The `(topic, partition)` pairs a list names, in its order.
    pub fn pairs(listed: &[Self]) -> impl Iterator<Item = (&str, u32)> + '_ {
        listed
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.topic.as_str(), *p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn grouping_keeps_every_pair_once(
            pairs in proptest::collection::vec(("[a-c]", 0u32..8), 0..40)
        ) {
            let listed = pb::TopicPartitions::group(pairs.iter().map(|(t, p)| (t.as_str(), *p)));
            let back: Vec<(String, u32)> = pb::TopicPartitions::pairs(&listed)
                .map(|(t, p)| (t.to_string(), p))
                .collect();
            let mut want = pairs.clone();
            want.sort();
            want.dedup();
            prop_assert_eq!(back, want);
        }
    }

    #[test]
    fn a_refused_response_carries_its_error() {
        let e = pb::Error {
            code: pb::ErrorCode::UnknownTopic as i32,
            message: "no".into(),
            ..Default::default()
        };
        let r = pb::FetchResponse::refused(e.clone());
        assert_eq!(r.error(), Some(&e));
        assert!(r.batches.is_empty());
    }
}
