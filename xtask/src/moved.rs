//! The self-containment check: the repository's files, copied to an empty directory with no
//! siblings, build and pass their host tests and the kernel build there. Anything that still
//! reads a path outside the repository (a sibling folder, say) fails this step, naming the file.
//!
//! The copy holds what `git ls-files` lists (tracked files plus untracked ones not ignored), so
//! it is what a clone of the working tree would hold. Builds reuse `target/moved/`, where
//! compiled dependencies survive between runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::{self, Workspace};

/// Copies the repository into a fresh temporary directory and runs the host tests and the
/// kernel build there.
pub fn run(workspace: &Workspace) -> Result<(), String> {
    let parent = std::env::temp_dir().join(format!("xen-levelling-moved-{}", std::process::id()));
    let copy = parent.join("xen-levelling");
    let _ = std::fs::remove_dir_all(&parent);
    let result = copy_repository(workspace.root(), &copy).and_then(|count| {
        println!("moved: {count} files copied to {}", copy.display());
        check_copy(workspace, &copy)
    });
    let _ = std::fs::remove_dir_all(&parent);
    result
}

/// Copies every file `git ls-files` lists from `root` to `copy`; returns how many.
fn copy_repository(root: &Path, copy: &Path) -> Result<usize, String> {
    let mut list = Command::new("git");
    list.args([
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
    ])
    .current_dir(root);
    let listing = process::stdout_of(&mut list).ok_or_else(|| {
        format!(
            "`{}` failed: is this a git checkout?",
            process::describe(&list)
        )
    })?;
    let mut count = 0;
    for name in listing.split('\0').filter(|name| !name.is_empty()) {
        let from = root.join(name);
        // Deleted but still tracked: not part of the tree a clone would get.
        if !from.is_file() {
            continue;
        }
        let to = copy.join(name);
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
        }
        std::fs::copy(&from, &to).map_err(|error| format!("{}: {error}", from.display()))?;
        count += 1;
    }
    Ok(count)
}

/// Runs the host tests and the kernel build in the copy.
fn check_copy(workspace: &Workspace, copy: &Path) -> Result<(), String> {
    let target: PathBuf = workspace.root().join("target/moved");
    let cargo = |args: &[&str]| {
        let mut command = workspace.cargo(args);
        command.current_dir(copy).env("CARGO_TARGET_DIR", &target);
        command
    };
    process::run(&mut cargo(&["test", "--workspace", "--quiet"]))?;
    // From the kernel's own directory, so that its `.cargo/config.toml` applies.
    let mut kernel = cargo(&[
        "build",
        "--release",
        "--quiet",
        "--target-dir",
        &target.join("kernel").to_string_lossy(),
    ]);
    kernel.current_dir(copy.join(crate::qemu::KERNEL_DIR));
    process::run(&mut kernel)
}
