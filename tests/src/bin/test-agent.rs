//! The agent binary, built inside the test package so its tests can start real agent
//! processes (`CARGO_BIN_EXE_test-agent`).

fn main() -> std::process::ExitCode {
    streamhouse_agent::cli::main()
}
