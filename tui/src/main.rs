//! `streamhouse-tui`: for now, the local-cluster launcher without its console.
//!
//! It starts the bundled agent on embedded storage (SQLite and a local directory under
//! `./streamhouse-data`), prints where it listens, and keeps it running until Ctrl-C, when it
//! stops it gracefully. The console itself (live throughput, leases, lag, produce/consume,
//! kill agents) is not built yet.

use std::path::PathBuf;

use streamhouse_agent::{AgentConfig, EmbeddedAgent};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut dir = PathBuf::from("./streamhouse-data");
    let mut listen = "127.0.0.1:9660".to_string();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--data-dir" => dir = args.next().map(PathBuf::from).unwrap_or(dir),
            "--listen" => listen = args.next().unwrap_or(listen),
            "-h" | "--help" => {
                println!("streamhouse-tui [--data-dir DIR] [--listen HOST:PORT]");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?}; see --help"),
        }
    }
    let agent = EmbeddedAgent::start(AgentConfig::embedded(&dir, &listen), 2)?;
    println!(
        "StreamHouse local cluster: agent {} at {}",
        agent.id(),
        agent.addr()
    );
    println!("  data: {}", dir.display());
    println!("  the operations console is not built yet; this process runs the agent.");
    println!(
        "  try: cargo run --release -p demos --example producer_demo -- --bootstrap {}",
        agent.addr()
    );
    println!("  Ctrl-C stops the agent.");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(tokio::signal::ctrl_c())?;
    println!("stopping: flushing and releasing leases");
    agent.stop().map_err(anyhow::Error::msg)?;
    Ok(())
}
