//! Compiles the XDP program (bpf/xdp_steer.c) with clang into OUT_DIR; the
//! object is embedded in the binary and never committed.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "bpf/xdp_steer.c";
    println!("cargo:rerun-if-changed={src}");
    if std::env::var_os("CARGO_FEATURE_DATAPATH").is_none() {
        return; // no datapath, no XDP program
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("xdp_steer.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-I/usr/include/x86_64-linux-gnu", "-c", src, "-o"])
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("running {clang} to build {src}: {e}; install clang (scripts/test.sh and scripts/bench.sh do)"));
    assert!(status.success(), "{clang} failed to compile {src}");
}
