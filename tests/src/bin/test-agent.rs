//! The agent binary, built inside the test package so its tests can start real agent
//! processes (`CARGO_BIN_EXE_test-agent`).

fn main() -> anyhow::Result<()> {
    streamhouse_agent::cli::main()
}
