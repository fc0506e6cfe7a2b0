//! The console's event loop: keys, background reports and the render clock in one
//! `select!`; effects handed to background tasks. The loop itself only updates state and
//! draws.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::{Event, EventStream, KeyEventKind};
use futures::StreamExt;
use ratatui::DefaultTerminal;
use streamhouse_client::{Admin, NewTopic, Producer};
use tokio::sync::{Mutex, mpsc, watch};

use crate::action::{Ack, Action, Effect};
use crate::app::App;
use crate::connect::Connect;
use crate::supervisor::Supervisor;
use crate::workers::{Load, Tail};

/// How often the screen is redrawn (countdowns and ages move even when no data arrives).
const FRAME: Duration = Duration::from_millis(250);
pub const POLL_PERIOD: Duration = Duration::from_secs(1);

/// What effects run against: the cluster's address and, when launched, its agents.
#[derive(Debug, Clone)]
pub struct Runner {
    pub tx: mpsc::UnboundedSender<Action>,
    pub bootstrap: Arc<watch::Sender<String>>,
    pub supervisor: Option<Supervisor>,
    /// Builds every client with the console's security.
    pub connect: Connect,
    producer: Arc<Mutex<Option<Producer>>>,
    pub load: Arc<Mutex<Option<Load>>>,
    tail: Arc<std::sync::Mutex<Option<Tail>>>,
    /// The group the poller describes in full each round.
    pub watched_group: Arc<watch::Sender<Option<String>>>,
}

impl Runner {
    pub fn new(
        tx: mpsc::UnboundedSender<Action>,
        bootstrap: Arc<watch::Sender<String>>,
        supervisor: Option<Supervisor>,
        connect: Connect,
    ) -> Runner {
        Runner {
            tx,
            bootstrap,
            supervisor,
            connect,
            producer: Arc::new(Mutex::new(None)),
            load: Arc::new(Mutex::new(None)),
            tail: Arc::new(std::sync::Mutex::new(None)),
            watched_group: Arc::new(watch::channel(None).0),
        }
    }

    pub fn bootstrap(&self) -> String {
        self.bootstrap.borrow().clone()
    }

    fn notice(&self, s: impl Into<String>) {
        let _ = self.tx.send(Action::Notice(s.into()));
    }

    pub async fn admin(&self) -> anyhow::Result<Admin> {
        Ok(self
            .connect
            .admin(&self.bootstrap(), Duration::from_secs(5))
            .await?)
    }

    pub async fn producer(&self) -> anyhow::Result<Producer> {
        Ok(self
            .connect
            .producer()
            .bootstrap(self.bootstrap())
            .linger_ms(5)
            .delivery_timeout_ms(60_000)
            .build()
            .await?)
    }

    /// Does `effect` in the background; reports come back as actions.
    pub fn spawn(&self, effect: Effect) {
        let r = self.clone();
        tokio::spawn(async move {
            if let Err(e) = r.apply(effect).await {
                r.notice(format!("{e:#}"));
            }
        });
    }

    async fn apply(&self, effect: Effect) -> anyhow::Result<()> {
        let sup = || {
            self.supervisor
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("this console launched no agents"))
        };
        match effect {
            Effect::KillAgent(id) => sup()?.kill(&id).await?,
            Effect::StopAgent(id) => sup()?.stop(&id).await?,
            Effect::RestartAgent(id) => sup()?.restart(&id).await?,
            Effect::StartAgent => {
                let s = sup()?;
                s.start(s.next_id()).await?;
            }
            Effect::CreateTopic {
                name,
                partitions,
                config,
            } => {
                let mut topic = NewTopic::new(&name, partitions);
                topic.retention_ms = config.retention_ms.filter(|v| *v != 0);
                topic.retention_bytes = config.retention_bytes;
                let t = self.admin().await?.create_topic(topic).await?;
                self.notice(format!(
                    "created topic {name} with {partitions} partitions, {}",
                    crate::ui::retention_text(t.retention_ms, t.retention_bytes)
                ));
            }
            Effect::AlterTopic { topic, change } => {
                let t = self
                    .admin()
                    .await?
                    .alter_topic_config(&topic, change)
                    .await?;
                self.notice(format!(
                    "{topic}: {}",
                    crate::ui::retention_text(t.retention_ms, t.retention_bytes)
                ));
            }
            Effect::DeleteTopic(name) => {
                self.admin().await?.delete_topic(&name).await?;
                self.notice(format!("deleted topic {name}"));
            }
            Effect::Produce { topic, key, value } => {
                let result = self.produce_one(&topic, key.as_deref(), &value).await;
                let _ = self
                    .tx
                    .send(Action::Acked(result.map_err(|e| format!("{e:#}"))));
            }
            Effect::StartLoad(spec) => {
                let producer = self.producer().await?;
                let mut load = self.load.lock().await;
                if let Some(old) = load.take() {
                    old.stop().await;
                }
                *load = Some(Load::start(producer, spec, false, self.tx.clone()));
            }
            Effect::StopLoad => match self.load.lock().await.take() {
                Some(l) => l.stop().await,
                None => self.notice("the load generator is not running"),
            },
            Effect::Tail(spec) => {
                let t = Tail::start(
                    self.bootstrap(),
                    self.connect.clone(),
                    spec,
                    self.tx.clone(),
                );
                *self.tail.lock().unwrap_or_else(|p| p.into_inner()) = Some(t);
            }
            Effect::Seek(to) => match &*self.tail.lock().unwrap_or_else(|p| p.into_inner()) {
                Some(t) => t.seek(to),
                None => self.notice("nothing is being tailed"),
            },
            Effect::StopTail => {
                self.tail.lock().unwrap_or_else(|p| p.into_inner()).take();
            }
            Effect::WatchGroup(g) => {
                self.watched_group.send_replace(g);
            }
            Effect::ResetOffsets { group, topic, to } => {
                use crate::action::StartAt;
                use streamhouse_client::ResetTarget;
                let target = match to {
                    StartAt::Beginning => ResetTarget::Earliest,
                    StartAt::End => ResetTarget::Latest,
                    StartAt::Offset(o) => ResetTarget::Offset(o),
                    StartAt::Timestamp(t) => ResetTarget::Timestamp(t),
                    StartAt::Ago(ms) => ResetTarget::Timestamp(crate::workers::now_ms() - ms),
                };
                let moved = self
                    .admin()
                    .await?
                    .reset_offsets(&group, &topic, target)
                    .await?;
                let list: Vec<String> = moved.iter().map(|(p, o)| format!("{p}:{o}")).collect();
                self.notice(format!("{group} reset on {topic}: {}", list.join(" ")));
            }
            Effect::Quit => {}
        }
        Ok(())
    }

    async fn produce_one(
        &self,
        topic: &str,
        key: Option<&str>,
        value: &str,
    ) -> anyhow::Result<Ack> {
        let mut slot = self.producer.lock().await;
        if slot.is_none() {
            *slot = Some(self.producer().await?);
        }
        let p = slot
            .as_ref()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no producer"))?;
        drop(slot);
        let started = Instant::now();
        let m = p
            .send_and_wait(topic, key.map(str::as_bytes), value.as_bytes())
            .await?;
        Ok(Ack {
            topic: m.topic,
            partition: m.partition,
            offset: m.offset,
            latency_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Stops the console's own load and tail, and the agents it launched.
    pub async fn shutdown(&self) {
        if let Some(l) = self.load.lock().await.take() {
            l.stop().await;
        }
        self.tail.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(p) = self.producer.lock().await.take() {
            let _ = p.close().await;
        }
        if let Some(s) = &self.supervisor
            && let Err(e) = s.stop_all().await
        {
            tracing::warn!("stopping agents: {e:#}");
        }
    }
}

/// Runs the console on `terminal` until the operator quits.
pub async fn run(
    terminal: &mut DefaultTerminal,
    mut app: App,
    runner: &Runner,
    mut rx: mpsc::UnboundedReceiver<Action>,
) -> anyhow::Result<()> {
    let clock = Instant::now();
    let now = || clock.elapsed().as_millis() as u64;
    let mut keys = EventStream::new();
    let mut frame = tokio::time::interval(FRAME);
    frame.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut dirty = true;
    // Terminated or hung up: leave as `q` would, stopping launched agents gracefully.
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => app.quit = true,
            _ = hangup.recv() => app.quit = true,
            ev = keys.next() => match ev {
                Some(Ok(Event::Key(k))) if k.kind == KeyEventKind::Press => {
                    let effects = app.update(Action::Key(k), now());
                    dispatch(&mut app, runner, effects);
                    dirty = true;
                }
                Some(Ok(Event::Resize(..))) => dirty = true,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => app.quit = true,
            },
            Some(action) = rx.recv() => {
                let mut effects = app.update(action, now());
                // Drain what else is queued before drawing: bursts of records draw once.
                while let Ok(a) = rx.try_recv() {
                    effects.extend(app.update(a, now()));
                }
                dispatch(&mut app, runner, effects);
                dirty = true;
            }
            _ = frame.tick() => {
                app.update(Action::Tick, now());
                dirty = true;
            }
        }
        if app.quit {
            return Ok(());
        }
        if dirty {
            let t = now();
            terminal.draw(|f| crate::ui::draw(f, &app, t))?;
            dirty = false;
        }
    }
}

/// Quitting ends the loop; every other effect runs in the background.
fn dispatch(app: &mut App, runner: &Runner, effects: Vec<Effect>) {
    for e in effects {
        if e == Effect::Quit {
            app.quit = true;
        } else {
            runner.spawn(e);
        }
    }
}
