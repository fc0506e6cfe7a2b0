//! 2 Partitions: every partition's leader, epoch, offsets and lease, moved leases highlighted;
//! keys to create, delete and alter topics.

use crossterm::event::KeyCode;

use super::*;
use crate::action::Effect;
use crate::app::{Command, FormKind};

/// The Partitions screen's keys: `c` creates a topic, `d` deletes the selected one (asks
/// first), `a` alters its retention. `None`: not one of them.
pub(crate) fn key(app: &mut App, code: KeyCode, now: u64) -> Option<Vec<Effect>> {
    match code {
        KeyCode::Char('c') => Some(app.open_form(FormKind::CreateTopic, now)),
        KeyCode::Char('a') => Some(app.open_form(FormKind::AlterTopic, now)),
        KeyCode::Char('d') => {
            let topic = app
                .visible_partitions()
                .get(app.selected[1])
                .map(|p| p.topic.clone())?;
            Some(app.run(Command::Delete(topic), now))
        }
        _ => None,
    }
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

pub(super) fn draw(f: &mut Frame<'_>, app: &App, now: u64, area: Rect) {
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
