//! Every screen drawn from fixed data at fixed console times into ratatui's `TestBackend`,
//! compared with the `insta` snapshots beside this file. The agents' counters advance by
//! fixed amounts between snapshots, so the rates, ages and countdowns are the same every run.

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use streamhouse_client::{
    AgentDescription, AgentStats, ClusterDescription, ClusterEvent, PartitionDescription,
    TopicDescription,
};

use crate::action::{Ack, Action, LoadReport, Phase, RecordView, StartAt, TailSpec};
use crate::app::{App, Tab};

const T0: i64 = 1_790_000_000_000;

fn cluster(at: i64, leaders: &[&str], live: &[bool], hw: i64) -> ClusterDescription {
    let agents = (0..3)
        .map(|i| AgentDescription {
            id: format!("agent-{i}"),
            address: format!("127.0.0.1:{}", 40_100 + i),
            started_at_ms: T0 - 60_000 * (i as i64 + 1),
            heartbeat_ms: at - 400 * i as i64,
            live: live[i],
            partitions_led: leaders
                .iter()
                .filter(|l| **l == format!("agent-{i}"))
                .count() as u32,
            kafka_address: Some(format!("127.0.0.1:{}", 19_092 + i)),
        })
        .collect();
    let partitions = leaders
        .iter()
        .enumerate()
        .map(|(p, l)| PartitionDescription {
            partition: p as u32,
            leader_id: (!l.is_empty()).then(|| l.to_string()),
            leader_address: None,
            lease_epoch: 3 + p as i64,
            lease_expires_ms: at + 2_000 + 100 * p as i64,
            log_start_offset: 0,
            high_watermark: hw * (p as i64 + 1),
        })
        .collect();
    ClusterDescription {
        now_ms: at,
        lease_ttl_ms: 3_000,
        agents,
        topics: vec![TopicDescription {
            name: "demo".into(),
            partitions,
            retention_ms: 604_800_000,
            retention_bytes: -1,
            created_at_ms: T0 - 120_000,
        }],
    }
}

fn stats(i: usize, n: u64) -> AgentStats {
    AgentStats {
        agent_id: format!("agent-{i}"),
        started_at_ms: T0 - 60_000 * (i as i64 + 1),
        produced_records: n * (i as u64 + 1) * 1_000,
        produced_bytes: n * (i as u64 + 1) * 120_000,
        fetched_records: n * (i as u64 + 1) * 900,
        fetched_bytes: n * (i as u64 + 1) * 100_000,
        ..AgentStats::default()
    }
}

/// Thirty seconds of polls of a steady three-agent cluster, then agent-1 killed and its
/// partitions moved.
fn fixture() -> (App, u64) {
    let mut app = App::new("local cluster in ./streamhouse-data", true, false);
    for i in 0..3 {
        app.update(
            Action::Agent {
                id: format!("agent-{i}"),
                phase: Phase::Up {
                    addr: format!("127.0.0.1:{}", 40_100 + i),
                },
            },
            0,
        );
    }
    let steady = [
        "agent-0", "agent-1", "agent-2", "agent-0", "agent-1", "agent-2",
    ];
    let mut now = 0;
    for s in 0..30u64 {
        now = 1_000 * s;
        let c = cluster(T0 + now as i64, &steady, &[true; 3], 1_000 * s as i64);
        // Rising and falling rates: the counters grow by s * 10 per second.
        let st = (0..3).map(|i| stats(i, 5 * s * (s + 1))).collect();
        app.update(
            Action::Snapshot {
                cluster: Box::new(c),
                stats: st,
            },
            now,
        );
    }
    app.update(
        Action::Agent {
            id: "agent-1".into(),
            phase: Phase::Killed,
        },
        now + 100,
    );
    now += 1_000;
    let moved = [
        "agent-0", "agent-2", "agent-2", "agent-0", "agent-0", "agent-2",
    ];
    let c = cluster(T0 + now as i64, &moved, &[true, false, true], 30_000);
    let st = [0, 2].into_iter().map(|i| stats(i, 5 * 31 * 32)).collect();
    app.update(
        Action::Snapshot {
            cluster: Box::new(c),
            stats: st,
        },
        now,
    );
    let events = [
        (1, "agent_joined", "agent-0", "at 127.0.0.1:40100"),
        (2, "topic_created", "demo", "6 partitions"),
        (3, "lease_acquired", "demo-0", "agent-0 at epoch 3"),
        (4, "agent_lost", "agent-1", "no heartbeat for 3000 ms"),
        (
            5,
            "lease_taken",
            "demo-1",
            "agent-2 at epoch 5 from agent-1",
        ),
    ];
    app.update(
        Action::Events(
            events
                .iter()
                .map(|(id, kind, subject, detail)| ClusterEvent {
                    id: *id,
                    at_ms: T0 + 1_000 * id,
                    kind: kind.to_string(),
                    subject: subject.to_string(),
                    detail: detail.to_string(),
                })
                .collect(),
        ),
        now,
    );
    (app, now + 1_500)
}

fn draw(app: &App, now: u64, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    t.draw(|f| crate::ui::draw(f, app, now)).expect("draw");
    t
}

fn on(tab: Tab) -> (App, u64) {
    let (mut app, now) = fixture();
    app.tab = tab;
    (app, now)
}

#[test]
fn overview() {
    let (app, now) = on(Tab::Overview);
    insta::assert_snapshot!("overview_80x24", draw(&app, now, 80, 24).backend());
    insta::assert_snapshot!("overview_120x40", draw(&app, now, 120, 40).backend());
}

#[test]
fn partitions_highlight_moved_leases() {
    let (app, now) = on(Tab::Partitions);
    insta::assert_snapshot!("partitions_80x24", draw(&app, now, 80, 24).backend());
    insta::assert_snapshot!("partitions_120x40", draw(&app, now, 120, 40).backend());
}

/// Ten thousand partitions over four topics and three agents, one topic's last 40 without
/// a leader, polled twice a second apart.
fn big_cluster() -> (App, u64) {
    let mut app = App::new("cluster at 127.0.0.1:40100", false, false);
    let mut now = 0;
    for s in 0..2i64 {
        now = 1_000 * s as u64;
        let at = T0 + now as i64;
        let mut c = cluster(at, &[], &[true; 3], 0);
        c.topics = (0..4)
            .map(|t| TopicDescription {
                name: format!("orders-{t}"),
                partitions: (0..2_500u32)
                    .map(|p| {
                        let unled = t == 2 && p >= 2_460;
                        PartitionDescription {
                            partition: p,
                            leader_id: (!unled).then(|| format!("agent-{}", (p + t) % 3)),
                            leader_address: None,
                            lease_epoch: 1,
                            lease_expires_ms: at + 800,
                            log_start_offset: 0,
                            high_watermark: (s + 1) * i64::from(p % 7),
                        }
                    })
                    .collect(),
                retention_ms: 86_400_000,
                retention_bytes: -1,
                created_at_ms: T0,
            })
            .collect();
        app.update(
            Action::Snapshot {
                cluster: Box::new(c),
                stats: Vec::new(),
            },
            now,
        );
    }
    app.tab = Tab::Partitions;
    (app, now + 100)
}

#[test]
fn ten_thousand_partitions_page_filter_and_summarise() {
    let (mut app, now) = big_cluster();
    assert_eq!(app.visible_partitions().len(), 10_000);
    let press = |app: &mut App, code: KeyCode| {
        app.update(Action::Key(KeyEvent::from(code)), now);
    };
    press(&mut app, KeyCode::PageDown);
    press(&mut app, KeyCode::PageDown);
    assert_eq!(app.selected[1], 40);
    press(&mut app, KeyCode::End);
    assert_eq!(app.selected[1], 9_999);
    press(&mut app, KeyCode::PageUp);
    assert_eq!(app.selected[1], 9_979);
    insta::assert_snapshot!(
        "partitions_10k_end_80x24",
        draw(&app, now, 80, 24).backend()
    );
    press(&mut app, KeyCode::Home);
    assert_eq!(app.selected[1], 0);
    // Partitions without a leader, found by the leader column's "none".
    press(&mut app, KeyCode::Char('/'));
    for c in "none".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.visible_partitions().len(), 40);
    insta::assert_snapshot!(
        "partitions_10k_unled_80x24",
        draw(&app, now, 80, 24).backend()
    );
}

fn group_fixture() -> (App, u64, streamhouse_client::GroupDescription) {
    use streamhouse_client::{
        GroupDescription, GroupListing, GroupMemberDescription, GroupPartitionDescription,
        TopicPartition,
    };
    let (mut app, mut now) = on(Tab::Groups);
    let listing = |id: &str, state: &str, members, lag| GroupListing {
        group_id: id.into(),
        state: state.into(),
        members,
        generation: 7,
        assignor: "round-robin".into(),
        total_lag: lag,
        kafka: false,
    };
    let kafka = |id: &str, state: &str, members, lag| GroupListing {
        assignor: "range".into(),
        kafka: true,
        ..listing(id, state, members, lag)
    };
    for i in 0..20i64 {
        now += 1_000;
        app.update(
            Action::Groups(vec![
                listing("analytics", "stable", 2, 4_000 - 200 * i),
                listing("billing", "reconciling", 3, 120 + 10 * i),
                listing("old-batch", "empty", 0, 52_000),
                kafka("orders-rdkafka", "PreparingRebalance", 3, 900 - 20 * i),
            ]),
            now,
        );
    }
    app.update(
        Action::Events(vec![ClusterEvent {
            id: 9,
            at_ms: T0 + 40_000,
            kind: "rebalance".into(),
            subject: "analytics".into(),
            detail: "generation 7: c-2 left; members [c-0, c-1]".into(),
        }]),
        now,
    );
    let tp = |p| TopicPartition::new("demo", p);
    let member = |id: &str, owned: Vec<TopicPartition>| GroupMemberDescription {
        member_id: id.into(),
        client_id: "reader".into(),
        host: "127.0.0.1".into(),
        topics: vec!["demo".into()],
        target: owned.clone(),
        owned,
        generation: 7,
        last_heartbeat_ms: T0 + 30_000,
    };
    let detail = GroupDescription {
        group_id: "analytics".into(),
        state: "stable".into(),
        generation: 7,
        assignor: "round-robin".into(),
        kafka: false,
        members: vec![
            member("c-0-00000000000000a1", vec![tp(0), tp(2), tp(4)]),
            member("c-1-00000000000000b2", vec![tp(1), tp(3), tp(5)]),
        ],
        partitions: (0..6)
            .map(|p| GroupPartitionDescription {
                tp: tp(p),
                owner: Some(
                    if p % 2 == 0 {
                        "c-0-00000000000000a1"
                    } else {
                        "c-1-00000000000000b2"
                    }
                    .into(),
                ),
                committed: Some(1_000 * p as i64),
                log_start_offset: 0,
                high_watermark: 1_000 * p as i64 + 120,
                lag: 120,
            })
            .collect(),
    };
    (app, now, detail)
}

#[test]
fn groups_list_and_drill_in() {
    use crate::action::Effect;
    let (mut app, mut now, detail) = group_fixture();
    insta::assert_snapshot!("groups_80x24", draw(&app, now, 80, 24).backend());
    assert_eq!(
        app.update(Action::Key(KeyEvent::from(KeyCode::Enter)), now),
        vec![Effect::WatchGroup(Some("analytics".into()))]
    );
    for i in 0..10 {
        now += 1_000;
        let mut d = detail.clone();
        for p in &mut d.partitions {
            p.lag = 400 - 40 * i;
        }
        app.update(Action::GroupDetail(Box::new(d)), now);
    }
    insta::assert_snapshot!("group_detail_80x24", draw(&app, now, 80, 24).backend());
    insta::assert_snapshot!("group_detail_120x40", draw(&app, now, 120, 40).backend());
    // Resetting a group with live members is refused before anything is asked.
    app.update(Action::Key(KeyEvent::from(KeyCode::Char('r'))), now);
    app.update(Action::Key(KeyEvent::from(KeyCode::Enter)), now);
    assert!(
        app.notice
            .as_ref()
            .is_some_and(|n| n.0.contains("live members"))
    );
    assert_eq!(
        app.update(Action::Key(KeyEvent::from(KeyCode::Esc)), now),
        vec![Effect::WatchGroup(None)]
    );
    assert!(app.group_view.is_none());
}

#[test]
fn resetting_an_empty_group_asks_first() {
    use crate::action::{Effect, StartAt};
    let (mut app, now, _) = group_fixture();
    app.update(Action::Key(KeyEvent::from(KeyCode::Char('j'))), now);
    app.update(Action::Key(KeyEvent::from(KeyCode::Char('j'))), now);
    assert_eq!(
        app.selected_group().map(|g| g.listing.group_id.as_str()),
        Some("old-batch")
    );
    app.update(Action::Key(KeyEvent::from(KeyCode::Char('r'))), now);
    insta::assert_snapshot!("group_reset_form_80x24", draw(&app, now, 80, 24).backend());
    assert!(
        app.update(Action::Key(KeyEvent::from(KeyCode::Enter)), now)
            .is_empty()
    );
    assert_eq!(
        app.update(Action::Key(KeyEvent::from(KeyCode::Char('y'))), now),
        vec![Effect::ResetOffsets {
            group: "old-batch".into(),
            topic: "demo".into(),
            to: StartAt::Beginning
        }]
    );
}

#[test]
fn events_filtered() {
    let (mut app, now) = on(Tab::Events);
    insta::assert_snapshot!("events_80x24", draw(&app, now, 80, 24).backend());
    app.events_filter = "lease".into();
    insta::assert_snapshot!("events_filtered_80x24", draw(&app, now, 80, 24).backend());
}

#[test]
fn produce_shows_the_ack_and_the_load() {
    let (mut app, now) = on(Tab::Produce);
    app.update(
        Action::Acked(Ok(Ack {
            topic: "demo".into(),
            partition: 4,
            offset: 1_234,
            latency_ms: 17,
        })),
        now,
    );
    for i in 0..40 {
        app.update(
            Action::Load(LoadReport {
                running: true,
                topic: "demo".into(),
                target_rate: 2_000,
                sent: 2_000 * i,
                acked: 1_990 * i,
                failed: 0,
                acked_rate: if i % 10 == 5 { 0.0 } else { 1_990.0 },
                last_error: None,
            }),
            now,
        );
    }
    insta::assert_snapshot!("produce_80x24", draw(&app, now, 80, 24).backend());
}

fn consume_fixture() -> (App, u64) {
    let (mut app, now) = on(Tab::Consume);
    app.consume.spec = Some(TailSpec {
        topic: "demo".into(),
        partition: None,
        from: StartAt::Beginning,
    });
    app.update(Action::TailStatus("from the beginning".into()), now);
    let records = (0..30)
        .map(|i| RecordView {
            partition: i % 3,
            offset: i as i64 / 3,
            timestamp: T0 + i as i64 * 250,
            key: Some(format!("user-{}", i % 7).into_bytes()),
            value: Some(format!("{{\"n\":{i},\"page\":\"/home\"}}").into_bytes()),
            headers: vec![("source".into(), Some(b"web".to_vec()))],
            damaged: None,
        })
        .collect();
    app.update(Action::Records(records), now);
    (app, now)
}

#[test]
fn consume_tails_and_filters() {
    let (mut app, now) = consume_fixture();
    insta::assert_snapshot!("consume_80x24", draw(&app, now, 80, 24).backend());
    app.consume.key_filter = "user-3".into();
    insta::assert_snapshot!("consume_filtered_80x24", draw(&app, now, 80, 24).backend());
}

#[test]
fn a_damaged_batch_is_a_row_not_a_stop() {
    let (mut app, now) = consume_fixture();
    app.update(
        Action::Records(vec![RecordView {
            partition: 1,
            offset: 10,
            timestamp: 0,
            key: None,
            value: None,
            headers: Vec::new(),
            damaged: Some("malformed record 0: key length; offsets 10 to 12 skipped".into()),
        }]),
        now,
    );
    let screen = draw(&app, now, 80, 24).backend().to_string();
    assert!(screen.contains("DAMAGED"), "{screen}");
    assert!(screen.contains("malformed record 0"), "{screen}");
    app.update(Action::Key(KeyEvent::from(KeyCode::Enter)), now);
    let detail = draw(&app, now, 80, 24).backend().to_string();
    assert!(detail.contains("damaged batch"), "{detail}");
    assert!(detail.contains("offsets 10 to 12 skipped"), "{detail}");
    assert!(
        !detail.contains("timestamp") && !detail.contains("(none)"),
        "{detail}"
    );
}

#[test]
fn record_view_in_text_and_hex() {
    let (mut app, now) = consume_fixture();
    app.update(Action::Key(KeyEvent::from(KeyCode::Enter)), now);
    insta::assert_snapshot!("record_80x24", draw(&app, now, 80, 24).backend());
    app.update(Action::Key(KeyEvent::from(KeyCode::Char('h'))), now);
    insta::assert_snapshot!("record_hex_80x24", draw(&app, now, 80, 24).backend());
}

#[test]
fn help_confirm_and_palette() {
    let (mut app, now) = on(Tab::Overview);
    app.update(Action::Key(KeyEvent::from(KeyCode::Char('?'))), now);
    insta::assert_snapshot!("help_overview_80x24", draw(&app, now, 80, 24).backend());
    app.update(Action::Key(KeyEvent::from(KeyCode::Esc)), now);
    app.update(Action::Key(KeyEvent::from(KeyCode::Char('x'))), now);
    insta::assert_snapshot!("confirm_kill_80x24", draw(&app, now, 80, 24).backend());
    app.update(Action::Key(KeyEvent::from(KeyCode::Esc)), now);
    for c in ":create orders".chars() {
        app.update(Action::Key(KeyEvent::from(KeyCode::Char(c))), now);
    }
    app.update(Action::Key(KeyEvent::from(KeyCode::Enter)), now);
    insta::assert_snapshot!("palette_error_80x24", draw(&app, now, 80, 24).backend());
}

#[test]
fn stale_data_shows_its_age() {
    let (mut app, now) = on(Tab::Overview);
    app.update(
        Action::PollFailed("127.0.0.1:40100: timed out".into()),
        now + 8_000,
    );
    insta::assert_snapshot!(
        "overview_stale_80x24",
        draw(&app, now + 8_000, 80, 24).backend()
    );
}

#[test]
fn overview_with_the_demo_result() {
    let (mut app, now) = on(Tab::Overview);
    app.update(
        Action::Caption("done: longest gap without acknowledgements 3061 ms".into()),
        now,
    );
    app.update(
        Action::DemoResult(vec![
            "kill -9 of agent-1 (leader of partitions [1, 4])".into(),
            "new leaders after 3012 ms".into(),
            "partition 1: 3061 ms without acknowledgements".into(),
            "partition 4: 3040 ms without acknowledgements".into(),
            "records lost: 0 of 48242 acknowledged (48242 stored)".into(),
        ]),
        now,
    );
    insta::assert_snapshot!("overview_demo_120x40", draw(&app, now, 120, 40).backend());
}
