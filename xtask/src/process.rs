//! Where the workspace is, which `cargo` to use, and running child processes with errors that
//! name the command that failed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root and the `cargo` binary every child build goes through.
pub struct Workspace {
    /// The directory holding the workspace `Cargo.toml` (the parent of `xtask/`).
    root: PathBuf,
    /// The `cargo` that launched us (`$CARGO`), so children use the same toolchain.
    cargo: OsString,
}

impl Workspace {
    /// Finds the workspace root from this crate's manifest directory, and `cargo` from `$CARGO`
    /// (falling back to `cargo` on `PATH`).
    pub fn locate() -> Self {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir
            .parent()
            .expect("xtask/ lives inside the workspace root")
            .to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        Self { root, cargo }
    }

    /// The workspace root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A `cargo` command with `args`, to be run from the workspace root.
    pub fn cargo(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.cargo);
        command.args(args).current_dir(&self.root);
        command
    }

    /// Runs `cargo` with `args` from the workspace root, failing unless it exits with 0.
    pub fn run_cargo(&self, args: &[&str]) -> Result<(), String> {
        run(&mut self.cargo(args))
    }
}

/// Renders a command as `program arg arg…` for messages.
pub fn describe(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned()),
    );
    words.join(" ")
}

/// Runs `command` with inherited stdio, failing unless it exits with 0.
pub fn run(command: &mut Command) -> Result<(), String> {
    let status = command
        .status()
        .map_err(|error| format!("could not start `{}`: {error}", describe(command)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", describe(command)))
    }
}

/// Runs `command` capturing its output; `None` if it cannot start or exits non-zero, else its
/// standard output.
pub fn stdout_of(command: &mut Command) -> Option<String> {
    let output = command.output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}
