//! Generates the feature tables from `data/features.tbl` (see `build/feature_table.rs`) and
//! the CPU generations table from `data/generations.tbl` (see `build/generations.rs`).

#[path = "build/feature_table.rs"]
mod feature_table;
#[path = "build/generations.rs"]
mod generations;

use std::path::PathBuf;

const TABLE: &str = "data/features.tbl";
const GENERATIONS: &str = "data/generations.tbl";

fn main() {
    println!("cargo::rerun-if-changed={TABLE}");
    println!("cargo::rerun-if-changed=build/feature_table.rs");
    let text = std::fs::read_to_string(TABLE).unwrap_or_else(|e| fail(&format!("{TABLE}: {e}")));
    let table = feature_table::parse(&text)
        .unwrap_or_else(|e| fail(&format!("{TABLE}:{}: {}", e.line, e.message)));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("features.rs"), table.generate())
        .unwrap_or_else(|e| fail(&format!("writing features.rs: {e}")));

    println!("cargo::rerun-if-changed={GENERATIONS}");
    println!("cargo::rerun-if-changed=build/generations.rs");
    let text = std::fs::read_to_string(GENERATIONS)
        .unwrap_or_else(|e| fail(&format!("{GENERATIONS}: {e}")));
    let rows = generations::parse(&text)
        .unwrap_or_else(|e| fail(&format!("{GENERATIONS}:{}: {}", e.line, e.message)));
    std::fs::write(out.join("generations.rs"), generations::generate(&rows))
        .unwrap_or_else(|e| fail(&format!("writing generations.rs: {e}")));
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
