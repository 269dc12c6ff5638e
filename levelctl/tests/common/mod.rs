//! Helpers shared by the levelctl test files: real dumps as hosts, pools built from them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use levelctl::input::{self, HostInputOptions};
use levelctl::{Change, Host, Pool};

/// The real CPUID dumps shared by the project.
pub const DUMPS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/cpuid-dumps");
/// levelctl's own sample inputs.
pub const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

pub const HASWELL: &str = "GenuineIntel00306C3_Haswell_CPUID.txt";
pub const SANDYBRIDGE: &str = "GenuineIntel00206A7_SandyBridge2_CPUID.txt";
pub const SKYLAKE: &str = "GenuineIntel0050654_SkylakeXeon_20_CPUID.txt";
pub const SKYLAKE_C: &str = "GenuineIntel0050654_SkylakeXeon_CPUID.txt";
pub const IVYBRIDGE: &str = "GenuineIntel00306A9_IvyBridge_CPUID.txt";
pub const NEHALEM: &str = "GenuineIntel00106A2_Nehalem-EP_CPUID.txt";
pub const PENRYN: &str = "GenuineIntel0010676_Penryn_CPUID.txt";
pub const GENOA: &str = "AuthenticAMD0A10F11_K19_Genoa_02_CPUID.txt";
pub const CASTLEPEAK: &str = "AuthenticAMD0830F10_K17_CastlePeak_CPUID.txt";
pub const BARCELONA: &str = "AuthenticAMD0100F21_K10_Barcelona_CPUID.txt";
pub const HYGON: &str = "HygonGenuine0900F02_Hygon_CPUID.txt";

pub fn dump_path(file: &str) -> PathBuf {
    PathBuf::from(DUMPS).join(file)
}

pub fn data_path(file: &str) -> PathBuf {
    PathBuf::from(DATA).join(file)
}

/// A real dump as a host called `name`, booted with `cpuid` (Xen's `cpuid=` option).
pub fn host_with(file: &str, name: &str, cpuid: Option<&str>) -> Host {
    input::load_host(
        &dump_path(file),
        &HostInputOptions {
            name: Some(name.to_string()),
            cpuid: cpuid.map(str::to_string),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .host
}

/// A real dump as a host called `name`.
pub fn host(file: &str, name: &str) -> Host {
    host_with(file, name, None)
}

/// A pool of `hosts`, joined in order.
pub fn pool(name: &str, hosts: Vec<Host>) -> Pool {
    let mut p = Pool::new(name);
    for h in hosts {
        p.apply(Change::Join(Box::new(h))).unwrap();
    }
    p
}

/// `levelctl` run on the database `state`, with nothing of the caller's environment that
/// would redirect or break it.
pub fn levelctl_command(state: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_levelctl"));
    command
        .arg("--state")
        .arg(state)
        .args(args)
        .env_remove("LEVELCTL_STATE")
        .env_remove(levelctl::store::FAIL_WRITE_ENV);
    command
}

/// What one `levelctl` run printed, and its exit code.
pub struct Run {
    /// The exit code (-1 when killed).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Standard output as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// Runs `levelctl` on the database `state`.
pub fn levelctl(state: &Path, args: &[&str]) -> Run {
    let out = levelctl_command(state, args).output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}
