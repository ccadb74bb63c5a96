//! Compiles `proto/distlock/v1/distlock.proto` with the pure-Rust `protox`
//! (no `protoc` needed) and generates the tonic client and server.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/distlock/v1/distlock.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".distlock.v1")
        .compile_fds(descriptors)?;
    Ok(())
}
