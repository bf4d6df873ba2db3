//! Compiles the `.proto` contracts with `protox` (pure Rust), so a fresh machine needs only cargo.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/auth/v1/auth.proto",
        "proto/simulator/v1/book.proto",
        "proto/simulator/v1/control.proto",
        "proto/simulator/v1/faults.proto",
        "proto/simulator/v1/market_data.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
