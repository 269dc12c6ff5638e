//! Other toolstacks' forms of a featureset: `xl.cfg`'s `cpuid=` line, XAPI's
//! `platform:featureset`, and a libvirt `<cpu mode='custom'>` element; and a host from a
//! libvirt `<cpu>` element.
//!
//! Feature names: Xen's, which libxl accepts with `_` for `-` (`sse4_1`), and libvirt's,
//! which are Xen's except for the renames in [`LIBVIRT_RENAMES`]; the features in
//! [`NOT_IN_LIBVIRT`] have no libvirt name and are listed in a comment instead.

use std::fmt::Write as _;

use xen_levelling::feature::{HVM_HAP_DEFAULT, HVM_HAP_MAX, PV_DEFAULT, PV_MAX};
use xen_levelling::{Feature, Featureset, Vendor};

use crate::error::InputError;
use crate::model::{DomainSets, GuestType, Host, Source, SourceKind, parse_vendor};

/// Xen's name → libvirt's (QEMU's) name, where they differ.
pub const LIBVIRT_RENAMES: &[(&str, &str)] = &[
    ("sse4-1", "sse4.1"),
    ("sse4-2", "sse4.2"),
    ("pclmulqdq", "pclmuldq"),
    ("lahf-lm", "lahf_lm"),
    ("cmp-legacy", "cmp_legacy"),
    ("page1gb", "pdpe1gb"),
    ("fxsr-opt", "fxsr_opt"),
    ("ds-cpl", "ds_cpl"),
    ("sha", "sha-ni"),
    ("ibrsb", "spec-ctrl"),
    ("arch-caps", "arch-capabilities"),
    ("itsc", "invtsc"),
    ("tsc-adjust", "tsc_adjust"),
    ("avx512-ifma", "avx512ifma"),
    ("avx512-vbmi", "avx512vbmi"),
    ("avx512-vbmi2", "avx512vbmi2"),
    ("avx512-bitalg", "avx512bitalg"),
];

/// Xen features with no libvirt name: behaviours and Xen-internal bits.
pub const NOT_IN_LIBVIRT: &[&str] = &["no-fpu-sel", "fdp-excp-only", "lfence+", "nscb"];

/// The features of QEMU's `qemu64` model, the base of the `<cpu>` levelctl writes (libvirt's
/// names).
pub const QEMU64: &[&str] = &[
    "fpu", "de", "pse", "tsc", "msr", "pae", "mce", "cx8", "apic", "sep", "mtrr", "pge", "mca",
    "cmov", "pat", "pse36", "clflush", "mmx", "fxsr", "sse", "sse2", "pni", "cx16", "lm",
    "syscall", "nx", "lahf_lm", "svm",
];

/// libvirt's name of `f`, or `None` if libvirt has none.
pub fn libvirt_name(f: Feature) -> Option<String> {
    let xen = f.to_string();
    if NOT_IN_LIBVIRT.contains(&xen.as_str()) || xen.contains(':') {
        return None;
    }
    if xen == "sse3" {
        return Some("pni".to_string());
    }
    Some(
        LIBVIRT_RENAMES
            .iter()
            .find(|(x, _)| *x == xen)
            .map_or(xen, |(_, l)| (*l).to_string()),
    )
}

/// The Xen feature called `name` by libvirt (or by Xen).
pub fn from_libvirt_name(name: &str) -> Option<Feature> {
    if name == "pni" {
        return Feature::from_name("sse3");
    }
    LIBVIRT_RENAMES
        .iter()
        .find(|(_, l)| *l == name)
        .and_then(|(x, _)| Feature::from_name(x))
        .or_else(|| Feature::from_name(name))
        .or_else(|| Feature::from_name(&name.replace('_', "-")))
}

/// An `xl.cfg` `cpuid=` line: the host's features, less every feature of `offered` (what the
/// pool's hosts offer such a guest at most) that `fs` lacks.
pub fn xl_cfg(vm: &str, fs: &Featureset, offered: &Featureset) -> String {
    let off: Vec<String> = crate::report::listed(&(*offered - *fs))
        .iter()
        .map(|f| format!("{}=0", f.to_string().replace('-', "_")))
        .collect();
    let mut out = format!(
        "# levelctl: VM {vm}, {} features\n",
        crate::report::count(fs)
    );
    let _ = write!(out, "cpuid = \"host");
    for item in off {
        let _ = write!(out, ",{item}");
    }
    out.push_str("\"\n");
    out
}

/// XAPI's form: the `platform:featureset` key and an `xe` command that sets it.
pub fn xapi(vm: &str, fs: &Featureset) -> String {
    format!(
        "# levelctl: VM {vm}; set with\n#   xe vm-param-set uuid=<VM uuid> platform:featureset=…\n\
         platform:featureset={}\n",
        fs.xapi()
    )
}

/// A libvirt `<cpu mode='custom'>` element: QEMU's `qemu64` model, every feature of `fs`
/// required, every other feature of `offered` or of `qemu64` disabled.
pub fn libvirt(vm: &str, vendor: Option<Vendor>, fs: &Featureset, offered: &Featureset) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "<!-- levelctl: VM {vm} -->");
    let _ = writeln!(out, "<cpu mode='custom' match='exact' check='full'>");
    let _ = writeln!(out, "  <model fallback='forbid'>qemu64</model>");
    if let Some(v) = vendor {
        let name = match v {
            Vendor::Intel => "Intel",
            Vendor::Amd => "AMD",
            Vendor::Hygon => "Hygon",
            _ => "",
        };
        if !name.is_empty() {
            let _ = writeln!(out, "  <vendor>{name}</vendor>");
        }
    }
    let mut unnamed = Vec::new();
    let mut required = Vec::new();
    for f in crate::report::listed(fs).iter() {
        match libvirt_name(f) {
            Some(n) => {
                let _ = writeln!(out, "  <feature policy='require' name='{n}'/>");
                required.push(n);
            }
            None => unnamed.push(f.to_string()),
        }
    }
    let mut disabled: Vec<String> = crate::report::listed(&(*offered - *fs))
        .iter()
        .filter_map(libvirt_name)
        .collect();
    for base in QEMU64 {
        if !required.iter().any(|r| r == base) && !disabled.iter().any(|d| d == base) {
            disabled.push((*base).to_string());
        }
    }
    for n in disabled {
        let _ = writeln!(out, "  <feature policy='disable' name='{n}'/>");
    }
    if !unnamed.is_empty() {
        let _ = writeln!(
            out,
            "  <!-- no libvirt name (not expressible): {} -->",
            unnamed.join(",")
        );
    }
    out.push_str("</cpu>\n");
    out
}

/// A host from a libvirt `<cpu>` element (`virsh capabilities`' host CPU, or a domain's
/// custom CPU): its `<vendor>`, and its features, the `qemu64` model's when it names that
/// model, plus every `<feature>` not disabled. Its PV and HVM sets are those features within
/// Xen's annotations for each guest type (dependency-closed); it has no CPUID data. Other
/// models are refused: levelctl does not carry libvirt's CPU model definitions.
pub fn parse_libvirt_cpu(text: &str, file: &str, name: Option<String>) -> Result<Host, InputError> {
    let line_of = |offset: usize| text[..offset].matches('\n').count() + 1;
    let vendor_text = element_text(text, "vendor").ok_or_else(|| {
        InputError::new(
            file,
            1,
            "libvirt <cpu> without a <vendor>: levelling needs the vendor",
        )
    })?;
    let vendor = parse_vendor(&vendor_text.1).ok_or_else(|| {
        InputError::new(
            file,
            line_of(vendor_text.0),
            format!("`{}` is not a vendor Xen levels", vendor_text.1),
        )
    })?;
    let mut fs = Featureset::EMPTY;
    if let Some((at, model)) = element_text(text, "model") {
        if model != "qemu64" {
            return Err(InputError::new(
                file,
                line_of(at),
                format!(
                    "libvirt CPU model `{model}`: levelctl knows only qemu64's features; give \
                     the CPU as qemu64 with every feature listed (`levelctl vm config --format \
                     libvirt` writes one)"
                ),
            ));
        }
        for n in QEMU64 {
            if let Some(f) = from_libvirt_name(n) {
                fs.insert(f);
            }
        }
    }
    let mut rest = text;
    let mut offset = 0;
    while let Some(i) = rest.find("<feature") {
        let start = offset + i;
        let end = rest[i..].find('>').map_or(rest.len(), |e| i + e);
        let tag = &rest[i..end];
        let attr = |key: &str| {
            let pat = format!("{key}=");
            let j = tag.find(&pat)? + pat.len();
            let quote = tag[j..].chars().next()?;
            let value = &tag[j + 1..];
            Some(value[..value.find(quote)?].to_string())
        };
        let fname = attr("name")
            .ok_or_else(|| InputError::new(file, line_of(start), "<feature> without a name"))?;
        let policy = attr("policy").unwrap_or_else(|| "require".to_string());
        let f = from_libvirt_name(&fname).ok_or_else(|| {
            InputError::new(
                file,
                line_of(start),
                format!("unknown feature `{fname}` (neither libvirt's nor Xen's name)"),
            )
        })?;
        match policy.as_str() {
            "require" | "force" | "optional" => fs.insert(f),
            "disable" | "forbid" => fs.remove(f),
            other => {
                return Err(InputError::new(
                    file,
                    line_of(start),
                    format!("feature `{fname}`: unknown policy `{other}`"),
                ));
            }
        }
        offset += end;
        rest = &text[offset..];
    }
    let sets = |default: Featureset, max: Featureset| DomainSets {
        default: (fs & default).closed(),
        max: (fs & max).closed(),
    };
    let name = name.unwrap_or_else(|| crate::input::default_name(file));
    Ok(Host {
        name,
        vendor,
        signature: None,
        brand: None,
        source: Source {
            kind: SourceKind::LibvirtCpu,
            file: file.to_string(),
        },
        known_words: xen_levelling::feature::NR_WORDS,
        hardware: None,
        disabled: Featureset::EMPTY,
        cpuid_faulting: None,
        pv: sets(PV_DEFAULT, PV_MAX),
        hvm: sets(HVM_HAP_DEFAULT, HVM_HAP_MAX),
    })
}

/// The text of the first `<tag>…</tag>`, with its byte offset.
fn element_text(text: &str, tag: &str) -> Option<(usize, String)> {
    let open = text.find(&format!("<{tag}"))?;
    let body = open + text[open..].find('>')? + 1;
    let close = body + text[body..].find(&format!("</{tag}>"))?;
    Some((open, text[body..close].trim().to_string()))
}

/// The sets the pool's hosts offer a guest type at most (the union of their max sets).
pub fn offered(hosts: &[Host], guest: GuestType) -> Featureset {
    hosts
        .iter()
        .fold(Featureset::EMPTY, |acc, h| acc | h.max_for(guest))
}
