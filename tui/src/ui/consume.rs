//! 6 Consume: the tail of a topic, a record in text or hex; keys to tail, seek, pause, clear
//! and open a record.

use crossterm::event::KeyCode;

use super::*;
use crate::action::Effect;
use crate::app::FormKind;

/// The Consume screen's keys: `t` tails a topic, `s` seeks, `space` pauses (holding the view on
/// the record it shows), `c` clears, `enter` opens the selected record. `None`: not one of
/// them.
pub(crate) fn key(app: &mut App, code: KeyCode, now: u64) -> Option<Vec<Effect>> {
    match code {
        KeyCode::Char('t') => Some(app.open_form(FormKind::Tail, now)),
        KeyCode::Char('s') => Some(app.open_form(FormKind::Seek, now)),
        KeyCode::Char(' ') => {
            app.consume.paused = !app.consume.paused;
            if app.consume.paused && app.consume.selected.is_none() {
                app.consume.selected = app.consume.visible().len().checked_sub(1);
            }
            Some(Vec::new())
        }
        KeyCode::Char('c') => {
            app.consume.records.clear();
            app.consume.selected = None;
            Some(Vec::new())
        }
        KeyCode::Enter => {
            let visible = app.consume.visible();
            let index = app
                .consume
                .selected
                .unwrap_or(visible.len().saturating_sub(1));
            if let Some(r) = visible.get(index) {
                app.mode = Mode::Record {
                    record: Box::new((*r).clone()),
                    hex: false,
                };
            }
            Some(Vec::new())
        }
        _ => None,
    }
}

pub(super) fn printable(bytes: &[u8], max: usize) -> String {
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

pub(super) fn draw(f: &mut Frame<'_>, app: &App, area: Rect) {
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
pub(super) fn hex(bytes: &[u8], width: u16) -> Vec<Line<'static>> {
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

pub(super) fn record(f: &mut Frame<'_>, r: &RecordView, as_hex: bool) {
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
