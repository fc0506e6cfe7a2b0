//! `streamhouse-agent`: runs one agent until SIGINT or SIGTERM, then stops gracefully.

fn main() -> std::process::ExitCode {
    streamhouse_agent::cli::main()
}
