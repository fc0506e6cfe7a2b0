//! Drawing: every screen is a function of the [`App`] and the console time `now`, so the
//! same state always draws the same frame. This module draws the frame (tabs, status bar, help,
//! confirmations, forms and the palette) and the widgets the screens share; each screen has a
//! module of its own, with its keys.

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

pub mod consume;
pub mod events;
pub mod groups;
pub mod overview;
pub mod partitions;
pub mod produce;

pub use partitions::retention_text;

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
        Tab::Overview => overview::draw(f, app, now, body),
        Tab::Partitions => partitions::draw(f, app, now, body),
        Tab::Groups => groups::draw(f, app, now, body),
        Tab::Events => events::draw(f, app, body),
        Tab::Produce => produce::draw(f, app, body),
        Tab::Consume => consume::draw(f, app, body),
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
        Mode::Record { record: r, hex } => consume::record(f, r, *hex),
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

/// `HH:MM:SS` (UTC) of an epoch-ms time.
pub fn clock(ms: i64) -> String {
    let s = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
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
