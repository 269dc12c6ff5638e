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
pub fn run(workspace: &Workspace) -> Result<Option<String>, String> {
    let root = workspace.root();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let Some(tree) = libx86_tree(root) else {
        println!(
            "bench-libx86: skipped: no ../shared/xen-libx86 (set XEN_LIBX86 to Xen's libx86 tree)"
        );
        return Ok(None);
    };
    if !have_cc(&cc) {
        println!("bench-libx86: skipped: no C compiler (`{cc}`)");
        return Ok(None);
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
         [dependencies]\nxen-levelling = {{ path = {root:?}, features = [\"dumps\"] }}\n\n[workspace]\n\n\
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
    let mut bench = workspace.cargo(&["run", "--release", "--quiet", "--manifest-path"]);
    bench
        .arg(pkg.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .arg("--")
        .arg(root.join("data/cpuid-dumps"));
    let mut output = process::stdout_of(&mut bench)
        .ok_or_else(|| format!("`{}` failed", process::describe(&bench)))?;
    print!("{output}");
    let binary = target_dir.join("release/vs-libx86");
    let counts = instruction_counts(&binary, &root.join("data/cpuid-dumps"));
    print!("{counts}");
    output.push_str(&counts);
    Ok(Some(output))
}

/// The policies and operations the benchmark races, in its order.
const POLICIES: [&str; 3] = ["SandyBridge", "Genoa", "SapphireRapids"];
const OPERATIONS: usize = 7;
/// The calls a side makes per operation under `--count` (`COUNT_CALLS` in main.rs).
const COUNT_CALLS: u64 = 1000;

/// Instructions per call of each operation on each side, counted by callgrind (exact, the
/// same on every run, unlike the times on a shared machine): one `instructions POLICY OP:
/// crate N Xen M per call` line each. Empty without valgrind.
fn instruction_counts(binary: &Path, dumps: &Path) -> String {
    // Present if it runs: callgrind_annotate answers `--version` with status 255.
    let have = |tool: &str| Command::new(tool).arg("--version").output().is_ok();
    if !have("valgrind") || !have("callgrind_annotate") {
        println!("bench-libx86: instruction counts skipped: no valgrind");
        return String::new();
    }
    let out_file = binary.with_file_name("vs-libx86.callgrind");
    let mut lines = String::new();
    for policy in POLICIES {
        for op in 0..OPERATIONS {
            let ran = Command::new("valgrind")
                .arg("--tool=callgrind")
                .arg(format!("--callgrind-out-file={}", out_file.display()))
                .arg(binary)
                .arg(dumps)
                .args(["--count", policy, &op.to_string()])
                .output()
                .is_ok_and(|out| out.status.success());
            let annotated = Command::new("callgrind_annotate")
                .arg("--inclusive=yes")
                .arg(&out_file)
                .output();
            let (Ok(annotated), true) = (annotated, ran) else {
                continue;
            };
            let text = String::from_utf8_lossy(&annotated.stdout);
            let side = |name: &str| {
                text.lines()
                    .find(|l| l.contains(name))
                    .and_then(|l| l.split_whitespace().next())
                    .and_then(|n| n.replace(',', "").parse::<u64>().ok())
                    .map(|n| n / COUNT_CALLS)
            };
            if let (Some(c), Some(x)) =
                (side("vs_libx86::count_crate"), side("vs_libx86::count_xen"))
            {
                lines.push_str(&format!(
                    "instructions {policy} {op}: crate {c} Xen {x} per call\n"
                ));
            }
        }
    }
    let _ = std::fs::remove_file(&out_file);
    lines
}

/// `cargo xtask bench-libx86 --record`: run the comparison and put its section in
/// BENCHMARKS.md in place of the one there (as `cargo xtask bench` writes it), without
/// rerunning the other benchmarks.
pub fn record(workspace: &Workspace) -> Result<(), String> {
    let result = run(workspace);
    if let Err(why) = &result {
        return Err(why.clone());
    }
    let path = workspace.root().join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = replace_section(&text, &markdown(&result))?;
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("bench-libx86: wrote its section of BENCHMARKS.md");
    Ok(())
}

/// `text` with the section that starts like `section` (its `## ` heading) replaced by
/// `section`, up to the next `## ` heading, the blank line before it kept.
fn replace_section(text: &str, section: &str) -> Result<String, String> {
    let heading = section.lines().next().unwrap_or_default();
    let start = text
        .find(&format!("\n{heading}\n"))
        .map(|at| at + 1)
        .ok_or_else(|| format!("BENCHMARKS.md has no `{heading}` section"))?;
    let end = text[start..]
        .find("\n## ")
        .map_or(text.len(), |at| start + at + 1);
    let blank = if end < text.len() { "\n" } else { "" };
    Ok(format!(
        "{}{section}{blank}{}",
        &text[..start],
        &text[end..]
    ))
}

/// The comparison as a BENCHMARKS.md section: the table the benchmark printed, with the
/// command, or the line saying why it was skipped.
pub fn markdown(result: &Result<Option<String>, String>) -> String {
    let mut md = String::from("## Host side beside Xen's libx86\n\n");
    md.push_str(
        "Command: `cargo xtask bench-libx86`: Xen's libx86 (`../shared/xen-libx86`, built with its \
         `build.sh`, `gcc -O2`) and the crate (release) in one process, on the policies of three \
         dumps, samples interleaved (medians of 201 rounds).\n\n",
    );
    let output = match result {
        Ok(Some(output)) => output,
        Ok(None) => {
            md.push_str("Skipped: no Xen libx86 tree or no C compiler here.\n");
            return md;
        }
        Err(why) => {
            md.push_str(&format!("Failed: {why}\n"));
            return md;
        }
    };
    md.push_str("| policy | operation | crate ns | Xen ns | crate/Xen | target <= 1.0 |\n");
    md.push_str("|---|---|---|---|---|---|\n");
    for line in output.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        // `policy operation… crate xen ratio`: the last three words are numbers.
        let [.., c, x, r] = words[..] else { continue };
        let (Ok(_), Ok(_), Ok(ratio)) = (c.parse::<f64>(), x.parse::<f64>(), r.parse::<f64>())
        else {
            continue;
        };
        let operation = words[1..words.len() - 3].join(" ");
        let met = if ratio <= 1.0 { "yes" } else { "**no**" };
        md.push_str(&format!(
            "| {} | {operation} | {c} | {x} | {r} | {met} |\n",
            words[0]
        ));
    }
    for line in output
        .lines()
        .filter(|l| l.starts_with("libx86 struct") || l.starts_with("worst"))
    {
        md.push_str(&format!("\n{line}\n"));
    }
    md.push_str(&instruction_table(output));
    md.push_str(WHY);
    md
}

/// The `instructions` lines as a table, each operation named as in the timed table.
fn instruction_table(output: &str) -> String {
    // The operations in the order the benchmark races them (its `race` calls).
    let names: Vec<String> = {
        let mut seen = Vec::new();
        for line in output.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.first() != Some(&POLICIES[0]) || words.len() < 5 {
                continue;
            }
            if words[words.len() - 1].parse::<f64>().is_ok() {
                seen.push(words[1..words.len() - 3].join(" "));
            }
        }
        seen
    };
    let mut rows = String::new();
    for line in output.lines() {
        // `instructions POLICY OP: crate N Xen M per call`
        let words: Vec<&str> = line.split_whitespace().collect();
        let [
            "instructions",
            policy,
            op,
            "crate",
            c,
            "Xen",
            x,
            "per",
            "call",
        ] = words[..]
        else {
            continue;
        };
        let (Ok(op), Ok(c), Ok(x)) = (
            op.trim_end_matches(':').parse::<usize>(),
            c.parse::<f64>(),
            x.parse::<f64>(),
        ) else {
            continue;
        };
        let name = names
            .get(op)
            .cloned()
            .unwrap_or_else(|| format!("operation {op}"));
        let ratio = c / x;
        let met = if ratio <= 1.0 { "yes" } else { "**no**" };
        rows.push_str(&format!(
            "| {policy} | {name} | {c} | {x} | {ratio:.2} | {met} |\n"
        ));
    }
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "\nInstructions per call, counted by callgrind (`valgrind --tool=callgrind` on the same \
         binary with `--count POLICY OP`: 1000 calls a side, inclusive counts of the two \
         calling functions): exact and the same on every run, where the times above move \
         with the machine's load. Library calls (`memset`, `memcpy`) count as the \
         instructions they execute, which undercounts their cost (a 2036-byte copy is a few \
         dozen vector instructions). From 2048 bytes glibc's `memset` and `memcpy` switch \
         to `rep stosb`/`rep movsb`, slower for a policy here: a 2048-byte `CpuPolicy` (the \
         2036 aligned to 16) took 358 ns in the criterion `policy/deserialise` against 211 \
         ns at 2036 bytes, and a 2080-byte one counted 4102 instructions for a fresh \
         deserialise (callgrind counts a `rep` iteration an instruction). `CpuPolicy` stays \
         at 2036.\n\n\
         | policy | operation | crate instructions | Xen instructions | crate/Xen | target <= 1.0 |\n\
         |---|---|---|---|---|---|\n{rows}"
    )
}

/// What each side does, where a ratio above 1.0 comes from, and the design that would
/// remove it.
const WHY: &str = "
What each side does, on the same serialised arrays (the crate writes them; libx86 reads them \
back and must produce the identical array before anything is timed): *serialise* is \
`CpuPolicy::write_leaves` against `x86_cpuid_copy_to_buffer`; *deserialise (fresh)* is \
`CpuPolicy::set_from_arrays` (the caller's policy zeroed, the leaves and MSRs merged into \
it) against `memset` of the C policy and `x86_cpuid_copy_from_buffer` + \
`x86_msr_copy_from_buffer`; *by value* is `CpuPolicy::from_arrays` (the same, returning the \
policy in a `Result`: one copy of it more, context, not a target) against them too; *into existing* is `merge_arrays` (in place, entries before a \
bad one kept, as in Xen) against the same two libx86 calls; *merged copy* is `merged` (a copy \
of the policy, then the merge: all or nothing) against them too; *compatible* is \
`check_compatible` against `x86_cpu_policies_are_compatible`. Each sample is a batch sized to \
take about 200 us, the same count for both sides, the sides alternating which runs first; \
the crate's results are kept by reference, as libx86's stay in its buffer. The numbers move \
by 10-30% between runs on this shared two-core machine (other jobs run beside the bench): \
read the ratios, not the absolute times: each is the median of the 201 rounds' own ratios \
(a round times both sides back to back), so a round run while the machine is slow or fast \
counts for both sides alike. What is left is the placement of the code: the compatibility \
check, a few nanoseconds, moves by up to 0.1 between builds that differ elsewhere (libx86's \
loop as much as the crate's).

Where the crate is dearer than libx86 it does more, and the instruction counts say by how \
much. *Deserialise*: about 30 instructions an entry against libx86's 22-23 (into existing, \
divided by the leaves). Every entry's index is clamped under speculation; libx86's \
`array_index_nospec` is `cmp; sbb; and` in inline asm, the crate's (no asm outside `arch/`) \
is the same flag made data through `black_box`, a stack store and reload, and a second bounds \
check the compiler cannot drop after it: about 7 instructions an entry. (Until issue 11's \
second round the compiler had folded the crate's clamp away after the bounds check, knowing \
the index in range, and the deserialise figures recorded before it were without it.) Both deserialisations end by copying the policy's \
17 featureset words that live in leaves into the words it keeps for the compatibility check \
(about 30 instructions). *Fresh* adds the zeroing on both sides; *by value* adds the \
copy of the 2036-byte policy into the value `from_arrays` returns (before `set_from_arrays` \
this was the fresh row, 0.87-1.05x between runs); *merged copy* copies the \
policy in and out (all or nothing, the crate's guarantee; `merge_arrays` is the \
like-for-like). \
*Compatible*: the crate compares the 19 feature words of both policies and \
MSR_PLATFORM_INFO's bits (the crate's documented extension: a guest feature the host lacks is \
refused, naming it), the vendor and the three max leaves, where Xen compares the vendor, the \
max leaves and MSR_PLATFORM_INFO's faulting bit. A `CpuPolicy` keeps the 20 subset-tested \
words side by side (its setters, merges and derivations, and the guard `leaf_mut` returns, \
keep them current), so \"compatible\" (`check_compatible`, inlined) is five 16-byte \
AND-NOTs, leaf 0 as two 64-bit halves (vendor and max basic leaf) and two more comparisons, \
no gathering: fewer instructions than libx86, but more loads, and this loop is bound by loads \
(three a cycle on this machine). A call is 22 loads on the crate's side (the two policies' \
ten vectors of kept words, four halves of leaf 0, the other two max leaves of each, and four \
of the bench's own pointer plumbing, alike on both sides) against about 20 on libx86's (the 12 \
values it compares, the same plumbing, the call through the GOT, the wrapper's constant and \
two returns): 1.1-1.25x libx86's time, depending on the build's code placement, at 0.97x its instructions. Reading leaf 0 as two \
halves instead of four words (two loads fewer) took the ratio from about 1.23x to 1.15x in \
interleaved A/B runs of the two builds. Variants measured the same way (2026-12-04) and not \
kept: the vendor and max leaves kept beside the words in the policy, as `CompatWords` lays \
them out (seven aligned vectors a policy, 18 loads a call), 1.0-1.06x, but the policy grows \
to 2080 bytes, past glibc's 2048-byte `rep stosb` threshold, and a fresh deserialise went \
from 0.85-0.90x to about 1.0x; the same with the four basic slots no leaf reaches (4, 7, 0xB \
and 0xD live in their own arrays) dropped, so that the aligned policy is 2016 bytes, \
0.95-1.06x, with serialise and deserialise 140-150 instructions dearer (the basic leaves no \
longer one array walk). The design that would meet 1.0x with margin is fewer loads than \
libx86's: the 26 words a policy (104 bytes) are four 32-byte loads with AVX2, which the \
x86-64 baseline the crate builds for does not have. \"compatible (words kept)\" checks two \
`CompatWords` copied out of the policies beforehand (vendor and max leaves beside the words, \
seven vectors a side): the toolstack's way to a check under libx86's time. \
The designs that would bring deserialise's instruction count under libx86's (its time already is): a flat leaf store \
in `CpuPolicy` (one array that every (leaf, subleaf) indexes by arithmetic, as the CPUID \
table does), so that an entry is one range test that is also its clamp (`nospec::checked`) \
and one 16-byte copy, with no dispatch on the leaf, and a fresh deserialise that fills the \
caller's policy in place; and an `arch`-provided `cmp; sbb` clamp, the one piece that needs \
asm.
";

#[cfg(test)]
mod tests {
    use super::markdown;

    #[test]
    fn recording_replaces_only_the_section() {
        let text = "# B\n\n## A\n\nold a\n\n## Host side beside Xen's libx86\n\nold\n\n## Q\n\nq\n";
        let new = "## Host side beside Xen's libx86\n\nnew\n";
        assert_eq!(
            super::replace_section(text, new).unwrap(),
            "# B\n\n## A\n\nold a\n\n## Host side beside Xen's libx86\n\nnew\n\n## Q\n\nq\n"
        );
        // Last in the file: replaced to the end.
        let text = "# B\n\n## Host side beside Xen's libx86\n\nold\n";
        assert_eq!(
            super::replace_section(text, new).unwrap(),
            format!("# B\n\n{new}")
        );
        assert!(super::replace_section("# B\n", new).is_err());
    }

    #[test]
    fn the_printed_table_becomes_rows_with_a_verdict() {
        let output = "libx86 struct cpu_policy: 1976 bytes; crate CpuPolicy: 1968 bytes\n\
             policy           operation                      crate ns     Xen ns crate/Xen\n\
             SandyBridge      serialise                          20.1       41.0      0.49\n\
             Genoa            compatible, words kept              3.7        2.8      1.31\n\
             SandyBridge      (32 leaves)\n\
             worst crate/Xen ratio (serialise, ...): 1.31\n";
        let md = markdown(&Ok(Some(output.to_string())));
        assert!(
            md.contains("| SandyBridge | serialise | 20.1 | 41.0 | 0.49 | yes |"),
            "{md}"
        );
        assert!(md.contains("| Genoa | compatible, words kept | 3.7 | 2.8 | 1.31 | **no** |"));
        assert!(!md.contains("(32 leaves)"));
        assert!(md.contains("worst crate/Xen ratio"));
        assert!(markdown(&Ok(None)).contains("Skipped"));
        let counted = format!(
            "{output}instructions SandyBridge 0: crate 850 Xen 1560 per call\n\
             instructions Genoa 1: crate 2100 Xen 1600 per call\n"
        );
        let md = markdown(&Ok(Some(counted)));
        assert!(
            md.contains("| SandyBridge | serialise | 850 | 1560 | 0.54 | yes |"),
            "{md}"
        );
        // Operation 1 has no timed row in this output: named by its number.
        assert!(
            md.contains("| Genoa | operation 1 | 2100 | 1600 | 1.31 | **no** |"),
            "{md}"
        );
    }
}
