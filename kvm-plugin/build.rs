//! Compiles the kubelet's device plugin API (`proto/`) into Rust, with protox instead of
//! protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/deviceplugin.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
