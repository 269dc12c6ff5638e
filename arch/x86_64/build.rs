//! Hands the linker script `linker/kernel.ld` to the link of the kernel binary.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let script = manifest.join("../../linker/kernel.ld");
    let script = script
        .canonicalize()
        .unwrap_or_else(|error| panic!("{}: {error}", script.display()));
    println!("cargo::rerun-if-changed={}", script.display());
    println!("cargo::rustc-link-arg-bins=-T{}", script.display());
}
