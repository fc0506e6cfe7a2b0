//! The console's state and how every [`Action`] changes it. Nothing here does I/O or reads a
//! clock: time arrives as the `now` argument (console milliseconds), so every update is a
//! plain function of (state, action) and every screen can be drawn from fixed data.

use std::collections::{BTreeMap, VecDeque};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use streamhouse_client::{
    AgentStats, ClusterDescription, ClusterEvent, GroupDescription, GroupListing,
};

use crate::action::{Ack, Action, Effect, LoadReport, Phase, RecordView, StartAt, TailSpec};
use crate::series::{Ring, rate};

mod keys;
#[cfg(test)]
mod tests;
mod views;

pub use crate::palette::{COMMANDS, Command, parse_command, parse_start, parse_topic_config};
pub use keys::keys_for;
pub use views::*;

/// Five minutes of one-second samples.
pub const HISTORY: usize = 300;
/// Samples behind each partition's sparkline.
const PARTITION_HISTORY: usize = 60;
/// Rows PgUp and PgDn move a list's selection by.
pub const PAGE_ROWS: isize = 20;

/// How long a moved lease stays highlighted.
pub const MOVED_HIGHLIGHT_MS: u64 = 5_000;
const MAX_EVENTS: usize = 2_000;
const MAX_RECORDS: usize = 5_000;
/// How long a notice stays in the status bar.
const NOTICE_MS: u64 = 8_000;

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
            row.kafka_address.clone_from(&a.kafka_address);
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

    /// The partitions the filter lets through: those whose topic or leader contains it
    /// (`none` matches partitions without a leader, as the leader column shows them).
    pub fn visible_partitions(&self) -> Vec<&PartitionRow> {
        let f = self.partitions_filter.as_str();
        self.partitions
            .iter()
            .filter(|p| {
                f.is_empty()
                    || p.topic.contains(f)
                    || p.leader.as_deref().unwrap_or("none").contains(f)
            })
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

    /// Moves the selection of the screen on show by `delta` rows, within the list.
    fn move_selection(&mut self, delta: isize) {
        let len = self.list_len();
        if len == 0 {
            return;
        }
        let down = delta > 0;
        let step = |s: usize| s.saturating_add_signed(delta).min(len - 1);
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

    /// Checks a command against the console's mode and the agents' state, then does it,
    /// asks to confirm it, or says why not.
    pub(crate) fn run(&mut self, cmd: Command, now: u64) -> Vec<Effect> {
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
