//! The command palette: every command the console takes as one line, and its parser.

use crate::action::{LoadSpec, StartAt, TailSpec};
use crate::app::{App, Tab};

/// A palette command, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Kill(String),
    Stop(String),
    Restart(String),
    Start,
    Create {
        name: String,
        partitions: u32,
        config: streamhouse_client::TopicConfig,
    },
    Delete(String),
    Alter {
        topic: String,
        change: streamhouse_client::TopicConfig,
    },
    Produce {
        topic: String,
        key: Option<String>,
        value: String,
    },
    Load(LoadSpec),
    StopLoad,
    Tail(TailSpec),
    Seek(StartAt),
    Reset {
        group: String,
        topic: String,
        to: StartAt,
    },
    Goto(Tab),
    Quit,
}

/// The palette's commands, for its help line and the help screen.
pub const COMMANDS: &[(&str, &str)] = &[
    (
        "kill|stop|restart AGENT|start",
        "kill -9, stop, restart; start one more",
    ),
    (
        "create TOPIC N [OPTS]",
        "OPTS: retention=7d|forever|default",
    ),
    (
        "alter TOPIC OPTS|delete TOPIC",
        "  retention-bytes=10GiB|unlimited",
    ),
    ("produce TOPIC KEY|- VALUE", "send one record, show its ack"),
    (
        "load TOPIC RATE SIZE KEYS",
        "start the load generator (load stop)",
    ),
    (
        "tail TOPIC [all|N] [FROM]",
        "FROM: beginning, end, offset N,",
    ),
    ("seek FROM", "  time -5m or time EPOCH_MS"),
    ("reset GROUP TOPIC FROM", "move an inactive group's offsets"),
    ("tab NAME | quit", "go to a screen, leave"),
];

/// Topic settings from `retention=7d|12h|30m|90s|500ms|MS|forever|default` and
/// `retention-bytes=10GiB|512MiB|64KiB|BYTES|unlimited`.
pub fn parse_topic_config(args: &[&str]) -> Result<streamhouse_client::TopicConfig, String> {
    let mut config = streamhouse_client::TopicConfig::default();
    for arg in args {
        let (k, v) = arg
            .split_once('=')
            .ok_or_else(|| format!("{arg:?} is not retention=... or retention-bytes=..."))?;
        match k {
            "retention" | "retention.ms" => {
                config.retention_ms = Some(match v {
                    "forever" | "-1" => -1,
                    "default" => 0,
                    v => parse_duration_ms(v).ok_or_else(|| {
                        format!("retention {v:?}: give e.g. 7d, 12h, 30m, 90s, forever or default")
                    })?,
                });
            }
            "retention-bytes" | "retention.bytes" => {
                config.retention_bytes = Some(match v {
                    "unlimited" | "-1" => -1,
                    v => parse_bytes(v).ok_or_else(|| {
                        format!("retention-bytes {v:?}: give e.g. 10GiB, 512MiB or unlimited")
                    })?,
                });
            }
            k => return Err(format!("unknown setting {k:?}")),
        }
    }
    Ok(config)
}

/// A duration for a setting: whole milliseconds, or a `humantime` duration (`500ms`, `90s`,
/// `30m`, `12h`, `7d`, `1h 30m`); positive and within `i64` milliseconds.
fn parse_duration_ms(v: &str) -> Option<i64> {
    let ms = match v.parse::<i64>() {
        Ok(ms) => ms,
        Err(_) => i64::try_from(humantime::parse_duration(v).ok()?.as_millis()).ok()?,
    };
    (ms > 0).then_some(ms)
}

/// A size for a setting: whole bytes, or a `bytesize` size (`64KiB`, `512MiB`, `10GiB`;
/// `10GB` is 10^10 bytes); positive and within `i64`.
fn parse_bytes(v: &str) -> Option<i64> {
    let bytes = i64::try_from(v.parse::<bytesize::ByteSize>().ok()?.as_u64()).ok()?;
    (bytes > 0).then_some(bytes)
}

/// Parses a palette line. `app` fills in what may be left out (the agent selected, the
/// default topic).
pub fn parse_command(line: &str, app: &App) -> Result<Command, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some((&verb, args)) = words.split_first() else {
        return Err("type a command; ? lists them".into());
    };
    let agent = |args: &[&str]| -> Result<String, String> {
        match args.first() {
            Some(a) => Ok(a.to_string()),
            None => app
                .selected_agent()
                .map(|a| a.id.clone())
                .ok_or_else(|| format!("{verb}: which agent?")),
        }
    };
    let num = |what: &str, s: Option<&&str>| -> Result<u64, String> {
        let s = s.ok_or_else(|| format!("{verb}: {what} is missing"))?;
        s.replace('_', "")
            .parse::<u64>()
            .map_err(|_| format!("{verb}: {what} must be a whole number, not {s:?}"))
    };
    let topic = |s: Option<&&str>| -> Result<String, String> {
        Ok(s.map(|s| s.to_string())
            .unwrap_or_else(|| app.default_topic.clone()))
    };
    Ok(match verb {
        "kill" => Command::Kill(agent(args)?),
        "stop" => Command::Stop(agent(args)?),
        "restart" => Command::Restart(agent(args)?),
        "start" => Command::Start,
        "create" => {
            let name = args
                .first()
                .ok_or("create: the topic's name is missing")?
                .to_string();
            let partitions = num("partitions", args.get(1))?;
            if partitions == 0 || partitions > 10_000 {
                return Err("create: partitions must be 1 to 10,000".into());
            }
            Command::Create {
                name,
                partitions: partitions as u32,
                config: parse_topic_config(&args[2..]).map_err(|e| format!("create: {e}"))?,
            }
        }
        "alter" => {
            let topic = args.first().ok_or("alter: which topic?")?.to_string();
            let change = parse_topic_config(&args[1..]).map_err(|e| format!("alter: {e}"))?;
            if change == streamhouse_client::TopicConfig::default() {
                return Err(
                    "alter: say what to change: retention=... or retention-bytes=...".into(),
                );
            }
            Command::Alter { topic, change }
        }
        "delete" => Command::Delete(args.first().ok_or("delete: which topic?")?.to_string()),
        "produce" => {
            if args.len() < 3 {
                return Err("produce: TOPIC KEY|- VALUE".into());
            }
            let key = (args[1] != "-").then(|| args[1].to_string());
            // The value is the rest of the line as typed, spaces included.
            let value = value_after(line, 3);
            Command::Produce {
                topic: args[0].to_string(),
                key,
                value,
            }
        }
        "load" if args.first() == Some(&"stop") => Command::StopLoad,
        "load" => {
            let rate = num("records/s", args.get(1))?;
            let value_size = num("value bytes", args.get(2))? as usize;
            let keys = num("keys", args.get(3))?;
            if rate == 0 || rate > 1_000_000 {
                return Err("load: records/s must be 1 to 1,000,000".into());
            }
            if value_size > 1_000_000 {
                return Err("load: values up to 1,000,000 bytes".into());
            }
            Command::Load(LoadSpec {
                topic: topic(args.first())?,
                rate,
                value_size,
                keys: keys.max(1),
            })
        }
        "tail" => {
            let partition =
                match args.get(1) {
                    None | Some(&"all") => None,
                    Some(p) => Some(p.parse::<u32>().map_err(|_| {
                        format!("tail: partition must be all or a number, not {p:?}")
                    })?),
                };
            let from = if args.len() > 2 {
                parse_start(&args[2..]).map_err(|e| format!("tail: {e}"))?
            } else {
                StartAt::End
            };
            Command::Tail(TailSpec {
                topic: topic(args.first())?,
                partition,
                from,
            })
        }
        "seek" => Command::Seek(parse_start(args).map_err(|e| format!("seek: {e}"))?),
        "reset" => {
            if args.len() < 3 {
                return Err("reset: GROUP TOPIC earliest|latest|offset N|time T".into());
            }
            Command::Reset {
                group: args[0].to_string(),
                topic: args[1].to_string(),
                to: parse_start(&args[2..]).map_err(|e| format!("reset: {e}"))?,
            }
        }
        "tab" => Command::Goto(
            args.first()
                .and_then(|n| Tab::by_name(n))
                .ok_or("tab: overview, partitions, groups, events, produce or consume")?,
        ),
        "quit" | "q" => Command::Quit,
        other => return Err(format!("unknown command {other:?}; ? lists them")),
    })
}

/// The text after the first `n` words of `line`, as typed.
fn value_after(line: &str, n: usize) -> String {
    let mut rest = line.trim_start();
    for _ in 0..n {
        rest = rest.trim_start();
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        rest = &rest[end..];
    }
    rest.strip_prefix(' ').unwrap_or(rest).to_string()
}

/// `beginning`, `end`, `offset N` (or just `N`), `time T` (or `@T`): T is epoch ms, or a
/// time ago such as `-30s`, `-5m`, `-2h`.
pub fn parse_start(args: &[&str]) -> Result<StartAt, String> {
    let time = |s: &str| -> Result<StartAt, String> {
        if let Some(ago) = s.strip_prefix('-') {
            // A unit is required, as a bare number means epoch ms.
            humantime::parse_duration(ago)
                .ok()
                .and_then(|d| i64::try_from(d.as_millis()).ok())
                .filter(|ms| *ms > 0)
                .map(StartAt::Ago)
                .ok_or_else(|| format!("time {s:?}: like -30s, -5m, -2h"))
        } else {
            s.parse()
                .map(StartAt::Timestamp)
                .map_err(|_| format!("time {s:?}: epoch ms or -30s, -5m, -2h"))
        }
    };
    match args {
        [] | ["end"] => Ok(StartAt::End),
        ["beginning"] | ["start"] | ["earliest"] => Ok(StartAt::Beginning),
        ["latest"] => Ok(StartAt::End),
        ["offset", n] => n
            .parse()
            .map(StartAt::Offset)
            .map_err(|_| format!("offset {n:?} is not a number")),
        ["time", t] => time(t),
        [t] if t.starts_with('@') => time(&t[1..]),
        [n] => n
            .parse()
            .map(StartAt::Offset)
            .map_err(|_| format!("{n:?}: beginning, end, offset N or time T")),
        _ => Err(format!(
            "{:?}: beginning, end, offset N or time T",
            args.join(" ")
        )),
    }
}
