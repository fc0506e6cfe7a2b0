//! `streamhouse-tui`: the StreamHouse operations console. See the crate documentation.

fn main() -> anyhow::Result<()> {
    streamhouse_tui::cli::main()
}
