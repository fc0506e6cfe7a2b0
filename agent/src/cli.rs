//! The `streamhouse-agent` command line: parse flags and environment, set up logging, run one
//! agent until SIGINT or SIGTERM, then stop gracefully.

use anyhow::Context;
use clap::Parser;

use crate::{Agent, AgentConfig};

/// Runs the agent the process's arguments describe and says how it ended: a failure is one
/// line on stderr (`streamhouse-agent: error: ...`) and exit status 1. Both the
/// `streamhouse-agent` binary and the test suite's agent binary are this function.
pub fn main() -> std::process::ExitCode {
    exit_code(main_from(std::env::args_os()))
}

/// Reports how [`main_from`] ended, as [`main`] does: clap's own text for `--help`,
/// `--version` and flag errors, otherwise one line.
pub fn exit_code(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<clap::Error>() {
            Some(clap_error) => {
                let _ = clap_error.print();
                std::process::ExitCode::from(clap_error.exit_code().clamp(0, 255) as u8)
            }
            None => {
                let line: String = format!("{e:#}")
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                eprintln!("streamhouse-agent: error: {line}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}

/// Runs the agent `args` describe (the first is the program name), as [`main`] does with the
/// process's own arguments. Programs that start agents as child processes of themselves call
/// it when re-executed in agent mode.
pub fn main_from<I, T>(args: I) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let config = AgentConfig::try_parse_from(args)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(config))
}

async fn run(config: AgentConfig) -> anyhow::Result<()> {
    let _log_guard = init_logging(config.log_dir.as_deref())?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let agent = Agent::start(config, listener).await?;
    // The handlers are in place before the line that says the agent serves: a SIGTERM sent
    // as soon as it is read must stop the agent gracefully, not kill it.
    let shutdown = shutdown_signal()?;
    // Scripts and tests read this line to find the agent.
    println!(
        "{}",
        crate::process::listening_line(agent.id(), agent.local_addr())
    );
    if let Some(m) = agent.metrics_addr() {
        println!(
            "streamhouse-agent {} metrics at http://{m}/metrics",
            agent.id()
        );
    }
    agent.serve(shutdown).await?;
    Ok(())
}

/// SIGTERM or SIGINT, registered now: the returned future completes on the first of them.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

fn init_logging(
    dir: Option<&str>,
) -> anyhow::Result<Option<tracing_appender::non_blocking::WorkerGuard>> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("STREAMHOUSE_LOG").unwrap_or_else(|_| {
        EnvFilter::new("info,sqlx=warn,aws=warn,h2=warn,tower=warn,hyper=warn")
    });
    match dir {
        Some(dir) => {
            let appender = tracing_appender::rolling::daily(dir, "streamhouse-agent.log");
            let (writer, guard) = tracing_appender::non_blocking(appender);
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(writer)
                .with_ansi(false)
                .init();
            Ok(Some(guard))
        }
        None => {
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .init();
            Ok(None)
        }
    }
}
