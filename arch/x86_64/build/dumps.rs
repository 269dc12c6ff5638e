//! The CPUID dumps the silicon shim embeds: `$OUT_DIR/dumps.rs`, a sorted table of
//! `(file stem, include_str!(file))`, which `src/shim/mod.rs` includes. A dump is a
//! `*_CPUID*.txt` file (the folder's README, FORMAT.md and SHA256SUMS are not).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The dumps folder, relative to this package.
const DUMPS: &str = "../../data/cpuid-dumps";

/// Writes `out/dumps.rs` from the package at `manifest`.
pub fn write(manifest: &Path, out: &Path) {
    let dumps = manifest.join(DUMPS);
    let dumps = dumps.canonicalize().unwrap_or_else(|error| {
        panic!(
            "{}: {error} (the silicon shim embeds every CPUID dump from there)",
            dumps.display()
        )
    });
    println!("cargo::rerun-if-changed={}", dumps.display());
    std::fs::write(out.join("dumps.rs"), dump_table(&dumps))
        .unwrap_or_else(|error| panic!("writing dumps.rs: {error}"));
}

/// The generated table: one `(stem, text)` per dump file, sorted by name.
fn dump_table(dir: &Path) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| is_dump(path))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: no CPUID dumps", dir.display());
    let mut table = String::from(
        "/// Every CPUID dump of `data/cpuid-dumps/`: (file stem, text), sorted (generated \
         by build.rs).\npub static DUMPS: &[(&str, &str)] = &[\n",
    );
    for path in &files {
        println!("cargo::rerun-if-changed={}", path.display());
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("UTF-8 file name");
        let _ = writeln!(
            table,
            "    ({stem:?}, include_str!({:?})),",
            path.to_str().expect("UTF-8 path")
        );
    }
    table.push_str("];\n");
    table
}

/// A dump file: `<vendor><signature>_<name>_CPUID[n].txt`.
fn is_dump(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    path.is_file() && name.ends_with(".txt") && name.contains("_CPUID")
}
