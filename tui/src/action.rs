//! What reaches the console's state (keys, data from background tasks, the clock) and what
//! the state asks the outside world to do.

use crossterm::event::KeyEvent;
use streamhouse_client::{
    AgentStats, ClusterDescription, ClusterEvent, GroupDescription, GroupListing,
};

/// One input to [`crate::app::App::update`].
#[derive(Debug, Clone)]
pub enum Action {
    Key(KeyEvent),
    /// The clock moved; nothing else changed.
    Tick,
    /// One poll of the cluster: its description and every live agent's counters (an agent
    /// that did not answer in time is missing from `stats`).
    Snapshot {
        cluster: Box<ClusterDescription>,
        stats: Vec<AgentStats>,
    },
    /// The poll could not reach any agent.
    PollFailed(String),
    Events(Vec<ClusterEvent>),
    /// Every consumer group, from the same poll.
    Groups(Vec<GroupListing>),
    /// The group open on the Groups screen, in full.
    GroupDetail(Box<GroupDescription>),
    /// A launched agent process changed phase.
    Agent {
        id: String,
        phase: Phase,
    },
    /// The acknowledgement (or failure) of one record sent from the Produce screen.
    Acked(Result<Ack, String>),
    Load(LoadReport),
    /// Records read by the Consume screen's tail, in order.
    Records(Vec<RecordView>),
    /// The tail's consumer status (which topic, from where, or its error).
    TailStatus(String),
    /// A line for the status bar: an action finished or failed.
    Notice(String),
    /// A palette command from a script (the demo), run as if typed.
    Run(String),
    /// The scripted demo's caption.
    Caption(String),
    /// The scripted demo's result, shown until the console quits.
    DemoResult(Vec<String>),
}

/// A launched agent process's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Up {
        addr: String,
    },
    Stopping,
    /// Exited after a graceful stop.
    Stopped,
    /// `kill -9`ed.
    Killed,
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    /// From send to acknowledgement.
    pub latency_ms: u64,
}

/// The load generator's own view of itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    pub running: bool,
    pub topic: String,
    pub target_rate: u64,
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    /// Acknowledgements per second over the last second.
    pub acked_rate: f64,
    pub last_error: Option<String>,
}

/// One consumed record, as the Consume screen keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    pub partition: u32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Header values may be null.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// A stored batch here did not decode: why, and the offsets the tail skipped.
    pub damaged: Option<String>,
}

/// Where a tail starts or seeks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAt {
    Beginning,
    End,
    Offset(i64),
    /// The first record at or after this time (ms since the epoch).
    Timestamp(i64),
    /// The first record at or after this many milliseconds ago.
    Ago(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadSpec {
    pub topic: String,
    pub rate: u64,
    pub value_size: usize,
    pub keys: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailSpec {
    pub topic: String,
    /// One partition, or all of them.
    pub partition: Option<u32>,
    pub from: StartAt,
}

/// Something the state wants done; the console's runner does it in the background and
/// reports back with [`Action`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    KillAgent(String),
    StopAgent(String),
    RestartAgent(String),
    StartAgent,
    CreateTopic {
        name: String,
        partitions: u32,
        /// Retention settings; `None` fields take the cluster's defaults.
        config: streamhouse_client::TopicConfig,
    },
    DeleteTopic(String),
    AlterTopic {
        topic: String,
        change: streamhouse_client::TopicConfig,
    },
    Produce {
        topic: String,
        key: Option<String>,
        value: String,
    },
    StartLoad(LoadSpec),
    StopLoad,
    Tail(TailSpec),
    Seek(StartAt),
    StopTail,
    /// Poll this group in full (the Groups screen's drill-in), or none.
    WatchGroup(Option<String>),
    ResetOffsets {
        group: String,
        topic: String,
        to: StartAt,
    },
    Quit,
}
