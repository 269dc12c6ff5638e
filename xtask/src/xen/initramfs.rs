//! dom0's initramfs: busybox, `/init` ([`INIT`]), the measuring program
//! (`xtask/xen-guest/measure.c`, built with the host's `gcc -static -O2`), the three Xen
//! modules, and `xen-cpuid` with the shared libraries and dynamic loader it needs (found with
//! `ldd`, from the unpacked packages first and the host's libc6 for the rest), written as a
//! newc cpio ([`super::cpio`]) to `target/xen/initrd.img`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::cpio::{self, Entry};
use super::provision::{self, Provisioned};
use crate::process::{self, Workspace};

/// The measuring program's source.
pub const MEASURE_C: &str = "xtask/xen-guest/measure.c";

/// dom0's `/init`: mounts, loads the Xen modules, mounts xenfs, measures, dumps the policies
/// and featuresets between markers the serial parser knows, and reboots (QEMU runs with
/// `-no-reboot`, so the reboot ends it).
pub const INIT: &str = "#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
insmod /lib/modules/xen-privcmd.ko
insmod /lib/modules/xenfs.ko
insmod /lib/modules/xen-evtchn.ko
mkdir -p /proc/xen
mount -t xenfs xenfs /proc/xen
export LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu
echo xenboot: measure
/measure
echo xenboot: xen-cpuid-p begin
/bin/xen-cpuid -p
echo xenboot: xen-cpuid-p end
echo xenboot: xen-cpuid begin
/bin/xen-cpuid
echo xenboot: xen-cpuid end
echo xenboot: done
reboot -f
";

/// Builds the measuring program and the initramfs; returns the image's path.
pub fn build(ws: &Workspace, p: &Provisioned) -> Result<PathBuf, String> {
    let measure = p.dir.join("measure");
    process::run(
        Command::new("gcc")
            .args(["-static", "-O2", "-Wall", "-o"])
            .arg(&measure)
            .arg(ws.root().join(MEASURE_C)),
    )
    .map_err(|e| format!("{e} (the measuring program needs gcc and libc6-dev)"))?;

    let mut entries = Vec::new();
    for dir in [
        "bin",
        "dev",
        "lib",
        "lib/modules",
        "lib64",
        "proc",
        "sys",
        "tmp",
        "usr",
        "usr/lib",
        provision::LIB_DIR,
    ] {
        entries.push(Entry::Dir(dir.into()));
    }
    entries.push(file("init", 0o755, INIT.as_bytes().to_vec()));
    entries.push(file("measure", 0o755, read(&measure)?));
    entries.push(file(
        "bin/busybox",
        0o755,
        read(&p.root.join(provision::BUSYBOX))?,
    ));
    let xen_cpuid = p.root.join(provision::XEN_CPUID);
    entries.push(file("bin/xen-cpuid", 0o755, read(&xen_cpuid)?));
    for module in provision::MODULES {
        let name = Path::new(module)
            .file_name()
            .expect("module paths end in a file")
            .to_string_lossy();
        entries.push(file(
            &format!("lib/modules/{name}"),
            0o644,
            read(&p.modules.join(module))?,
        ));
    }
    for (soname, path) in libraries(&xen_cpuid, &p.root.join(provision::LIB_DIR))? {
        let inside = if soname.starts_with("ld-linux") {
            format!("lib64/{soname}")
        } else {
            format!("{}/{soname}", provision::LIB_DIR)
        };
        entries.push(file(&inside, 0o755, read(&path)?));
    }
    let image = p.dir.join("initrd.img");
    std::fs::write(&image, cpio::archive(&entries))
        .map_err(|e| format!("{}: {e}", image.display()))?;
    Ok(image)
}

fn file(path: &str, mode: u32, data: Vec<u8>) -> Entry {
    Entry::File {
        path: path.into(),
        mode,
        data,
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// `(soname, path)` of every shared library and the loader `binary` needs, with `lib_dir`
/// searched first: `ldd` run with `LD_LIBRARY_PATH`.
fn libraries(binary: &Path, lib_dir: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let mut cmd = Command::new("ldd");
    cmd.arg(binary).env("LD_LIBRARY_PATH", lib_dir);
    let text = process::stdout_of(&mut cmd)
        .ok_or_else(|| format!("`{}` failed", process::describe(&cmd)))?;
    parse_ldd(&text)
}

/// Reads `ldd` output: `name => /path (addr)` lines, and the loader's `/path (addr)` line;
/// `not found` is an error naming the library.
fn parse_ldd(text: &str) -> Result<Vec<(String, PathBuf)>, String> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some((name, rest)) = line.split_once(" => ") {
            if rest.starts_with("not found") {
                return Err(format!("xen-cpuid needs {name}, which no package provides"));
            }
            let path = rest.split_whitespace().next().unwrap_or_default();
            libs.push((name.to_owned(), PathBuf::from(path)));
        } else if line.starts_with('/') {
            let path = PathBuf::from(line.split_whitespace().next().unwrap_or_default());
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            libs.push((name, path));
        }
    }
    Ok(libs)
}

#[cfg(test)]
mod tests {
    use super::{INIT, parse_ldd};
    use std::path::PathBuf;

    #[test]
    fn ldd_output_gives_libraries_and_the_loader() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibxenctrl.so.4.17 => target/xen/root/usr/lib/x86_64-linux-gnu/libxenctrl.so.4.17 (0x1)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x2)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x3)\n";
        let libs = parse_ldd(text).unwrap();
        assert_eq!(
            libs,
            vec![
                (
                    "libxenctrl.so.4.17".into(),
                    PathBuf::from("target/xen/root/usr/lib/x86_64-linux-gnu/libxenctrl.so.4.17")
                ),
                (
                    "libc.so.6".into(),
                    PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6")
                ),
                (
                    "ld-linux-x86-64.so.2".into(),
                    PathBuf::from("/lib64/ld-linux-x86-64.so.2")
                ),
            ]
        );
        let missing = parse_ldd("\tlibxentoolcore.so.1 => not found\n").unwrap_err();
        assert!(missing.contains("libxentoolcore.so.1"));
    }

    #[test]
    fn init_prints_the_markers_the_parser_reads_and_ends_the_boot() {
        for marker in [
            "xen-cpuid-p begin",
            "xen-cpuid-p end",
            "xen-cpuid begin",
            "xen-cpuid end",
            "done",
        ] {
            assert!(
                INIT.contains(&format!("echo xenboot: {marker}\n")),
                "{marker}"
            );
        }
        assert!(INIT.trim_end().ends_with("reboot -f"));
    }
}
