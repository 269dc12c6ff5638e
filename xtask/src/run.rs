//! `cargo xtask run`: builds and runs the host example that dumps levelled CPUID policies.
//!
//! For now this is the host example only; booting the test hypervisor in QEMU will join it.

use std::path::Path;

use crate::process::{self, Workspace};

/// The example `cargo xtask run` runs, from `examples/<name>.rs` of the `xen-levelling` crate.
const EXAMPLE: &str = "level_dumps";

/// Runs `cargo run -p xen-levelling --example level_dumps -- <args>`, or explains that the
/// example does not exist yet.
pub fn run(workspace: &Workspace, args: &[String]) -> Result<(), String> {
    let source = Path::new("examples").join(format!("{EXAMPLE}.rs"));
    if !workspace.root().join(&source).is_file() {
        return Err(format!(
            "{} does not exist yet, so there is nothing to run; \
             `cargo xtask run` runs that example once it is written",
            source.display()
        ));
    }
    let mut command = workspace.cargo(&["run", "-p", "xen-levelling", "--example", EXAMPLE]);
    if !args.is_empty() {
        command.arg("--").args(args);
    }
    process::run(&mut command)
}
