//! Updates of the console's state, key by key and action by action.

use super::*;
use crate::action::LoadSpec;
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
            kafka_address: None,
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
        // The worst an operator can type: past i64, negative, zero, no number.
        (
            "alter orders retention=99999999999999999999d",
            "retention \"99999999999999999999d\"",
        ),
        ("alter orders retention=-5s", "retention \"-5s\""),
        ("alter orders retention=0ms", "retention \"0ms\""),
        (
            "alter orders retention-bytes=99999999999EiB",
            "retention-bytes \"99999999999EiB\"",
        ),
        (
            "alter orders retention-bytes=-1KiB",
            "retention-bytes \"-1KiB\"",
        ),
        (
            "alter orders retention-bytes=GiB",
            "retention-bytes \"GiB\"",
        ),
        (
            "seek time -99999999999999999999d",
            "time \"-99999999999999999999d\"",
        ),
    ] {
        let e = parse_command(bad, &app).unwrap_err();
        assert!(e.contains(why) && !e.contains('\n'), "{bad}: {e}");
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
    assert_eq!(
        p("seek time -1h30m"),
        Ok(Command::Seek(StartAt::Ago(5_400_000)))
    );
    assert!(p("seek time -5 parsecs").is_err());
    assert!(p("seek time -5").is_err());
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
