//! `streamhouse-agent`: runs one agent until SIGINT or SIGTERM, then stops gracefully.

fn main() -> anyhow::Result<()> {
    streamhouse_agent::cli::main()
}
