//! 5 Produce: the last acknowledged record and the load generator's rates and latency; keys
//! to send one record and to start and stop the load.

use crossterm::event::KeyCode;

use super::*;
use crate::action::Effect;
use crate::app::{Command, FormKind};

/// The Produce screen's keys: `p` sends one record, `l` starts a load, `x` stops it. `None`:
/// not one of them.
pub(crate) fn key(app: &mut App, code: KeyCode, now: u64) -> Option<Vec<Effect>> {
    match code {
        KeyCode::Char('p') => Some(app.open_form(FormKind::Produce, now)),
        KeyCode::Char('l') => Some(app.open_form(FormKind::Load, now)),
        KeyCode::Char('x') => Some(app.run(Command::StopLoad, now)),
        _ => None,
    }
}

pub(super) fn draw(f: &mut Frame<'_>, app: &App, area: Rect) {
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
