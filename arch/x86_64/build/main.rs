//! The kernel's build script: hands the linker script `linker/kernel.ld` to the link of the
//! kernel binary, embeds every CPUID dump of `data/cpuid-dumps/` for the silicon shim
//! ([`dumps`]), and builds the ring-3 programs of `user/` into the image the kernel embeds
//! at the start of `.user_text` ([`user_image`]).

mod dumps;
mod user_image;

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    let script = manifest.join("../../linker/kernel.ld");
    let script = script
        .canonicalize()
        .unwrap_or_else(|error| panic!("{}: {error}", script.display()));
    println!("cargo::rerun-if-changed={}", script.display());
    println!("cargo::rustc-link-arg-bins=-T{}", script.display());
    dumps::write(&manifest, &out);
    user_image::write(&manifest, &out);
}
