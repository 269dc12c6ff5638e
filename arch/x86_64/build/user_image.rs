//! The ring-3 programs' image: builds the `xl-user` package's binary (`user/`) with a nested
//! cargo, checks the ELF, and writes what the kernel embeds (`src/guest/toolstack.rs`):
//!
//! - `$OUT_DIR/user-image.bin`: the loadable segments, flattened from the link address, a
//!   whole number of pages;
//! - `$OUT_DIR/user_image.rs`: the link address and each entry's offset in the image.
//!
//! Why a nested build: the programs must be compiled as position-independent code with
//! everything they call (`memcpy`, the panic path) linked into their own image, while the
//! kernel is built for the static relocation model. Its own target directory (under
//! `OUT_DIR`) keeps the two sets of flags apart; `CARGO_ENCODED_RUSTFLAGS`, which wins over
//! the kernel's `.cargo/config.toml`, gives the nested build the target's own defaults.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The package and binary of the programs.
const PACKAGE_DIR: &str = "user";
const BINARY: &str = "xl-toolstack";
const TARGET: &str = "x86_64-unknown-none";
/// The entries the kernel starts domains at.
const ENTRIES: [&str; 3] = ["xl_toolstack", "xl_toolstack_unpriv", "xl_toolstack_guest"];
/// What the image is built from besides `user/`: the `xen-levelling` crate.
const CRATE_INPUTS: [&str; 5] = [
    "../../src",
    "../../build",
    "../../build.rs",
    "../../data",
    "../../Cargo.toml",
];

const PAGE: u64 = 4096;

/// Builds the programs and writes the image and its table into `out`.
pub fn write(manifest: &Path, out: &Path) {
    let package = manifest.join(PACKAGE_DIR);
    println!("cargo::rerun-if-changed={}", package.display());
    for input in CRATE_INPUTS {
        println!("cargo::rerun-if-changed={}", manifest.join(input).display());
    }
    let elf_path = build(&package, &out.join("user-target"));
    let elf =
        std::fs::read(&elf_path).unwrap_or_else(|error| panic!("{}: {error}", elf_path.display()));
    let image = Image::from_elf(&elf).unwrap_or_else(|error| {
        panic!("{}: {error}", elf_path.display());
    });
    std::fs::write(out.join("user-image.bin"), &image.bytes)
        .unwrap_or_else(|error| panic!("writing user-image.bin: {error}"));
    std::fs::write(out.join("user_image.rs"), image.table())
        .unwrap_or_else(|error| panic!("writing user_image.rs: {error}"));
}

/// Runs the nested `cargo build`; returns the ELF's path.
fn build(package: &Path, target_dir: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").expect("set by cargo");
    let mut command = Command::new(cargo);
    command
        .current_dir(package)
        .args([
            "build",
            "--release",
            "--locked",
            "--offline",
            "--bin",
            BINARY,
        ])
        .args(["--target", TARGET, "--target-dir"])
        .arg(target_dir)
        // The target's defaults, not the kernel's flags; no linting wrapper (`cargo clippy`
        // of the kernel runs this script too).
        .env("CARGO_ENCODED_RUSTFLAGS", "")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        // Cargo reads a build script's stdout for instructions: the build's output goes to
        // stderr.
        .stdout(Stdio::from(std::io::stderr()));
    let status = command
        .status()
        .unwrap_or_else(|error| panic!("running {command:?}: {error}"));
    assert!(
        status.success(),
        "building the ring-3 programs failed ({status}): {command:?}"
    );
    target_dir.join(TARGET).join("release").join(BINARY)
}

/// The flattened image.
struct Image {
    /// The link address of its first byte.
    base: u64,
    /// Its bytes, from `base`, zero-padded to a whole number of pages.
    bytes: Vec<u8>,
    /// Each entry of [`ENTRIES`] with its offset.
    entries: Vec<(&'static str, u64)>,
}

/// ELF constants (System V gABI, x86-64 psABI).
const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PT_GNU_RELRO: u32 = 0x6474_e552;
const PF_W: u32 = 2;
const SHT_SYMTAB: u32 = 2;

impl Image {
    /// Flattens a static, non-relocatable x86-64 executable: its loadable segments must be
    /// read-only (the kernel maps the image read-only into every domain) and fully backed
    /// by the file, and the image must start on a page.
    fn from_elf(elf: &[u8]) -> Result<Image, String> {
        let file = Elf(elf);
        if elf.get(..4) != Some(b"\x7fELF".as_slice()) || elf.get(4..6) != Some(&[2, 1]) {
            return Err("not a little-endian ELF64 file".into());
        }
        if file.u16(16)? != ET_EXEC || file.u16(18)? != EM_X86_64 {
            return Err("not a static x86-64 executable (a PIE or a relocatable?)".into());
        }
        let (phoff, phentsize, phnum) = (file.u64(32)?, file.u16(54)?, file.u16(56)?);
        let headers = (0..u64::from(phnum))
            .map(|i| {
                let at = phoff + i * u64::from(phentsize);
                Ok(Segment {
                    kind: file.u32(at)?,
                    flags: file.u32(at + 4)?,
                    offset: file.u64(at + 8)?,
                    vaddr: file.u64(at + 16)?,
                    filesz: file.u64(at + 32)?,
                    memsz: file.u64(at + 40)?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        // Read-only after relocation, and there is no relocation: read-only.
        let relro = |s: &Segment| {
            headers.iter().any(|r| {
                r.kind == PT_GNU_RELRO
                    && r.vaddr <= s.vaddr
                    && s.vaddr + s.memsz <= r.vaddr + r.memsz
            })
        };
        let mut segments = Vec::new();
        for segment in &headers {
            if segment.kind == PT_DYNAMIC || segment.kind == PT_INTERP {
                return Err("dynamic segments: the image must need no relocation".into());
            }
            if segment.kind != PT_LOAD {
                continue;
            }
            let vaddr = segment.vaddr;
            if segment.flags & PF_W != 0 && !relro(segment) {
                return Err(format!(
                    "writable segment at {vaddr:#x}: no mutable statics"
                ));
            }
            if segment.memsz != segment.filesz {
                return Err(format!(
                    "segment at {vaddr:#x} is not all in the file (.bss?)"
                ));
            }
            segments.push((vaddr, segment.offset, segment.filesz));
        }
        let base = segments
            .iter()
            .map(|s| s.0)
            .min()
            .ok_or("no loadable segment")?;
        if base % PAGE != 0 {
            return Err(format!("linked at {base:#x}, not on a page"));
        }
        let end = segments.iter().map(|s| s.0 + s.2).max().unwrap_or(base);
        let mut bytes = vec![0u8; (end - base).div_ceil(PAGE) as usize * PAGE as usize];
        for (vaddr, offset, size) in segments {
            let from = file.bytes(offset, size)?;
            let at = (vaddr - base) as usize;
            bytes[at..at + from.len()].copy_from_slice(from);
        }
        let mut entries = Vec::new();
        for name in ENTRIES {
            let address = file
                .symbol(name)?
                .ok_or_else(|| format!("no symbol {name}"))?;
            if !(base..end).contains(&address) {
                return Err(format!("{name} at {address:#x} is outside the image"));
            }
            entries.push((name, address - base));
        }
        Ok(Image {
            base,
            bytes,
            entries,
        })
    }

    /// The Rust table the kernel includes.
    fn table(&self) -> String {
        let mut table = format!(
            "// Generated by build/user_image.rs from the ring-3 programs' ELF.\n\
             /// The link address of the image's first byte.\n\
             pub const BASE: u64 = {:#x};\n",
            self.base
        );
        for (name, offset) in &self.entries {
            table.push_str(&format!(
                "/// `{name}`'s offset in the image.\npub const {}: u64 = {offset:#x};\n",
                name.to_uppercase()
            ));
        }
        table
    }
}

/// A program header.
struct Segment {
    kind: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
}

/// Little-endian reads from an ELF file that fail, rather than panic, past its end.
struct Elf<'a>(&'a [u8]);

impl Elf<'_> {
    fn bytes(&self, at: u64, len: u64) -> Result<&[u8], String> {
        usize::try_from(at)
            .ok()
            .zip(usize::try_from(len).ok())
            .and_then(|(at, len)| self.0.get(at..at.checked_add(len)?))
            .ok_or_else(|| format!("truncated ELF: {len} bytes at {at:#x}"))
    }

    fn u16(&self, at: u64) -> Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.bytes(at, 2)?.try_into().expect("2 bytes"),
        ))
    }

    fn u32(&self, at: u64) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.bytes(at, 4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&self, at: u64) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.bytes(at, 8)?.try_into().expect("8 bytes"),
        ))
    }

    /// The section headers: (name offset, type, address, offset, size, link, entry size).
    fn sections(&self) -> Result<Vec<[u64; 7]>, String> {
        let (shoff, shentsize, shnum) = (self.u64(40)?, self.u16(58)?, self.u16(60)?);
        (0..u64::from(shnum))
            .map(|i| {
                let at = shoff + i * u64::from(shentsize);
                Ok([
                    u64::from(self.u32(at)?),
                    u64::from(self.u32(at + 4)?),
                    self.u64(at + 16)?,
                    self.u64(at + 24)?,
                    self.u64(at + 32)?,
                    u64::from(self.u32(at + 40)?),
                    self.u64(at + 56)?,
                ])
            })
            .collect()
    }

    /// The NUL-terminated string at `at`.
    fn string(&self, at: u64) -> Result<&str, String> {
        let rest = self.bytes(at, 0).map(|_| &self.0[at as usize..])?;
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or("unterminated string")?;
        std::str::from_utf8(&rest[..len]).map_err(|error| error.to_string())
    }

    /// The value of the symbol `name` in the symbol table.
    fn symbol(&self, name: &str) -> Result<Option<u64>, String> {
        let sections = self.sections()?;
        let symtab = sections
            .iter()
            .find(|s| s[1] == u64::from(SHT_SYMTAB))
            .ok_or("no symbol table (stripped?)")?;
        let strtab = sections.get(symtab[5] as usize).ok_or("no string table")?[3];
        let (offset, size, entsize) = (symtab[3], symtab[4], symtab[6].max(1));
        for i in 0..size / entsize {
            let at = offset + i * entsize;
            if self.string(strtab + u64::from(self.u32(at)?))? == name {
                return Ok(Some(self.u64(at + 8)?));
            }
        }
        Ok(None)
    }
}
