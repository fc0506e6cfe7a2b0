//! Drawing: every screen is a function of the [`App`] and the console time `now`, so the
//! same state always draws the same frame.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Cell, Chart, Clear, Dataset, GraphType, Paragraph, Row, Sparkline, Table,
    TableState, Wrap,
};

use crate::action::{Phase, RecordView};
use crate::app::{AgentRow, App, COMMANDS, Conn, MOVED_HIGHLIGHT_MS, Mode, Tab, keys_for};
use crate::series::{Ring, age, si, sparkline};

const CHART_WINDOW_MS: u64 = 300_000;
const ACCENT: Color = Color::Cyan;
const IN: Color = Color::Green;
const OUT: Color = Color::Magenta;

pub fn draw(f: &mut Frame<'_>, app: &App, now: u64) {
    let caption = app.caption.is_some() as u16;
    let [tabs, cap, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(caption),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(f.area());
    draw_tabs(f, app, tabs);
    if let Some(c) = &app.caption {
        f.render_widget(
            Paragraph::new(Line::from(vec![" ▶ ".bold(), Span::raw(c.as_str())]))
                .style(Style::new().fg(Color::Black).bg(Color::Yellow)),
            cap,
        );
    }
    match app.tab {
        Tab::Overview => overview(f, app, now, body),
        Tab::Partitions => partitions(f, app, now, body),
        Tab::Groups => groups(f, app, now, body),
        Tab::Events => events(f, app, body),
        Tab::Produce => produce(f, app, body),
        Tab::Consume => consume(f, app, body),
    }
    draw_status(f, app, now, status);
    match &app.mode {
        Mode::Normal | Mode::Filter { .. } | Mode::Palette { .. } => {}
        Mode::Help => help(f, app),
        Mode::Confirm { prompt, .. } => confirm(f, prompt),
        Mode::Form(form) => {
            let area = centered(f.area(), 64, form.fields.len() as u16 * 2 + 4);
            f.render_widget(Clear, area);
            let mut lines = Vec::new();
            for (i, (label, value)) in form.fields.iter().enumerate() {
                lines.push(Line::from(Span::raw(*label).dim()));
                let cursor = if i == form.focus { "█" } else { "" };
                let style = if i == form.focus {
                    Style::new().fg(ACCENT).bold()
                } else {
                    Style::new()
                };
                lines.push(Line::from(vec![
                    Span::styled(format!("> {value}"), style),
                    Span::raw(cursor),
                ]));
            }
            let foot = match &form.error {
                Some(e) => Line::from(e.as_str().red()),
                None => Line::from("enter: ok   tab: next field   esc: cancel".dim()),
            };
            lines.push(foot);
            f.render_widget(
                Paragraph::new(lines).block(Block::bordered().title(form.title()).fg(ACCENT)),
                area,
            );
        }
        Mode::Record { record: r, hex } => record(f, r, *hex),
    }
}

fn draw_tabs(f: &mut Frame<'_>, app: &App, area: Rect) {
    let mut spans = vec![
        " StreamHouse ".bold().fg(Color::Black).bg(ACCENT),
        " ".into(),
    ];
    for (i, t) in Tab::ALL.iter().enumerate() {
        let label = format!("{} {}", i + 1, t.title());
        spans.push(" ".into());
        spans.push(if *t == app.tab {
            Span::styled(label, Style::new().fg(Color::Black).bg(Color::White).bold())
        } else {
            Span::raw(label)
        });
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_status(f: &mut Frame<'_>, app: &App, now: u64, area: Rect) {
    let (conn, color) = match &app.conn {
        Conn::Connecting => ("connecting".to_string(), Color::Yellow),
        Conn::Connected => ("connected".to_string(), Color::Green),
        Conn::Lost(e) => (format!("unreachable: {e}"), Color::Red),
    };
    let data = match app.data_at {
        Some(at) => {
            let a = now.saturating_sub(at);
            let s = format!("data {}s old", a / 1000);
            if a > 3_000 { s.red() } else { s.into() }
        }
        None => "no data yet".yellow(),
    };
    let mut spans = vec![
        Span::raw(format!(" {} ", app.label)).bold(),
        "│ ".dim(),
        Span::styled(conn, Style::new().fg(color)),
        " │ ".dim(),
        data,
    ];
    if app.read_only {
        spans.push(" │ ".dim());
        spans.push("read-only".yellow());
    }
    match &app.mode {
        Mode::Palette { input, error } => {
            spans = vec![":".bold(), Span::raw(input.clone()), "█".into()];
            if let Some(e) = error {
                spans.push("  ".into());
                spans.push(e.as_str().red());
            }
        }
        Mode::Filter { input } => {
            spans = vec!["/".bold(), Span::raw(input.clone()), "█".into()];
            spans.push("  enter: keep  esc: clear".dim());
        }
        _ => {
            spans.push(" │ ? help".dim());
            if let Some((n, _)) = &app.notice {
                spans.push(" │ ".dim());
                spans.push(Span::raw(n.clone()).fg(Color::Yellow));
            }
        }
    }
    f.render_widget(
        Paragraph::new(Line::from(spans)).style(Style::new().bg(Color::Rgb(30, 30, 30))),
        area,
    );
}

/// Time since the snapshot, to age the store's times to "now".
fn since_data(app: &App, now: u64) -> i64 {
    app.data_at.map_or(0, |at| now.saturating_sub(at) as i64)
}

fn overview(f: &mut Frame<'_>, app: &App, now: u64, area: Rect) {
    // The agents table takes what its rows need (up to half); the charts get the rest.
    let table_h = (app.agents.len() as u16 + 3).clamp(5, area.height / 2);
    let result_h = if app.demo_result.is_empty() {
        0
    } else {
        app.demo_result.len() as u16 + 2
    };
    let [charts, agents_area, result, totals] = Layout::vertical([
        Constraint::Min(6),
        Constraint::Length(table_h),
        Constraint::Length(result_h),
        Constraint::Length(1),
    ])
    .areas(area);
    if result_h > 0 {
        let lines: Vec<Line<'_>> = app
            .demo_result
            .iter()
            .map(|l| Line::from(l.as_str()))
            .collect();
        f.render_widget(
            Paragraph::new(lines).block(
                Block::bordered()
                    .title(" Failover demo: measured ")
                    .fg(Color::Yellow),
            ),
            result,
        );
    }
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(charts);
    let t = &app.throughput;
    let title = |what: &'static str, a: String, b: String| {
        Line::from(vec![
            Span::raw(format!(" {what}  ")),
            Span::styled(format!("in {a}"), Style::new().fg(IN)),
            Span::raw("  "),
            Span::styled(format!("out {b} "), Style::new().fg(OUT)),
        ])
    };
    let records = title(
        "records/s",
        si(t.in_records.last().unwrap_or(0.0)),
        si(t.out_records.last().unwrap_or(0.0)),
    );
    let bytes = title(
        "MB/s",
        format!("{:.1}", t.in_bytes.last().unwrap_or(0.0) / 1e6),
        format!("{:.1}", t.out_bytes.last().unwrap_or(0.0) / 1e6),
    );
    chart(f, left, records, &t.in_records, &t.out_records, 1.0, now);
    chart(f, right, bytes, &t.in_bytes, &t.out_bytes, 1e6, now);

    let wide = area.width >= 110;
    let mut header = vec![
        "agent",
        "address",
        "state",
        "uptime",
        "leads",
        "in rec/s",
        "out rec/s",
    ];
    if wide {
        header.extend(["in MB/s", "out MB/s"]);
    }
    header.push("heartbeat");
    let dt = since_data(app, now);
    let rows: Vec<Row<'_>> = app
        .agent_rows()
        .into_iter()
        .map(|a| agent_row(app, a, dt, wide))
        .collect();
    let mut widths = vec![
        Constraint::Length(9),
        Constraint::Min(15),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(5),
        Constraint::Length(9),
        Constraint::Length(9),
    ];
    if wide {
        widths.extend([Constraint::Length(8), Constraint::Length(8)]);
    }
    widths.push(Constraint::Length(9));
    let actions = if app.read_only {
        " Agents ".to_string()
    } else if app.launched {
        " Agents  x kill -9 · s stop · r restart · n new ".to_string()
    } else {
        " Agents (attached: not launched here) ".to_string()
    };
    let table_w = table(rows, widths, &header, actions);
    let mut state = TableState::default().with_selected(Some(app.selected[0]));
    f.render_stateful_widget(table_w, agents_area, &mut state);

    let live = app.agents.values().filter(|a| a.state() == "up").count();
    let topics = {
        let mut names: Vec<&str> = app.partitions.iter().map(|p| p.topic.as_str()).collect();
        names.dedup();
        names.len()
    };
    let stored: i64 = app
        .partitions
        .iter()
        .map(|p| p.high_watermark - p.log_start)
        .sum();
    let leaderless = app.partitions.iter().filter(|p| p.leader.is_none()).count();
    let mut spans = vec![Span::raw(format!(
        " agents {live}/{} up · topics {topics} · partitions {} · records {} · lease TTL {}",
        app.agents.len(),
        app.partitions.len(),
        si(stored as f64),
        age(app.lease_ttl_ms)
    ))];
    if leaderless > 0 {
        spans.push(format!(" · {leaderless} without leader").red().bold());
    }
    for a in app.agents.values() {
        if let Some(Phase::Failed(why)) = &a.phase {
            spans.push(format!(" · {}: {why}", a.id).red());
        }
    }
    f.render_widget(Paragraph::new(Line::from(spans)), totals);
}

fn agent_row<'a>(app: &App, a: &'a AgentRow, dt: i64, wide: bool) -> Row<'a> {
    let state = a.state();
    let color = match state {
        "up" => Color::Green,
        "down" | "failed" => Color::Red,
        _ => Color::Yellow,
    };
    let registered = a.registered;
    let uptime = if registered && state == "up" {
        age((app.store_now_ms - a.started_at_ms + dt).max(0) as u64)
    } else {
        "-".into()
    };
    let heartbeat = if registered {
        age((app.store_now_ms - a.heartbeat_ms + dt).max(0) as u64)
    } else {
        "-".into()
    };
    let mut cells = vec![
        Cell::from(a.id.as_str()),
        Cell::from(a.address.as_str()),
        Cell::from(state).style(Style::new().fg(color).bold()),
        Cell::from(uptime),
        Cell::from(if state == "up" {
            a.partitions_led.to_string()
        } else {
            "-".into()
        }),
        Cell::from(si(a.in_records)),
        Cell::from(si(a.out_records)),
    ];
    if wide {
        cells.push(Cell::from(format!("{:.2}", a.in_bytes / 1e6)));
        cells.push(Cell::from(format!("{:.2}", a.out_bytes / 1e6)));
    }
    cells.push(Cell::from(heartbeat));
    Row::new(cells)
}

fn chart(f: &mut Frame<'_>, area: Rect, title: Line<'_>, a: &Ring, b: &Ring, unit: f64, now: u64) {
    let scale = |r: &Ring| -> Vec<(f64, f64)> {
        r.points(now, CHART_WINDOW_MS)
            .into_iter()
            .map(|(x, y)| (x, y / unit))
            .collect()
    };
    let (pa, pb) = (scale(a), scale(b));
    let max = (a.max().max(b.max()) / unit * 1.1).max(if unit > 1.0 { 0.1 } else { 10.0 });
    let label = |v: f64| {
        if unit > 1.0 { format!("{v:.1}") } else { si(v) }
    };
    let datasets = vec![
        Dataset::default()
            .name("in")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(IN))
            .data(&pa),
        Dataset::default()
            .name("out")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(OUT))
            .data(&pb),
    ];
    let w = Chart::new(datasets)
        .block(Block::bordered().title(title))
        .legend_position(None)
        .x_axis(
            Axis::default()
                .bounds([-(CHART_WINDOW_MS as f64) / 1000.0, 0.0])
                .labels(["-5m", "-2.5m", "now"])
                .style(Style::new().dim()),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, max])
                .labels([label(0.0), label(max)])
                .style(Style::new().dim()),
        );
    f.render_widget(w, area);
}

/// A topic's retention as the console shows it: `retention 7d, 10GiB per partition`.
pub fn retention_text(ms: i64, bytes: i64) -> String {
    let time = if ms <= 0 {
        "forever".to_string()
    } else {
        let units = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1_000, "s"),
        ];
        units
            .iter()
            .find(|(u, _)| ms % u == 0)
            .map_or_else(|| format!("{ms}ms"), |(u, n)| format!("{}{n}", ms / u))
    };
    if bytes <= 0 {
        format!("retention {time}")
    } else {
        let units = [
            (1i64 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ];
        let size = units
            .iter()
            .find(|(u, _)| bytes % u == 0)
            .map_or_else(|| format!("{bytes}B"), |(u, n)| format!("{}{n}", bytes / u));
        format!("retention {time}, {size} per partition")
    }
}

fn partitions(f: &mut Frame<'_>, app: &App, now: u64, area: Rect) {
    let dt = since_data(app, now);
    let topic_w = app
        .partitions
        .iter()
        .map(|p| p.topic.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 32) as u16;
    let spark_w = (area.width as usize)
        .saturating_sub(topic_w as usize + 64)
        .clamp(8, 60);
    let rows: Vec<Row<'_>> = app
        .visible_partitions()
        .into_iter()
        .map(|p| {
            let moved = p
                .moved_at
                .is_some_and(|at| now.saturating_sub(at) < MOVED_HIGHLIGHT_MS);
            let left = p.lease_left_ms - dt;
            let lease = match &p.leader {
                None => "-".to_string(),
                Some(_) if left <= 0 => "expired".to_string(),
                Some(_) => format!("{:.1}s", left as f64 / 1000.0),
            };
            let leader = match (&p.leader, moved) {
                (Some(l), true) => format!("{l} ←"),
                (Some(l), false) => l.clone(),
                (None, _) => "none".to_string(),
            };
            let values: Vec<f64> = p.rate.tail(spark_w).collect();
            let style = if moved {
                Style::new().fg(Color::Black).bg(Color::Yellow)
            } else if p.leader.is_none() {
                Style::new().fg(Color::Red)
            } else {
                Style::new()
            };
            Row::new(vec![
                Cell::from(p.topic.as_str()),
                Cell::from(p.partition.to_string()),
                Cell::from(leader),
                Cell::from(p.epoch.to_string()),
                Cell::from(lease),
                Cell::from(p.log_start.to_string()),
                Cell::from(p.high_watermark.to_string()),
                Cell::from(si(p.rate.last().unwrap_or(0.0))),
                Cell::from(sparkline(&values, spark_w)).style(Style::new().fg(Color::Green)),
            ])
            .style(style)
        })
        .collect();
    let selected_topic = app
        .visible_partitions()
        .get(app.selected[1])
        .and_then(|p| Some((p.topic.clone(), *app.topic_configs.get(&p.topic)?)));
    let retention = selected_topic
        .map(|(t, (ms, bytes))| format!("{t}: {} · ", retention_text(ms, bytes)))
        .unwrap_or_default();
    let title = if app.partitions_filter.is_empty() {
        format!(" Partitions  {retention}c create · a alter · d delete · / filter ")
    } else {
        format!(
            " Partitions matching {:?}  {retention}",
            app.partitions_filter
        )
    };
    let t = table(
        rows,
        vec![
            Constraint::Length(topic_w),
            Constraint::Length(4),
            Constraint::Length(12),
            Constraint::Length(5),
            Constraint::Length(7),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(6),
            Constraint::Length(spark_w as u16),
        ],
        &[
            "topic",
            "part",
            "leader",
            "epoch",
            "lease",
            "log start",
            "high wm",
            "rec/s",
            "trend",
        ],
        title,
    );
    let mut state = TableState::default().with_selected(Some(app.selected[1]));
    f.render_stateful_widget(t, area, &mut state);
}

fn groups(f: &mut Frame<'_>, app: &App, now: u64, area: Rect) {
    if let Some(v) = &app.group_view {
        return group_detail(f, app, v, now, area);
    }
    let rebalances: Vec<&streamhouse_client::ClusterEvent> = app
        .events
        .iter()
        .rev()
        .filter(|e| e.kind == "rebalance")
        .take(6)
        .collect();
    let [list, recent] = Layout::vertical([
        Constraint::Min(4),
        Constraint::Length(rebalances.len() as u16 + 2),
    ])
    .areas(area);
    if app.groups.is_empty() {
        let text = if app.groups_seen {
            "No consumer groups yet. Consumers that subscribe with a group id appear here, \
             with their members, generation and lag."
        } else {
            "Waiting for the first poll of the cluster's groups."
        };
        f.render_widget(
            Paragraph::new(text)
                .wrap(Wrap { trim: true })
                .block(Block::bordered().title(" Groups ")),
            list,
        );
    } else {
        let spark_w = (area.width as usize).saturating_sub(76).clamp(8, 60);
        let rows: Vec<Row<'_>> = app
            .groups
            .values()
            .map(|g| {
                let l = &g.listing;
                let color = match l.state.as_str() {
                    "stable" => Color::Green,
                    "reconciling" => Color::Yellow,
                    _ => Color::DarkGray,
                };
                let trend: Vec<f64> = g.lag.tail(spark_w).collect();
                Row::new(vec![
                    Cell::from(l.group_id.as_str()),
                    Cell::from(l.state.as_str()).style(Style::new().fg(color)),
                    Cell::from(l.members.to_string()),
                    Cell::from(l.generation.to_string()),
                    Cell::from(l.assignor.as_str()),
                    Cell::from(si(l.total_lag as f64)),
                    Cell::from(sparkline(&trend, spark_w)).style(Style::new().fg(Color::Magenta)),
                ])
            })
            .collect();
        let t = table(
            rows,
            vec![
                Constraint::Min(12),
                Constraint::Length(11),
                Constraint::Length(7),
                Constraint::Length(5),
                Constraint::Length(11),
                Constraint::Length(7),
                Constraint::Length(spark_w as u16),
            ],
            &[
                "group", "state", "members", "gen", "assignor", "lag", "trend",
            ],
            " Groups  enter open · r reset offsets ",
        );
        let mut state = TableState::default().with_selected(Some(app.group_selected));
        f.render_stateful_widget(t, list, &mut state);
    }
    rebalance_list(f, &rebalances, recent);
}

fn rebalance_list(f: &mut Frame<'_>, events: &[&streamhouse_client::ClusterEvent], area: Rect) {
    let lines: Vec<Line<'_>> = events
        .iter()
        .map(|e| {
            Line::from(vec![
                Span::raw(format!("{} ", clock(e.at_ms))).dim(),
                Span::raw(format!("{} ", e.subject)).bold(),
                Span::raw(e.detail.as_str()),
            ])
        })
        .collect();
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Recent rebalances ")),
        area,
    );
}

fn group_detail(f: &mut Frame<'_>, app: &App, v: &crate::app::GroupView, now: u64, area: Rect) {
    let Some(d) = &v.detail else {
        f.render_widget(
            Paragraph::new(format!("Loading {}...", v.group_id))
                .block(Block::bordered().title(format!(" Group {} ", v.group_id))),
            area,
        );
        return;
    };
    let rebalances: Vec<&streamhouse_client::ClusterEvent> = app
        .events
        .iter()
        .rev()
        .filter(|e| e.kind == "rebalance" && e.subject == d.group_id)
        .take(4)
        .collect();
    let [head, members, parts, recent] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length((d.members.len() as u16 + 3).min(area.height / 3).max(4)),
        Constraint::Min(4),
        Constraint::Length(rebalances.len() as u16 + 2),
    ])
    .areas(area);
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::raw(format!(" {} ", d.group_id)).bold(),
            Span::raw(format!(
                "· {} · gen {} · {} · {} members · esc back · r reset",
                d.state,
                d.generation,
                if d.assignor.is_empty() {
                    "-"
                } else {
                    d.assignor.as_str()
                },
                d.members.len()
            )),
        ])),
        head,
    );
    let dt = since_data(app, now);
    let wide = area.width >= 110;
    let member_rows: Vec<Row<'_>> = d
        .members
        .iter()
        .map(|m| {
            let owned: Vec<String> = m.owned.iter().map(|tp| tp.to_string()).collect();
            let moving =
                m.owned.len() != m.target.len() || m.owned.iter().any(|tp| !m.target.contains(tp));
            let mut cells = vec![Cell::from(m.member_id.as_str())];
            if wide {
                cells.push(Cell::from(m.client_id.as_str()));
                cells.push(Cell::from(m.host.as_str()));
            }
            cells.extend([
                Cell::from(m.generation.to_string()),
                Cell::from(age(
                    (app.store_now_ms - m.last_heartbeat_ms + dt).max(0) as u64
                )),
                Cell::from(format!(
                    "{}{}",
                    owned.join(" "),
                    if moving { "  (moving)" } else { "" }
                )),
            ]);
            Row::new(cells)
        })
        .collect();
    // Narrow screens keep the member, its generation, heartbeat and partitions.
    let (widths, header) = if wide {
        (
            vec![
                Constraint::Length(30),
                Constraint::Length(14),
                Constraint::Length(15),
                Constraint::Length(4),
                Constraint::Length(9),
                Constraint::Min(10),
            ],
            vec!["member", "client", "host", "gen", "heartbeat", "owns"],
        )
    } else {
        (
            vec![
                Constraint::Length(26),
                Constraint::Length(4),
                Constraint::Length(9),
                Constraint::Min(10),
            ],
            vec!["member", "gen", "heartbeat", "owns"],
        )
    };
    f.render_widget(table(member_rows, widths, &header, " Members "), members);
    let spark_w = (area.width as usize).saturating_sub(80).clamp(8, 60);
    let part_rows: Vec<Row<'_>> = d
        .partitions
        .iter()
        .map(|p| {
            let trend: Vec<f64> = v
                .lag
                .get(&(p.tp.topic.clone(), p.tp.partition))
                .map(|r| r.tail(spark_w).collect())
                .unwrap_or_default();
            Row::new(vec![
                Cell::from(p.tp.topic.as_str()),
                Cell::from(p.tp.partition.to_string()),
                Cell::from(p.owner.as_deref().unwrap_or("-")),
                Cell::from(p.committed.map_or("-".into(), |c| c.to_string())),
                Cell::from(p.high_watermark.to_string()),
                Cell::from(si(p.lag as f64)),
                Cell::from(sparkline(&trend, spark_w)).style(Style::new().fg(Color::Magenta)),
            ])
        })
        .collect();
    f.render_widget(
        table(
            part_rows,
            vec![
                Constraint::Min(8),
                Constraint::Length(4),
                Constraint::Length(30),
                Constraint::Length(10),
                Constraint::Length(10),
                Constraint::Length(6),
                Constraint::Length(spark_w as u16),
            ],
            &[
                "topic",
                "part",
                "owner",
                "committed",
                "high wm",
                "lag",
                "trend",
            ],
            " Partitions ",
        ),
        parts,
    );
    rebalance_list(f, &rebalances, recent);
}

/// `HH:MM:SS` (UTC) of an epoch-ms time.
pub fn clock(ms: i64) -> String {
    let s = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

fn events(f: &mut Frame<'_>, app: &App, area: Rect) {
    let visible = app.visible_events();
    let rows: Vec<Row<'_>> = visible
        .iter()
        .map(|e| {
            let color = match e.kind.as_str() {
                "agent_lost" | "lease_taken" | "topic_deleted" => Color::Red,
                "agent_joined" | "topic_created" => Color::Green,
                "lease_acquired" | "lease_released" | "agent_left" => Color::Yellow,
                _ => Color::White,
            };
            Row::new(vec![
                Cell::from(clock(e.at_ms)),
                Cell::from(e.kind.as_str()).style(Style::new().fg(color)),
                Cell::from(e.subject.as_str()),
                Cell::from(e.detail.as_str()),
            ])
        })
        .collect();
    let title = if app.events_filter.is_empty() {
        format!(" Events ({}, newest first)  / filter ", visible.len())
    } else {
        format!(
            " Events matching {:?} ({} of {}) ",
            app.events_filter,
            visible.len(),
            app.events.len()
        )
    };
    let t = table(
        rows,
        vec![
            Constraint::Length(8),
            Constraint::Length(14),
            Constraint::Length(18),
            Constraint::Min(10),
        ],
        &["time UTC", "kind", "subject", "detail"],
        title,
    );
    let mut state = TableState::default().with_selected(Some(app.selected[2]));
    f.render_stateful_widget(t, area, &mut state);
}

fn produce(f: &mut Frame<'_>, app: &App, area: Rect) {
    let [one, load] = Layout::vertical([Constraint::Length(6), Constraint::Min(6)]).areas(area);
    let p = &app.produce;
    let mut lines = vec![];
    match (&p.waiting, &p.last_ack) {
        (Some(w), _) => lines.push(Line::from(w.as_str().yellow())),
        (None, Some(Ok(a))) => lines.push(Line::from(vec![
            "acknowledged ".green().bold(),
            Span::raw(format!(
                "topic {}  partition {}  offset {}  in {} ms",
                a.topic, a.partition, a.offset, a.latency_ms
            )),
        ])),
        (None, Some(Err(e))) => lines.push(Line::from(vec![
            "failed ".red().bold(),
            Span::raw(e.clone()),
        ])),
        (None, None) => lines.push(Line::from("nothing sent yet".dim())),
    }
    lines.push(Line::from(""));
    lines.push(Line::from(
        "p: send one record (topic, key, value) and wait for the agent's acknowledgement".dim(),
    ));
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Send one record ")),
        one,
    );

    let l = &p.load;
    let [text, spark] = Layout::vertical([Constraint::Length(5), Constraint::Min(1)])
        .areas(Block::bordered().inner(load));
    f.render_widget(
        Block::bordered().title(" Load generator  l start · x stop "),
        load,
    );
    let status = if l.running {
        "running".green().bold()
    } else if l.sent > 0 {
        "stopped".yellow().bold()
    } else {
        "not started".dim()
    };
    let mut lines = vec![
        Line::from(vec![
            status,
            Span::raw(if l.topic.is_empty() {
                String::new()
            } else {
                format!(
                    "  topic {}  target {} records/s",
                    l.topic,
                    si(l.target_rate as f64)
                )
            }),
        ]),
        Line::from(format!(
            "sent {}  acknowledged {}  failed {}",
            l.sent, l.acked, l.failed
        )),
        Line::from(vec![
            "acked rate ".into(),
            Span::raw(format!("{} records/s", si(l.acked_rate))).bold(),
        ]),
    ];
    if let Some(e) = &l.last_error {
        lines.push(Line::from(format!("last error: {e}").red()));
    }
    f.render_widget(Paragraph::new(lines), text);
    let w = spark.width as usize;
    let shown: Vec<u64> = p.load_history[p.load_history.len().saturating_sub(w)..]
        .iter()
        .map(|v| *v as u64)
        .collect();
    f.render_widget(
        Sparkline::default()
            .data(&shown)
            .max(shown.iter().copied().max().unwrap_or(0).max(l.target_rate))
            .style(Style::new().fg(Color::Green)),
        spark,
    );
}

fn printable(bytes: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(bytes);
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { '·' } else { c })
        .take(max)
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

fn consume(f: &mut Frame<'_>, app: &App, area: Rect) {
    let c = &app.consume;
    let [head, list] = Layout::vertical([Constraint::Length(2), Constraint::Min(3)]).areas(area);
    let what = match &c.spec {
        None => Line::from("t: tail a topic (all partitions or one; from the beginning, the end, an offset or a time)".dim()),
        Some(s) => Line::from(vec![
            "tailing ".bold(),
            Span::raw(format!(
                "{} {} ",
                s.topic,
                s.partition.map_or("all partitions".to_string(), |p| format!("partition {p}"))
            )),
            Span::raw(c.status.clone()).dim(),
        ]),
    };
    let mut second = vec![Span::raw(format!("{} received", c.received))];
    if c.paused {
        second.push("  PAUSED (space resumes)".yellow().bold());
    }
    if !c.key_filter.is_empty() {
        second.push(format!("  keys containing {:?}", c.key_filter).yellow());
    }
    second.push("  s seek · enter open · / filter · c clear".dim());
    f.render_widget(Paragraph::new(vec![what, Line::from(second)]), head);

    let visible = c.visible();
    let rows_room = list.height.saturating_sub(3) as usize;
    let selected = c.selected.unwrap_or(visible.len().saturating_sub(1));
    let value_w = (list.width as usize).saturating_sub(45).max(10);
    let rows: Vec<Row<'_>> = visible
        .iter()
        .map(|r| {
            if let Some(why) = &r.damaged {
                return Row::new(vec![
                    Cell::from(r.partition.to_string()),
                    Cell::from(r.offset.to_string()),
                    Cell::from("-"),
                    Cell::from("DAMAGED".red().bold()),
                    Cell::from(why.chars().take(value_w).collect::<String>().red()),
                ]);
            }
            Row::new(vec![
                Cell::from(r.partition.to_string()),
                Cell::from(r.offset.to_string()),
                Cell::from(clock(r.timestamp)),
                Cell::from(r.key.as_deref().map_or("-".into(), |k| printable(k, 14))),
                Cell::from(
                    r.value
                        .as_deref()
                        .map_or("-".into(), |v| printable(v, value_w)),
                ),
            ])
        })
        .collect();
    let t = table(
        rows,
        vec![
            Constraint::Length(4),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Length(15),
            Constraint::Min(10),
        ],
        &["part", "offset", "time UTC", "key", "value"],
        " Records ",
    );
    let mut state = TableState::default().with_selected((!visible.is_empty()).then_some(selected));
    // Paused keeps the view where it is; otherwise it follows the selection (the newest).
    if c.paused || c.selected.is_some() {
        *state.offset_mut() = selected.saturating_sub(rows_room.saturating_sub(1));
    }
    f.render_stateful_widget(t, list, &mut state);
}

/// A hex dump, 16 bytes a line where `width` allows, else 8.
fn hex(bytes: &[u8], width: u16) -> Vec<Line<'static>> {
    let per = if width >= 76 { 16 } else { 8 };
    bytes
        .chunks(per)
        .enumerate()
        .map(|(i, chunk)| {
            let hexes: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            let text: String = chunk
                .iter()
                .map(|b| {
                    if b.is_ascii_graphic() || *b == b' ' {
                        *b as char
                    } else {
                        '.'
                    }
                })
                .collect();
            Line::from(format!(
                "{:06x}  {:<w$}  {text}",
                i * per,
                hexes.join(" "),
                w = per * 3 - 1
            ))
        })
        .collect()
}

fn record(f: &mut Frame<'_>, r: &RecordView, as_hex: bool) {
    let area = centered(
        f.area(),
        f.area().width.saturating_sub(8).max(40),
        f.area().height.saturating_sub(4),
    );
    f.render_widget(Clear, area);
    let block = Block::bordered().title(format!(
        " Record  h: {}  esc: back ",
        if as_hex { "text" } else { "hex" }
    ));
    if let Some(why) = &r.damaged {
        // Nothing of the batch decoded: no time, key or value to show.
        let lines = vec![
            Line::from(format!("partition {}  offset {}", r.partition, r.offset)),
            Line::from(""),
            Line::from("damaged batch".bold().red()),
            Line::from(why.clone()),
        ];
        f.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(block),
            area,
        );
        return;
    }
    let mut lines = vec![
        Line::from(format!(
            "partition {}  offset {}  timestamp {} ({} UTC)",
            r.partition,
            r.offset,
            r.timestamp,
            clock(r.timestamp)
        )),
        Line::from(""),
    ];
    let mut field = |name: &str, v: Option<&[u8]>| {
        lines.push(Line::from(name.to_string().bold().fg(ACCENT)));
        match v {
            None => lines.push(Line::from("(none)".dim())),
            Some(b) if as_hex => lines.extend(hex(b, area.width.saturating_sub(2))),
            Some(b) => lines.push(Line::from(String::from_utf8_lossy(b).into_owned())),
        }
    };
    field("key", r.key.as_deref());
    field("value", r.value.as_deref());
    lines.push(Line::from(
        format!("headers ({})", r.headers.len()).bold().fg(ACCENT),
    ));
    for (k, v) in &r.headers {
        let v = v
            .as_deref()
            .map_or("(null)".to_string(), |v| printable(v, 200));
        lines.push(Line::from(format!("{k}: {v}")));
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block),
        area,
    );
}

fn help(f: &mut Frame<'_>, app: &App) {
    let area = centered(f.area(), 76, f.area().height.saturating_sub(2));
    f.render_widget(Clear, area);
    let mut lines = vec![Line::from(format!("Keys on {}", app.tab.title()).bold())];
    for (k, what) in keys_for(app.tab) {
        lines.push(Line::from(vec![
            Span::styled(format!("{k:>22}  "), Style::new().fg(ACCENT).bold()),
            Span::raw(what),
        ]));
    }
    lines.push(Line::from(""));
    lines.push(Line::from("Commands (:)".bold()));
    for (c, what) in COMMANDS {
        lines.push(Line::from(vec![
            Span::styled(format!("{c:<31}"), Style::new().fg(ACCENT)),
            Span::raw(*what),
        ]));
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Help  esc: close ")),
        area,
    );
}

fn confirm(f: &mut Frame<'_>, prompt: &str) {
    let area = centered(f.area(), (prompt.len() as u16 + 6).max(40), 5);
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(vec![
            Line::from(prompt.to_string().bold()),
            Line::from(""),
            Line::from("y: yes   n/esc: no".dim()),
        ])
        .block(Block::bordered().title(" Confirm ").fg(Color::Red)),
        area,
    );
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let [v] = Layout::vertical([Constraint::Length(h.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [c] = Layout::horizontal([Constraint::Length(w.min(area.width))])
        .flex(Flex::Center)
        .areas(v);
    c
}

/// A table in the console's style: accented header, titled border, reversed selection.
fn table<'a>(
    rows: Vec<Row<'a>>,
    widths: Vec<Constraint>,
    header: &[&'a str],
    title: impl Into<Line<'a>>,
) -> Table<'a> {
    Table::new(rows, widths)
        .header(Row::new(header.to_vec()).style(Style::new().bold().fg(ACCENT)))
        .block(Block::bordered().title(title))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
}
