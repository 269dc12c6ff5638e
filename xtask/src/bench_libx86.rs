//! `cargo xtask bench-libx86`: the crate beside Xen's own libx86 on the host side, in one
//! process, samples interleaved: serialise, deserialise (fresh and into an existing policy)
//! and the compatibility check, on the SandyBridge, Genoa and SapphireRapids dumps' HVM max
//! (and default) policies. Xen's library is GPL-2.0: it is compiled here, at bench time, from
//! `../shared/xen-libx86` (its `build.sh`) into `target/libx86/`, never copied into the
//! repository. Without that tree or a C compiler the benchmark is skipped with one line.
//!
//! The benchmark process is a small cargo package written to `target/libx86/bench/` (its
//! source is `bench_libx86/main.rs` and `bench_libx86/harness.c` here), linked against
//! `libx86.a` and the harness; it prints a table of medians (ns) and crate/Xen ratios.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::{self, Workspace};

const MAIN_RS: &str = include_str!("bench_libx86/main.rs");
const HARNESS_C: &str = include_str!("bench_libx86/harness.c");

/// Where Xen's libx86 sources are: `../shared/xen-libx86` from the workspace (or from its
/// parent, for a worktree one level further down), or `$XEN_LIBX86`.
fn libx86_tree(root: &Path) -> Option<PathBuf> {
    let candidates = std::env::var_os("XEN_LIBX86")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            root.ancestors()
                .skip(1)
                .take(2)
                .map(|dir| dir.join("shared/xen-libx86")),
        );
    candidates
        .into_iter()
        .find(|dir| dir.join("build.sh").is_file())
}

fn have_cc(cc: &str) -> bool {
    Command::new(cc)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Runs the comparison; `Ok` with one printed line when it has to be skipped.
pub fn run(workspace: &Workspace) -> Result<(), String> {
    let root = workspace.root();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let Some(tree) = libx86_tree(root) else {
        println!(
            "bench-libx86: skipped: no ../shared/xen-libx86 (set XEN_LIBX86 to Xen's libx86 tree)"
        );
        return Ok(());
    };
    if !have_cc(&cc) {
        println!("bench-libx86: skipped: no C compiler (`{cc}`)");
        return Ok(());
    }
    let out = root.join("target/libx86");
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    process::run(Command::new("sh").arg(tree.join("build.sh")).arg(&out))?;
    let harness = out.join("harness.c");
    std::fs::write(&harness, HARNESS_C).map_err(|e| e.to_string())?;
    process::run(
        Command::new(&cc)
            .args([
                "-O2",
                "-std=gnu99",
                "-fno-strict-aliasing",
                "-D__XEN_TOOLS__",
                "-c",
            ])
            .arg("-I")
            .arg(out.join("include"))
            .arg(&harness)
            .arg("-o")
            .arg(out.join("harness.o")),
    )?;
    let lib = out.join("libxlharness.a");
    let _ = std::fs::remove_file(&lib);
    process::run(
        Command::new("ar")
            .arg("rcs")
            .arg(&lib)
            .arg(out.join("harness.o")),
    )?;
    // The benchmark package: the crate (release) and the two static libraries.
    let pkg = out.join("bench");
    std::fs::create_dir_all(pkg.join("src")).map_err(|e| e.to_string())?;
    let manifest = format!(
        "[package]\nname = \"vs-libx86\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
         [dependencies]\nxen-levelling = {{ path = {root:?} }}\n\n[workspace]\n\n\
         [profile.release]\ncodegen-units = 1\n",
        root = root.display().to_string()
    );
    let build_rs = format!(
        "fn main() {{\n    println!(\"cargo:rustc-link-search=native={}\");\n    \
         println!(\"cargo:rustc-link-lib=static=xlharness\");\n    \
         println!(\"cargo:rustc-link-lib=static=x86\");\n}}\n",
        out.display()
    );
    for (path, text) in [
        (pkg.join("Cargo.toml"), manifest.as_str()),
        (pkg.join("build.rs"), build_rs.as_str()),
        (pkg.join("src/main.rs"), MAIN_RS),
    ] {
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let target_dir = root.join("target");
    process::run(
        workspace
            .cargo(&["run", "--release", "--quiet", "--manifest-path"])
            .arg(pkg.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            .arg("--")
            .arg(root.join("data/cpuid-dumps")),
    )
}
