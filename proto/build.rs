//! Compiles `proto/streamhouse.proto` with protox (pure Rust), so a fresh machine needs no
//! system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/streamhouse.proto");
    let fds = protox::compile(["streamhouse.proto"], ["proto"])?;
    tonic_prost_build::configure()
        // Record batches travel as `Bytes` so the agent and the client slice them without copying.
        .bytes(".")
        .compile_fds(fds)?;
    Ok(())
}
