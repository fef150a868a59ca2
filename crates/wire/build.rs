//! Compiles `proto/` into prost types in-process (protox parses, prost-build generates), so
//! building needs no system `protoc`.

fn main() {
    let root = "../../proto";
    let files = ["remote.proto", "types.proto", "prometheus/write/v2/types.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={root}/{f}");
    }
    let fds = match protox::compile(files, [root]) {
        Ok(fds) => fds,
        Err(e) => {
            eprintln!("protox failed to compile {root}: {e:?}");
            std::process::exit(1);
        }
    };
    if let Err(e) = prost_build::Config::new().compile_fds(fds) {
        eprintln!("prost-build failed: {e}");
        std::process::exit(1);
    }
}
