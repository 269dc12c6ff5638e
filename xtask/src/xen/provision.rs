//! Fetching real Xen and a dom0 from Debian's packages, cached under `target/xen/` (never
//! committed): `apt-get download` of the packages below into `target/xen/debs/`, unpacked with
//! `dpkg-deb -x` into `target/xen/root/`; Xen gunzipped to `target/xen/xen`.
//!
//! Xen, Linux, busybox and the Xen tools are GPL programs: they are used as external binaries
//! only, fetched on the machine that runs the bench, never copied into the repository.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::{self, Workspace};

/// The packages, by name. The Linux image is a metapackage's dependency, resolved with
/// `apt-cache depends` ([`kernel_package`]).
pub const PACKAGES: &[&str] = &[
    "xen-hypervisor-4.17-amd64",
    "xen-utils-4.17",
    "busybox-static",
    // What xen-cpuid links against (`ldd` of it, less what the host's libc6 provides).
    "libxenmisc4.17",
    "libxencall1",
    "libxenevtchn1",
    "libxenforeignmemory1",
    "libxengnttab1",
    "libxentoollog1",
    "libxendevicemodel1",
    "libxentoolcore1",
];

/// The metapackage naming the current Linux image.
const KERNEL_METAPACKAGE: &str = "linux-image-amd64";

/// Xen's image inside the hypervisor package.
const XEN_GZ: &str = "boot/xen-4.17-amd64.gz";
/// `xen-cpuid` inside xen-utils.
pub const XEN_CPUID: &str = "usr/lib/xen-4.17/bin/xen-cpuid";
/// Where the Xen libraries unpack.
pub const LIB_DIR: &str = "usr/lib/x86_64-linux-gnu";
/// busybox-static's binary.
pub const BUSYBOX: &str = "bin/busybox";
/// The dom0 modules `/init` loads (relative to the kernel's `kernel/` module folder), in the
/// order of their dependencies (`xenfs` needs `xen-privcmd`).
pub const MODULES: &[&str] = &[
    "drivers/xen/xen-privcmd.ko",
    "drivers/xen/xenfs/xenfs.ko",
    "drivers/xen/xen-evtchn.ko",
];

/// What a provisioned `target/xen/` holds.
#[derive(Clone, Debug)]
pub struct Provisioned {
    /// `target/xen/`.
    pub dir: PathBuf,
    /// The unpacked packages.
    pub root: PathBuf,
    /// Xen, gunzipped (a multiboot ELF32).
    pub xen: PathBuf,
    /// dom0's kernel.
    pub vmlinuz: PathBuf,
    /// The kernel's module folder (`lib/modules/<version>/kernel`).
    pub modules: PathBuf,
    /// The Linux image package's version string (`6.1.0-NN-amd64`).
    pub kernel_version: String,
}

/// `target/xen/` of the workspace.
pub fn dir(ws: &Workspace) -> PathBuf {
    ws.root().join("target/xen")
}

/// Whether the packages are already unpacked (the gate runs the differential only then).
pub fn cached(ws: &Workspace) -> bool {
    find_cached(&dir(ws)).is_some()
}

/// The unpacked tree if it is complete, without fetching anything.
fn find_cached(dir: &Path) -> Option<Provisioned> {
    let root = dir.join("root");
    let xen = dir.join("xen");
    let modules_root = root.join("lib/modules");
    let kernel_version = std::fs::read_dir(&modules_root)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|name| root.join(format!("boot/vmlinuz-{name}")).is_file())?;
    let vmlinuz = root.join(format!("boot/vmlinuz-{kernel_version}"));
    let modules = modules_root.join(&kernel_version).join("kernel");
    let complete = xen.is_file()
        && root.join(XEN_CPUID).is_file()
        && root.join(BUSYBOX).is_file()
        && MODULES.iter().all(|m| modules.join(m).is_file());
    complete.then(|| Provisioned {
        dir: dir.to_path_buf(),
        root,
        xen,
        vmlinuz,
        modules,
        kernel_version,
    })
}

/// Makes sure `target/xen/` holds Xen, dom0's kernel and modules, busybox and xen-cpuid with
/// its libraries; downloads and unpacks what is missing. An error says what could not be had.
pub fn ensure(ws: &Workspace) -> Result<Provisioned, String> {
    let dir = dir(ws);
    if let Some(p) = find_cached(&dir) {
        return Ok(p);
    }
    let debs = dir.join("debs");
    std::fs::create_dir_all(&debs).map_err(|e| format!("{}: {e}", debs.display()))?;
    let kernel = match kernel_package() {
        Ok(k) => k,
        Err(_) => {
            // A machine that never ran `apt-get update` knows no package lists yet.
            apt_update()?;
            kernel_package()?
        }
    };
    let mut wanted: Vec<String> = PACKAGES.iter().map(|p| (*p).to_owned()).collect();
    wanted.push(kernel);
    let missing: Vec<&String> = wanted.iter().filter(|name| !has_deb(&debs, name)).collect();
    if !missing.is_empty() {
        println!(
            "xen: downloading {} package(s) into {}",
            missing.len(),
            debs.display()
        );
        let download = || {
            let mut cmd = Command::new("apt-get");
            cmd.arg("download").args(&missing).current_dir(&debs);
            process::stdout_of(&mut cmd).ok_or_else(|| process::describe(&cmd))
        };
        if download().is_err() {
            apt_update()?;
            download().map_err(|cmd| {
                format!("`{cmd}` failed: Debian's packages are not reachable from here")
            })?;
        }
    }
    let root = dir.join("root");
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    for entry in std::fs::read_dir(&debs).map_err(|e| format!("{}: {e}", debs.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_some_and(|e| e == "deb") {
            process::run(Command::new("dpkg-deb").arg("-x").arg(&path).arg(&root))?;
        }
    }
    let gz = root.join(XEN_GZ);
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(&gz)
        .output()
        .map_err(|e| format!("gzip -dc {}: {e}", gz.display()))?;
    if !out.status.success() {
        return Err(format!("gzip -dc {} failed", gz.display()));
    }
    let xen = dir.join("xen");
    std::fs::write(&xen, out.stdout).map_err(|e| format!("{}: {e}", xen.display()))?;
    find_cached(&dir).ok_or_else(|| {
        format!(
            "the packages unpacked into {} lack Xen, vmlinuz, xen-cpuid, busybox or the xen modules",
            root.display()
        )
    })
}

/// Whether `debs` holds a `.deb` of package `name`.
fn has_deb(debs: &Path, name: &str) -> bool {
    std::fs::read_dir(debs).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            file.ends_with(".deb") && file.split('_').next() == Some(name)
        })
    })
}

/// `apt-get update`, quietly.
fn apt_update() -> Result<(), String> {
    let mut cmd = Command::new("apt-get");
    cmd.args(["update", "-qq"]);
    process::stdout_of(&mut cmd)
        .map(drop)
        .ok_or_else(|| "`apt-get update` failed: Debian's packages are not reachable".into())
}

/// The Linux image package `linux-image-amd64` depends on (`linux-image-6.1.0-NN-amd64`).
fn kernel_package() -> Result<String, String> {
    let mut cmd = Command::new("apt-cache");
    cmd.args(["depends", KERNEL_METAPACKAGE]);
    let text = process::stdout_of(&mut cmd).unwrap_or_default();
    depends_on_image(&text).ok_or_else(|| {
        format!("`apt-cache depends {KERNEL_METAPACKAGE}` names no linux-image package")
    })
}

/// The `Depends: linux-image-…` line of `apt-cache depends` output.
fn depends_on_image(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let name = line.trim().strip_prefix("Depends: ")?;
        name.starts_with("linux-image-").then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::depends_on_image;

    #[test]
    fn the_kernel_image_is_read_from_apt_cache_depends() {
        let text = "linux-image-amd64\n  Depends: linux-image-6.1.0-57-amd64\n";
        assert_eq!(
            depends_on_image(text).as_deref(),
            Some("linux-image-6.1.0-57-amd64")
        );
        assert_eq!(depends_on_image("linux-image-amd64\n"), None);
    }
}
