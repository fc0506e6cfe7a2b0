//! 3 Groups: consumer groups with their lag and state, one group's members, assignment, lag
//! per partition and rebalances; keys to drill in and reset offsets.

use crossterm::event::KeyCode;

use super::*;
use crate::action::Effect;
use crate::app::{FormKind, GroupView};

/// The Groups screen's keys: `enter` opens the selected group, `r` resets its offsets (asks
/// first). `None`: not one of them.
pub(crate) fn key(app: &mut App, code: KeyCode, now: u64) -> Option<Vec<Effect>> {
    match code {
        KeyCode::Enter if app.group_view.is_none() => {
            let id = app.selected_group()?.listing.group_id.clone();
            app.group_view = Some(GroupView {
                group_id: id.clone(),
                detail: None,
                lag: std::collections::BTreeMap::new(),
            });
            Some(vec![Effect::WatchGroup(Some(id))])
        }
        KeyCode::Char('r') => Some(app.open_form(FormKind::ResetOffsets, now)),
        _ => None,
    }
}

pub(super) fn draw(f: &mut Frame<'_>, app: &App, now: u64, area: Rect) {
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
                let state = short_state(&l.state);
                let color = match state {
                    "stable" => Color::Green,
                    "reconciling" | "preparing" | "assigning" => Color::Yellow,
                    _ => Color::DarkGray,
                };
                let trend: Vec<f64> = g.lag.tail(spark_w).collect();
                Row::new(vec![
                    Cell::from(l.group_id.as_str()),
                    Cell::from(state).style(Style::new().fg(color)),
                    Cell::from(if l.kafka { "kafka" } else { "grpc" }),
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
                Constraint::Length(5),
                Constraint::Length(7),
                Constraint::Length(5),
                Constraint::Length(11),
                Constraint::Length(7),
                Constraint::Length(spark_w as u16),
            ],
            &[
                "group", "state", "via", "members", "gen", "assignor", "lag", "trend",
            ],
            " Groups  enter open · r reset offsets ",
        );
        let mut state = TableState::default().with_selected(Some(app.group_selected));
        f.render_stateful_widget(t, list, &mut state);
    }
    rebalance_list(f, &rebalances, recent);
}

/// A group's state in a word that fits its column: Kafka's rebalance phases are shortened to
/// what they wait for (`preparing`: members to join again; `assigning`: the leader's plan).
fn short_state(state: &str) -> &str {
    match state {
        "Empty" => "empty",
        "Stable" => "stable",
        "PreparingRebalance" => "preparing",
        "CompletingRebalance" => "assigning",
        other => other,
    }
}

pub(super) fn rebalance_list(
    f: &mut Frame<'_>,
    events: &[&streamhouse_client::ClusterEvent],
    area: Rect,
) {
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

pub(super) fn group_detail(
    f: &mut Frame<'_>,
    app: &App,
    v: &crate::app::GroupView,
    now: u64,
    area: Rect,
) {
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
                "· {}{} · gen {} · {} · {} members · esc back · r reset",
                short_state(&d.state),
                if d.kafka { " (Kafka group)" } else { "" },
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
