//! `cargo xtask provision`: makes sure the tools the QEMU steps need are present.
//!
//! - QEMU: `qemu-system-x86_64` must run; if it does not and we are root, it is installed with
//!   `apt-get` (package `qemu-system-x86`); if we are not root, the user is told what to install.
//! - Rust targets: `x86_64-unknown-none` (the kernel) and `aarch64-unknown-none` (the proof
//!   that no x86 asm leaks into the core). `rust-toolchain.toml` lists both, so rustup normally
//!   installs them on first use; any still missing are added with `rustup target add`.
//! - Chromium: the report test renders `target/levelling-report.html` headless; if neither
//!   `chromium` nor `chromium-browser` runs and we are root, Debian's `chromium` is installed
//!   with `apt-get`; if we are not root, the user is told what to install.

use std::io::ErrorKind;
use std::process::Command;

use crate::process::{self, Workspace};

/// The QEMU binary the harness boots the test hypervisor with.
const QEMU: &str = "qemu-system-x86_64";

/// The Debian/Ubuntu package that provides [`QEMU`].
const QEMU_PACKAGE: &str = "qemu-system-x86";

/// The bare-metal targets the gate builds for.
const REQUIRED_TARGETS: &[&str] = &["x86_64-unknown-none", "aarch64-unknown-none"];

/// The Debian package of the browser the report test renders the page with.
const CHROMIUM_PACKAGE: &str = "chromium";

/// Provisions QEMU, the Rust targets and Chromium.
pub fn run(workspace: &Workspace) -> Result<(), String> {
    ensure_qemu()?;
    ensure_targets(workspace)?;
    ensure_chromium()
}

/// The first line of `chromium --version` (or `chromium-browser`'s), if one runs.
pub fn chromium_version() -> Option<String> {
    ["chromium", "chromium-browser"].into_iter().find_map(|b| {
        let out = Command::new(b).arg("--version").output().ok()?;
        out.status.success().then(|| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        })
    })
}

/// Makes sure a headless Chromium runs, installing Debian's with `apt-get` when we are root.
fn ensure_chromium() -> Result<(), String> {
    if let Some(version) = chromium_version() {
        println!("provision: found {version}");
        return Ok(());
    }
    if !is_root() {
        return Err(format!(
            "chromium is not installed (or does not run); the report test needs it: install it, \
             e.g. `sudo apt-get install {CHROMIUM_PACKAGE}`, then re-run `cargo xtask provision`"
        ));
    }
    println!("provision: chromium not found; installing {CHROMIUM_PACKAGE} with apt-get");
    apt_get(&["update"])?;
    apt_get(&["install", "-y", "--no-install-recommends", CHROMIUM_PACKAGE])?;
    let version = chromium_version().ok_or_else(|| {
        format!("installed {CHROMIUM_PACKAGE}, but `chromium --version` still does not run")
    })?;
    println!("provision: installed {version}");
    Ok(())
}

/// Makes sure [`QEMU`] runs, installing it with `apt-get` when we are root.
fn ensure_qemu() -> Result<(), String> {
    if let Some(version) = qemu_version() {
        println!("provision: found {version}");
        return Ok(());
    }
    if !is_root() {
        return Err(format!(
            "{QEMU} is not installed (or does not run); install the `{QEMU_PACKAGE}` package, \
             e.g. `sudo apt-get install {QEMU_PACKAGE}`, then re-run `cargo xtask provision`"
        ));
    }
    println!("provision: {QEMU} not found; installing {QEMU_PACKAGE} with apt-get");
    apt_get(&["update"])?;
    apt_get(&["install", "-y", QEMU_PACKAGE])?;
    let version = qemu_version().ok_or_else(|| {
        format!("installed {QEMU_PACKAGE}, but `{QEMU} --version` still does not run")
    })?;
    println!("provision: installed {version}");
    Ok(())
}

/// Runs `apt-get` non-interactively with `args`.
fn apt_get(args: &[&str]) -> Result<(), String> {
    let mut command = Command::new("apt-get");
    command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    process::run(&mut command).map_err(|error| {
        format!("{error}; install `{QEMU_PACKAGE}` (which provides {QEMU}) by hand")
    })
}

/// The first line of `qemu-system-x86_64 --version`, or `None` if it does not run.
pub fn qemu_version() -> Option<String> {
    let stdout = process::stdout_of(Command::new(QEMU).arg("--version"))?;
    Some(stdout.lines().next().unwrap_or(QEMU).trim().to_owned())
}

/// Whether we run as root: the effective uid from `/proc/self/status`, else from `id -u`.
fn is_root() -> bool {
    let from_proc = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| effective_uid(&status));
    let uid = from_proc.or_else(|| {
        process::stdout_of(Command::new("id").arg("-u")).and_then(|out| out.trim().parse().ok())
    });
    uid == Some(0)
}

/// The effective uid from the text of `/proc/self/status` (`Uid: real effective saved fs`).
fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|line| line.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Makes sure every target in [`REQUIRED_TARGETS`] is installed, adding any that are missing.
fn ensure_targets(workspace: &Workspace) -> Result<(), String> {
    let mut list = Command::new("rustup");
    list.args(["target", "list", "--installed"])
        .current_dir(workspace.root());
    let installed = match list.output() {
        Err(error) if error.kind() == ErrorKind::NotFound => {
            println!(
                "provision: hint: rustup not found, so the Rust targets cannot be checked; \
                 make sure your toolchain has {} installed",
                REQUIRED_TARGETS.join(" and ")
            );
            return Ok(());
        }
        Err(error) => return Err(format!("could not start `rustup`: {error}")),
        Ok(output) if !output.status.success() => {
            return Err(format!(
                "`{}` failed ({})",
                process::describe(&list),
                output.status
            ));
        }
        Ok(output) => String::from_utf8_lossy(&output.stdout).into_owned(),
    };
    let missing = missing_targets(&installed, REQUIRED_TARGETS);
    if missing.is_empty() {
        println!(
            "provision: Rust targets installed: {}",
            REQUIRED_TARGETS.join(", ")
        );
        return Ok(());
    }
    println!(
        "provision: adding missing Rust targets: {}",
        missing.join(", ")
    );
    let mut add = Command::new("rustup");
    add.args(["target", "add"])
        .args(&missing)
        .current_dir(workspace.root());
    process::run(&mut add)
}

/// The targets of `required` absent from `installed` (the output of
/// `rustup target list --installed`, one target per line).
fn missing_targets<'a>(installed: &str, required: &[&'a str]) -> Vec<&'a str> {
    let installed: Vec<&str> = installed.lines().map(str::trim).collect();
    required
        .iter()
        .copied()
        .filter(|target| !installed.contains(target))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{REQUIRED_TARGETS, effective_uid, missing_targets};

    #[test]
    fn effective_uid_is_the_second_uid_field() {
        let status =
            "Name:\tcat\nUmask:\t0022\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(effective_uid(status), Some(0));
        assert_eq!(effective_uid("Uid:\t0\t1000\t1000\t1000\n"), Some(1000));
    }

    #[test]
    fn effective_uid_is_none_without_a_usable_uid_line() {
        assert_eq!(effective_uid("Name:\tcat\n"), None);
        assert_eq!(effective_uid("Uid:\t0\n"), None);
        assert_eq!(effective_uid("Uid:\t0\tx\n"), None);
    }

    #[test]
    fn missing_targets_lists_only_the_absent_ones_in_order() {
        let all = "aarch64-unknown-none\nx86_64-unknown-linux-gnu\nx86_64-unknown-none\n";
        assert!(missing_targets(all, REQUIRED_TARGETS).is_empty());
        let host_only = "x86_64-unknown-linux-gnu\n";
        assert_eq!(
            missing_targets(host_only, REQUIRED_TARGETS),
            REQUIRED_TARGETS
        );
        let one = "x86_64-unknown-none\n";
        assert_eq!(
            missing_targets(one, REQUIRED_TARGETS),
            ["aarch64-unknown-none"]
        );
    }

    #[test]
    fn missing_targets_does_not_match_prefixes() {
        let similar = "x86_64-unknown-none-softfloat\n";
        assert_eq!(
            missing_targets(similar, &["x86_64-unknown-none"]),
            ["x86_64-unknown-none"]
        );
    }
}
