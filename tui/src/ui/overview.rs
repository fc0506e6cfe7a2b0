//! 1 Overview: the agents (state, leases, rates, buffered bytes) and the cluster's throughput
//! charts; keys to kill, stop, restart and start agents.

use crossterm::event::KeyCode;

use super::*;
use crate::action::Effect;
use crate::app::Command;

/// The Overview's keys: `x` kills (`kill -9`), `s` stops and `r` restarts the selected agent
/// (each asks first where it should); `n` starts one more. `None`: not one of them.
pub(crate) fn key(app: &mut App, code: KeyCode, now: u64) -> Option<Vec<Effect>> {
    let agent = app.selected_agent().map(|a| a.id.clone());
    let cmd = match code {
        KeyCode::Char('x') => Command::Kill(agent?),
        KeyCode::Char('s') => Command::Stop(agent?),
        KeyCode::Char('r') => Command::Restart(agent?),
        KeyCode::Char('n') => Command::Start,
        _ => return None,
    };
    Some(app.run(cmd, now))
}

pub(super) fn draw(f: &mut Frame<'_>, app: &App, now: u64, area: Rect) {
    // The agents table takes what its rows need (up to half); the charts get the rest.
    let table_h = (app.agents.len() as u16 + 3).clamp(5, area.height / 2);
    let result_h = if app.demo_result.is_empty() {
        0
    } else {
        app.demo_result.len() as u16 + 2
    };
    // What a Kafka client's `bootstrap.servers` should be: every live agent's Kafka address.
    let kafka: Vec<&str> = app
        .agent_rows()
        .into_iter()
        .filter(|a| a.state() == "up")
        .filter_map(|a| a.kafka_address.as_deref())
        .collect();
    let totals_h = if kafka.is_empty() { 1 } else { 2 };
    let [charts, agents_area, result, totals] = Layout::vertical([
        Constraint::Min(6),
        Constraint::Length(table_h),
        Constraint::Length(result_h),
        Constraint::Length(totals_h),
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
    // Each agent's Kafka address in a column of its own once there is room for it (the
    // line under the table lists them all at any width).
    let kafka_col = area.width >= 116;
    if kafka_col {
        header.push("kafka");
    }
    if wide {
        header.extend(["in MB/s", "out MB/s"]);
    }
    header.push("heartbeat");
    let dt = since_data(app, now);
    let rows: Vec<Row<'_>> = app
        .agent_rows()
        .into_iter()
        .map(|a| agent_row(app, a, dt, kafka_col, wide))
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
    if kafka_col {
        widths.push(Constraint::Length(15));
    }
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
    let mut lines = vec![Line::from(spans)];
    if !kafka.is_empty() {
        lines.push(Line::from(vec![
            Span::raw(" Kafka "),
            Span::styled(
                format!("bootstrap.servers={}", kafka.join(",")),
                Style::new().fg(Color::Cyan),
            ),
        ]));
    }
    f.render_widget(Paragraph::new(lines), totals);
}

pub(super) fn agent_row<'a>(
    app: &App,
    a: &'a AgentRow,
    dt: i64,
    kafka_col: bool,
    wide: bool,
) -> Row<'a> {
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
    if kafka_col {
        cells.push(Cell::from(a.kafka_address.as_deref().unwrap_or("-")));
    }
    if wide {
        cells.push(Cell::from(format!("{:.2}", a.in_bytes / 1e6)));
        cells.push(Cell::from(format!("{:.2}", a.out_bytes / 1e6)));
    }
    cells.push(Cell::from(heartbeat));
    Row::new(cells)
}
