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
use levelctl::state::{StateError, StateErrorKind, Store};
use levelctl::{GuestType, Pool};

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

State: one JSON file per pool in --state-dir (default ./levelctl-state, or $LEVELCTL_STATE_DIR).
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
  levelctl decode 1fc9cbf5-f6f83203-2191cbf5-00000123";

#[derive(Parser)]
#[command(name = "levelctl", version, about = ABOUT, long_about = LONG_ABOUT, after_help = EXAMPLES)]
struct Cli {
    /// Directory of the pool state files (POOL.json)
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "LEVELCTL_STATE_DIR",
        default_value = "levelctl-state"
    )]
    state_dir: PathBuf,
    /// Print JSON instead of tables (also for errors and refusals)
    #[arg(long, global = true)]
    json: bool,
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
    /// A host joins: same vendor only; reports the level change feature by feature
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
    /// The pools in the state directory
    List,
}

#[derive(Subcommand)]
enum VmCommand {
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
}

impl Output {
    fn ok(text: String, json: Value) -> Output {
        Output {
            text,
            json,
            code: 0,
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("reports serialise")
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let json = cli.json;
    match run(cli) {
        Ok(out) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&out.json).expect("JSON"));
            } else {
                print!("{}", out.text);
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
                println!("{}", serde_json::to_string_pretty(&body).expect("JSON"));
            } else if let Error::Refused(r) = &e {
                print!("{}", render::refusal(r));
            }
            eprintln!("levelctl: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn run(cli: Cli) -> Result<Output, Error> {
    let store = Store::new(&cli.state_dir);
    match cli.command {
        Command::Decode { input } => decode(&input),
        Command::Inspect {
            file,
            cpuid,
            host_report,
        } => inspect(&file, cpuid, host_report),
        Command::Pool(cmd) => pool_command(&store, cmd),
        Command::Vm(cmd) => vm_command(&store, cmd),
        Command::WhatIf { pool, change } => {
            let p = store.load(&pool)?;
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
                text: format!("what-if: {}", render::change_report(&report)),
                json: to_json(&report),
                code,
            })
        }
    }
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

fn changed(store: &Store, mut pool: Pool, change: Change, dry_run: bool) -> Result<Output, Error> {
    let report = if dry_run {
        let r = pool.plan(&change)?;
        if !r.blockers.is_empty() {
            return Ok(Output {
                text: render::change_report(&r),
                json: to_json(&r),
                code: 1,
            });
        }
        r
    } else {
        let r = pool.apply(change)?;
        store.save(&pool)?;
        r
    };
    Ok(Output::ok(render::change_report(&report), to_json(&report)))
}

fn pool_command(store: &Store, cmd: PoolCommand) -> Result<Output, Error> {
    match cmd {
        PoolCommand::Init { pool, files } => {
            if !levelctl::model::valid_name(&pool) {
                return Err(Error::State(StateError {
                    path: store.path(&pool).display().to_string(),
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
            let path = store.create(&p)?;
            let mut text = format!(
                "created pool {pool} ({}) with {} hosts\n",
                path.display(),
                p.hosts.len()
            );
            if !p.hosts.is_empty() {
                text.push('\n');
                text.push_str(&render::levels(&p, &p.level_report(), None));
            }
            let json = json!({"pool": pool, "path": path, "joins": reports});
            Ok(Output::ok(text, json))
        }
        PoolCommand::Join {
            pool,
            file,
            host,
            dry_run,
        } => {
            let p = store.load(&pool)?;
            let host = load(&file, host)?.host;
            changed(store, p, Change::Join(Box::new(host)), dry_run)
        }
        PoolCommand::Leave {
            pool,
            host,
            dry_run,
        } => {
            let p = store.load(&pool)?;
            changed(store, p, Change::Leave(host), dry_run)
        }
        PoolCommand::Reboot {
            pool,
            host,
            file,
            cpuid,
            dry_run,
        } => {
            let p = store.load(&pool)?;
            let record = reboot_record(&p, &host, file.as_deref(), cpuid)?;
            changed(store, p, Change::Reboot(Box::new(record)), dry_run)
        }
        PoolCommand::Evacuate {
            pool,
            host,
            dry_run,
        } => {
            let mut p = store.load(&pool)?;
            let report = p.evacuate(&host, dry_run)?;
            if !dry_run {
                store.save(&p)?;
            }
            Ok(Output::ok(render::evacuation(&report), to_json(&report)))
        }
        PoolCommand::Level { pool, guest } => {
            let p = store.load(&pool)?;
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
            let p = store.load(&pool)?;
            let levels: Vec<Value> = GuestType::ALL
                .iter()
                .map(|&g| json!({"guest": g, "level": p.level(g).as_ref().map(Features::from)}))
                .collect();
            Ok(Output::ok(
                render::pool_show(&p),
                json!({"pool": p, "vendor": p.vendor().map(|v| v.to_string()), "levels": levels}),
            ))
        }
        PoolCommand::List => {
            let names = store.list()?;
            let mut text = String::new();
            for n in &names {
                text.push_str(n);
                text.push('\n');
            }
            Ok(Output::ok(text, json!(names)))
        }
    }
}

fn vm_output(report: levelctl::report::VmReport) -> Output {
    Output::ok(render::vm_report(&report), to_json(&report))
}

/// Load, change, save one pool.
fn with_pool(
    store: &Store,
    pool: &str,
    f: impl FnOnce(&mut Pool) -> Result<levelctl::report::VmReport, Error>,
) -> Result<Output, Error> {
    let mut p = store.load(pool)?;
    let report = f(&mut p)?;
    store.save(&p)?;
    Ok(vm_output(report))
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

fn vm_command(store: &Store, cmd: VmCommand) -> Result<Output, Error> {
    match cmd {
        VmCommand::Create {
            pool,
            vm,
            guest,
            template,
        } => with_pool(store, &pool, |p| p.create_vm(&vm, guest, template)),
        VmCommand::Start { pool, vm, on } => {
            with_pool(store, &pool, |p| p.start_vm(&vm, on.as_deref()))
        }
        VmCommand::Shutdown { pool, vm } => with_pool(store, &pool, |p| p.shutdown_vm(&vm)),
        VmCommand::Reboot { pool, vm } => with_pool(store, &pool, |p| p.reboot_vm(&vm)),
        VmCommand::Suspend { pool, vm } => with_pool(store, &pool, |p| p.suspend_vm(&vm)),
        VmCommand::Resume {
            pool,
            vm,
            on,
            force,
        } => with_pool(store, &pool, |p| p.resume_vm(&vm, on.as_deref(), force)),
        VmCommand::Migrate {
            pool,
            vm,
            to,
            to_pool,
            force,
        } => match to_pool {
            Some(dst_name) if dst_name != pool => {
                let mut src = store.load(&pool)?;
                let mut dst = store.load(&dst_name)?;
                let report = ops::migrate_between(&mut src, &vm, &mut dst, to.as_deref(), force)?;
                // Destination first: a crash in between leaves the VM in both files, never in
                // neither.
                store.save(&dst)?;
                store.save(&src)?;
                Ok(vm_output(report))
            }
            _ => with_pool(store, &pool, |p| p.migrate_vm(&vm, to.as_deref(), force)),
        },
        VmCommand::Copy {
            pool,
            vm,
            to_pool,
            as_name,
            instantiate,
        } => {
            let same = to_pool.as_deref().is_none_or(|d| d == pool);
            let name = as_name.clone().unwrap_or_else(|| vm.clone());
            if same {
                if as_name.is_none() {
                    return Err(Error::Usage(
                        "a copy within the same pool needs a new name (--as NAME)".to_string(),
                    ));
                }
                let mut p = store.load(&pool)?;
                let src = p.clone();
                let report = ops::copy_vm(&src, &vm, &mut p, &name, instantiate)?;
                store.save(&p)?;
                Ok(vm_output(report))
            } else {
                let src = store.load(&pool)?;
                let mut dst = store.load(to_pool.as_deref().unwrap_or_default())?;
                let report = ops::copy_vm(&src, &vm, &mut dst, &name, instantiate)?;
                store.save(&dst)?;
                Ok(vm_output(report))
            }
        }
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
            let vendor = match vendor {
                None => None,
                Some(v) => Some(levelctl::model::parse_vendor(&v).ok_or_else(|| {
                    InputError::new("--vendor", 1, format!("`{v}` is not a vendor Xen levels"))
                })?),
            };
            let featureset = featureset.map(featureset_arg).transpose()?;
            let request = ImportRequest {
                name: vm,
                guest,
                host: on,
                vendor,
                featureset,
                suspended,
                force,
            };
            with_pool(store, &pool, |p| p.import_vm(&request))
        }
        VmCommand::Explain {
            pool,
            vm,
            with_pools,
        } => {
            let p = store.load(&pool)?;
            let others: Vec<Pool> = with_pools
                .iter()
                .filter(|n| **n != pool)
                .map(|n| store.load(n))
                .collect::<Result<_, _>>()?;
            let refs: Vec<&Pool> = others.iter().collect();
            let e = p.explain_vm(&vm, &refs)?;
            Ok(Output::ok(render::explanation(&e), to_json(&e)))
        }
    }
}
