//! `streamhouse-agent`: runs one agent until SIGINT or SIGTERM, then stops gracefully.

fn main() -> std::process::ExitCode {
    // Launched as `PROGRAM __streamhouse-agent FLAGS` (`process::agent_command`), like a
    // program that runs agents as copies of itself.
    streamhouse_agent::process::run_if_agent();
    streamhouse_agent::cli::main()
}
