//! Pool state files of levelctl before the database ([`crate::store`]): one JSON file per
//! pool, `<dir>/<pool>.json`, written atomically. `levelctl state import` reads them into the
//! database with [`parse_state`].
//!
//! ```json
//! { "format": "levelctl-pool-state", "version": 1, "pool": { "name": "…", "hosts": […], "vms": […] } }
//! ```
//!
//! Writes go to a temporary file in the same directory, which is fsynced, renamed over the
//! state file, and the directory fsynced: a crash leaves the old state or the new, never half
//! of one. A file that does not parse, fails the pool's consistency rules, or carries a newer
//! `version` is refused with an error naming the file (and line, for JSON errors), and is
//! never overwritten: every write first re-reads the file it replaces and refuses to replace
//! one it could not have loaded. Concurrent writers are not locked out; the last rename wins.

use core::fmt;
use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{Pool, PowerState, valid_name};

/// The `format` value of a state file.
pub const FORMAT: &str = "levelctl-pool-state";
/// The state format version this build reads and writes.
pub const VERSION: u32 = 1;

/// Why a state file cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub kind: StateErrorKind,
}

/// What is wrong with a state file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateErrorKind {
    /// No such pool.
    Missing,
    /// `pool init` of a pool that exists.
    Exists,
    /// Not valid JSON, or not the schema.
    Corrupt {
        /// 1-based line (0 if unknown).
        line: usize,
        /// The parser's reason.
        reason: String,
    },
    /// Valid JSON, but it breaks the pool's rules (duplicate names, dangling hosts, …).
    Inconsistent(String),
    /// Written by a newer levelctl.
    Newer {
        /// The file's version.
        version: u64,
    },
    /// An I/O error.
    Io(String),
    /// An invalid pool name.
    BadName,
    /// The database was written by a newer levelctl (its schema version).
    NewerSchema {
        /// The database's schema version.
        version: i64,
    },
    /// The database has no such pool.
    NoPool {
        /// The pool asked for.
        pool: String,
        /// The pools it has.
        known: Vec<String>,
    },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.path;
        match &self.kind {
            StateErrorKind::Missing => write!(
                f,
                "{p}: no such pool (create it with `levelctl pool init NAME`, or check \
                 --state-dir)"
            ),
            StateErrorKind::Exists => write!(f, "{p}: the pool exists already"),
            StateErrorKind::Corrupt { line, reason } => {
                if *line > 0 {
                    write!(f, "{p}:{line}: ")?;
                } else {
                    write!(f, "{p}: ")?;
                }
                write!(
                    f,
                    "corrupt pool state ({reason}); refusing to use it, the file is left as it is"
                )
            }
            StateErrorKind::Inconsistent(reason) => write!(
                f,
                "{p}: inconsistent pool state ({reason}); refusing to use it, the file is left \
                 as it is"
            ),
            StateErrorKind::Newer { version } => write!(
                f,
                "{p}: state format version {version} is newer than this levelctl's ({VERSION}); \
                 refusing to use or overwrite it"
            ),
            StateErrorKind::Io(e) => write!(f, "{p}: {e}"),
            StateErrorKind::NewerSchema { version } => write!(
                f,
                "{p}: database schema version {version} is newer than this levelctl's ({}); \
                 refusing to use or change it (upgrade levelctl)",
                crate::store::SCHEMA_VERSION
            ),
            StateErrorKind::NoPool { pool, known } => {
                write!(f, "no pool `{pool}` in {p} (")?;
                if known.is_empty() {
                    f.write_str("no pools yet")?;
                } else {
                    write!(f, "pools: {}", known.join(", "))?;
                }
                f.write_str("; create one with `levelctl pool init NAME`)")
            }
            StateErrorKind::BadName => write!(
                f,
                "{p}: not a valid pool name (letters, digits, `.`, `_`, `-`; no leading `.` or \
                 `-`)"
            ),
        }
    }
}

impl std::error::Error for StateError {}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    format: String,
    version: u32,
    pool: Pool,
}

/// Parse a state file's text (`path` names it in errors) and check the pool's consistency.
pub fn parse_state(text: &str, path: &str) -> Result<Pool, StateError> {
    let err = |kind| StateError {
        path: path.to_string(),
        kind,
    };
    let corrupt = |e: serde_json::Error| {
        err(StateErrorKind::Corrupt {
            line: e.line(),
            reason: e.to_string(),
        })
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(corrupt)?;
    if value.get("format").and_then(|v| v.as_str()) != Some(FORMAT) {
        return Err(err(StateErrorKind::Corrupt {
            line: 1,
            reason: format!("`format` is not \"{FORMAT}\""),
        }));
    }
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) if v > u64::from(VERSION) => return Err(err(StateErrorKind::Newer { version: v })),
        _ => {
            return Err(err(StateErrorKind::Corrupt {
                line: 1,
                reason: format!("`version` is not {VERSION}"),
            }));
        }
    }
    let file: StateFile = serde_json::from_str(text).map_err(corrupt)?;
    validate(&file.pool).map_err(|r| err(StateErrorKind::Inconsistent(r)))?;
    Ok(file.pool)
}

/// The pool's rules: valid unique names, one vendor, and every VM's CPU facts consistent with
/// its power state.
pub fn validate(pool: &Pool) -> Result<(), String> {
    if !valid_name(&pool.name) {
        return Err(format!("pool name `{}` is not valid", pool.name));
    }
    let mut seen = BTreeSet::new();
    for h in &pool.hosts {
        if !valid_name(&h.name) {
            return Err(format!("host name `{}` is not valid", h.name));
        }
        if !seen.insert(h.name.as_str()) {
            return Err(format!("host `{}` appears twice", h.name));
        }
        if Some(h.vendor) != pool.vendor() {
            return Err(format!(
                "host `{}` is {}, the pool is not",
                h.name, h.vendor
            ));
        }
        if h.known_words == 0 {
            return Err(format!("host `{}` knows no featureset words", h.name));
        }
    }
    let mut seen = BTreeSet::new();
    for vm in &pool.vms {
        if !valid_name(&vm.name) {
            return Err(format!("VM name `{}` is not valid", vm.name));
        }
        if !seen.insert(vm.name.as_str()) {
            return Err(format!("VM `{}` appears twice", vm.name));
        }
        let live = vm.power != PowerState::Halted;
        if live && (vm.featureset.is_none() || vm.vendor.is_none()) {
            return Err(format!(
                "VM `{}` is {} without a featureset",
                vm.name, vm.power
            ));
        }
        if vm.power == PowerState::Running {
            match &vm.host {
                Some(h) if pool.find_host(h).is_some() => {}
                Some(h) => return Err(format!("VM `{}` runs on unknown host `{h}`", vm.name)),
                None => return Err(format!("VM `{}` is running on no host", vm.name)),
            }
        }
        if !live
            && (vm.featureset.is_some()
                || vm.host.is_some()
                || vm.vendor.is_some()
                || !vm.forced.is_empty())
        {
            return Err(format!(
                "halted VM `{}` has a featureset, host, vendor or force record",
                vm.name
            ));
        }
    }
    Ok(())
}

/// The pool state files in one directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store in `dir` (created on the first `create`).
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    /// The file of pool `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    fn error(&self, name: &str, kind: StateErrorKind) -> StateError {
        StateError {
            path: self.path(name).display().to_string(),
            kind,
        }
    }

    /// Load pool `name`.
    pub fn load(&self, name: &str) -> Result<Pool, StateError> {
        if !valid_name(name) {
            return Err(self.error(name, StateErrorKind::BadName));
        }
        let path = self.path(name);
        let text = match fs::read(&path) {
            Ok(bytes) => String::from_utf8(bytes).map_err(|_| {
                self.error(
                    name,
                    StateErrorKind::Corrupt {
                        line: 0,
                        reason: "not UTF-8".to_string(),
                    },
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(self.error(name, StateErrorKind::Missing));
            }
            Err(e) => return Err(self.error(name, StateErrorKind::Io(e.to_string()))),
        };
        let pool = parse_state(&text, &path.display().to_string())?;
        if pool.name != name {
            return Err(self.error(
                name,
                StateErrorKind::Inconsistent(format!(
                    "the file holds pool `{}`, not `{name}`",
                    pool.name
                )),
            ));
        }
        Ok(pool)
    }

    /// The names of the pools in the store, sorted.
    pub fn list(&self) -> Result<Vec<String>, StateError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(StateError {
                    path: self.dir.display().to_string(),
                    kind: StateErrorKind::Io(e.to_string()),
                });
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let stem = name.strip_suffix(".json")?;
                valid_name(stem).then(|| stem.to_string())
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// Write a new pool's file; refused if it exists (atomically: never replaces a file).
    pub fn create(&self, pool: &Pool) -> Result<PathBuf, StateError> {
        if !valid_name(&pool.name) {
            return Err(self.error(&pool.name, StateErrorKind::BadName));
        }
        validate(pool).map_err(|r| self.error(&pool.name, StateErrorKind::Inconsistent(r)))?;
        let path = self.path(&pool.name);
        let io = |e: std::io::Error| self.error(&pool.name, StateErrorKind::Io(e.to_string()));
        fs::create_dir_all(&self.dir).map_err(io)?;
        let tmp = write_temp(&path, &encode(pool)).map_err(io)?;
        // A hard link fails if the target exists: create-if-absent without a race.
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(self.error(&pool.name, StateErrorKind::Exists));
            }
            Err(e) => return Err(io(e)),
        }
        sync_dir(&path).map_err(io)?;
        Ok(path)
    }

    /// Replace pool `pool.name`'s file with `pool`, atomically. Refused if the file on disk
    /// could not be loaded by this build (corrupt or newer), so such a file is never lost.
    pub fn save(&self, pool: &Pool) -> Result<PathBuf, StateError> {
        validate(pool).map_err(|r| self.error(&pool.name, StateErrorKind::Inconsistent(r)))?;
        let path = self.path(&pool.name);
        if path.exists() {
            self.load(&pool.name)?;
        }
        let io = |e: std::io::Error| self.error(&pool.name, StateErrorKind::Io(e.to_string()));
        fs::create_dir_all(&self.dir).map_err(io)?;
        write_atomic(&path, &encode(pool)).map_err(io)?;
        Ok(path)
    }
}

fn encode(pool: &Pool) -> Vec<u8> {
    let file = StateFile {
        format: FORMAT.to_string(),
        version: VERSION,
        pool: pool.clone(),
    };
    let mut bytes = serde_json::to_vec_pretty(&file).expect("the pool serialises");
    bytes.push(b'\n');
    bytes
}

/// Write `data` to a new temporary file next to `path`, fsynced; returns its path.
fn write_temp(path: &Path, data: &[u8]) -> std::io::Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    let written = file.write_all(data).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// fsync the directory holding `path`, so a rename or link in it is durable.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Replace `path` with `data` atomically: temporary file in the same directory, fsync, rename,
/// fsync the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = write_temp(path, data)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(path)
}
