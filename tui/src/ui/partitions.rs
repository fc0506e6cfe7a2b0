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

/// One line about the selected partition's topic: its partitions, how many each agent
/// leads and how many none does, its records/s and records stored, and its retention.
fn topic_summary(app: &App, topic: &str) -> Line<'static> {
    let mut partitions = 0usize;
    let mut unled = 0usize;
    let mut rate = 0.0;
    let mut stored = 0i64;
    let mut by_leader: std::collections::BTreeMap<&str, usize> = Default::default();
    for p in app.partitions.iter().filter(|p| p.topic == topic) {
        partitions += 1;
        rate += p.rate.last().unwrap_or(0.0);
        stored += p.high_watermark - p.log_start;
        match &p.leader {
            Some(l) => *by_leader.entry(l.as_str()).or_default() += 1,
            None => unled += 1,
        }
    }
    let leaders = by_leader
        .iter()
        .map(|(l, n)| format!("{l} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let retention = app
        .topic_configs
        .get(topic)
        .map(|(ms, bytes)| format!(" · {}", retention_text(*ms, *bytes)))
        .unwrap_or_default();
    // Most telling first: a narrow terminal cuts the end of the line.
    let mut spans = vec![
        Span::styled(format!(" {topic}"), Style::new().bold().fg(ACCENT)),
        Span::raw(format!(": {partitions} partitions · ")),
    ];
    if unled > 0 {
        spans.push(Span::styled(
            format!("{unled} without a leader"),
            Style::new().fg(Color::Red).bold(),
        ));
        spans.push(Span::raw(" · "));
    }
    spans.push(Span::raw(format!(
        "{} rec/s · {} records{retention} · led by {}",
        si(rate),
        si(stored as f64),
        if leaders.is_empty() {
            "none".to_string()
        } else {
            leaders
        }
    )));
    Line::from(spans)
}

/// The first row to draw so that `selected` shows in a table of `height` rows, the
/// selection kept at the bottom once it passes the first screen (as a scrolling table does).
fn first_shown(selected: usize, height: usize) -> usize {
    (selected + 1).saturating_sub(height.max(1))
}

pub(super) fn draw(f: &mut Frame<'_>, app: &App, now: u64, area: Rect) {
    let dt = since_data(app, now);
    let visible = app.visible_partitions();
    let selected = app.selected[1].min(visible.len().saturating_sub(1));
    let [summary, area] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
    match visible.get(selected) {
        Some(p) => f.render_widget(Paragraph::new(topic_summary(app, &p.topic)), summary),
        None => f.render_widget(Paragraph::new(" no partition selected".dim()), summary),
    }
    // Rows are built for what fits: borders and header take three lines.
    let height = area.height.saturating_sub(3) as usize;
    let start = first_shown(selected, height);
    let shown = &visible[start.min(visible.len())..(start + height).min(visible.len())];
    let topic_w = shown
        .iter()
        .map(|p| p.topic.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 32) as u16;
    let part_w = shown
        .iter()
        .map(|p| p.partition.to_string().len())
        .max()
        .unwrap_or(4)
        .max(4) as u16;
    let spark_w = (area.width as usize)
        .saturating_sub(topic_w as usize + part_w as usize + 60)
        .clamp(8, 60);
    let rows: Vec<Row<'_>> = shown
        .iter()
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
    let position = if visible.is_empty() {
        "none".to_string()
    } else {
        format!("{}/{}", selected + 1, visible.len())
    };
    let title = if app.partitions_filter.is_empty() {
        format!(" Partitions  {position} · PgUp/PgDn · c create · a alter · d delete · / filter ")
    } else {
        format!(
            " Partitions matching {:?}  {position} ",
            app.partitions_filter
        )
    };
    let t = table(
        rows,
        vec![
            Constraint::Length(topic_w),
            Constraint::Length(part_w),
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
    let mut state = TableState::default()
        .with_selected((!visible.is_empty()).then_some(selected - start.min(selected)));
    f.render_stateful_widget(t, area, &mut state);
}

#[cfg(test)]
mod tests {
    use super::first_shown;

    #[test]
    fn the_selection_stays_on_screen() {
        assert_eq!(first_shown(0, 10), 0);
        assert_eq!(first_shown(9, 10), 0);
        assert_eq!(first_shown(10, 10), 1);
        assert_eq!(first_shown(9_999, 10), 9_990);
        assert_eq!(first_shown(5, 0), 5, "no room: the selection alone");
    }
}
