//! The console's state and how every [`Action`] changes it. Nothing here does I/O or reads a
//! clock: time arrives as the `now` argument (console milliseconds), so every update is a
//! plain function of (state, action) and every screen can be drawn from fixed data.

use std::collections::{BTreeMap, VecDeque};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use streamhouse_client::{
    AgentStats, ClusterDescription, ClusterEvent, GroupDescription, GroupListing,
};

use crate::action::{
    Ack, Action, Effect, LoadReport, LoadSpec, Phase, RecordView, StartAt, TailSpec,
};
use crate::series::{Ring, rate};

/// Five minutes of one-second samples.
pub const HISTORY: usize = 300;
/// Samples behind each partition's sparkline.
const PARTITION_HISTORY: usize = 60;
/// How long a moved lease stays highlighted.
pub const MOVED_HIGHLIGHT_MS: u64 = 5_000;
const MAX_EVENTS: usize = 2_000;
const MAX_RECORDS: usize = 5_000;
/// How long a notice stays in the status bar.
const NOTICE_MS: u64 = 8_000;

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

    fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }

    fn by_name(name: &str) -> Option<Tab> {
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

    fn command(&self) -> String {
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
    last_stats: Option<(AgentStats, u64)>,
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

#[derive(Debug, Clone)]
pub struct App {
    /// Which cluster, for the status bar.
    pub label: String,
    /// Whether this console launched the agents (and so may kill, stop and start them).
    pub launched: bool,
    pub read_only: bool,
    /// The topic forms start with.
    pub default_topic: String,
    pub tab: Tab,
    pub mode: Mode,
    pub conn: Conn,
    /// When the data on screen was fetched (console ms).
    pub data_at: Option<u64>,
    /// The store's clock at that snapshot.
    pub store_now_ms: i64,
    pub lease_ttl_ms: u64,
    pub agents: BTreeMap<String, AgentRow>,
    pub partitions: Vec<PartitionRow>,
    pub throughput: Throughput,
    pub events: VecDeque<ClusterEvent>,
    pub last_event_id: i64,
    pub events_filter: String,
    pub partitions_filter: String,
    /// Each topic's (retention_ms, retention_bytes), -1 meaning none.
    pub topic_configs: BTreeMap<String, (i64, i64)>,
    /// Consumer groups by id, and whether the poll has reported them yet.
    pub groups: BTreeMap<String, GroupRow>,
    pub groups_seen: bool,
    pub group_selected: usize,
    pub group_view: Option<GroupView>,
    /// Selected row on the Overview (agents), Partitions and Events screens.
    pub selected: [usize; 3],
    pub produce: ProduceView,
    pub consume: ConsumeView,
    pub notice: Option<(String, u64)>,
    pub caption: Option<String>,
    pub demo_result: Vec<String>,
    pub quit: bool,
}

impl App {
    pub fn new(label: impl Into<String>, launched: bool, read_only: bool) -> App {
        App {
            label: label.into(),
            launched,
            read_only,
            default_topic: "demo".into(),
            tab: Tab::Overview,
            mode: Mode::Normal,
            conn: Conn::Connecting,
            data_at: None,
            store_now_ms: 0,
            lease_ttl_ms: 0,
            agents: BTreeMap::new(),
            partitions: Vec::new(),
            throughput: Throughput {
                in_records: Ring::new(HISTORY),
                in_bytes: Ring::new(HISTORY),
                out_records: Ring::new(HISTORY),
                out_bytes: Ring::new(HISTORY),
            },
            events: VecDeque::new(),
            last_event_id: 0,
            events_filter: String::new(),
            partitions_filter: String::new(),
            topic_configs: BTreeMap::new(),
            groups: BTreeMap::new(),
            groups_seen: false,
            group_selected: 0,
            group_view: None,
            selected: [0; 3],
            produce: ProduceView::default(),
            consume: ConsumeView::default(),
            notice: None,
            caption: None,
            demo_result: Vec::new(),
            quit: false,
        }
    }

    /// Applies one action at console time `now`; returns what must be done outside.
    pub fn update(&mut self, action: Action, now: u64) -> Vec<Effect> {
        if let Some((_, at)) = &self.notice
            && now.saturating_sub(*at) > NOTICE_MS
        {
            self.notice = None;
        }
        match action {
            Action::Key(key) => return self.key(key, now),
            Action::Tick => {}
            Action::Snapshot { cluster, stats } => self.snapshot(*cluster, stats, now),
            Action::PollFailed(e) => self.conn = Conn::Lost(e),
            Action::Events(events) => {
                for e in events {
                    self.last_event_id = self.last_event_id.max(e.id);
                    if self.events.len() == MAX_EVENTS {
                        self.events.pop_front();
                    }
                    self.events.push_back(e);
                }
            }
            Action::Agent { id, phase } => self.agent_phase(id, phase, now),
            Action::Groups(list) => self.groups_polled(list, now),
            Action::GroupDetail(d) => {
                if let Some(v) = self.group_view.as_mut()
                    && v.group_id == d.group_id
                {
                    for p in &d.partitions {
                        v.lag
                            .entry((p.tp.topic.clone(), p.tp.partition))
                            .or_insert_with(|| Ring::new(PARTITION_HISTORY))
                            .push(now, p.lag as f64);
                    }
                    v.detail = Some(*d);
                }
            }
            Action::Acked(r) => {
                self.produce.waiting = None;
                self.produce.last_ack = Some(r);
            }
            Action::Load(report) => {
                if report.running {
                    self.produce.load_history.push(report.acked_rate);
                    let n = self.produce.load_history.len();
                    if n > HISTORY {
                        self.produce.load_history.drain(..n - HISTORY);
                    }
                }
                self.produce.load = report;
            }
            Action::Records(records) => {
                let c = &mut self.consume;
                c.received += records.len() as u64;
                for r in records {
                    if c.records.len() == MAX_RECORDS {
                        c.records.pop_front();
                        if let Some(s) = c.selected.as_mut() {
                            *s = s.saturating_sub(1);
                        }
                    }
                    c.records.push_back(r);
                }
            }
            Action::TailStatus(s) => self.consume.status = s,
            Action::Notice(n) => self.notice = Some((n, now)),
            Action::Run(line) => match parse_command(&line, self) {
                Ok(cmd) => {
                    // A script's command does not take the operator to another screen.
                    let tab = self.tab;
                    let effects = self.run(cmd, now);
                    self.tab = tab;
                    return effects;
                }
                Err(e) => self.notice = Some((e, now)),
            },
            Action::Caption(c) => self.caption = Some(c),
            Action::DemoResult(lines) => self.demo_result = lines,
        }
        Vec::new()
    }

    fn snapshot(&mut self, cluster: ClusterDescription, stats: Vec<AgentStats>, now: u64) {
        let prev_at = self.data_at;
        self.conn = Conn::Connected;
        self.data_at = Some(now);
        self.store_now_ms = cluster.now_ms;
        self.lease_ttl_ms = cluster.lease_ttl_ms;

        for row in self.agents.values_mut() {
            row.registered = false;
            row.live = false;
        }
        for a in &cluster.agents {
            let row = self.agents.entry(a.id.clone()).or_default();
            row.id = a.id.clone();
            row.address = a.address.clone();
            row.registered = true;
            row.live = a.live;
            row.started_at_ms = a.started_at_ms;
            row.heartbeat_ms = a.heartbeat_ms;
            row.partitions_led = a.partitions_led;
        }
        // Agents nobody launched here and the cluster forgot (deregistered) leave the table.
        self.agents.retain(|_, r| r.registered || r.phase.is_some());

        let (mut in_r, mut in_b, mut out_r, mut out_b) = (0.0, 0.0, 0.0, 0.0);
        for row in self.agents.values_mut() {
            let fresh = stats.iter().find(|s| s.agent_id == row.id);
            match fresh {
                Some(s) => {
                    if let Some((prev, at)) = &row.last_stats
                        && prev.started_at_ms == s.started_at_ms
                    {
                        let r = |p: u64, c: u64| rate(p, *at, c, now).unwrap_or(0.0);
                        row.in_records = r(prev.produced_records, s.produced_records);
                        row.in_bytes = r(prev.produced_bytes, s.produced_bytes);
                        row.out_records = r(prev.fetched_records, s.fetched_records);
                        row.out_bytes = r(prev.fetched_bytes, s.fetched_bytes);
                    } else {
                        (row.in_records, row.in_bytes) = (0.0, 0.0);
                        (row.out_records, row.out_bytes) = (0.0, 0.0);
                    }
                    row.last_stats = Some((s.clone(), now));
                }
                None if row.state() != "up" => {
                    (row.in_records, row.in_bytes) = (0.0, 0.0);
                    (row.out_records, row.out_bytes) = (0.0, 0.0);
                }
                None => {}
            }
            in_r += row.in_records;
            in_b += row.in_bytes;
            out_r += row.out_records;
            out_b += row.out_bytes;
        }
        let t = &mut self.throughput;
        t.in_records.push(now, in_r);
        t.in_bytes.push(now, in_b);
        t.out_records.push(now, out_r);
        t.out_bytes.push(now, out_b);

        let mut old: BTreeMap<(String, u32), PartitionRow> = std::mem::take(&mut self.partitions)
            .into_iter()
            .map(|p| ((p.topic.clone(), p.partition), p))
            .collect();
        self.topic_configs = cluster
            .topics
            .iter()
            .map(|t| (t.name.clone(), (t.retention_ms, t.retention_bytes)))
            .collect();
        for topic in &cluster.topics {
            for p in &topic.partitions {
                let seen = old.remove(&(topic.name.clone(), p.partition));
                let known = seen.is_some();
                let mut row = seen.unwrap_or_else(|| PartitionRow {
                    topic: topic.name.clone(),
                    partition: p.partition,
                    leader: p.leader_id.clone(),
                    epoch: p.lease_epoch,
                    lease_left_ms: 0,
                    log_start: p.log_start_offset,
                    high_watermark: p.high_watermark,
                    moved_at: None,
                    rate: Ring::new(PARTITION_HISTORY),
                });
                if row.leader != p.leader_id {
                    row.moved_at = Some(now);
                }
                if let Some(prev_at) = prev_at.filter(|_| known) {
                    let r = rate(
                        row.high_watermark as u64,
                        prev_at,
                        p.high_watermark as u64,
                        now,
                    );
                    row.rate.push(now, r.unwrap_or(0.0));
                }
                row.leader = p.leader_id.clone();
                row.epoch = p.lease_epoch;
                row.lease_left_ms = p.lease_expires_ms - cluster.now_ms;
                row.log_start = p.log_start_offset;
                row.high_watermark = p.high_watermark;
                self.partitions.push(row);
            }
        }
        if self.default_topic == "demo"
            && !cluster.topics.iter().any(|t| t.name == "demo")
            && let Some(t) = cluster.topics.first()
        {
            self.default_topic = t.name.clone();
        }
        self.clamp_selection();
    }

    fn groups_polled(&mut self, list: Vec<GroupListing>, now: u64) {
        self.groups_seen = true;
        let mut old = std::mem::take(&mut self.groups);
        for g in list {
            let mut row = old.remove(&g.group_id).unwrap_or_else(|| GroupRow {
                listing: g.clone(),
                lag: Ring::new(PARTITION_HISTORY),
            });
            row.lag.push(now, g.total_lag as f64);
            row.listing = g;
            self.groups.insert(row.listing.group_id.clone(), row);
        }
        self.group_selected = self.group_selected.min(self.groups.len().saturating_sub(1));
    }

    pub fn selected_group(&self) -> Option<&GroupRow> {
        self.groups.values().nth(self.group_selected)
    }

    fn agent_phase(&mut self, id: String, phase: Phase, now: u64) {
        let notice = match &phase {
            Phase::Up { .. } => Some(format!("{id} is up")),
            Phase::Stopped => Some(format!("{id} stopped gracefully")),
            Phase::Killed => Some(format!("{id} killed (kill -9)")),
            Phase::Failed(e) => Some(format!("{id}: {e}")),
            Phase::Starting | Phase::Stopping => None,
        };
        let row = self.agents.entry(id.clone()).or_default();
        row.id = id;
        if let Phase::Up { addr } = &phase {
            row.address = addr.clone();
        }
        if matches!(phase, Phase::Killed | Phase::Stopped) {
            row.live = false;
            (row.in_records, row.in_bytes, row.out_records, row.out_bytes) = (0.0, 0.0, 0.0, 0.0);
        }
        row.phase = Some(phase);
        if let Some(n) = notice {
            self.notice = Some((n, now));
        }
    }

    /// Launched agents in id order (the table's order).
    pub fn agent_rows(&self) -> Vec<&AgentRow> {
        self.agents.values().collect()
    }

    pub fn visible_partitions(&self) -> Vec<&PartitionRow> {
        self.partitions
            .iter()
            .filter(|p| p.topic.contains(self.partitions_filter.as_str()))
            .collect()
    }

    pub fn visible_events(&self) -> Vec<&ClusterEvent> {
        let f = self.events_filter.to_ascii_lowercase();
        self.events
            .iter()
            .rev()
            .filter(|e| {
                f.is_empty()
                    || e.kind.to_ascii_lowercase().contains(&f)
                    || e.subject.to_ascii_lowercase().contains(&f)
                    || e.detail.to_ascii_lowercase().contains(&f)
            })
            .collect()
    }

    fn list_len(&self) -> usize {
        match self.tab {
            Tab::Overview => self.agents.len(),
            Tab::Partitions => self.visible_partitions().len(),
            Tab::Events => self.visible_events().len(),
            Tab::Consume => self.consume.visible().len(),
            Tab::Groups => self.groups.len(),
            Tab::Produce => 0,
        }
    }

    fn clamp_selection(&mut self) {
        for (i, tab) in [Tab::Overview, Tab::Partitions, Tab::Events]
            .into_iter()
            .enumerate()
        {
            let len = match tab {
                Tab::Overview => self.agents.len(),
                Tab::Partitions => self.visible_partitions().len(),
                _ => self.visible_events().len(),
            };
            self.selected[i] = self.selected[i].min(len.saturating_sub(1));
        }
    }

    fn move_selection(&mut self, down: bool) {
        let len = self.list_len();
        if len == 0 {
            return;
        }
        let step = |s: usize| {
            if down {
                (s + 1).min(len - 1)
            } else {
                s.saturating_sub(1)
            }
        };
        match self.tab {
            Tab::Overview => self.selected[0] = step(self.selected[0]),
            Tab::Partitions => self.selected[1] = step(self.selected[1]),
            Tab::Events => self.selected[2] = step(self.selected[2]),
            Tab::Consume => {
                let cur = self.consume.selected.unwrap_or(len - 1);
                let next = step(cur);
                self.consume.selected = if down && next == len - 1 {
                    None
                } else {
                    Some(next)
                };
            }
            Tab::Groups => {
                if self.group_view.is_none() {
                    self.group_selected = step(self.group_selected);
                }
            }
            Tab::Produce => {}
        }
    }

    pub fn selected_agent(&self) -> Option<&AgentRow> {
        self.agents.values().nth(self.selected[0])
    }

    fn key(&mut self, key: KeyEvent, now: u64) -> Vec<Effect> {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return self.ask_quit();
        }
        match std::mem::replace(&mut self.mode, Mode::Normal) {
            Mode::Normal => self.normal_key(key, now),
            Mode::Help => {
                if !matches!(
                    key.code,
                    KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q')
                ) {
                    self.mode = Mode::Help;
                }
                Vec::new()
            }
            Mode::Confirm { prompt, effect } => match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => vec![effect],
                KeyCode::Char('n') | KeyCode::Esc => Vec::new(),
                _ => {
                    self.mode = Mode::Confirm { prompt, effect };
                    Vec::new()
                }
            },
            Mode::Palette { mut input, .. } => match key.code {
                KeyCode::Esc => Vec::new(),
                KeyCode::Enter => match parse_command(&input, self) {
                    Ok(cmd) => self.run(cmd, now),
                    Err(error) => {
                        self.mode = Mode::Palette {
                            input,
                            error: Some(error),
                        };
                        Vec::new()
                    }
                },
                code => {
                    edit(&mut input, code);
                    self.mode = Mode::Palette { input, error: None };
                    Vec::new()
                }
            },
            Mode::Filter { mut input } => {
                match key.code {
                    KeyCode::Esc => {
                        input.clear();
                        self.set_filter(input);
                    }
                    KeyCode::Enter => self.set_filter(input),
                    code => {
                        edit(&mut input, code);
                        self.set_filter(input.clone());
                        self.mode = Mode::Filter { input };
                    }
                }
                Vec::new()
            }
            Mode::Form(mut form) => match key.code {
                KeyCode::Esc => Vec::new(),
                KeyCode::Enter => match parse_command(&form.command(), self) {
                    Ok(cmd) => self.run(cmd, now),
                    Err(e) => {
                        form.error = Some(e);
                        self.mode = Mode::Form(form);
                        Vec::new()
                    }
                },
                KeyCode::Tab | KeyCode::Down => {
                    form.focus = (form.focus + 1) % form.fields.len();
                    self.mode = Mode::Form(form);
                    Vec::new()
                }
                KeyCode::BackTab | KeyCode::Up => {
                    form.focus = (form.focus + form.fields.len() - 1) % form.fields.len();
                    self.mode = Mode::Form(form);
                    Vec::new()
                }
                code => {
                    edit(&mut form.fields[form.focus].1, code);
                    form.error = None;
                    self.mode = Mode::Form(form);
                    Vec::new()
                }
            },
            Mode::Record { record, hex } => {
                match key.code {
                    KeyCode::Esc | KeyCode::Char('q') | KeyCode::Enter => {}
                    KeyCode::Char('h') => self.mode = Mode::Record { record, hex: !hex },
                    _ => self.mode = Mode::Record { record, hex },
                }
                Vec::new()
            }
        }
    }

    fn set_filter(&mut self, input: String) {
        match self.tab {
            Tab::Partitions => self.partitions_filter = input,
            Tab::Consume => self.consume.key_filter = input,
            _ => self.events_filter = input,
        }
        self.clamp_selection();
    }

    fn ask_quit(&mut self) -> Vec<Effect> {
        let running = self
            .agents
            .values()
            .filter(|a| matches!(a.phase, Some(Phase::Up { .. }) | Some(Phase::Starting)))
            .count();
        if self.launched && running > 0 {
            self.mode = Mode::Confirm {
                prompt: format!("Quit and stop the {running} agents this console launched?"),
                effect: Effect::Quit,
            };
            Vec::new()
        } else {
            vec![Effect::Quit]
        }
    }

    fn normal_key(&mut self, key: KeyEvent, now: u64) -> Vec<Effect> {
        let code = key.code;
        match code {
            KeyCode::Char('q') => return self.ask_quit(),
            KeyCode::Char('?') => self.mode = Mode::Help,
            KeyCode::Char(':') => {
                self.mode = Mode::Palette {
                    input: String::new(),
                    error: None,
                }
            }
            KeyCode::Char('/') => {
                let input = match self.tab {
                    Tab::Partitions => self.partitions_filter.clone(),
                    Tab::Consume => self.consume.key_filter.clone(),
                    _ => self.events_filter.clone(),
                };
                if matches!(self.tab, Tab::Overview | Tab::Groups | Tab::Produce) {
                    self.tab = Tab::Events;
                }
                self.mode = Mode::Filter { input };
            }
            KeyCode::Char(c @ '1'..='6') => {
                self.tab = Tab::ALL[(c as u8 - b'1') as usize];
            }
            KeyCode::Tab => self.tab = Tab::ALL[(self.tab.index() + 1) % Tab::ALL.len()],
            KeyCode::BackTab => {
                self.tab = Tab::ALL[(self.tab.index() + Tab::ALL.len() - 1) % Tab::ALL.len()]
            }
            KeyCode::Down | KeyCode::Char('j') => self.move_selection(true),
            KeyCode::Up | KeyCode::Char('k') => self.move_selection(false),
            KeyCode::Esc => {
                if self.tab == Tab::Consume {
                    self.consume.selected = None;
                }
                if self.tab == Tab::Groups && self.group_view.take().is_some() {
                    return vec![Effect::WatchGroup(None)];
                }
            }
            _ => return self.screen_key(code, now),
        }
        Vec::new()
    }

    /// Keys that mean something on one screen only.
    fn screen_key(&mut self, code: KeyCode, now: u64) -> Vec<Effect> {
        let agent = self.selected_agent().map(|a| a.id.clone());
        let topic = self
            .visible_partitions()
            .get(self.selected[1])
            .map(|p| p.topic.clone());
        let cmd = match (self.tab, code) {
            (Tab::Overview, KeyCode::Char('x')) => agent.map(Command::Kill),
            (Tab::Overview, KeyCode::Char('s')) => agent.map(Command::Stop),
            (Tab::Overview, KeyCode::Char('r')) => agent.map(Command::Restart),
            (Tab::Overview, KeyCode::Char('n')) => Some(Command::Start),
            (Tab::Partitions, KeyCode::Char('c')) => {
                return self.open_form(FormKind::CreateTopic, now);
            }
            (Tab::Partitions, KeyCode::Char('d')) => topic.map(Command::Delete),
            (Tab::Partitions, KeyCode::Char('a')) => {
                return self.open_form(FormKind::AlterTopic, now);
            }
            (Tab::Groups, KeyCode::Enter) if self.group_view.is_none() => {
                let Some(g) = self.selected_group() else {
                    return Vec::new();
                };
                let id = g.listing.group_id.clone();
                self.group_view = Some(GroupView {
                    group_id: id.clone(),
                    detail: None,
                    lag: BTreeMap::new(),
                });
                return vec![Effect::WatchGroup(Some(id))];
            }
            (Tab::Groups, KeyCode::Char('r')) => {
                return self.open_form(FormKind::ResetOffsets, now);
            }
            (Tab::Produce, KeyCode::Char('p')) => return self.open_form(FormKind::Produce, now),
            (Tab::Produce, KeyCode::Char('l')) => return self.open_form(FormKind::Load, now),
            (Tab::Produce, KeyCode::Char('x')) => Some(Command::StopLoad),
            (Tab::Consume, KeyCode::Char('t')) => return self.open_form(FormKind::Tail, now),
            (Tab::Consume, KeyCode::Char('s')) => return self.open_form(FormKind::Seek, now),
            (Tab::Consume, KeyCode::Char(' ')) => {
                self.consume.paused = !self.consume.paused;
                // Paused, the view holds still on the record it shows now.
                if self.consume.paused && self.consume.selected.is_none() {
                    self.consume.selected = self.consume.visible().len().checked_sub(1);
                }
                return Vec::new();
            }
            (Tab::Consume, KeyCode::Char('c')) => {
                self.consume.records.clear();
                self.consume.selected = None;
                return Vec::new();
            }
            (Tab::Consume, KeyCode::Enter) => {
                let visible = self.consume.visible();
                let index = self
                    .consume
                    .selected
                    .unwrap_or(visible.len().saturating_sub(1));
                if let Some(r) = visible.get(index) {
                    self.mode = Mode::Record {
                        record: Box::new((*r).clone()),
                        hex: false,
                    };
                }
                return Vec::new();
            }
            _ => None,
        };
        match cmd {
            Some(cmd) => self.run(cmd, now),
            None => Vec::new(),
        }
    }

    fn open_form(&mut self, kind: FormKind, now: u64) -> Vec<Effect> {
        if self.read_only && kind != FormKind::Tail && kind != FormKind::Seek {
            self.notice = Some(("read-only: changes are turned off".into(), now));
            return Vec::new();
        }
        let topic = self
            .consume
            .spec
            .as_ref()
            .filter(|_| kind == FormKind::Tail)
            .map(|s| s.topic.clone())
            .unwrap_or_else(|| self.default_topic.clone());
        let group = self
            .group_view
            .as_ref()
            .map(|v| v.group_id.clone())
            .or_else(|| self.selected_group().map(|g| g.listing.group_id.clone()))
            .unwrap_or_default();
        let fields = match kind {
            FormKind::ResetOffsets => vec![
                ("group", group),
                (
                    "topic",
                    self.group_view
                        .as_ref()
                        .and_then(|v| v.detail.as_ref())
                        .and_then(|d| d.partitions.first())
                        .map_or_else(|| topic.clone(), |p| p.tp.topic.clone()),
                ),
                (
                    "to (earliest, latest, offset N, time -5m or epoch ms)",
                    "earliest".into(),
                ),
            ],
            FormKind::CreateTopic => vec![
                ("name", String::new()),
                ("partitions", "6".into()),
                ("retention (7d, 12h, forever, default)", "default".into()),
            ],
            FormKind::AlterTopic => {
                let selected = self
                    .visible_partitions()
                    .get(self.selected[1])
                    .map(|p| p.topic.clone())
                    .unwrap_or(topic);
                vec![
                    ("topic", selected),
                    ("retention (7d, 12h, forever, default)", String::new()),
                    ("retention bytes (10GiB, unlimited)", String::new()),
                ]
            }
            FormKind::Produce => vec![
                ("topic", topic),
                ("key (empty: none)", String::new()),
                ("value", String::new()),
            ],
            FormKind::Load => vec![
                ("topic", topic),
                ("records/s", "1000".into()),
                ("value bytes", "100".into()),
                ("keys", "1000".into()),
            ],
            FormKind::Tail => vec![
                ("topic", topic),
                ("partition (all or N)", "all".into()),
                (
                    "from (beginning, end, offset N, time -5m or epoch ms)",
                    "end".into(),
                ),
            ],
            FormKind::Seek => vec![(
                "to (beginning, end, offset N, time -5m or epoch ms)",
                "beginning".into(),
            )],
        };
        self.mode = Mode::Form(Form {
            kind,
            focus: if kind == FormKind::Produce { 2 } else { 0 },
            fields,
            error: None,
        });
        Vec::new()
    }

    /// Checks a command against the console's mode and the agents' state, then does it,
    /// asks to confirm it, or says why not.
    fn run(&mut self, cmd: Command, now: u64) -> Vec<Effect> {
        let changes = !matches!(
            cmd,
            Command::Tail(_) | Command::Seek(_) | Command::Goto(_) | Command::Quit
        );
        if self.read_only && changes {
            self.notice = Some(("read-only: changes are turned off".into(), now));
            return Vec::new();
        }
        let agent_cmd = matches!(
            cmd,
            Command::Kill(_) | Command::Stop(_) | Command::Restart(_) | Command::Start
        );
        if agent_cmd && !self.launched {
            self.notice = Some((
                "attached: only agents this console launched can be killed, stopped or started"
                    .into(),
                now,
            ));
            return Vec::new();
        }
        let up = |app: &App, id: &str| {
            app.agents
                .get(id)
                .is_some_and(|a| matches!(a.phase, Some(Phase::Up { .. })))
        };
        let refuse = |app: &mut App, why: String| {
            app.notice = Some((why, now));
            Vec::new()
        };
        match cmd {
            Command::Kill(id) if up(self, &id) => {
                let led = self.agents.get(&id).map_or(0, |a| a.partitions_led);
                self.mode = Mode::Confirm {
                    prompt: format!("kill -9 {id} (leads {led} partitions)?"),
                    effect: Effect::KillAgent(id),
                };
                Vec::new()
            }
            Command::Stop(id) if up(self, &id) => {
                self.mode = Mode::Confirm {
                    prompt: format!("Stop {id} gracefully (flush, hand back its leases)?"),
                    effect: Effect::StopAgent(id),
                };
                Vec::new()
            }
            Command::Kill(id) | Command::Stop(id) => refuse(
                self,
                format!("{id} is not a running agent this console launched"),
            ),
            Command::Restart(id) => match self.agents.get(&id).and_then(|a| a.phase.clone()) {
                Some(Phase::Starting) | Some(Phase::Stopping) => {
                    refuse(self, format!("{id} is busy; wait for it"))
                }
                Some(_) => vec![Effect::RestartAgent(id)],
                None => refuse(self, format!("{id} was not launched by this console")),
            },
            Command::Start => vec![Effect::StartAgent],
            Command::Create {
                name,
                partitions,
                config,
            } => vec![Effect::CreateTopic {
                name,
                partitions,
                config,
            }],
            Command::Alter { topic, change } => vec![Effect::AlterTopic { topic, change }],
            Command::Delete(name) => {
                self.mode = Mode::Confirm {
                    prompt: format!("Delete topic {name} and every record in it?"),
                    effect: Effect::DeleteTopic(name),
                };
                Vec::new()
            }
            Command::Produce { topic, key, value } => {
                self.tab = Tab::Produce;
                self.produce.waiting = Some(format!("sent to {topic}; waiting for the agent"));
                vec![Effect::Produce { topic, key, value }]
            }
            Command::Load(spec) => {
                self.tab = Tab::Produce;
                self.produce.load_history.clear();
                vec![Effect::StartLoad(spec)]
            }
            Command::StopLoad => vec![Effect::StopLoad],
            Command::Tail(spec) => {
                self.tab = Tab::Consume;
                self.consume.records.clear();
                self.consume.selected = None;
                self.consume.paused = false;
                self.consume.spec = Some(spec.clone());
                vec![Effect::Tail(spec)]
            }
            Command::Seek(to) => {
                if self.consume.spec.is_none() {
                    return refuse(self, "seek: nothing is being tailed; press t".into());
                }
                self.consume.records.clear();
                self.consume.selected = None;
                vec![Effect::Seek(to)]
            }
            Command::Reset { group, topic, to } => {
                let live = self.groups.get(&group).map_or(0, |g| g.listing.members);
                if live > 0 {
                    return refuse(
                        self,
                        format!("{group} has {live} live members; stop them before resetting"),
                    );
                }
                self.mode = Mode::Confirm {
                    prompt: format!("Reset {group}'s offsets for {topic} to {}?", describe(&to)),
                    effect: Effect::ResetOffsets { group, topic, to },
                };
                Vec::new()
            }
            Command::Goto(tab) => {
                self.tab = tab;
                Vec::new()
            }
            Command::Quit => self.ask_quit(),
        }
    }
}

/// `to` in words, for a confirmation.
fn describe(to: &StartAt) -> String {
    match to {
        StartAt::Beginning => "the earliest offsets".into(),
        StartAt::End => "the latest offsets".into(),
        StartAt::Offset(o) => format!("offset {o}"),
        StartAt::Timestamp(t) => format!("time {t}"),
        StartAt::Ago(ms) => format!("{} s ago", ms / 1000),
    }
}

/// Line editing for text fields: type, backspace.
fn edit(s: &mut String, code: KeyCode) {
    match code {
        KeyCode::Char(c) => s.push(c),
        KeyCode::Backspace => {
            s.pop();
        }
        _ => {}
    }
}

/// A palette command, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Kill(String),
    Stop(String),
    Restart(String),
    Start,
    Create {
        name: String,
        partitions: u32,
        config: streamhouse_client::TopicConfig,
    },
    Delete(String),
    Alter {
        topic: String,
        change: streamhouse_client::TopicConfig,
    },
    Produce {
        topic: String,
        key: Option<String>,
        value: String,
    },
    Load(LoadSpec),
    StopLoad,
    Tail(TailSpec),
    Seek(StartAt),
    Reset {
        group: String,
        topic: String,
        to: StartAt,
    },
    Goto(Tab),
    Quit,
}

/// The palette's commands, for its help line and the help screen.
pub const COMMANDS: &[(&str, &str)] = &[
    (
        "kill|stop|restart AGENT|start",
        "kill -9, stop, restart; start one more",
    ),
    (
        "create TOPIC N [OPTS]",
        "OPTS: retention=7d|forever|default",
    ),
    (
        "alter TOPIC OPTS|delete TOPIC",
        "  retention-bytes=10GiB|unlimited",
    ),
    ("produce TOPIC KEY|- VALUE", "send one record, show its ack"),
    (
        "load TOPIC RATE SIZE KEYS",
        "start the load generator (load stop)",
    ),
    (
        "tail TOPIC [all|N] [FROM]",
        "FROM: beginning, end, offset N,",
    ),
    ("seek FROM", "  time -5m or time EPOCH_MS"),
    ("reset GROUP TOPIC FROM", "move an inactive group's offsets"),
    ("tab NAME | quit", "go to a screen, leave"),
];

/// Parses a palette line. `app` fills in what may be left out (the agent selected, the
/// default topic).
/// `retention=7d|12h|30m|90s|500ms|MS|forever|default` and
/// `retention-bytes=10GiB|512MiB|64KiB|BYTES|unlimited`.
pub fn parse_topic_config(args: &[&str]) -> Result<streamhouse_client::TopicConfig, String> {
    let mut config = streamhouse_client::TopicConfig::default();
    for arg in args {
        let (k, v) = arg
            .split_once('=')
            .ok_or_else(|| format!("{arg:?} is not retention=... or retention-bytes=..."))?;
        match k {
            "retention" | "retention.ms" => {
                config.retention_ms = Some(match v {
                    "forever" | "-1" => -1,
                    "default" => 0,
                    v => parse_duration_ms(v).ok_or_else(|| {
                        format!("retention {v:?}: give e.g. 7d, 12h, 30m, 90s, forever or default")
                    })?,
                });
            }
            "retention-bytes" | "retention.bytes" => {
                config.retention_bytes = Some(match v {
                    "unlimited" | "-1" => -1,
                    v => parse_bytes(v).ok_or_else(|| {
                        format!("retention-bytes {v:?}: give e.g. 10GiB, 512MiB or unlimited")
                    })?,
                });
            }
            k => return Err(format!("unknown setting {k:?}")),
        }
    }
    Ok(config)
}

const DURATION_UNITS: &[(&str, i64)] = &[
    ("", 1),
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

const BYTE_UNITS: &[(&str, i64)] = &[
    ("", 1),
    ("B", 1),
    ("K", 1 << 10),
    ("KiB", 1 << 10),
    ("M", 1 << 20),
    ("MiB", 1 << 20),
    ("G", 1 << 30),
    ("GiB", 1 << 30),
    ("T", 1 << 40),
    ("TiB", 1 << 40),
];

/// `NUNIT` with a unit from `units` (name, multiplier): the product, if it fits.
fn parse_scaled(v: &str, units: &[(&str, i64)]) -> Option<i64> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: i64 = n.parse().ok()?;
    let (_, scale) = units.iter().find(|(u, _)| *u == unit)?;
    n.checked_mul(*scale)
}

fn parse_duration_ms(v: &str) -> Option<i64> {
    parse_scaled(v, DURATION_UNITS).filter(|ms| *ms > 0)
}

fn parse_bytes(v: &str) -> Option<i64> {
    parse_scaled(v, BYTE_UNITS).filter(|b| *b > 0)
}

pub fn parse_command(line: &str, app: &App) -> Result<Command, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some((&verb, args)) = words.split_first() else {
        return Err("type a command; ? lists them".into());
    };
    let agent = |args: &[&str]| -> Result<String, String> {
        match args.first() {
            Some(a) => Ok(a.to_string()),
            None => app
                .selected_agent()
                .map(|a| a.id.clone())
                .ok_or_else(|| format!("{verb}: which agent?")),
        }
    };
    let num = |what: &str, s: Option<&&str>| -> Result<u64, String> {
        let s = s.ok_or_else(|| format!("{verb}: {what} is missing"))?;
        s.replace('_', "")
            .parse::<u64>()
            .map_err(|_| format!("{verb}: {what} must be a whole number, not {s:?}"))
    };
    let topic = |s: Option<&&str>| -> Result<String, String> {
        Ok(s.map(|s| s.to_string())
            .unwrap_or_else(|| app.default_topic.clone()))
    };
    Ok(match verb {
        "kill" => Command::Kill(agent(args)?),
        "stop" => Command::Stop(agent(args)?),
        "restart" => Command::Restart(agent(args)?),
        "start" => Command::Start,
        "create" => {
            let name = args
                .first()
                .ok_or("create: the topic's name is missing")?
                .to_string();
            let partitions = num("partitions", args.get(1))?;
            if partitions == 0 || partitions > 10_000 {
                return Err("create: partitions must be 1 to 10,000".into());
            }
            Command::Create {
                name,
                partitions: partitions as u32,
                config: parse_topic_config(&args[2..]).map_err(|e| format!("create: {e}"))?,
            }
        }
        "alter" => {
            let topic = args.first().ok_or("alter: which topic?")?.to_string();
            let change = parse_topic_config(&args[1..]).map_err(|e| format!("alter: {e}"))?;
            if change == streamhouse_client::TopicConfig::default() {
                return Err(
                    "alter: say what to change: retention=... or retention-bytes=...".into(),
                );
            }
            Command::Alter { topic, change }
        }
        "delete" => Command::Delete(args.first().ok_or("delete: which topic?")?.to_string()),
        "produce" => {
            if args.len() < 3 {
                return Err("produce: TOPIC KEY|- VALUE".into());
            }
            let key = (args[1] != "-").then(|| args[1].to_string());
            // The value is the rest of the line as typed, spaces included.
            let value = value_after(line, 3);
            Command::Produce {
                topic: args[0].to_string(),
                key,
                value,
            }
        }
        "load" if args.first() == Some(&"stop") => Command::StopLoad,
        "load" => {
            let rate = num("records/s", args.get(1))?;
            let value_size = num("value bytes", args.get(2))? as usize;
            let keys = num("keys", args.get(3))?;
            if rate == 0 || rate > 1_000_000 {
                return Err("load: records/s must be 1 to 1,000,000".into());
            }
            if value_size > 1_000_000 {
                return Err("load: values up to 1,000,000 bytes".into());
            }
            Command::Load(LoadSpec {
                topic: topic(args.first())?,
                rate,
                value_size,
                keys: keys.max(1),
            })
        }
        "tail" => {
            let partition =
                match args.get(1) {
                    None | Some(&"all") => None,
                    Some(p) => Some(p.parse::<u32>().map_err(|_| {
                        format!("tail: partition must be all or a number, not {p:?}")
                    })?),
                };
            let from = if args.len() > 2 {
                parse_start(&args[2..]).map_err(|e| format!("tail: {e}"))?
            } else {
                StartAt::End
            };
            Command::Tail(TailSpec {
                topic: topic(args.first())?,
                partition,
                from,
            })
        }
        "seek" => Command::Seek(parse_start(args).map_err(|e| format!("seek: {e}"))?),
        "reset" => {
            if args.len() < 3 {
                return Err("reset: GROUP TOPIC earliest|latest|offset N|time T".into());
            }
            Command::Reset {
                group: args[0].to_string(),
                topic: args[1].to_string(),
                to: parse_start(&args[2..]).map_err(|e| format!("reset: {e}"))?,
            }
        }
        "tab" => Command::Goto(
            args.first()
                .and_then(|n| Tab::by_name(n))
                .ok_or("tab: overview, partitions, groups, events, produce or consume")?,
        ),
        "quit" | "q" => Command::Quit,
        other => return Err(format!("unknown command {other:?}; ? lists them")),
    })
}

/// The text after the first `n` words of `line`, as typed.
fn value_after(line: &str, n: usize) -> String {
    let mut rest = line.trim_start();
    for _ in 0..n {
        rest = rest.trim_start();
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        rest = &rest[end..];
    }
    rest.strip_prefix(' ').unwrap_or(rest).to_string()
}

/// `beginning`, `end`, `offset N` (or just `N`), `time T` (or `@T`): T is epoch ms, or a
/// time ago such as `-30s`, `-5m`, `-2h`.
pub fn parse_start(args: &[&str]) -> Result<StartAt, String> {
    let time = |s: &str| -> Result<StartAt, String> {
        if let Some(ago) = s.strip_prefix('-') {
            // Seconds, minutes or hours: a unit is required, as a bare number means epoch ms.
            const AGO_UNITS: &[(&str, i64)] = &[("s", 1_000), ("m", 60_000), ("h", 3_600_000)];
            parse_scaled(ago, AGO_UNITS)
                .map(StartAt::Ago)
                .ok_or_else(|| format!("time {s:?}: like -30s, -5m, -2h"))
        } else {
            s.parse()
                .map(StartAt::Timestamp)
                .map_err(|_| format!("time {s:?}: epoch ms or -30s, -5m, -2h"))
        }
    };
    match args {
        [] | ["end"] => Ok(StartAt::End),
        ["beginning"] | ["start"] | ["earliest"] => Ok(StartAt::Beginning),
        ["latest"] => Ok(StartAt::End),
        ["offset", n] => n
            .parse()
            .map(StartAt::Offset)
            .map_err(|_| format!("offset {n:?} is not a number")),
        ["time", t] => time(t),
        [t] if t.starts_with('@') => time(&t[1..]),
        [n] => n
            .parse()
            .map(StartAt::Offset)
            .map_err(|_| format!("{n:?}: beginning, end, offset N or time T")),
        _ => Err(format!(
            "{:?}: beginning, end, offset N or time T",
            args.join(" ")
        )),
    }
}

/// Keys for `tab`, for the help screen.
pub fn keys_for(tab: Tab) -> Vec<(&'static str, &'static str)> {
    let mut keys = vec![
        ("1..6  tab  shift-tab", "switch screen"),
        ("j k  up down", "move the selection"),
        ("?  :  /", "this help, command palette, filter"),
        ("esc  q  ctrl-c", "back, quit"),
    ];
    keys.extend(match tab {
        Tab::Overview => vec![
            ("x", "kill -9 the selected agent (asks first)"),
            ("s", "stop it gracefully (asks first)"),
            ("r", "restart it"),
            ("n", "start one more agent"),
        ],
        Tab::Partitions => vec![
            ("c", "create a topic"),
            ("d", "delete the selected row's topic (asks first)"),
        ],
        Tab::Groups => vec![
            ("enter", "open the selected group (esc: back)"),
            ("r", "reset an inactive group's offsets (asks first)"),
        ],
        Tab::Events => vec![("/", "filter by kind, subject or detail (all screens)")],
        Tab::Produce => vec![
            ("p", "send one record and wait for its ack"),
            ("l", "start the load generator"),
            ("x", "stop the load generator"),
        ],
        Tab::Consume => vec![
            ("t", "tail a topic (all partitions or one, from anywhere)"),
            ("s", "seek while tailing"),
            ("space", "pause or resume the view"),
            ("enter", "open the selected record (h: hex)"),
            ("c  /", "clear, filter by key"),
        ],
    });
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamhouse_client::{AgentDescription, PartitionDescription, TopicDescription};

    fn key(c: char) -> Action {
        Action::Key(KeyEvent::from(KeyCode::Char(c)))
    }

    fn code(c: KeyCode) -> Action {
        Action::Key(KeyEvent::from(c))
    }

    fn typed(app: &mut App, s: &str) -> Vec<Effect> {
        let mut out = Vec::new();
        for c in s.chars() {
            out.extend(app.update(key(c), 0));
        }
        out
    }

    fn snapshot(leaders: &[&str], hw: i64, live: &[&str]) -> Action {
        let agents = ["agent-0", "agent-1", "agent-2"]
            .iter()
            .map(|id| AgentDescription {
                id: id.to_string(),
                address: format!("addr-{id}"),
                started_at_ms: 0,
                heartbeat_ms: 0,
                live: live.contains(id),
                partitions_led: 0,
            })
            .collect();
        Action::Snapshot {
            cluster: Box::new(ClusterDescription {
                now_ms: 10_000,
                lease_ttl_ms: 3_000,
                agents,
                topics: vec![TopicDescription {
                    name: "t".into(),
                    partitions: leaders
                        .iter()
                        .enumerate()
                        .map(|(p, l)| PartitionDescription {
                            partition: p as u32,
                            leader_id: Some(l.to_string()),
                            leader_address: None,
                            lease_epoch: 1,
                            lease_expires_ms: 12_000,
                            log_start_offset: 0,
                            high_watermark: hw,
                        })
                        .collect(),
                    retention_ms: -1,
                    retention_bytes: -1,
                    created_at_ms: 0,
                }],
            }),
            stats: Vec::new(),
        }
    }

    fn launched() -> App {
        let mut app = App::new("test", true, false);
        for id in ["agent-0", "agent-1", "agent-2"] {
            app.update(
                Action::Agent {
                    id: id.into(),
                    phase: Phase::Up {
                        addr: format!("addr-{id}"),
                    },
                },
                0,
            );
        }
        app
    }

    #[test]
    fn kill_asks_first_and_only_yes_kills() {
        let mut app = launched();
        app.selected[0] = 1;
        assert!(app.update(key('x'), 0).is_empty());
        assert!(matches!(app.mode, Mode::Confirm { .. }));
        // Other keys leave the question open; n closes it without killing.
        assert!(app.update(key('z'), 0).is_empty());
        assert!(app.update(key('n'), 0).is_empty());
        assert_eq!(app.mode, Mode::Normal);
        app.update(key('x'), 0);
        assert_eq!(
            app.update(key('y'), 0),
            vec![Effect::KillAgent("agent-1".into())]
        );
    }

    #[test]
    fn attached_and_read_only_consoles_refuse_changes() {
        let mut attached = App::new("attached", false, false);
        attached.update(snapshot(&["agent-0"], 0, &["agent-0"]), 0);
        assert!(attached.update(key('x'), 0).is_empty());
        assert_eq!(attached.mode, Mode::Normal);
        assert!(
            attached
                .notice
                .as_ref()
                .is_some_and(|n| n.0.contains("launched"))
        );

        let mut ro = App::new("ro", false, true);
        ro.tab = Tab::Partitions;
        assert!(ro.update(key('c'), 0).is_empty());
        assert_eq!(ro.mode, Mode::Normal);
        assert!(typed(&mut ro, ":delete t").is_empty());
        assert!(ro.update(code(KeyCode::Enter), 0).is_empty());
        assert!(
            ro.notice
                .as_ref()
                .is_some_and(|n| n.0.contains("read-only"))
        );
        // Reading is still allowed.
        typed(&mut ro, ":tail t all beginning");
        assert_eq!(
            ro.update(code(KeyCode::Enter), 0),
            vec![Effect::Tail(TailSpec {
                topic: "t".into(),
                partition: None,
                from: StartAt::Beginning
            })]
        );
    }

    #[test]
    fn quitting_a_launched_cluster_asks_first() {
        let mut app = launched();
        assert!(app.update(key('q'), 0).is_empty());
        assert_eq!(app.update(key('y'), 0), vec![Effect::Quit]);
        let mut attached = App::new("a", false, false);
        assert_eq!(attached.update(key('q'), 0), vec![Effect::Quit]);
    }

    #[test]
    fn a_moved_lease_is_remembered_with_its_time() {
        let mut app = launched();
        app.update(
            snapshot(&["agent-0", "agent-1"], 100, &["agent-0", "agent-1"]),
            1_000,
        );
        app.update(
            snapshot(&["agent-0", "agent-1"], 300, &["agent-0", "agent-1"]),
            2_000,
        );
        assert!(app.partitions.iter().all(|p| p.moved_at.is_none()));
        assert_eq!(app.partitions[0].rate.last(), Some(200.0));
        app.update(snapshot(&["agent-0", "agent-0"], 300, &["agent-0"]), 3_000);
        assert_eq!(app.partitions[0].moved_at, None);
        assert_eq!(app.partitions[1].moved_at, Some(3_000));
        assert_eq!(app.partitions[1].leader.as_deref(), Some("agent-0"));
        assert_eq!(app.agents["agent-1"].state(), "down");
    }

    #[test]
    fn rates_come_from_counter_differences_and_survive_restarts() {
        let mut app = launched();
        let with_stats = |n: u64, started: i64| {
            let Action::Snapshot { cluster, .. } = snapshot(&["agent-0"], 0, &["agent-0"]) else {
                unreachable!()
            };
            Action::Snapshot {
                cluster,
                stats: vec![AgentStats {
                    agent_id: "agent-0".into(),
                    started_at_ms: started,
                    produced_records: n,
                    ..AgentStats::default()
                }],
            }
        };
        app.update(with_stats(1_000, 1), 1_000);
        app.update(with_stats(3_000, 1), 2_000);
        assert_eq!(app.agents["agent-0"].in_records, 2_000.0);
        assert_eq!(app.throughput.in_records.last(), Some(2_000.0));
        // A restarted agent's counters start again from zero: no negative or huge rate.
        app.update(with_stats(10, 2), 3_000);
        assert_eq!(app.agents["agent-0"].in_records, 0.0);
        app.update(with_stats(510, 2), 3_500);
        assert_eq!(app.agents["agent-0"].in_records, 1_000.0);
    }

    #[test]
    fn events_are_bounded_and_filtered() {
        let mut app = App::new("a", false, false);
        let ev = |id: i64, kind: &str| ClusterEvent {
            id,
            at_ms: id,
            kind: kind.into(),
            subject: format!("s{id}"),
            detail: String::new(),
        };
        app.update(
            Action::Events(
                (1..=2_100)
                    .map(|i| {
                        ev(
                            i,
                            if i % 2 == 0 {
                                "lease_taken"
                            } else {
                                "agent_joined"
                            },
                        )
                    })
                    .collect(),
            ),
            0,
        );
        assert_eq!(app.events.len(), MAX_EVENTS);
        assert_eq!(app.last_event_id, 2_100);
        app.tab = Tab::Events;
        app.update(key('/'), 0);
        typed(&mut app, "taken");
        app.update(code(KeyCode::Enter), 0);
        assert_eq!(app.events_filter, "taken");
        assert_eq!(app.visible_events().len(), MAX_EVENTS / 2);
        assert_eq!(app.visible_events()[0].id, 2_100);
    }

    #[test]
    fn topic_settings_parse_from_the_palette() {
        use streamhouse_client::TopicConfig;
        let app = launched();
        assert_eq!(
            parse_command("alter orders retention=7d retention-bytes=10GiB", &app),
            Ok(Command::Alter {
                topic: "orders".into(),
                change: TopicConfig {
                    retention_ms: Some(7 * 86_400_000),
                    retention_bytes: Some(10 << 30),
                },
            })
        );
        assert_eq!(
            parse_command("create logs 3 retention=forever", &app),
            Ok(Command::Create {
                name: "logs".into(),
                partitions: 3,
                config: TopicConfig {
                    retention_ms: Some(-1),
                    retention_bytes: None
                },
            })
        );
        for (bad, why) in [
            ("alter orders", "say what to change"),
            ("alter orders retention=soon", "retention \"soon\""),
            ("alter orders retention-bytes=0", "retention-bytes \"0\""),
            ("alter orders colour=red", "unknown setting"),
            ("create logs 3 retention", "is not retention="),
        ] {
            let e = parse_command(bad, &app).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert_eq!(crate::ui::retention_text(604_800_000, -1), "retention 7d");
        assert_eq!(
            crate::ui::retention_text(-1, 512 << 20),
            "retention forever, 512MiB per partition"
        );
        assert_eq!(crate::ui::retention_text(1_500, -1), "retention 1500ms");
    }

    #[test]
    fn forms_become_commands() {
        let mut app = launched();
        app.tab = Tab::Partitions;
        app.update(key('c'), 0);
        typed(&mut app, "orders");
        app.update(code(KeyCode::Tab), 0);
        app.update(code(KeyCode::Backspace), 0);
        typed(&mut app, "12");
        assert_eq!(
            app.update(code(KeyCode::Enter), 0),
            vec![Effect::CreateTopic {
                name: "orders".into(),
                partitions: 12,
                config: streamhouse_client::TopicConfig {
                    retention_ms: Some(0),
                    retention_bytes: None
                },
            }]
        );

        app.tab = Tab::Produce;
        app.update(key('p'), 0);
        typed(&mut app, "hello  world");
        app.update(code(KeyCode::BackTab), 0);
        typed(&mut app, "k1");
        assert_eq!(
            app.update(code(KeyCode::Enter), 0),
            vec![Effect::Produce {
                topic: "demo".into(),
                key: Some("k1".into()),
                value: "hello  world".into()
            }]
        );
        assert!(app.produce.waiting.is_some());
        app.update(
            Action::Acked(Ok(Ack {
                topic: "demo".into(),
                partition: 1,
                offset: 7,
                latency_ms: 3,
            })),
            0,
        );
        assert!(app.produce.waiting.is_none());

        // A bad field keeps the form open with the reason.
        app.update(key('l'), 0);
        app.update(code(KeyCode::Tab), 0);
        typed(&mut app, "x");
        assert!(app.update(code(KeyCode::Enter), 0).is_empty());
        assert!(
            matches!(&app.mode, Mode::Form(f) if f.error.as_deref().is_some_and(|e| e.contains("whole number")))
        );
    }

    #[test]
    fn the_palette_parses_what_it_lists() {
        let app = launched();
        let p = |s: &str| parse_command(s, &app);
        assert_eq!(p("kill agent-2"), Ok(Command::Kill("agent-2".into())));
        assert_eq!(p("kill"), Ok(Command::Kill("agent-0".into())));
        assert_eq!(
            p("produce t - two words"),
            Ok(Command::Produce {
                topic: "t".into(),
                key: None,
                value: "two words".into()
            })
        );
        assert_eq!(
            p("load t 500 64 10"),
            Ok(Command::Load(LoadSpec {
                topic: "t".into(),
                rate: 500,
                value_size: 64,
                keys: 10
            }))
        );
        assert_eq!(p("load stop"), Ok(Command::StopLoad));
        assert_eq!(
            p("tail t 3 offset 42"),
            Ok(Command::Tail(TailSpec {
                topic: "t".into(),
                partition: Some(3),
                from: StartAt::Offset(42)
            }))
        );
        assert_eq!(p("seek time -5m"), Ok(Command::Seek(StartAt::Ago(300_000))));
        assert_eq!(
            p("seek @1790000000000"),
            Ok(Command::Seek(StartAt::Timestamp(1_790_000_000_000)))
        );
        assert_eq!(p("tab part"), Ok(Command::Goto(Tab::Partitions)));
        assert!(p("create t 0").is_err());
        assert!(p("tail t x").is_err());
        assert!(p("seek time -5y").is_err());
        assert!(p("frobnicate").is_err());
        assert!(p("").is_err());
    }

    #[test]
    fn the_tail_window_is_bounded_and_selection_follows() {
        let mut app = App::new("a", false, false);
        app.tab = Tab::Consume;
        let rec = |o: i64| RecordView {
            partition: 0,
            offset: o,
            timestamp: 0,
            key: Some(format!("k{}", o % 2).into_bytes()),
            value: None,
            headers: Vec::new(),
            damaged: None,
        };
        app.update(Action::Records((0..10).map(rec).collect()), 0);
        app.update(code(KeyCode::Up), 0);
        assert_eq!(app.consume.selected, Some(8));
        app.update(
            Action::Records((10..MAX_RECORDS as i64 + 5).map(rec).collect()),
            0,
        );
        assert_eq!(app.consume.records.len(), MAX_RECORDS);
        // The selected record stays the same record as older ones fall off the front.
        assert_eq!(
            app.consume.records[app.consume.selected.unwrap_or(0)].offset,
            8
        );
        app.update(key('/'), 0);
        typed(&mut app, "k1");
        app.update(code(KeyCode::Enter), 0);
        assert!(app.consume.visible().iter().all(|r| r.offset % 2 == 1));
    }
}
