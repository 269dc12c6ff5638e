//! The CPUID dumps every per-dump test runs over: the repository's own, in
//! `data/cpuid-dumps/` (listed with their SHA-256 in `SHA256SUMS` there), and, where the
//! environment variable [`EXTRA_DUMPS_VAR`] names a directory, every dump in it too. Checks
//! on extra dumps take their expectations from the generations table and the dumps
//! themselves, never from per-dump lists.

use std::path::{Path, PathBuf};

/// The repository's dump folder.
pub const BUNDLED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/cpuid-dumps");

/// Names a directory of further dumps to test (e.g. a user's own CPUs).
pub const EXTRA_DUMPS_VAR: &str = "XEN_LEVELLING_EXTRA_DUMPS";

/// One dump file.
#[derive(Clone, Debug)]
pub struct DumpFile {
    /// The file name, e.g. `GenuineIntel00306C3_Haswell_CPUID.txt`.
    pub name: String,
    /// Its path.
    pub path: PathBuf,
    /// It is one of the repository's own (so per-dump public-spec facts may apply).
    pub bundled: bool,
}

impl DumpFile {
    /// The file's text.
    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.path)
            .unwrap_or_else(|error| panic!("{}: {error}", self.path.display()))
    }
}

/// The dump files in `dir` (`*_CPUID*.txt`, or any `.txt` in an extra folder), sorted.
fn list(dir: &Path, bundled: bool) -> Vec<DumpFile> {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
    let mut files: Vec<DumpFile> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            name.ends_with(".txt") && (!bundled || name.contains("_CPUID"))
        })
        .map(|path| DumpFile {
            name: path.file_name().unwrap().to_string_lossy().into_owned(),
            path,
            bundled,
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
}

/// The repository's dumps, checked against `SHA256SUMS` by name (every listed file is there,
/// and nothing unlisted).
pub fn bundled() -> Vec<DumpFile> {
    let files = list(Path::new(BUNDLED), true);
    let sums = std::fs::read_to_string(format!("{BUNDLED}/SHA256SUMS")).unwrap();
    let mut listed: Vec<&str> = sums
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .map(|name| name.trim_start_matches('*'))
        .filter(|name| name.contains("_CPUID"))
        .collect();
    listed.sort_unstable();
    let present: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        present, listed,
        "data/cpuid-dumps differs from its SHA256SUMS"
    );
    files
}

/// The extra dumps named by [`EXTRA_DUMPS_VAR`], if set.
pub fn extra() -> Vec<DumpFile> {
    match std::env::var_os(EXTRA_DUMPS_VAR) {
        Some(dir) if !dir.is_empty() => list(Path::new(&dir), false),
        _ => Vec::new(),
    }
}

/// Every dump to test: the repository's, then the extra ones.
pub fn all() -> Vec<DumpFile> {
    let mut files = bundled();
    files.extend(extra());
    files
}

/// One of the repository's dumps, by file name.
pub fn bundled_file(name: &str) -> DumpFile {
    DumpFile {
        name: name.to_string(),
        path: Path::new(BUNDLED).join(name),
        bundled: true,
    }
}

/// The text of a dump named the way per-dump tests key them: one of the repository's by file
/// name, or an extra one ([`EXTRA_DUMPS_VAR`]) by absolute path.
pub fn read(name_or_path: &str) -> String {
    let path = if Path::new(name_or_path).is_absolute() {
        PathBuf::from(name_or_path)
    } else {
        Path::new(BUNDLED).join(name_or_path)
    };
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}
