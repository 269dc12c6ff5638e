//! `levelctl`: pools, VM starts and migration checks that explain themselves.
//!
//! Exit codes: 0 done, 1 a check refused the operation (the output says why and what would
//! work), 2 bad input or usage.

mod render;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
use xen_levelling::featureset::FeaturesetError;

use levelctl::error::{Error, InputError};
use levelctl::input::{self, HostInputOptions, Loaded, ParsedFeatureset};
use levelctl::ops::{self, Change, ImportRequest};
use levelctl::report::Features;
use levelctl::state::{StateError, StateErrorKind};
use levelctl::store::{self, Event, HistoryFilter, SqliteStore, Store, Transaction};
use levelctl::{GuestType, Pool, PowerState};

const ABOUT: &str = "CPU feature levelling for Xen pools: pool levels, VM starts, and \
migration checks that explain themselves";

const LONG_ABOUT: &str = "\
CPU feature levelling for Xen pools, as XenServer does it since Dundee, with refusals that \
explain themselves.

A pool's level is what every member offers guests by default (per PV/HVM, dependency-closed). \
A VM starts at the level and keeps that featureset across migrate, suspend and resume; a host \
accepts it if the vendor matches and the host's max set has every feature. Refusals name each \
missing feature, why the host lacks it (CPU, cpuid= option, dependency chain) and the hosts \
that would accept the VM.

State: one SQLite database (levelctl.db) in --state DIR, or $LEVELCTL_STATE; by default
$XDG_STATE_HOME/levelctl, else ~/.local/state/levelctl, or /var/lib/levelctl as root. Every
command is one transaction, recorded in `levelctl history`.
Host inputs: AIDA64 CPUID dumps, `cpuid -r` output, XAPI cpu_info, levelctl host reports (JSON).
Exit codes: 0 done, 1 refused by a check, 2 bad input or usage.";

const EXAMPLES: &str = "\
Examples:
  levelctl inspect GenuineIntel00306C3_Haswell_CPUID.txt
  levelctl pool init lab haswell.txt sandybridge.txt
  levelctl what-if lab join skylake.txt
  levelctl vm create lab web --type hvm && levelctl vm start lab web
  levelctl vm migrate lab web --to sandybridge
  levelctl vm explain lab web
  levelctl history --vm web
  levelctl vm config lab web --format libvirt
  levelctl decode 1fc9cbf5-f6f83203-2191cbf5-00000123";

#[derive(Parser)]
#[command(name = "levelctl", version, about = ABOUT, long_about = LONG_ABOUT, after_help = EXAMPLES, term_width = 80)]
struct Cli {
    /// Directory of the pool database (levelctl.db) [default: $XDG_STATE_HOME/levelctl,
    /// ~/.local/state/levelctl, or /var/lib/levelctl as root]
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "LEVELCTL_STATE",
        alias = "state-dir"
    )]
    state: Option<PathBuf>,
    /// Print JSON instead of tables (also for errors and refusals)
    #[arg(long, global = true)]
    json: bool,
    /// Refusals and change reports in full: every missing feature, where it lives and why
    /// the host lacks it
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode a featureset: a XAPI string, xen-cpuid words or feature names, or a file of them
    /// (one per line)
    #[command(
        after_help = "Examples:\n  levelctl decode 178bfbff-f6f83203-2d93fbff\n  \
                            levelctl decode 'fpu sse2 avx2'\n  levelctl decode featuresets.txt"
    )]
    Decode {
        /// The featureset text, or a file holding featuresets
        input: String,
    },
    /// What a machine offers before it joins: vendor, family/model/stepping, host and PV/HVM
    /// featuresets, and the levelling mechanism (by generation, and probed on the core's
    /// silicon model of the CPU when the input has CPUID data)
    Inspect {
        /// An AIDA64 dump, `cpuid -r` output, XAPI cpu_info or levelctl host report
        file: PathBuf,
        /// Xen's cpuid= option to boot it with, e.g. no-xsave,no-avx512f
        #[arg(long, value_name = "OPTS")]
        cpuid: Option<String>,
        /// Print the machine as a levelctl host report (JSON) instead
        #[arg(long)]
        host_report: bool,
    },
    /// Pools: create, join, leave, reboot or evacuate a host, show the level
    #[command(subcommand)]
    Pool(PoolCommand),
    /// VMs: create, start, reboot, shut down, suspend, resume, migrate, copy, import, explain
    #[command(subcommand)]
    Vm(VmCommand),
    /// Before doing it: how a join, leave or host reboot would change the pool level and
    /// which running VMs would lose which destinations
    WhatIf {
        /// The pool
        pool: String,
        #[command(subcommand)]
        change: ChangeCommand,
    },
    /// The audit trail: every change (and every refused one) with time, user, command line and
    /// outcome; forced moves with the features they waived
    History {
        /// Only this pool (either side of a cross-pool move)
        #[arg(long)]
        pool: Option<String>,
        /// Only this VM
        #[arg(long)]
        vm: Option<String>,
        /// Only the newest N entries
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// The pool database itself
    #[command(subcommand)]
    State(StateCommand),
}

#[derive(Subcommand)]
enum StateCommand {
    /// Import the JSON state files of earlier levelctl versions (POOL.json files, or
    /// directories of them), all in one transaction
    Import {
        /// Files or directories
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Where the database is, its schema version and what it holds
    Info,
}

#[derive(Args)]
struct HostArgs {
    /// The host's name (default: from the report, else the file name)
    #[arg(long)]
    name: Option<String>,
    /// Xen's cpuid= option the host boots with, e.g. no-xsave
    #[arg(long, value_name = "OPTS")]
    cpuid: Option<String>,
}

#[derive(Subcommand)]
enum PoolCommand {
    /// Create a pool, optionally with its first hosts
    Init {
        /// The pool's name
        pool: String,
        /// Host inputs to join, in order
        files: Vec<PathBuf>,
    },
    /// A host joins: same vendor only; reports the level change feature by feature. Any host
    /// input: a dump, `cpuid -r`, `xe host-param-get param-name=cpu_info` output, a libvirt
    /// <cpu> element or a host report (`pool import` is the same command)
    #[command(alias = "import")]
    Join {
        /// The pool
        pool: String,
        /// The host input (dump, cpuid -r, cpu_info or host report)
        file: PathBuf,
        #[command(flatten)]
        host: HostArgs,
        /// Only report what would happen
        #[arg(long)]
        dry_run: bool,
    },
    /// A host leaves (no VM may run on it); the level may rise
    Leave {
        /// The pool
        pool: String,
        /// The host
        host: String,
        /// Only report what would happen
        #[arg(long)]
        dry_run: bool,
    },
    /// A host reboots with changed features (a new input, or its recorded one with --cpuid)
    Reboot {
        /// The pool
        pool: String,
        /// The host
        host: String,
        /// What it reports after the reboot (default: its recorded input, read again)
        file: Option<PathBuf>,
        /// Xen's cpuid= option it boots with this time
        #[arg(long, value_name = "OPTS")]
        cpuid: Option<String>,
        /// Only report what would happen
        #[arg(long)]
        dry_run: bool,
    },
    /// Move every running VM off a host, each to a host that accepts it
    Evacuate {
        /// The pool
        pool: String,
        /// The host to empty
        host: String,
        /// Only plan
        #[arg(long)]
        dry_run: bool,
    },
    /// The pool level per guest type, and what each member gives up or holds back
    Level {
        /// The pool
        pool: String,
        /// Only this guest type (pv or hvm)
        #[arg(long = "type", value_name = "TYPE")]
        guest: Option<GuestType>,
    },
    /// Hosts and VMs of a pool
    Show {
        /// The pool
        pool: String,
    },
    /// The pools: vendor, hosts, VMs
    List,
    /// Remove a pool with its hosts and halted VMs (refused while VMs run, unless --force)
    Destroy {
        /// The pool
        pool: String,
        /// Destroy it even with running or suspended VMs
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum VmCommand {
    /// The VMs of one pool, or of every pool
    List {
        /// The pool (default: every pool)
        pool: Option<String>,
    },
    /// Remove a halted VM or template (a running or suspended one only with --force)
    Destroy {
        /// The pool
        pool: String,
        /// The VM
        vm: String,
        /// Destroy it even if it is running or suspended
        #[arg(long)]
        force: bool,
    },
    /// Create a halted VM or template
    Create {
        /// The pool
        pool: String,
        /// The VM's name
        vm: String,
        /// pv or hvm
        #[arg(long = "type", value_name = "TYPE")]
        guest: GuestType,
        /// Make it a template (never started; copied and moved without a CPU check)
        #[arg(long)]
        template: bool,
    },
    /// Start a halted VM at the pool level
    Start {
        /// The pool
        pool: String,
        /// The VM
        vm: String,
        /// The host (default: the least loaded)
        #[arg(long, value_name = "HOST")]
        on: Option<String>,
    },
    /// Shut a VM down (it forgets its featureset)
    Shutdown {
        /// The pool
        pool: String,
        /// The VM
        vm: String,
    },
    /// Reboot a running VM: it picks up the current pool level
    Reboot {
        /// The pool
        pool: String,
        /// The VM
        vm: String,
    },
    /// Suspend a running VM (it keeps its featureset)
    Suspend {
        /// The pool
        pool: String,
        /// The VM
        vm: String,
    },
    /// Resume a suspended VM, checked like a migration
    Resume {
        /// The pool
        pool: String,
        /// The VM
        vm: String,
        /// The host (default: where it was suspended, else any that accepts it)
        #[arg(long, value_name = "HOST")]
        on: Option<String>,
        /// Resume on --on even if it lacks features (recorded on the VM)
        #[arg(long, requires = "on")]
        force: bool,
    },
    /// Live-migrate a VM within the pool or to another pool (a halted VM moves unchecked)
    Migrate {
        /// The pool
        pool: String,
        /// The VM
        vm: String,
        /// The destination host (default: the least loaded that accepts it)
        #[arg(long, value_name = "HOST")]
        to: Option<String>,
        /// The destination pool, for a cross-pool move
        #[arg(long, value_name = "POOL")]
        to_pool: Option<String>,
        /// Move to --to even if it lacks features (recorded on the VM)
        #[arg(long, requires = "to")]
        force: bool,
    },
    /// Copy a halted VM or template (within the pool or to another), without a CPU check
    Copy {
        /// The pool
        pool: String,
        /// The VM or template
        vm: String,
        /// The destination pool (default: the same)
        #[arg(long, value_name = "POOL")]
        to_pool: Option<String>,
        /// The copy's name (default: the same; required within one pool)
        #[arg(long = "as", value_name = "NAME")]
        as_name: Option<String>,
        /// Make a template's copy an ordinary VM
        #[arg(long)]
        instantiate: bool,
    },
    /// Take in a running VM from an older toolstack (no featureset: gets the landing host's)
    Import {
        /// The pool
        pool: String,
        /// The VM's name
        vm: String,
        /// pv or hvm
        #[arg(long = "type", value_name = "TYPE")]
        guest: GuestType,
        /// The host it lands on
        #[arg(long, value_name = "HOST")]
        on: Option<String>,
        /// Its recorded featureset (XAPI string or names, or @FILE)
        #[arg(long, value_name = "TEXT")]
        featureset: Option<String>,
        /// The vendor it last booted on (default: the pool's)
        #[arg(long)]
        vendor: Option<String>,
        /// It arrives suspended
        #[arg(long)]
        suspended: bool,
        /// Let it in on --on even if that host lacks features (recorded)
        #[arg(long, requires = "on")]
        force: bool,
    },
    /// The VM's featureset for another toolstack: an xl.cfg `cpuid=` line, XAPI's
    /// `platform:featureset`, or a libvirt <cpu mode='custom'> element (a halted VM: the level
    /// it would start at)
    Config {
        /// The pool
        pool: String,
        /// The VM
        vm: String,
        /// xl, xapi or libvirt
        #[arg(long, value_name = "FORMAT", value_parser = ["xl", "xapi", "libvirt"])]
        format: String,
    },
    /// Everything about a VM's CPU: featureset vs level, overrides, and every host it could or
    /// could not move to, with reasons
    Explain {
        /// The pool
        pool: String,
        /// The VM
        vm: String,
        /// Also check the hosts of this pool (repeatable)
        #[arg(long = "with-pool", value_name = "POOL")]
        with_pools: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ChangeCommand {
    /// A host joins
    Join {
        /// The host input
        file: PathBuf,
        #[command(flatten)]
        host: HostArgs,
    },
    /// A host leaves
    Leave {
        /// The host
        host: String,
    },
    /// A host reboots with changed features
    Reboot {
        /// The host
        host: String,
        /// What it reports after the reboot (default: its recorded input)
        file: Option<PathBuf>,
        /// Xen's cpuid= option it boots with this time
        #[arg(long, value_name = "OPTS")]
        cpuid: Option<String>,
    },
}

/// What a command prints, and its exit code.
struct Output {
    text: String,
    json: Value,
    code: u8,
    /// Text to copy as it is (configuration for other tools): never folded.
    verbatim: bool,
}

impl Output {
    fn ok(text: String, json: Value) -> Output {
        Output {
            text,
            json,
            code: 0,
            verbatim: false,
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("reports serialise")
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let json_requested = argv.iter().skip(1).any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            if json_requested && e.use_stderr() {
                let message = e.render().to_string();
                let body = json!({"error": {"kind": "usage", "message": message.trim_end(), "refusal": Value::Null}});
                println!("{}", serde_json::to_string_pretty(&body).expect("JSON"));
            }
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let json = cli.json;
    let verbose = cli.verbose;
    render::VERBOSE.store(verbose, std::sync::atomic::Ordering::Relaxed);
    match run(cli, &argv) {
        Ok(out) => {
            if json {
                emit(&(serde_json::to_string_pretty(&out.json).expect("JSON") + "\n"));
            } else if out.verbatim {
                emit(&out.text);
            } else {
                emit(&render::fit(&out.text));
            }
            ExitCode::from(out.code)
        }
        Err(e) => {
            if json {
                let refusal = match &e {
                    Error::Refused(r) => to_json(r.as_ref()),
                    _ => Value::Null,
                };
                let body = json!({"error": {"kind": e.kind(), "message": e.to_string(), "refusal": refusal}});
                emit(&(serde_json::to_string_pretty(&body).expect("JSON") + "\n"));
            } else if let Error::Refused(r) = &e {
                emit(&render::fit(&render::refusal(r, verbose)));
            }
            eprint!("{}", render::fit(&format!("levelctl: {e}\n")));
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// Write to stdout; a closed pipe (`levelctl … | head`) is not an error worth a panic.
fn emit(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// The command line as typed, for the audit trail (arguments with blanks or quotes quoted).
fn command_line(argv: &[String]) -> String {
    argv.iter()
        .enumerate()
        .map(|(i, a)| {
            let a = if i == 0 { "levelctl" } else { a.as_str() };
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@+%".contains(&b))
            {
                a.to_string()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The database, opened on first use.
struct Db {
    dir: PathBuf,
    store: Option<SqliteStore>,
    command: String,
}

impl Db {
    fn store(&mut self) -> Result<&mut SqliteStore, Error> {
        if self.store.is_none() {
            self.store = Some(SqliteStore::open_dir(&self.dir)?);
        }
        Ok(self.store.as_mut().expect("opened"))
    }

    fn read<T>(
        &mut self,
        f: impl FnOnce(&dyn Transaction) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.store()?.read(f)
    }

    /// An audit entry for this command, to be completed.
    fn event(&self, operation: &str, pool: &str, vm: Option<&str>) -> Event {
        Event {
            time: store::now_utc(),
            user: store::current_user(),
            command: self.command.clone(),
            operation: operation.to_string(),
            pool: pool.to_string(),
            vm: vm.map(str::to_string),
            ..Event::default()
        }
    }

    /// Run a change as one transaction with its audit entry; a refused or failed change is
    /// rolled back, then recorded as such (best effort) in a transaction of its own.
    fn write(
        &mut self,
        base: Event,
        f: impl FnOnce(&mut dyn Transaction, &mut Event) -> Result<Output, Error>,
    ) -> Result<Output, Error> {
        let mut event = base.clone();
        let result = self.store()?.write(|tx| {
            let out = f(tx, &mut event)?;
            event.outcome = "done".to_string();
            if event.message.is_empty() {
                event.message = out.text.lines().next().unwrap_or_default().to_string();
            }
            tx.record(&event)?;
            Ok(out)
        });
        if let Err(e) = &result {
            let outcome = match e {
                Error::Refused(_) => "refused",
                Error::State(_) => "failed",
                // Nothing was attempted: a name or an input was wrong.
                Error::Usage(_) | Error::Input(_) => return result,
            };
            let failed = Event {
                outcome: outcome.to_string(),
                message: e.to_string(),
                ..base
            };
            if let Ok(store) = self.store() {
                let _ = store.write(|tx| tx.record(&failed));
            }
        }
        result
    }
}

fn run(cli: Cli, argv: &[String]) -> Result<Output, Error> {
    let mut db = Db {
        dir: cli.state.clone().unwrap_or_else(store::default_state_dir),
        store: None,
        command: command_line(argv),
    };
    match cli.command {
        Command::Decode { input } => decode(&input),
        Command::Inspect {
            file,
            cpuid,
            host_report,
        } => inspect(&file, cpuid, host_report),
        Command::Pool(cmd) => pool_command(&mut db, cmd),
        Command::Vm(cmd) => vm_command(&mut db, cmd),
        Command::WhatIf { pool, change } => {
            let p = db.read(|tx| tx.pool(&pool))?;
            let change = match change {
                ChangeCommand::Join { file, host } => {
                    Change::Join(Box::new(load(&file, host)?.host))
                }
                ChangeCommand::Leave { host } => Change::Leave(host),
                ChangeCommand::Reboot { host, file, cpuid } => {
                    Change::Reboot(Box::new(reboot_record(&p, &host, file.as_deref(), cpuid)?))
                }
            };
            let report = p.plan(&change)?;
            let code = if report.blockers.is_empty() { 0 } else { 1 };
            Ok(Output {
                code,
                ..Output::ok(
                    format!("what-if: {}", render::change_report(&report)),
                    to_json(&report),
                )
            })
        }
        Command::History { pool, vm, limit } => {
            let filter = HistoryFilter { pool, vm, limit };
            let events = db.read(|tx| tx.history(&filter))?;
            Ok(Output::ok(render::history(&events), to_json(&events)))
        }
        Command::State(StateCommand::Import { paths }) => state_import(&mut db, &paths),
        Command::State(StateCommand::Info) => {
            let store = db.store()?;
            let location = store.location();
            let (pools, events) = store.read(|tx| {
                Ok((
                    tx.pool_names()?,
                    tx.history(&HistoryFilter::default())?.len(),
                ))
            })?;
            let text = format!(
                "database: {location}\nschema version: {}\npools: {}\nhistory entries: {events}\n",
                store::SCHEMA_VERSION,
                if pools.is_empty() {
                    "none".to_string()
                } else {
                    pools.join(", ")
                }
            );
            Ok(Output::ok(
                text,
                json!({"database": location, "schema_version": store::SCHEMA_VERSION,
                       "pools": pools, "history_entries": events}),
            ))
        }
    }
}

/// `state import`: every POOL.json given (or in the directories given), one transaction.
fn state_import(db: &mut Db, paths: &[PathBuf]) -> Result<Output, Error> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| InputError::new(&path.display().to_string(), 0, e.to_string()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    if files.is_empty() {
        return Err(Error::Usage(
            "no POOL.json state files to import".to_string(),
        ));
    }
    let mut pools = Vec::new();
    for file in &files {
        let text = input::read_text(file)?;
        pools.push(levelctl::state::parse_state(
            &text,
            &file.display().to_string(),
        )?);
    }
    let names: Vec<String> = pools.iter().map(|p| p.name.clone()).collect();
    let base = db.event("state import", &names.join(","), None);
    db.write(base, |tx, ev| {
        for p in &pools {
            tx.create_pool(p)?;
        }
        ev.message = format!(
            "imported {} from {}",
            plural(pools.len(), "pool"),
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let text = pools
            .iter()
            .map(|p| {
                format!(
                    "imported pool {}: {}, {}\n",
                    p.name,
                    plural(p.hosts.len(), "host"),
                    plural(p.vms.len(), "VM")
                )
            })
            .collect();
        Ok(Output::ok(text, json!({"imported": names})))
    })
}

/// `1 host`, `2 hosts`.
fn plural(n: usize, what: &str) -> String {
    render::count(n, what)
}

/// Read a host input; its source is recorded with an absolute path, so that `pool reboot`
/// can read it again from any directory.
fn load(file: &Path, args: HostArgs) -> Result<Loaded, Error> {
    let mut loaded = input::load_host(
        file,
        &HostInputOptions {
            name: args.name,
            cpuid: args.cpuid,
        },
    )?;
    if let Ok(path) = std::fs::canonicalize(file) {
        loaded.host.source.file = path.display().to_string();
    }
    Ok(loaded)
}

/// The record a host reports after a reboot: `file` if given, else its recorded input read
/// again; booted with `cpuid`.
fn reboot_record(
    pool: &Pool,
    host: &str,
    file: Option<&Path>,
    cpuid: Option<String>,
) -> Result<levelctl::Host, Error> {
    let old = pool.host(host)?;
    let path = file.map_or_else(|| PathBuf::from(&old.source.file), Path::to_path_buf);
    let args = HostArgs {
        name: Some(host.to_string()),
        cpuid,
    };
    Ok(load(&path, args)?.host)
}

fn decode(arg: &str) -> Result<Output, Error> {
    let path = Path::new(arg);
    let items: Vec<(String, ParsedFeatureset)> = if path.is_file() {
        let text = input::read_text(path)?;
        input::parse_featureset_lines(&text, arg)?
            .into_iter()
            .map(|(line, p)| (format!("{arg}:{line}"), p))
            .collect()
    } else {
        let p = input::parse_featureset(arg)
            .map_err(|e| InputError::new("<argument>", 1, e.to_string()))?;
        vec![("featureset".to_string(), p)]
    };
    let json: Vec<Value> = items
        .iter()
        .map(|(label, p)| {
            let fs = p.featureset;
            let dropped: Vec<Value> = (fs - fs.closed())
                .iter()
                .map(|f| {
                    json!({"feature": f.to_string(),
                           "needs": fs.closed().removed_by(f).map(|p| p.to_string())})
                })
                .collect();
            json!({
                "source": label,
                "form": p.form,
                "words_given": p.words,
                "featureset": Features::from(&fs),
                "xen_words": fs.xen_words().to_string(),
                "unknown_bits": levelctl::report::names(&fs.unknown()),
                "not_closed": dropped,
            })
        })
        .collect();
    Ok(Output::ok(render::decode(&items), Value::Array(json)))
}

fn inspect(file: &Path, cpuid: Option<String>, host_report: bool) -> Result<Output, Error> {
    let loaded = input::load_host(file, &HostInputOptions { name: None, cpuid })?;
    let h = &loaded.host;
    if host_report {
        let report = to_json(&input::HostReport::from_host(h));
        let text = serde_json::to_string_pretty(&report).expect("JSON") + "\n";
        return Ok(Output::ok(text, report));
    }
    let report = loaded.mechanism();
    let json = json!({
        "name": h.name,
        "vendor": h.vendor.to_string(),
        "signature": h.signature,
        "brand": h.brand,
        "source": h.source,
        "known_words": h.known_words,
        "cpuid_option": h.cpuid_option(),
        "cpuid_faulting": h.cpuid_faulting,
        "max_basic_leaf": loaded.facts.as_ref().map(|f| f.max_basic_leaf),
        "max_extd_leaf": loaded.facts.as_ref().map(|f| f.max_extd_leaf),
        "featuresets": {
            "hardware": h.hardware.as_ref().map(Features::from),
            "xen_host": loaded.facts.as_ref().map(|f| Features::from(&f.xen_host)),
            "pv_default": Features::from(&h.pv.default),
            "pv_max": Features::from(&h.pv.max),
            "hvm_default": Features::from(&h.hvm.default),
            "hvm_max": Features::from(&h.hvm.max),
        },
        "mechanism": report,
        "model": loaded.facts.as_ref().map(|f| &f.model),
    });
    Ok(Output::ok(render::inspect(&loaded, &report), json))
}

/// A membership change (join, leave, reboot) of one pool: done in one transaction, or only
/// reported with `--dry-run`.
fn changed(
    db: &mut Db,
    pool: &str,
    dry_run: bool,
    change: impl FnOnce(&Pool) -> Result<Change, Error>,
) -> Result<Output, Error> {
    if dry_run {
        let p = db.read(|tx| tx.pool(pool))?;
        let r = p.plan(&change(&p)?)?;
        let code = if r.blockers.is_empty() { 0 } else { 1 };
        return Ok(Output {
            code,
            ..Output::ok(render::change_report(&r), to_json(&r))
        });
    }
    // Inputs are read before the transaction starts: nothing slow holds the lock.
    let preview = db.read(|tx| tx.pool(pool))?;
    let change = change(&preview)?;
    let verb = match &change {
        Change::Join(_) => "pool join",
        Change::Leave(_) => "pool leave",
        Change::Reboot(_) => "pool reboot",
    };
    let host = match &change {
        Change::Join(h) | Change::Reboot(h) => h.name.clone(),
        Change::Leave(h) => h.clone(),
    };
    let mut base = db.event(verb, pool, None);
    base.host = Some(host);
    db.write(base, |tx, ev| {
        let mut p = tx.pool(pool)?;
        let r = p.apply(change)?;
        tx.save_pool(&p)?;
        ev.message = format!(
            "{} {}: {}",
            r.change,
            r.host,
            r.levels
                .iter()
                .map(|l| format!(
                    "{} level {} -> {}",
                    l.guest.label(),
                    l.before.as_ref().map_or(0, |f| f.count),
                    l.after.as_ref().map_or(0, |f| f.count)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(Output::ok(render::change_report(&r), to_json(&r)))
    })
}

fn pool_command(db: &mut Db, cmd: PoolCommand) -> Result<Output, Error> {
    match cmd {
        PoolCommand::Init { pool, files } => pool_init(db, pool, files),
        PoolCommand::Join {
            pool,
            file,
            host,
            dry_run,
        } => {
            let loaded = load(&file, host)?.host;
            changed(db, &pool, dry_run, |_| Ok(Change::Join(Box::new(loaded))))
        }
        PoolCommand::Leave {
            pool,
            host,
            dry_run,
        } => changed(db, &pool, dry_run, |_| Ok(Change::Leave(host))),
        PoolCommand::Reboot {
            pool,
            host,
            file,
            cpuid,
            dry_run,
        } => changed(db, &pool, dry_run, |p| {
            Ok(Change::Reboot(Box::new(reboot_record(
                p,
                &host,
                file.as_deref(),
                cpuid,
            )?)))
        }),
        PoolCommand::Evacuate {
            pool,
            host,
            dry_run,
        } => pool_evacuate(db, pool, host, dry_run),
        PoolCommand::Level { pool, guest } => {
            let p = db.read(|tx| tx.pool(&pool))?;
            let reports: Vec<_> = p
                .level_report()
                .into_iter()
                .filter(|r| guest.is_none_or(|g| g == r.guest))
                .collect();
            Ok(Output::ok(
                render::levels(&p, &reports, guest),
                json!({"pool": p.name, "vendor": p.vendor().map(|v| v.to_string()), "levels": reports}),
            ))
        }
        PoolCommand::Show { pool } => {
            let p = db.read(|tx| tx.pool(&pool))?;
            let levels: Vec<Value> = GuestType::ALL
                .iter()
                .map(|&g| json!({"guest": g, "level": p.level(g).as_ref().map(Features::from)}))
                .collect();
            Ok(Output::ok(
                render::pool_show(&p),
                json!({"pool": p, "vendor": p.vendor().map(|v| v.to_string()), "levels": levels}),
            ))
        }
        PoolCommand::List => pool_list(db),
        PoolCommand::Destroy { pool, force } => pool_destroy(db, pool, force),
    }
}

/// `pool init`: a new pool, with a host per file.
fn pool_init(db: &mut Db, pool: String, files: Vec<PathBuf>) -> Result<Output, Error> {
    if !levelctl::model::valid_name(&pool) {
        return Err(Error::State(StateError {
            path: pool.clone(),
            kind: StateErrorKind::BadName,
        }));
    }
    let mut p = Pool::new(&pool);
    let mut reports = Vec::new();
    for file in &files {
        let host = load(
            file,
            HostArgs {
                name: None,
                cpuid: None,
            },
        )?
        .host;
        reports.push(p.apply(Change::Join(Box::new(host)))?);
    }
    let base = db.event("pool init", &pool, None);
    let location = db.store()?.location();
    db.write(base, |tx, ev| {
        tx.create_pool(&p)?;
        ev.message = format!("created pool {pool} with {}", plural(p.hosts.len(), "host"));
        let mut text = format!("{}\n", ev.message);
        if !p.hosts.is_empty() {
            text.push('\n');
            text.push_str(&render::levels(&p, &p.level_report(), None));
        }
        let json = json!({"pool": pool, "database": location, "joins": reports});
        Ok(Output::ok(text, json))
    })
}

/// `pool evacuate`: move every running VM off `host`.
fn pool_evacuate(db: &mut Db, pool: String, host: String, dry_run: bool) -> Result<Output, Error> {
    if dry_run {
        let mut p = db.read(|tx| tx.pool(&pool))?;
        let report = p.evacuate(&host, true)?;
        return Ok(Output::ok(render::evacuation(&report), to_json(&report)));
    }
    let mut base = db.event("pool evacuate", &pool, None);
    base.host = Some(host.clone());
    db.write(base, |tx, ev| {
        let mut p = tx.pool(&pool)?;
        let report = p.evacuate(&host, false)?;
        tx.save_pool(&p)?;
        ev.message = format!(
            "evacuated {host}: {} moved",
            plural(report.moves.len(), "VM")
        );
        Ok(Output::ok(render::evacuation(&report), to_json(&report)))
    })
}

/// `pool list`.
fn pool_list(db: &mut Db) -> Result<Output, Error> {
    let pools = db.read(|tx| {
        tx.pool_names()?
            .iter()
            .map(|n| tx.pool(n))
            .collect::<Result<Vec<Pool>, Error>>()
    })?;
    let json: Vec<Value> = pools
        .iter()
        .map(|p| {
            json!({
                "pool": p.name,
                "vendor": p.vendor().map(|v| v.to_string()),
                "hosts": p.hosts.iter().map(|h| &h.name).collect::<Vec<_>>(),
                "vms": p.vms.len(),
                "running": p.vms.iter().filter(|v| v.power == PowerState::Running).count(),
                "suspended": p.vms.iter().filter(|v| v.power == PowerState::Suspended).count(),
            })
        })
        .collect();
    Ok(Output::ok(render::pool_list(&pools), Value::Array(json)))
}

/// `pool destroy`: refused while VMs are live, unless `force`.
fn pool_destroy(db: &mut Db, pool: String, force: bool) -> Result<Output, Error> {
    let base = db.event("pool destroy", &pool, None);
    db.write(base, |tx, ev| {
        let p = tx.pool(&pool)?;
        let live: Vec<&levelctl::Vm> = p.vms.iter().filter(|v| v.is_live()).collect();
        if !live.is_empty() && !force {
            return Err(Error::Refused(Box::new(levelctl::report::Refusal {
                operation: "destroy".to_string(),
                subject: format!("pool {pool}"),
                reason: format!(
                    "{} {} running or suspended: {}",
                    plural(live.len(), "VM"),
                    if live.len() == 1 { "is" } else { "are" },
                    live.iter()
                        .map(|v| v.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                checks: Vec::new(),
                accepting: None,
                details: vec![
                    "shut them down or move them first, or destroy with --force".to_string(),
                ],
            })));
        }
        tx.delete_pool(&pool)?;
        ev.message = format!(
            "destroyed pool {pool}: {}, {}{}",
            plural(p.hosts.len(), "host"),
            plural(p.vms.len(), "VM"),
            if live.is_empty() {
                String::new()
            } else {
                format!(" ({} live, forced)", live.len())
            }
        );
        let text = format!("{}\n", ev.message);
        Ok(Output::ok(
            text,
            json!({"destroyed": pool, "hosts": p.hosts.len(), "vms": p.vms.len(),
                   "forced": !live.is_empty()}),
        ))
    })
}

/// `vm list`: the VMs of one pool, or of all.
fn vm_list(db: &mut Db, pool: Option<String>) -> Result<Output, Error> {
    let pools = db.read(|tx| match &pool {
        Some(p) => Ok(vec![tx.pool(p)?]),
        None => tx
            .pool_names()?
            .iter()
            .map(|n| tx.pool(n))
            .collect::<Result<Vec<Pool>, Error>>(),
    })?;
    let json: Vec<Value> = pools
        .iter()
        .flat_map(|p| {
            p.vms.iter().map(move |v| {
                json!({
                    "pool": p.name,
                    "vm": v.name,
                    "type": v.guest,
                    "power": v.power,
                    "template": v.template,
                    "host": v.host,
                    "featureset": v.featureset.as_ref().map(Features::from),
                    "above_level": match (v.featureset, p.level(v.guest)) {
                        (Some(fs), Some(level)) => levelctl::report::names(&(fs - level)),
                        _ => Vec::new(),
                    },
                    "forced": v.forced.iter().map(levelctl::report::ForceOut::from).collect::<Vec<_>>(),
                })
            })
        })
        .collect();
    Ok(Output::ok(render::vm_list(&pools), Value::Array(json)))
}

/// `vm copy`: within the pool under a new name, or to another pool.
fn vm_copy(
    db: &mut Db,
    pool: String,
    vm: String,
    to_pool: Option<String>,
    as_name: Option<String>,
    instantiate: bool,
) -> Result<Output, Error> {
    let same = to_pool.as_deref().is_none_or(|d| d == pool);
    let name = as_name.clone().unwrap_or_else(|| vm.clone());
    if same && as_name.is_none() {
        return Err(Error::Usage(
            "a copy within the same pool needs a new name (--as NAME)".to_string(),
        ));
    }
    let mut base = db.event("vm copy", &pool, Some(&vm));
    base.other_pool = to_pool.clone().filter(|_| !same);
    db.write(base, |tx, ev| {
        let report = if same {
            let mut p = tx.pool(&pool)?;
            let src = p.clone();
            let report = ops::copy_vm(&src, &vm, &mut p, &name, instantiate)?;
            tx.save_pool(&p)?;
            report
        } else {
            let src = tx.pool(&pool)?;
            let mut dst = tx.pool(to_pool.as_deref().unwrap_or_default())?;
            let report = ops::copy_vm(&src, &vm, &mut dst, &name, instantiate)?;
            tx.save_pool(&dst)?;
            report
        };
        ev.message = format!("copied {vm} to {}/{name}", report.pool);
        Ok(vm_output(report))
    })
}

/// `vm config`: the VM's CPU configuration for xl, XAPI or libvirt.
fn vm_config(db: &mut Db, pool: String, vm: String, format: String) -> Result<Output, Error> {
    let p = db.read(|tx| tx.pool(&pool))?;
    let v = p.vm(&vm)?;
    let fs = match (v.featureset, p.level(v.guest)) {
        (Some(fs), _) | (None, Some(fs)) => fs,
        (None, None) => {
            return Err(Error::Usage(format!(
                "VM {vm} is halted and pool {pool} has no hosts: no level to start at"
            )));
        }
    };
    let offered = levelctl::interop::offered(&p.hosts, v.guest);
    let vendor = v.vendor.or(p.vendor());
    let text = match format.as_str() {
        "xl" => levelctl::interop::xl_cfg(&vm, &fs, &offered),
        "xapi" => levelctl::interop::xapi(&vm, &fs),
        _ => levelctl::interop::libvirt(&vm, vendor, &fs, &offered),
    };
    let json = json!({"pool": pool, "vm": vm, "format": format, "config": text,
                      "featureset": Features::from(&fs)});
    Ok(Output {
        verbatim: true,
        ..Output::ok(text, json)
    })
}

/// `vm import`'s request, from its arguments.
fn import_request(
    vm: String,
    guest: GuestType,
    on: Option<String>,
    featureset: Option<String>,
    vendor: Option<String>,
    suspended: bool,
    force: bool,
) -> Result<ImportRequest, Error> {
    let vendor = match vendor {
        None => None,
        Some(v) => Some(levelctl::model::parse_vendor(&v).ok_or_else(|| {
            InputError::new("--vendor", 1, format!("`{v}` is not a vendor Xen levels"))
        })?),
    };
    let featureset = featureset.map(featureset_arg).transpose()?;
    let request = ImportRequest {
        name: vm.clone(),
        guest,
        host: on,
        vendor,
        featureset,
        suspended,
        force,
    };
    Ok(request)
}

/// `vm migrate`: within the pool, or to another one (both pools change in one transaction).
fn vm_migrate(
    db: &mut Db,
    pool: String,
    vm: String,
    to: Option<String>,
    to_pool: Option<String>,
    force: bool,
) -> Result<Output, Error> {
    match to_pool {
        Some(dst_name) if dst_name != pool => {
            let mut base = db.event("vm migrate", &pool, Some(&vm));
            base.other_pool = Some(dst_name.clone());
            db.write(base, |tx, ev| {
                let mut src = tx.pool(&pool)?;
                let mut dst = tx.pool(&dst_name)?;
                let report = ops::migrate_between(&mut src, &vm, &mut dst, to.as_deref(), force)?;
                // One transaction: both pools change, or neither.
                tx.save_pool(&dst)?;
                tx.save_pool(&src)?;
                fill_event(ev, &report);
                Ok(vm_output(report))
            })
        }
        _ => with_pool(db, "vm migrate", &pool, &vm.clone(), |p| {
            p.migrate_vm(&vm, to.as_deref(), force)
        }),
    }
}

fn vm_output(report: levelctl::report::VmReport) -> Output {
    Output::ok(render::vm_report(&report), to_json(&report))
}

/// Load, change, save one pool, in one transaction with its audit entry.
fn with_pool(
    db: &mut Db,
    operation: &str,
    pool: &str,
    vm: &str,
    f: impl FnOnce(&mut Pool) -> Result<levelctl::report::VmReport, Error>,
) -> Result<Output, Error> {
    let base = db.event(operation, pool, Some(vm));
    db.write(base, |tx, ev| {
        let mut p = tx.pool(pool)?;
        let report = f(&mut p)?;
        tx.save_pool(&p)?;
        fill_event(ev, &report);
        Ok(vm_output(report))
    })
}

/// The audit entry of a VM operation: where it went, what a force waived.
fn fill_event(ev: &mut Event, report: &levelctl::report::VmReport) {
    ev.host = report.host.clone();
    ev.waived = report.forced.clone();
    ev.message = format!(
        "VM {} is {}{}{}",
        report.vm,
        report.power,
        report
            .host
            .as_deref()
            .map(|h| format!(" on {}/{h}", report.pool))
            .unwrap_or_default(),
        if report.forced.is_empty() {
            String::new()
        } else {
            format!(
                "; FORCED, waived {}",
                plural(report.forced.len(), "feature")
            )
        }
    );
}

/// `--featureset TEXT|@FILE`: the text, or the first featureset line of FILE. A malformed line
/// is refused here as `FILE:line`; bits past this build's words are left for the import to
/// refuse (a refusal, not bad input).
fn featureset_arg(text: String) -> Result<String, Error> {
    match text.strip_prefix('@') {
        Some(file) => {
            let content = input::read_text(Path::new(file))?;
            let (number, line) = content
                .lines()
                .map(str::trim)
                .enumerate()
                .find(|(_, l)| !l.is_empty() && !l.starts_with('#'))
                .ok_or_else(|| InputError::new(file, 1, "no featureset in the file"))?;
            match input::parse_featureset(line) {
                Ok(_) | Err(FeaturesetError::UnknownWord { .. }) => Ok(line.to_string()),
                Err(e) => Err(InputError::new(file, number + 1, e.to_string()).into()),
            }
        }
        None => Ok(text),
    }
}

fn vm_command(db: &mut Db, cmd: VmCommand) -> Result<Output, Error> {
    match cmd {
        VmCommand::List { pool } => vm_list(db, pool),
        VmCommand::Destroy { pool, vm, force } => {
            let base = db.event("vm destroy", &pool, Some(&vm));
            db.write(base, |tx, ev| {
                let mut p = tx.pool(&pool)?;
                let report = p.destroy_vm(&vm, force)?;
                tx.save_pool(&p)?;
                ev.message = report.clone();
                Ok(Output::ok(
                    format!("{report}\n"),
                    json!({"destroyed": vm, "pool": pool, "message": report}),
                ))
            })
        }
        VmCommand::Create {
            pool,
            vm,
            guest,
            template,
        } => with_pool(db, "vm create", &pool, &vm.clone(), |p| {
            p.create_vm(&vm, guest, template)
        }),
        VmCommand::Start { pool, vm, on } => with_pool(db, "vm start", &pool, &vm.clone(), |p| {
            p.start_vm(&vm, on.as_deref())
        }),
        VmCommand::Shutdown { pool, vm } => with_pool(db, "vm shutdown", &pool, &vm.clone(), |p| {
            p.shutdown_vm(&vm)
        }),
        VmCommand::Reboot { pool, vm } => {
            with_pool(db, "vm reboot", &pool, &vm.clone(), |p| p.reboot_vm(&vm))
        }
        VmCommand::Suspend { pool, vm } => {
            with_pool(db, "vm suspend", &pool, &vm.clone(), |p| p.suspend_vm(&vm))
        }
        VmCommand::Resume {
            pool,
            vm,
            on,
            force,
        } => with_pool(db, "vm resume", &pool, &vm.clone(), |p| {
            p.resume_vm(&vm, on.as_deref(), force)
        }),
        VmCommand::Migrate {
            pool,
            vm,
            to,
            to_pool,
            force,
        } => vm_migrate(db, pool, vm, to, to_pool, force),
        VmCommand::Copy {
            pool,
            vm,
            to_pool,
            as_name,
            instantiate,
        } => vm_copy(db, pool, vm, to_pool, as_name, instantiate),
        VmCommand::Import {
            pool,
            vm,
            guest,
            on,
            featureset,
            vendor,
            suspended,
            force,
        } => {
            let request = import_request(vm, guest, on, featureset, vendor, suspended, force)?;
            with_pool(db, "vm import", &pool, &request.name.clone(), |p| {
                p.import_vm(&request)
            })
        }
        VmCommand::Config { pool, vm, format } => vm_config(db, pool, vm, format),
        VmCommand::Explain {
            pool,
            vm,
            with_pools,
        } => {
            let (p, others) = db.read(|tx| {
                let p = tx.pool(&pool)?;
                let others: Vec<Pool> = with_pools
                    .iter()
                    .filter(|n| **n != pool)
                    .map(|n| tx.pool(n))
                    .collect::<Result<_, _>>()?;
                Ok((p, others))
            })?;
            let refs: Vec<&Pool> = others.iter().collect();
            let e = p.explain_vm(&vm, &refs)?;
            Ok(Output::ok(render::explanation(&e), to_json(&e)))
        }
    }
}
