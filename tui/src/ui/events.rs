//! 4 Events: the cluster's event log (leases moving, agents joining and leaving), filtered.

use super::*;

pub(super) fn draw(f: &mut Frame<'_>, app: &App, area: Rect) {
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
