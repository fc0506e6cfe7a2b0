//! Keys: the console-wide ones (quit, help, palette, filter, tabs, selection), forms and
//! line editing, and the help screen's list of each screen's keys. Each screen's own keys live
//! with the screen, in [`crate::screen`].

use super::*;

impl App {
    pub(super) fn key(&mut self, key: KeyEvent, now: u64) -> Vec<Effect> {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return self.ask_quit();
        }
        match std::mem::replace(&mut self.mode, Mode::Normal) {
            Mode::Normal => self.normal_key(key, now),
            Mode::Help => {
                if !matches!(
                    key.code,
                    KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q')
                ) {
                    self.mode = Mode::Help;
                }
                Vec::new()
            }
            Mode::Confirm { prompt, effect } => match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => vec![effect],
                KeyCode::Char('n') | KeyCode::Esc => Vec::new(),
                _ => {
                    self.mode = Mode::Confirm { prompt, effect };
                    Vec::new()
                }
            },
            Mode::Palette { mut input, .. } => match key.code {
                KeyCode::Esc => Vec::new(),
                KeyCode::Enter => match parse_command(&input, self) {
                    Ok(cmd) => self.run(cmd, now),
                    Err(error) => {
                        self.mode = Mode::Palette {
                            input,
                            error: Some(error),
                        };
                        Vec::new()
                    }
                },
                code => {
                    edit(&mut input, code);
                    self.mode = Mode::Palette { input, error: None };
                    Vec::new()
                }
            },
            Mode::Filter { mut input } => {
                match key.code {
                    KeyCode::Esc => {
                        input.clear();
                        self.set_filter(input);
                    }
                    KeyCode::Enter => self.set_filter(input),
                    code => {
                        edit(&mut input, code);
                        self.set_filter(input.clone());
                        self.mode = Mode::Filter { input };
                    }
                }
                Vec::new()
            }
            Mode::Form(mut form) => match key.code {
                KeyCode::Esc => Vec::new(),
                KeyCode::Enter => match parse_command(&form.command(), self) {
                    Ok(cmd) => self.run(cmd, now),
                    Err(e) => {
                        form.error = Some(e);
                        self.mode = Mode::Form(form);
                        Vec::new()
                    }
                },
                KeyCode::Tab | KeyCode::Down => {
                    form.focus = (form.focus + 1) % form.fields.len();
                    self.mode = Mode::Form(form);
                    Vec::new()
                }
                KeyCode::BackTab | KeyCode::Up => {
                    form.focus = (form.focus + form.fields.len() - 1) % form.fields.len();
                    self.mode = Mode::Form(form);
                    Vec::new()
                }
                code => {
                    edit(&mut form.fields[form.focus].1, code);
                    form.error = None;
                    self.mode = Mode::Form(form);
                    Vec::new()
                }
            },
            Mode::Record { record, hex } => {
                match key.code {
                    KeyCode::Esc | KeyCode::Char('q') | KeyCode::Enter => {}
                    KeyCode::Char('h') => self.mode = Mode::Record { record, hex: !hex },
                    _ => self.mode = Mode::Record { record, hex },
                }
                Vec::new()
            }
        }
    }

    pub(super) fn set_filter(&mut self, input: String) {
        match self.tab {
            Tab::Partitions => self.partitions_filter = input,
            Tab::Consume => self.consume.key_filter = input,
            _ => self.events_filter = input,
        }
        self.clamp_selection();
    }

    pub(super) fn ask_quit(&mut self) -> Vec<Effect> {
        let running = self
            .agents
            .values()
            .filter(|a| matches!(a.phase, Some(Phase::Up { .. }) | Some(Phase::Starting)))
            .count();
        if self.launched && running > 0 {
            self.mode = Mode::Confirm {
                prompt: format!("Quit and stop the {running} agents this console launched?"),
                effect: Effect::Quit,
            };
            Vec::new()
        } else {
            vec![Effect::Quit]
        }
    }

    pub(super) fn normal_key(&mut self, key: KeyEvent, now: u64) -> Vec<Effect> {
        let code = key.code;
        match code {
            KeyCode::Char('q') => return self.ask_quit(),
            KeyCode::Char('?') => self.mode = Mode::Help,
            KeyCode::Char(':') => {
                self.mode = Mode::Palette {
                    input: String::new(),
                    error: None,
                }
            }
            KeyCode::Char('/') => {
                let input = match self.tab {
                    Tab::Partitions => self.partitions_filter.clone(),
                    Tab::Consume => self.consume.key_filter.clone(),
                    _ => self.events_filter.clone(),
                };
                if matches!(self.tab, Tab::Overview | Tab::Groups | Tab::Produce) {
                    self.tab = Tab::Events;
                }
                self.mode = Mode::Filter { input };
            }
            KeyCode::Char(c @ '1'..='6') => {
                self.tab = Tab::ALL[(c as u8 - b'1') as usize];
            }
            KeyCode::Tab => self.tab = Tab::ALL[(self.tab.index() + 1) % Tab::ALL.len()],
            KeyCode::BackTab => {
                self.tab = Tab::ALL[(self.tab.index() + Tab::ALL.len() - 1) % Tab::ALL.len()]
            }
            KeyCode::Down | KeyCode::Char('j') => self.move_selection(1),
            KeyCode::Up | KeyCode::Char('k') => self.move_selection(-1),
            KeyCode::PageDown => self.move_selection(super::PAGE_ROWS),
            KeyCode::PageUp => self.move_selection(-super::PAGE_ROWS),
            KeyCode::Home => self.move_selection(isize::MIN),
            KeyCode::End => self.move_selection(isize::MAX),
            KeyCode::Esc => {
                if self.tab == Tab::Consume {
                    self.consume.selected = None;
                }
                if self.tab == Tab::Groups && self.group_view.take().is_some() {
                    return vec![Effect::WatchGroup(None)];
                }
            }
            _ => return self.screen_key(code, now),
        }
        Vec::new()
    }

    /// Keys that mean something on one screen only.
    /// A key for the screen on show: each screen's module says what its keys do.
    pub(super) fn screen_key(&mut self, code: KeyCode, now: u64) -> Vec<Effect> {
        use crate::ui;
        let handled = match self.tab {
            Tab::Overview => ui::overview::key(self, code, now),
            Tab::Partitions => ui::partitions::key(self, code, now),
            Tab::Groups => ui::groups::key(self, code, now),
            Tab::Events => None,
            Tab::Produce => ui::produce::key(self, code, now),
            Tab::Consume => ui::consume::key(self, code, now),
        };
        handled.unwrap_or_default()
    }

    pub(crate) fn open_form(&mut self, kind: FormKind, now: u64) -> Vec<Effect> {
        if self.read_only && kind != FormKind::Tail && kind != FormKind::Seek {
            self.notice = Some(("read-only: changes are turned off".into(), now));
            return Vec::new();
        }
        let topic = self
            .consume
            .spec
            .as_ref()
            .filter(|_| kind == FormKind::Tail)
            .map(|s| s.topic.clone())
            .unwrap_or_else(|| self.default_topic.clone());
        let group = self
            .group_view
            .as_ref()
            .map(|v| v.group_id.clone())
            .or_else(|| self.selected_group().map(|g| g.listing.group_id.clone()))
            .unwrap_or_default();
        let fields = match kind {
            FormKind::ResetOffsets => vec![
                ("group", group),
                (
                    "topic",
                    self.group_view
                        .as_ref()
                        .and_then(|v| v.detail.as_ref())
                        .and_then(|d| d.partitions.first())
                        .map_or_else(|| topic.clone(), |p| p.tp.topic.clone()),
                ),
                (
                    "to (earliest, latest, offset N, time -5m or epoch ms)",
                    "earliest".into(),
                ),
            ],
            FormKind::CreateTopic => vec![
                ("name", String::new()),
                ("partitions", "6".into()),
                ("retention (7d, 12h, forever, default)", "default".into()),
            ],
            FormKind::AlterTopic => {
                let selected = self
                    .visible_partitions()
                    .get(self.selected[1])
                    .map(|p| p.topic.clone())
                    .unwrap_or(topic);
                vec![
                    ("topic", selected),
                    ("retention (7d, 12h, forever, default)", String::new()),
                    ("retention bytes (10GiB, unlimited)", String::new()),
                ]
            }
            FormKind::Produce => vec![
                ("topic", topic),
                ("key (empty: none)", String::new()),
                ("value", String::new()),
            ],
            FormKind::Load => vec![
                ("topic", topic),
                ("records/s", "1000".into()),
                ("value bytes", "100".into()),
                ("keys", "1000".into()),
            ],
            FormKind::Tail => vec![
                ("topic", topic),
                ("partition (all or N)", "all".into()),
                (
                    "from (beginning, end, offset N, time -5m or epoch ms)",
                    "end".into(),
                ),
            ],
            FormKind::Seek => vec![(
                "to (beginning, end, offset N, time -5m or epoch ms)",
                "beginning".into(),
            )],
        };
        self.mode = Mode::Form(Form {
            kind,
            focus: if kind == FormKind::Produce { 2 } else { 0 },
            fields,
            error: None,
        });
        Vec::new()
    }
}

/// Line editing for text fields: type, backspace.
pub(super) fn edit(s: &mut String, code: KeyCode) {
    match code {
        KeyCode::Char(c) => s.push(c),
        KeyCode::Backspace => {
            s.pop();
        }
        _ => {}
    }
}

/// Keys for `tab`, for the help screen.
pub fn keys_for(tab: Tab) -> Vec<(&'static str, &'static str)> {
    let mut keys = vec![
        ("1..6  tab  shift-tab", "switch screen"),
        ("j k ↑ ↓ pgup pgdn home end", "move the selection"),
        ("?  :  /", "this help, command palette, filter"),
        ("esc  q  ctrl-c", "back, quit"),
    ];
    keys.extend(match tab {
        Tab::Overview => vec![
            ("x", "kill -9 the selected agent (asks first)"),
            ("s", "stop it gracefully (asks first)"),
            ("r", "restart it"),
            ("n", "start one more agent"),
        ],
        Tab::Partitions => vec![
            ("c", "create a topic"),
            ("a", "alter the selected row's topic's retention"),
            ("d", "delete the selected row's topic (asks first)"),
            (
                "/",
                "filter by topic or leader (\"none\": partitions without one)",
            ),
        ],
        Tab::Groups => vec![
            ("enter", "open the selected group (esc: back)"),
            ("r", "reset an inactive group's offsets (asks first)"),
        ],
        Tab::Events => vec![("/", "filter by kind, subject or detail (all screens)")],
        Tab::Produce => vec![
            ("p", "send one record and wait for its ack"),
            ("l", "start the load generator"),
            ("x", "stop the load generator"),
        ],
        Tab::Consume => vec![
            ("t", "tail a topic (all partitions or one, from anywhere)"),
            ("s", "seek while tailing"),
            ("space", "pause or resume the view"),
            ("enter", "open the selected record (h: hex)"),
            ("c  /", "clear, filter by key"),
        ],
    });
    keys
}
