//! The pool database: every pool, and the audit trail, in one SQLite database.
//!
//! All pools live in one database so that a cross-pool move is one transaction. Every command
//! that changes something runs as one `BEGIN IMMEDIATE` transaction: it reads the pools it
//! needs, changes them, writes them back and records what it did in the audit trail, then
//! commits; a failure at any point (a refused check, an I/O error, a crash) rolls everything
//! back, so the state is exactly as before the command. Concurrent `levelctl` processes
//! serialise on SQLite's write lock (a busy timeout of [`BUSY_TIMEOUT`]) and never lose an
//! update: each reads the state its own transaction will replace.
//!
//! The code outside this module sees only the [`Store`] and [`Transaction`] traits, so that a
//! server database (for pools managed from several machines) can be added beside
//! [`SqliteStore`].
//!
//! # Schema (version [`SCHEMA_VERSION`], in `PRAGMA user_version`)
//!
//! ```sql
//! CREATE TABLE pools (name TEXT PRIMARY KEY, state TEXT NOT NULL);   -- the pool as JSON
//! CREATE TABLE history (id INTEGER PRIMARY KEY, time TEXT, user TEXT, command TEXT,
//!                       operation TEXT, pool TEXT, other_pool TEXT, vm TEXT, host TEXT,
//!                       outcome TEXT, message TEXT, waived TEXT);
//! ```
//!
//! A pool's `state` is the [`Pool`] as JSON (featuresets as XAPI strings), checked by
//! [`crate::state::validate`] whenever it is read or written. A database whose schema
//! version is newer than this build's is refused, never written.
//!
//! # Fault injection
//!
//! For tests, `LEVELCTL_TEST_FAIL_WRITE=N` makes the `N`-th write of the process (1-based;
//! every `INSERT`, `UPDATE`, `DELETE` and the `COMMIT` count) fail as an I/O error would.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use crate::error::Error;
use crate::model::{Pool, valid_name};
use crate::state::{StateError, StateErrorKind, validate};

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: i64 = 1;

/// How long a command waits for another one's transaction to finish.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(120);

/// The database file inside a state directory.
pub const DB_FILE: &str = "levelctl.db";

/// The environment variable of the fault-injection hook (see the module documentation).
pub const FAIL_WRITE_ENV: &str = "LEVELCTL_TEST_FAIL_WRITE";

/// The default state directory: `$XDG_STATE_HOME/levelctl`, else `~/.local/state/levelctl`,
/// or `/var/lib/levelctl` for root.
pub fn default_state_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/lib/levelctl");
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("levelctl");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/state/levelctl"),
        None => PathBuf::from(".levelctl-state"),
    }
}

fn uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn is_root() -> bool {
    uid() == Some(0)
}

/// Who runs the command, for the audit trail: `$USER` (or `$LOGNAME`), else `uid N`.
pub fn current_user() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(user) = std::env::var(var)
            && !user.is_empty()
        {
            return user;
        }
    }
    uid().map_or_else(|| "unknown".to_string(), |u| format!("uid {u}"))
}

/// Now, as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// One entry of the audit trail.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Its number, in order of recording (0 until recorded).
    pub id: i64,
    /// When (UTC, RFC 3339).
    pub time: String,
    /// Who.
    pub user: String,
    /// The command line, as typed.
    pub command: String,
    /// What was done (`vm migrate`, `pool join`, …).
    pub operation: String,
    /// The pool it was done to.
    pub pool: String,
    /// The other pool of a cross-pool move or copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_pool: Option<String>,
    /// The VM, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm: Option<String>,
    /// The host, if any (the destination of a move).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `done`, `refused` or `failed`.
    pub outcome: String,
    /// What happened, or why not.
    pub message: String,
    /// The features a `--force` waived for this move.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waived: Vec<String>,
}

/// Which entries `levelctl history` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryFilter {
    /// Only entries about this pool (either side of a cross-pool move).
    pub pool: Option<String>,
    /// Only entries about this VM.
    pub vm: Option<String>,
    /// At most this many, the newest.
    pub limit: Option<usize>,
}

/// What one transaction may do: read and write pools, and record events.
pub trait Transaction {
    /// The pool called `name`.
    fn pool(&self, name: &str) -> Result<Pool, Error>;
    /// The names of every pool, sorted.
    fn pool_names(&self) -> Result<Vec<String>, Error>;
    /// Add a new pool; refused if one of that name exists.
    fn create_pool(&mut self, pool: &Pool) -> Result<(), Error>;
    /// Replace an existing pool.
    fn save_pool(&mut self, pool: &Pool) -> Result<(), Error>;
    /// Remove a pool.
    fn delete_pool(&mut self, name: &str) -> Result<(), Error>;
    /// Append an event to the audit trail.
    fn record(&mut self, event: &Event) -> Result<(), Error>;
    /// Audit entries, oldest first.
    fn history(&self, filter: &HistoryFilter) -> Result<Vec<Event>, Error>;
}

/// A place pools are kept.
pub trait Store {
    /// Run `f` in a read-only snapshot.
    fn read<T>(&mut self, f: impl FnOnce(&dyn Transaction) -> Result<T, Error>)
    -> Result<T, Error>;
    /// Run `f` as one write transaction: committed if it returns `Ok`, rolled back (nothing
    /// changed, nothing recorded) if it or the commit fails.
    fn write<T>(
        &mut self,
        f: impl FnOnce(&mut dyn Transaction) -> Result<T, Error>,
    ) -> Result<T, Error>;
    /// Where the store is, for messages.
    fn location(&self) -> String;
}

/// The SQLite store.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    writes: u64,
    fail_at: Option<u64>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

fn db_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::State(StateError {
        path: path.display().to_string(),
        kind: StateErrorKind::Io(e.to_string()),
    })
}

impl SqliteStore {
    /// Open (creating if needed) the database in state directory `dir`.
    pub fn open_dir(dir: &Path) -> Result<SqliteStore, Error> {
        std::fs::create_dir_all(dir).map_err(|e| db_error(dir, e))?;
        SqliteStore::open(&dir.join(DB_FILE))
    }

    /// Open (creating if needed) the database file `path`; a newer schema is refused.
    pub fn open(path: &Path) -> Result<SqliteStore, Error> {
        let err = |e: rusqlite::Error| db_error(path, e);
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        let fail_at = std::env::var(FAIL_WRITE_ENV)
            .ok()
            .and_then(|v| v.parse().ok());
        let mut store = SqliteStore {
            conn,
            path: path.to_path_buf(),
            writes: 0,
            fail_at,
        };
        store.check_schema()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn schema_version(&self) -> Result<i64, Error> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.not_a_db(e))
    }

    fn not_a_db(&self, e: rusqlite::Error) -> Error {
        Error::State(StateError {
            path: self.path.display().to_string(),
            kind: StateErrorKind::Corrupt {
                line: 0,
                reason: format!("not a levelctl database: {e}"),
            },
        })
    }

    fn check_schema(&mut self) -> Result<(), Error> {
        let version = self.schema_version()?;
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        if version > SCHEMA_VERSION {
            return Err(self.newer(version));
        }
        // Version 0: a new database. Create the schema under the write lock, once.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_error(&self.path, e))?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| db_error(&self.path, e))?;
        if version == 0 {
            let tables: i64 = tx
                .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
                .map_err(|e| db_error(&self.path, e))?;
            if tables > 0 {
                return Err(Error::State(StateError {
                    path: self.path.display().to_string(),
                    kind: StateErrorKind::Corrupt {
                        line: 0,
                        reason: "an SQLite database, but not levelctl's (no schema version)"
                            .to_string(),
                    },
                }));
            }
            tx.execute_batch(&format!(
                "CREATE TABLE pools (name TEXT PRIMARY KEY, state TEXT NOT NULL);
                 CREATE TABLE history (id INTEGER PRIMARY KEY, time TEXT NOT NULL,
                     user TEXT NOT NULL, command TEXT NOT NULL, operation TEXT NOT NULL,
                     pool TEXT NOT NULL, other_pool TEXT, vm TEXT, host TEXT,
                     outcome TEXT NOT NULL, message TEXT NOT NULL, waived TEXT NOT NULL);
                 CREATE INDEX history_pool ON history (pool);
                 CREATE INDEX history_vm ON history (vm);
                 PRAGMA user_version = {SCHEMA_VERSION};"
            ))
            .map_err(|e| db_error(&self.path, e))?;
        } else if version > SCHEMA_VERSION {
            return Err(Error::State(StateError {
                path: self.path.display().to_string(),
                kind: StateErrorKind::NewerSchema { version },
            }));
        }
        tx.commit().map_err(|e| db_error(&self.path, e))
    }

    fn newer(&self, version: i64) -> Error {
        Error::State(StateError {
            path: self.path.display().to_string(),
            kind: StateErrorKind::NewerSchema { version },
        })
    }
}

/// A transaction on the SQLite store.
struct SqliteTx<'a> {
    tx: &'a rusqlite::Transaction<'a>,
    path: &'a Path,
    writes: &'a mut u64,
    fail_at: Option<u64>,
}

impl SqliteTx<'_> {
    fn err(&self, e: rusqlite::Error) -> Error {
        db_error(self.path, e)
    }

    /// Count a write; fail it if the fault-injection hook says so.
    fn write_point(&mut self) -> Result<(), Error> {
        *self.writes += 1;
        if self.fail_at == Some(*self.writes) {
            return Err(db_error(
                self.path,
                format!(
                    "write {} failed (injected by {FAIL_WRITE_ENV})",
                    *self.writes
                ),
            ));
        }
        Ok(())
    }

    fn encode(&self, pool: &Pool) -> Result<String, Error> {
        validate(pool).map_err(|r| {
            Error::State(StateError {
                path: format!("{} (pool {})", self.path.display(), pool.name),
                kind: StateErrorKind::Inconsistent(r),
            })
        })?;
        Ok(serde_json::to_string(pool).expect("a pool serialises"))
    }
}

impl Transaction for SqliteTx<'_> {
    fn pool(&self, name: &str) -> Result<Pool, Error> {
        let text: Option<String> = self
            .tx
            .query_row("SELECT state FROM pools WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        let Some(text) = text else {
            let known = self.pool_names()?;
            return Err(Error::State(StateError {
                path: self.path.display().to_string(),
                kind: StateErrorKind::NoPool {
                    pool: name.to_string(),
                    known,
                },
            }));
        };
        let where_ = format!("{} (pool {name})", self.path.display());
        let corrupt = |reason: String| {
            Error::State(StateError {
                path: where_.clone(),
                kind: StateErrorKind::Corrupt { line: 0, reason },
            })
        };
        let pool: Pool = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        validate(&pool).map_err(|r| {
            Error::State(StateError {
                path: where_.clone(),
                kind: StateErrorKind::Inconsistent(r),
            })
        })?;
        if pool.name != name {
            return Err(corrupt(format!("the row holds pool `{}`", pool.name)));
        }
        Ok(pool)
    }

    fn pool_names(&self) -> Result<Vec<String>, Error> {
        let mut stmt = self
            .tx
            .prepare("SELECT name FROM pools ORDER BY name")
            .map_err(|e| self.err(e))?;
        let names = stmt
            .query_map([], |r| r.get(0))
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<String>, _>>()
            .map_err(|e| self.err(e))?;
        Ok(names)
    }

    fn create_pool(&mut self, pool: &Pool) -> Result<(), Error> {
        if !valid_name(&pool.name) {
            return Err(Error::State(StateError {
                path: pool.name.clone(),
                kind: StateErrorKind::BadName,
            }));
        }
        let exists: Option<i64> = self
            .tx
            .query_row("SELECT 1 FROM pools WHERE name = ?1", [&pool.name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        if exists.is_some() {
            return Err(Error::State(StateError {
                path: format!("{} (pool {})", self.path.display(), pool.name),
                kind: StateErrorKind::Exists,
            }));
        }
        let text = self.encode(pool)?;
        self.write_point()?;
        self.tx
            .execute(
                "INSERT INTO pools (name, state) VALUES (?1, ?2)",
                params![pool.name, text],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn save_pool(&mut self, pool: &Pool) -> Result<(), Error> {
        let text = self.encode(pool)?;
        self.write_point()?;
        let n = self
            .tx
            .execute(
                "UPDATE pools SET state = ?2 WHERE name = ?1",
                params![pool.name, text],
            )
            .map_err(|e| self.err(e))?;
        if n != 1 {
            return Err(db_error(
                self.path,
                format!("pool {} vanished during the command", pool.name),
            ));
        }
        Ok(())
    }

    fn delete_pool(&mut self, name: &str) -> Result<(), Error> {
        self.write_point()?;
        self.tx
            .execute("DELETE FROM pools WHERE name = ?1", [name])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn record(&mut self, event: &Event) -> Result<(), Error> {
        self.write_point()?;
        self.tx
            .execute(
                "INSERT INTO history (time, user, command, operation, pool, other_pool, vm, \
                 host, outcome, message, waived) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    event.time,
                    event.user,
                    event.command,
                    event.operation,
                    event.pool,
                    event.other_pool,
                    event.vm,
                    event.host,
                    event.outcome,
                    event.message,
                    event.waived.join(","),
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn history(&self, filter: &HistoryFilter) -> Result<Vec<Event>, Error> {
        let limit = filter
            .limit
            .and_then(|l| i64::try_from(l).ok())
            .unwrap_or(-1);
        let mut stmt = self
            .tx
            .prepare(
                "SELECT * FROM (SELECT id, time, user, command, operation, pool, other_pool, vm, \
                 host, outcome, message, waived FROM history \
                 WHERE (?1 IS NULL OR pool = ?1 OR other_pool = ?1) AND (?2 IS NULL OR vm = ?2) \
                 ORDER BY id DESC LIMIT ?3) ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![filter.pool, filter.vm, limit], |r| {
                let waived: String = r.get(11)?;
                Ok(Event {
                    id: r.get(0)?,
                    time: r.get(1)?,
                    user: r.get(2)?,
                    command: r.get(3)?,
                    operation: r.get(4)?,
                    pool: r.get(5)?,
                    other_pool: r.get(6)?,
                    vm: r.get(7)?,
                    host: r.get(8)?,
                    outcome: r.get(9)?,
                    message: r.get(10)?,
                    waived: waived
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<Event>, _>>()
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }
}

impl Store for SqliteStore {
    fn read<T>(
        &mut self,
        f: impl FnOnce(&dyn Transaction) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(|e| db_error(&path, e))?;
        let mut writes = 0;
        let view = SqliteTx {
            tx: &tx,
            path: &path,
            writes: &mut writes,
            fail_at: None,
        };
        let out = f(&view);
        // Nothing was written: ending it either way is the same.
        let _ = tx.rollback();
        out
    }

    fn write<T>(
        &mut self,
        f: impl FnOnce(&mut dyn Transaction) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let path = self.path.clone();
        let fail_at = self.fail_at;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_error(&path, e))?;
        let mut writes = self.writes;
        let committed = {
            let mut view = SqliteTx {
                tx: &tx,
                path: &path,
                writes: &mut writes,
                fail_at,
            };
            f(&mut view).and_then(|value| {
                view.write_point()?;
                Ok(value)
            })
        };
        self.writes = writes;
        match committed {
            Ok(value) => {
                tx.commit().map_err(|e| db_error(&path, e))?;
                Ok(value)
            }
            Err(e) => {
                // Dropping the transaction rolls it back; say so explicitly.
                let _ = tx.rollback();
                Err(e)
            }
        }
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }
}
