#![deny(missing_docs)]
//! StreamHouse wire formats shared by the agent and the client: the gRPC service generated
//! from `proto/streamhouse.proto`, the record-batch codec, Kafka's partitioner, and the small
//! rules both sides follow: which responses carry an error ([`wire::Answer`]), the clock
//! records are stamped with and the retry backoff ([`time`]).

pub mod batch;
pub mod limits;
pub mod partitioner;
pub mod time;
pub mod wire;

/// Generated protobuf messages and the tonic client and server for the `StreamHouse` service.
#[allow(missing_debug_implementations, missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("streamhouse.v1");
}

/// Topic names: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..` (Kafka's rule).
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name.len() > 249 {
        return Err(format!(
            "topic name is {} characters; at most 249",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("topic name {name:?} is reserved"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {name:?} contains {c:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn topic_names_follow_kafkas_rule() {
        for ok in ["events", "a.b_c-D9", &"x".repeat(249)] {
            assert!(super::validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "has space",
            "slash/y",
            "ünï",
            &"x".repeat(250),
        ] {
            assert!(super::validate_topic_name(bad).is_err(), "{bad}");
        }
    }
}
