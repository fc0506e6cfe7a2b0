//! The agent binary, built inside the test package so its tests can start real agent
//! processes (`CARGO_BIN_EXE_test-agent`).

fn main() -> std::process::ExitCode {
    // Launched as `PROGRAM __streamhouse-agent FLAGS` (`process::agent_command`), like a
    // program that runs agents as copies of itself.
    streamhouse_agent::process::run_if_agent();
    streamhouse_agent::cli::main()
}
