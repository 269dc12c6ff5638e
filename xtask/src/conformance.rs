//! `cargo xtask xen-conformance`: Xen's own tests of its CPU policy library (libx86), run
//! against xen-levelling through its C ABI (`capi/`).
//!
//! 1. Builds Xen's libx86, its unit test `test-cpu-policy.o` and our replay driver
//!    (`capi/conformance/replay.c`) from a Xen tree, into `target/xen-conformance/`.
//! 2. Builds the C ABI as a static library and links Xen's unmodified `test-cpu-policy.o`
//!    against it: it must print `Done: all ok`.
//! 3. Writes a corpus of `struct cpu_policy` images (the 22 dumps' system policies, the fuzz
//!    seeds and regressions, a few edge cases), runs the replay of Xen's AFL harness over it
//!    linked once against Xen's libx86 and once against ours, and compares the two outputs
//!    line by line: every return code, error field, buffer and policy byte.
//!
//! The Xen tree is `../shared/xen-libx86` (the files of xen-project/xen at c447b7308b that
//! libx86 needs) beside the repository, or beside the main checkout of a git worktree; or any
//! Xen checkout laid out the same way, named with `--xen PATH` or `XEN_TREE=PATH`. This is the only step that reads outside the repository; the gate runs
//! it when `cc` and the tree are there and otherwise says in one line why it did not.

use std::path::{Path, PathBuf};
use std::process::Command;

use xen_levelling::CpuPolicy;
use xen_levelling::dump::Aida64Dump;
use xen_levelling::policy::RawMsrs;
use xen_levelling::policy::system::{HostOptions, SystemPolicies};
use xen_levelling_capi::XenCpuPolicy;

use crate::process::{self, Workspace, describe};

/// The environment variable naming the Xen tree.
pub const XEN_TREE_ENV: &str = "XEN_TREE";

/// Where the Xen tree is unless told otherwise, relative to the workspace root.
const DEFAULT_TREE: &str = "../shared/xen-libx86";

/// Xen's unit test, relative to the tree.
const TEST_SOURCE: &str = "tools/tests/cpu-policy/test-cpu-policy.c";

/// libx86's sources, relative to the tree (Xen 4.21 on; before, `xen/lib/x86`).
const LIB_DIR: &str = "xen/arch/x86/lib/cpu-policy";

/// The flags Xen's tools build libx86 and its test with, less the include paths.
const CFLAGS: [&str; 7] = [
    "-O2",
    "-std=gnu99",
    "-fno-strict-aliasing",
    "-Wall",
    "-Wstrict-prototypes",
    "-Werror",
    "-D__XEN_TOOLS__",
];

/// Why the step cannot run here.
pub struct Skip(String);

/// `cargo xtask xen-conformance [--xen PATH]`.
pub fn run(workspace: &Workspace, args: &[String]) -> Result<(), String> {
    let tree = match args {
        [] => None,
        [flag, path] if flag == "--xen" => Some(PathBuf::from(path)),
        _ => {
            return Err(format!(
                "usage: cargo xtask xen-conformance [--xen PATH] (got {args:?})"
            ));
        }
    };
    match prerequisites(workspace, tree) {
        Ok(tree) => conformance(workspace, &tree),
        Err(Skip(why)) => Err(why),
    }
}

/// The gate's step: the same, but a missing compiler or tree is one line and a pass.
pub fn gate_step(workspace: &Workspace) -> Result<(), String> {
    match prerequisites(workspace, None) {
        Ok(tree) => conformance(workspace, &tree),
        Err(Skip(why)) => {
            println!("xen-conformance: skipped: {why}");
            Ok(())
        }
    }
}

/// `../shared/xen-libx86` beside the repository or, in a git worktree, beside its main
/// checkout.
fn default_tree(root: &Path) -> PathBuf {
    let beside = root.join(DEFAULT_TREE);
    if beside.is_dir() {
        return beside;
    }
    let mut git = Command::new("git");
    git.args(["rev-parse", "--path-format=absolute", "--git-common-dir"])
        .current_dir(root);
    process::stdout_of(&mut git)
        .map(|dir| PathBuf::from(dir.trim()))
        .and_then(|dir| Some(dir.parent()?.join(DEFAULT_TREE)))
        .filter(|tree| tree.is_dir())
        .unwrap_or(beside)
}

/// The Xen tree to use, once `cc`, `ar`, `python3` and the tree itself are known to be there.
fn prerequisites(workspace: &Workspace, tree: Option<PathBuf>) -> Result<PathBuf, Skip> {
    let tree = tree
        .or_else(|| std::env::var_os(XEN_TREE_ENV).map(PathBuf::from))
        .unwrap_or_else(|| default_tree(workspace.root()));
    for tool in ["cc", "ar", "python3"] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Err(Skip(format!("no `{tool}` on PATH")));
        }
    }
    let tree = tree.canonicalize().unwrap_or(tree);
    if !tree.join(TEST_SOURCE).is_file() || !tree.join(LIB_DIR).is_dir() {
        return Err(Skip(format!(
            "no Xen tree at {} (it needs {TEST_SOURCE} and {LIB_DIR}/; set {XEN_TREE_ENV} or \
             pass --xen PATH)",
            tree.display()
        )));
    }
    Ok(tree)
}

fn conformance(workspace: &Workspace, tree: &Path) -> Result<(), String> {
    let out = workspace.root().join("target/xen-conformance");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("xen-conformance: Xen tree {}", tree.display());

    let include = include_tree(tree, &out)?;
    let xen_lib = build_libx86(tree, &out, &include)?;
    let ours = build_capi(workspace)?;
    let compile = |source: &Path, object: &str| -> Result<PathBuf, String> {
        let object = out.join(object);
        let mut cc = Command::new("cc");
        cc.args(CFLAGS)
            .arg(format!("-I{}", include.display()))
            .arg("-c")
            .arg(source)
            .arg("-o")
            .arg(&object);
        process::run(&mut cc)?;
        Ok(object)
    };
    let link = |object: &Path, library: &Path, exe: &str| -> Result<PathBuf, String> {
        let exe = out.join(exe);
        process::run(
            Command::new("cc")
                .arg(object)
                .arg(library)
                .arg("-o")
                .arg(&exe),
        )?;
        Ok(exe)
    };

    // Xen's unit test, unmodified, against Xen's library and then ours.
    let test = compile(&tree.join(TEST_SOURCE), "test-cpu-policy.o")?;
    for (library, exe, whose) in [
        (&xen_lib, "test-cpu-policy-xen", "Xen's libx86"),
        (&ours, "test-cpu-policy", "xen-levelling"),
    ] {
        let exe = link(&test, library, exe)?;
        let output = Command::new(&exe)
            .output()
            .map_err(|e| format!("{}: {e}", exe.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let last = stdout.lines().last().unwrap_or("(no output)");
        if !output.status.success() || last != "Done: all ok" {
            return Err(format!(
                "Xen's test-cpu-policy against {whose} failed ({}):\n{stdout}",
                output.status
            ));
        }
        println!("xen-conformance: Xen's test-cpu-policy against {whose}: {last}");
    }

    // The AFL harness's logic, replayed through both libraries.
    let corpus = write_corpus(workspace.root(), &out.join("corpus"))?;
    let replay = compile(
        &workspace.root().join("capi/conformance/replay.c"),
        "replay.o",
    )?;
    let outputs = [(&xen_lib, "replay-xen"), (&ours, "replay")]
        .into_iter()
        .map(|(library, exe)| {
            let exe = link(&replay, library, exe)?;
            let mut command = Command::new(&exe);
            command.args(&corpus);
            let output = command
                .output()
                .map_err(|e| format!("{}: {e}", exe.display()))?;
            if !output.status.success() {
                return Err(format!(
                    "`{}` failed ({}): {}",
                    exe.display(),
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        })
        .collect::<Result<Vec<_>, String>>()?;
    let report = compare(&outputs[0], &outputs[1])?;
    println!(
        "xen-conformance: AFL harness replay over {} policies: {report}",
        corpus.len()
    );
    Ok(())
}

/// The include tree a libx86 caller compiles against, assembled as Xen's tools build does:
/// the public headers as `<xen/…>`, the arch headers as `<xen/asm/…>`, `cpu-policy.h` and
/// the generated `cpuid-autogen.h` as `<xen/lib/x86/…>`, and `<xen-tools/…>`.
fn include_tree(tree: &Path, out: &Path) -> Result<PathBuf, String> {
    let include = out.join("include");
    copy_dir(&tree.join("xen/include/public"), &include.join("xen"))?;
    copy_dir(
        &tree.join("xen/arch/x86/include/asm"),
        &include.join("xen/asm"),
    )?;
    copy_dir(
        &tree.join("tools/include/xen-tools"),
        &include.join("xen-tools"),
    )?;
    let lib = include.join("xen/lib/x86");
    std::fs::create_dir_all(&lib).map_err(|e| format!("{}: {e}", lib.display()))?;
    let header = tree.join("xen/include/xen/lib/x86/cpu-policy.h");
    std::fs::copy(&header, lib.join("cpu-policy.h"))
        .map_err(|e| format!("{}: {e}", header.display()))?;
    process::run(
        Command::new("python3")
            .arg(tree.join("xen/tools/gen-cpuid.py"))
            .arg("-i")
            .arg(tree.join("xen/include/public/arch-x86/cpufeatureset.h"))
            .arg("-o")
            .arg(lib.join("cpuid-autogen.h")),
    )?;
    Ok(include)
}

/// Copies the directory `from` into `to`, recursively.
fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let entries = std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", from.display()))?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if source.is_dir() {
            copy_dir(&source, &target)?;
        } else {
            std::fs::copy(&source, &target).map_err(|e| format!("{}: {e}", source.display()))?;
        }
    }
    Ok(())
}

/// Xen's libx86.a, from every C file of its source directory.
fn build_libx86(tree: &Path, out: &Path, include: &Path) -> Result<PathBuf, String> {
    let dir = tree.join(LIB_DIR);
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    sources.sort();
    let objects = out.join("libx86");
    std::fs::create_dir_all(&objects).map_err(|e| format!("{}: {e}", objects.display()))?;
    let mut archive = Command::new("ar");
    let library = out.join("libx86.a");
    archive.arg("rcs").arg(&library);
    for source in &sources {
        let object = objects
            .join(source.file_stem().unwrap())
            .with_extension("o");
        process::run(
            Command::new("cc")
                .args(CFLAGS)
                .arg(format!("-I{}", include.display()))
                .arg(format!("-I{}", dir.display()))
                .arg("-c")
                .arg(source)
                .arg("-o")
                .arg(&object),
        )?;
        archive.arg(object);
    }
    process::run(&mut archive)?;
    Ok(library)
}

/// The C ABI as a static library: `no_std`, panic=abort (see `capi/Cargo.toml`).
fn build_capi(workspace: &Workspace) -> Result<PathBuf, String> {
    let args = [
        "rustc",
        "--quiet",
        "-p",
        "xen-levelling-capi",
        "--release",
        "--features",
        "staticlib",
        "--crate-type",
        "staticlib",
        "--",
        "-C",
        "panic=abort",
    ];
    let mut cargo = workspace.cargo(&args);
    process::run(&mut cargo).map_err(|e| format!("{e} (building the C ABI)"))?;
    let library = workspace
        .root()
        .join("target/release/libxen_levelling_capi.a");
    if !library.is_file() {
        return Err(format!(
            "`{}` left no {}",
            describe(&cargo),
            library.display()
        ));
    }
    Ok(library)
}

/// Writes the replay corpus into `dir`, one `struct cpu_policy` image a file; returns the files.
///
/// - every system policy (raw, host, PV and HVM max and default) of every CPUID dump in
///   `data/cpuid-dumps/`;
/// - every fuzz seed and regression under `fuzz/`, its bytes repeated to fill the structure;
/// - an all-zero and an all-ones policy.
///
/// The four bytes of C padding after `platform_info` are zeroed: no libx86 function writes
/// them, so the harness's whole-structure comparison would flag them in both libraries alike.
fn write_corpus(root: &Path, dir: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut images: Vec<(String, Vec<u8>)> = Vec::new();
    let dumps = root.join("data/cpuid-dumps");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dumps)
        .map_err(|e| format!("{}: {e}", dumps.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    names.sort();
    for path in &names {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let dump = Aida64Dump::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let msrs = RawMsrs {
            platform_info: dump.msr(0xce).value(),
            arch_caps: dump.msr(0x10a).value(),
        };
        let s =
            SystemPolicies::derive(&CpuPolicy::from_source(&dump, msrs), HostOptions::default());
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        for (which, p) in [
            ("raw", s.raw),
            ("host", s.host),
            ("pv-max", s.pv_max),
            ("pv-default", s.pv_default),
            ("hvm-max", s.hvm_max),
            ("hvm-default", s.hvm_default),
        ] {
            images.push((
                format!("dump-{stem}-{which}"),
                XenCpuPolicy::from_policy(&p).as_bytes().to_vec(),
            ));
        }
    }
    let size = size_of::<XenCpuPolicy>();
    let mut seeds = Vec::new();
    for sub in ["fuzz/seeds", "fuzz/regressions"] {
        files_under(&root.join(sub), &mut seeds)?;
    }
    seeds.sort();
    for path in &seeds {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let image: Vec<u8> = if bytes.is_empty() {
            vec![0; size]
        } else {
            bytes.iter().copied().cycle().take(size).collect()
        };
        let relative = path.strip_prefix(root).unwrap_or(path);
        images.push((
            format!("seed-{}", relative.to_string_lossy().replace('/', "-")),
            image,
        ));
    }
    images.push(("zero".into(), vec![0; size]));
    images.push(("ones".into(), vec![0xff; size]));
    let padding = 1956..1960;
    let mut files = Vec::new();
    for (name, mut image) in images {
        image[padding.clone()].fill(0);
        let file = dir.join(name);
        std::fs::write(&file, &image).map_err(|e| format!("{}: {e}", file.display()))?;
        files.push(file);
    }
    Ok(files)
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.is_dir() {
            files_under(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Compares the replay outputs of Xen's library and ours, line by line.
fn compare(xen: &str, ours: &str) -> Result<String, String> {
    let (xen, ours): (Vec<&str>, Vec<&str>) = (xen.lines().collect(), ours.lines().collect());
    let differing: Vec<usize> = (0..xen.len().max(ours.len()))
        .filter(|&i| xen.get(i) != ours.get(i))
        .collect();
    if differing.is_empty() {
        let last = xen.last().copied().unwrap_or_default();
        return Ok(format!(
            "{} result lines byte-identical to Xen's libx86 ({last})",
            xen.len()
        ));
    }
    let clip = |line: Option<&&str>| -> String {
        let line = line.copied().unwrap_or("(missing)");
        line.chars().take(160).collect()
    };
    let mut message = format!(
        "the AFL harness replay differs from Xen's libx86 on {} of {} lines; first:",
        differing.len(),
        xen.len()
    );
    for &i in differing.iter().take(5) {
        message += &format!(
            "\n  line {}:\n    Xen:           {}\n    xen-levelling: {}",
            i + 1,
            clip(xen.get(i)),
            clip(ours.get(i))
        );
    }
    Err(message)
}

#[cfg(test)]
mod tests {
    use super::compare;

    #[test]
    fn identical_outputs_pass_and_say_how_many_lines() {
        let out = "a: rc 0\nreplayed 1 policies\n";
        let report = compare(out, out).unwrap();
        assert!(
            report.starts_with("2 result lines byte-identical"),
            "{report}"
        );
    }

    #[test]
    fn a_differing_or_missing_line_fails_naming_it() {
        let e = compare("a: rc 0\nb: rc 0\n", "a: rc 0\nb: rc -34\n").unwrap_err();
        assert!(e.contains("1 of 2 lines") && e.contains("line 2"), "{e}");
        assert!(e.contains("b: rc -34"), "{e}");
        let e = compare("a\nb\n", "a\n").unwrap_err();
        assert!(e.contains("(missing)"), "{e}");
    }
}
