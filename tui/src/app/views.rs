//! What the screens show, as plain data: the tabs and modes, the forms, and one row or view
//! type per screen.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Overview,
    Partitions,
    Groups,
    Events,
    Produce,
    Consume,
}

impl Tab {
    pub const ALL: [Tab; 6] = [
        Tab::Overview,
        Tab::Partitions,
        Tab::Groups,
        Tab::Events,
        Tab::Produce,
        Tab::Consume,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Overview => "Overview",
            Tab::Partitions => "Partitions",
            Tab::Groups => "Groups",
            Tab::Events => "Events",
            Tab::Produce => "Produce",
            Tab::Consume => "Consume",
        }
    }

    pub(super) fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }

    pub(crate) fn by_name(name: &str) -> Option<Tab> {
        let name = name.to_ascii_lowercase();
        Tab::ALL
            .into_iter()
            .find(|t| t.title().to_ascii_lowercase().starts_with(&name))
    }
}

/// What has the keyboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Help,
    /// Asks before doing something that cannot be undone.
    Confirm {
        prompt: String,
        effect: Effect,
    },
    Palette {
        input: String,
        error: Option<String>,
    },
    Filter {
        input: String,
    },
    Form(Form),
    /// One consumed record, opened from the tail.
    Record {
        record: Box<RecordView>,
        hex: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormKind {
    ResetOffsets,
    CreateTopic,
    AlterTopic,
    Produce,
    Load,
    Tail,
    Seek,
}

/// A few labelled text fields; submitting one turns it into the palette command it stands
/// for, so forms and the palette share one parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    pub kind: FormKind,
    pub fields: Vec<(&'static str, String)>,
    pub focus: usize,
    pub error: Option<String>,
}

impl Form {
    pub fn title(&self) -> &'static str {
        match self.kind {
            FormKind::ResetOffsets => "Reset the group's offsets (group must be inactive)",
            FormKind::CreateTopic => "Create topic",
            FormKind::AlterTopic => "Change retention (empty: unchanged)",
            FormKind::Produce => "Send one record",
            FormKind::Load => "Start load generator",
            FormKind::Tail => "Tail a topic",
            FormKind::Seek => "Seek",
        }
    }

    pub(super) fn command(&self) -> String {
        let v = |i: usize| self.fields[i].1.trim().to_string();
        match self.kind {
            FormKind::ResetOffsets => format!("reset {} {} {}", v(0), v(1), v(2)),
            FormKind::CreateTopic => format!("create {} {} retention={}", v(0), v(1), v(2)),
            FormKind::AlterTopic => {
                let mut cmd = format!("alter {}", v(0));
                if !v(1).is_empty() {
                    cmd += &format!(" retention={}", v(1));
                }
                if !v(2).is_empty() {
                    cmd += &format!(" retention-bytes={}", v(2));
                }
                cmd
            }
            FormKind::Produce => {
                let key = if v(1).is_empty() { "-".into() } else { v(1) };
                format!("produce {} {} {}", v(0), key, self.fields[2].1)
            }
            FormKind::Load => format!("load {} {} {} {}", v(0), v(1), v(2), v(3)),
            FormKind::Tail => format!("tail {} {} {}", v(0), v(1), v(2)),
            FormKind::Seek => format!("seek {}", v(0)),
        }
    }
}

/// One agent row: what the cluster says of it, merged with what this console knows of the
/// process if it launched it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentRow {
    pub id: String,
    pub address: String,
    /// Where it serves Kafka clients, if it does.
    pub kafka_address: Option<String>,
    /// Registered and heartbeating, per the last snapshot.
    pub live: bool,
    pub registered: bool,
    /// The process's phase, for agents this console launched.
    pub phase: Option<Phase>,
    pub started_at_ms: i64,
    pub heartbeat_ms: i64,
    pub partitions_led: u32,
    pub in_records: f64,
    pub in_bytes: f64,
    pub out_records: f64,
    pub out_bytes: f64,
    /// The last counters it reported, and when (console ms).
    pub(super) last_stats: Option<(AgentStats, u64)>,
}

impl AgentRow {
    /// What an operator should read: up, down, starting or stopping.
    pub fn state(&self) -> &'static str {
        match &self.phase {
            Some(Phase::Starting) => "starting",
            Some(Phase::Stopping) => "stopping",
            Some(Phase::Failed(_)) => "failed",
            // The cluster notices a killed agent only when its heartbeat goes stale; the
            // console that killed it knows at once.
            Some(Phase::Killed) | Some(Phase::Stopped) => "down",
            _ if self.live => "up",
            _ => "down",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PartitionRow {
    pub topic: String,
    pub partition: u32,
    pub leader: Option<String>,
    pub epoch: i64,
    /// Lease time left when the snapshot was taken (by the store's clock).
    pub lease_left_ms: i64,
    pub log_start: i64,
    pub high_watermark: i64,
    /// When the leader last changed (console ms).
    pub moved_at: Option<u64>,
    /// Records/s appended, from high-watermark differences.
    pub rate: Ring,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conn {
    Connecting,
    Connected,
    Lost(String),
}

/// Cluster-wide rates, one sample per poll.
#[derive(Debug, Clone)]
pub struct Throughput {
    pub in_records: Ring,
    pub in_bytes: Ring,
    pub out_records: Ring,
    pub out_bytes: Ring,
}

#[derive(Debug, Clone, Default)]
pub struct ProduceView {
    /// Sent from the form and not yet acknowledged.
    pub waiting: Option<String>,
    pub last_ack: Option<Result<Ack, String>>,
    pub load: LoadReport,
    pub load_history: Vec<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct ConsumeView {
    pub spec: Option<TailSpec>,
    pub records: VecDeque<RecordView>,
    /// Records whose key contains this are shown.
    pub key_filter: String,
    pub paused: bool,
    /// Index into the filtered list; `None` follows the newest.
    pub selected: Option<usize>,
    pub status: String,
    /// Records received in all, including those dropped from the window.
    pub received: u64,
}

impl ConsumeView {
    pub fn visible(&self) -> Vec<&RecordView> {
        let f = self.key_filter.as_bytes();
        self.records
            .iter()
            .filter(|r| {
                f.is_empty()
                    || r.key
                        .as_deref()
                        .is_some_and(|k| k.windows(f.len()).any(|w| w == f))
            })
            .collect()
    }
}

/// One consumer group as the Groups screen keeps it.
#[derive(Debug, Clone)]
pub struct GroupRow {
    pub listing: GroupListing,
    /// Total lag, one sample per poll.
    pub lag: Ring,
}

/// The group open on the Groups screen.
#[derive(Debug, Clone)]
pub struct GroupView {
    pub group_id: String,
    pub detail: Option<GroupDescription>,
    /// Lag per partition, one sample per poll.
    pub lag: BTreeMap<(String, u32), Ring>,
}
