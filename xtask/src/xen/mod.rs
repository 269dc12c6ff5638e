//! Real Xen beside the crate's kernel: `cargo xtask xen-boot` and `cargo xtask xen-policies`.
//!
//! Xen 4.17 from Debian's packages ([`provision`]) boots under QEMU TCG with `-icount shift=0`
//! through QEMU's multiboot loader, with a Linux 6.1 PV dom0 whose initramfs ([`initramfs`])
//! times Xen's forced-emulation CPUID from user space (exact instruction counts), then runs
//! `xen-cpuid -p` and `xen-cpuid`. The serial log ([`serial`]) gives the timings, Xen's
//! `Levelling caps:` line and the policies ([`cpuid_p`]); [`differential`] derives the crate's
//! own policies from Xen's Raw policy of the same boot and compares them with Xen's.
//!
//! Each boot leaves `target/xen/<model>/serial.log`, `xen-cpuid-p.txt` and `xen-cpuid.txt`.

pub mod bench;
pub mod cpio;
pub mod cpuid_p;
pub mod differential;
pub mod initramfs;
pub mod provision;
pub mod serial;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::process::Workspace;

/// One QEMU CPU model Xen boots on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenModel {
    /// The `-cpu` value, also the label and the folder name under `target/xen/`.
    pub cpu: &'static str,
}

/// The models: the crate bench's (`Haswell,+svm`, `EPYC`) and the masking generations Xen's
/// probe is fooled on (issue 11: SandyBridge, Nehalem, EPYC) plus an AMD family 10h.
pub const MODELS: &[XenModel] = &[
    XenModel {
        cpu: "Haswell,+svm",
    },
    XenModel { cpu: "EPYC" },
    XenModel { cpu: "SandyBridge" },
    XenModel { cpu: "Nehalem" },
    XenModel { cpu: "Opteron_G3" },
];

/// Xen's command line: serial console, a 512 MiB one-vCPU dom0, mitigations off (closest to
/// the test kernel), `smap=hvm` (Xen's SMAP for PV crashes dom0 under TCG on EPYC; same line
/// on every model so the boots compare), `cpuinfo` and `loglvl=all` for the `Levelling caps:`
/// line.
pub const XEN_CMDLINE: &str = "console=com1 com1=115200,8n1 dom0_mem=512M,max:512M \
    dom0_max_vcpus=1 spec-ctrl=no xpti=0 smap=hvm cpuinfo loglvl=all";

/// dom0's command line (after the kernel's path in the multiboot module string).
pub const DOM0_CMDLINE: &str = "console=hvc0 rdinit=/init loglevel=4";

/// How long a boot may take: about 20 s on an idle machine, several times that on a loaded
/// one.
pub const TIMEOUT: Duration = Duration::from_secs(600);

/// What one boot gave.
#[derive(Clone, Debug)]
pub struct XenBoot {
    /// The model.
    pub model: XenModel,
    /// The parsed serial log.
    pub log: serial::XenLog,
    /// `target/xen/<model>/`.
    pub dir: PathBuf,
    /// dom0's kernel version (`6.1.0-NN-amd64`).
    pub dom0: String,
    /// Wall time.
    pub elapsed: Duration,
}

/// The folder of a model's captures (`,` and `+` kept: `Haswell,+svm`).
pub fn model_dir(ws: &Workspace, cpu: &str) -> PathBuf {
    provision::dir(ws).join(cpu)
}

/// Xen's `Levelling caps:` line from a boot already captured on QEMU model `model` (also
/// tried with `,+svm`, as the bench boots Haswell), or `None` where there is none.
pub fn cached_caps(ws: &Workspace, model: &str) -> Option<String> {
    [model.to_string(), format!("{model},+svm")]
        .iter()
        .map(|cpu| model_dir(ws, cpu).join("serial.log"))
        .find_map(|path| std::fs::read_to_string(path).ok())
        .map(|text| serial::parse(&text).caps_text())
}

/// What [`boot_models`] gave: the boots that worked and, for the others, why not.
pub type Boots = (Vec<XenBoot>, Vec<String>);

/// Provisions, builds the initramfs and boots each of `models` in turn. Fails only when Xen
/// cannot be had at all (packages, initramfs); a boot that fails is reported with the others.
pub fn boot_models(ws: &Workspace, models: &[XenModel]) -> Result<Boots, String> {
    let p = provision::ensure(ws)?;
    let initrd = initramfs::build(ws, &p)?;
    let mut boots = Vec::new();
    let mut failed = Vec::new();
    for model in models {
        match boot(ws, &p, &initrd, *model) {
            Ok(b) => boots.push(b),
            Err(why) => {
                println!("xen: {why}");
                failed.push(why);
            }
        }
    }
    Ok((boots, failed))
}

/// The QEMU command line of one boot.
fn qemu_command(p: &provision::Provisioned, initrd: &Path, cpu: &str) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-machine", "pc", "-cpu", cpu, "-m", "1024", "-smp", "1"])
        .args(["-icount", "shift=0"])
        .args(["-serial", "stdio", "-display", "none", "-monitor", "none"])
        .arg("-no-reboot")
        .arg("-kernel")
        .arg(&p.xen)
        .args(["-append", XEN_CMDLINE])
        .arg("-initrd")
        .arg(format!(
            "{} {DOM0_CMDLINE},{}",
            p.vmlinuz.display(),
            initrd.display()
        ));
    cmd
}

/// Boots Xen on `model` once and records the captures; a boot that does not reach the end
/// of `/init`, or panics, is an error naming the log.
pub fn boot(
    ws: &Workspace,
    p: &provision::Provisioned,
    initrd: &Path,
    model: XenModel,
) -> Result<XenBoot, String> {
    let dir = model_dir(ws, model.cpu);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    println!("xen: booting Xen 4.17 on {} (about 20 s idle)", model.cpu);
    let started = Instant::now();
    let (serial, stderr, timed_out) = run_with_timeout(qemu_command(p, initrd, model.cpu))?;
    let elapsed = started.elapsed();
    let log_path = dir.join("serial.log");
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write("serial.log", &serial)?;
    let log = serial::parse(&serial);
    if let Some(text) = &log.cpuid_p {
        write("xen-cpuid-p.txt", text)?;
    }
    if let Some(text) = &log.featuresets {
        write("xen-cpuid.txt", text)?;
    }
    let failed = if timed_out {
        Some(format!("timed out after {}s", TIMEOUT.as_secs()))
    } else if let Some(panic) = &log.panic {
        Some(format!("panic: {panic}"))
    } else if !log.done || !log.measured {
        Some(format!(
            "dom0's /init did not finish; QEMU said: {}",
            stderr.lines().last().unwrap_or("nothing")
        ))
    } else {
        None
    };
    if let Some(why) = failed {
        return Err(format!(
            "Xen on {}: {why} (log: {})",
            model.cpu,
            log_path.display()
        ));
    }
    println!(
        "xen: {}: done in {:.0}s; {}",
        model.cpu,
        elapsed.as_secs_f64(),
        log.caps_text()
    );
    Ok(XenBoot {
        model,
        log,
        dir,
        dom0: p.kernel_version.clone(),
        elapsed,
    })
}

/// Runs `cmd` capturing stdout and stderr, killing it after [`TIMEOUT`]:
/// `(stdout, stderr, timed out)`.
fn run_with_timeout(mut cmd: Command) -> Result<(String, String, bool), String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("could not start `{}`: {e}", crate::process::describe(&cmd)))?;
    let reader = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("piped")));
    let err = reader(Box::new(child.stderr.take().expect("piped")));
    let started = Instant::now();
    let mut timed_out = false;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() >= TIMEOUT => {
                timed_out = true;
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            Ok(None) => thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("waiting for QEMU: {e}"));
            }
        }
    }
    Ok((
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
        timed_out,
    ))
}

/// The models `--cpu` names (a QEMU name, or `all`).
fn select(cpu: Option<&str>) -> Result<Vec<XenModel>, String> {
    match cpu {
        None | Some("all") => Ok(MODELS.to_vec()),
        Some(name) => MODELS
            .iter()
            .find(|m| m.cpu == name || m.cpu.split(',').next() == Some(name))
            .map(|m| vec![*m])
            .ok_or_else(|| {
                let names: Vec<&str> = MODELS.iter().map(|m| m.cpu).collect();
                format!("unknown Xen model `{name}`; one of: {}", names.join(", "))
            }),
    }
}

/// Parses `--cpu MODEL` (the only option of both commands).
fn parse_cpu(args: &[String]) -> Result<Option<String>, String> {
    match args {
        [] => Ok(None),
        [flag, value] if flag == "--cpu" => Ok(Some(value.clone())),
        _ => Err("expected `--cpu MODEL` (or nothing: every model)".into()),
    }
}

/// `cargo xtask xen-boot [--cpu MODEL]`: boots Xen and prints what it measured.
pub fn xen_boot(ws: &Workspace, args: &[String]) -> Result<(), String> {
    let models = select(parse_cpu(args)?.as_deref())?;
    let (boots, failed) = boot_models(ws, &models)?;
    for boot in &boots {
        print_boot(boot);
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

/// Prints one boot's figures.
pub fn print_boot(boot: &XenBoot) {
    let log = &boot.log;
    println!(
        "xen {}: {}: Xen {}, dom0 Linux {}, in {:.0}s",
        boot.model.cpu,
        log.caps_text(),
        log.version.as_deref().unwrap_or("?"),
        boot.dom0,
        boot.elapsed.as_secs_f64()
    );
    if let Some(m) = &log.msr_defaults {
        println!("xen {}: MSR defaults: {m}", boot.model.cpu);
    }
    println!(
        "xen {}: HVM {} HAP {}",
        boot.model.cpu,
        if log.hvm { "yes" } else { "no" },
        if log.hap { "yes" } else { "no" }
    );
    for t in &log.forced {
        println!(
            "xen {}: forced-emulation CPUID {:#x}.{}: {} instructions",
            boot.model.cpu, t.leaf, t.subleaf, t.instructions
        );
    }
    for t in &log.plain {
        println!(
            "xen {}: plain CPUID {:#x}.{}: {} instructions (dom0's CPUID is {})",
            boot.model.cpu,
            t.leaf,
            t.subleaf,
            t.instructions,
            if t.instructions > 50 {
                "faulted"
            } else {
                "native, not faulted"
            }
        );
    }
    println!("xen {}: captures in {}", boot.model.cpu, boot.dir.display());
}

/// `cargo xtask xen-policies [--cpu MODEL] [--cached]`: the derivation differential.
pub fn xen_policies(ws: &Workspace, args: &[String]) -> Result<(), String> {
    let cached_only = args.iter().any(|a| a == "--cached");
    let rest: Vec<String> = args.iter().filter(|a| *a != "--cached").cloned().collect();
    let models = select(parse_cpu(&rest)?.as_deref())?;
    differential::run(ws, &models, cached_only).map(drop)
}

/// The gate's step: the differential over the captures already in `target/xen/` (no boot:
/// the gate stays fast) where the packages are cached; elsewhere it says that it runs in
/// `cargo xtask bench` instead.
pub fn gate_step(ws: &Workspace) -> Result<(), String> {
    if !provision::cached(ws) {
        println!(
            "xen-policies: not in this gate: no real Xen cached in target/xen/; it runs in \
             `cargo xtask bench` (or `cargo xtask xen-policies`), which fetches it"
        );
        return Ok(());
    }
    println!("xen-policies: in the gate, on the captures in target/xen/");
    differential::run(ws, MODELS, true).map(drop)
}

#[cfg(test)]
mod tests {
    use super::{MODELS, parse_cpu, select};

    #[test]
    fn models_are_selected_by_qemu_name() {
        assert_eq!(select(None).unwrap(), MODELS);
        assert_eq!(select(Some("EPYC")).unwrap()[0].cpu, "EPYC");
        assert_eq!(select(Some("Haswell")).unwrap()[0].cpu, "Haswell,+svm");
        assert!(select(Some("Penryn")).unwrap_err().contains("one of"));
        assert_eq!(
            parse_cpu(&["--cpu".into(), "EPYC".into()]).unwrap(),
            Some("EPYC".into())
        );
        assert!(parse_cpu(&["--bogus".into()]).is_err());
    }
}
