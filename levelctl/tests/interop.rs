//! Other toolstacks' forms: `vm config --format xl|xapi|libvirt`, and hosts from libvirt
//! `<cpu>` elements and XAPI `cpu_info` through `pool import`.

mod common;

use std::path::Path;

use common::*;
use levelctl::interop::{from_libvirt_name, libvirt_name};
use serde_json::Value;
use xen_levelling::{Feature, Featureset};

fn ok(state: &Path, args: &[&str]) -> String {
    let Run {
        code,
        stdout: out,
        stderr: err,
    } = levelctl(state, args);
    assert_eq!(code, 0, "{args:?}: {out}{err}");
    out
}

fn dump(file: &str) -> String {
    dump_path(file).display().to_string()
}

#[test]
fn libvirt_names_map_both_ways() {
    for (xen, lv) in [
        ("sse4-1", "sse4.1"),
        ("sse3", "pni"),
        ("page1gb", "pdpe1gb"),
        ("avx2", "avx2"),
    ] {
        let f = Feature::from_name(xen).unwrap();
        assert_eq!(libvirt_name(f).as_deref(), Some(lv));
        assert_eq!(from_libvirt_name(lv), Some(f));
    }
    assert_eq!(
        libvirt_name(Feature::from_name("no-fpu-sel").unwrap()),
        None
    );
}

#[test]
fn a_vm_in_three_toolstacks_forms_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path();
    ok(
        s,
        &["pool", "init", "lab", &dump(HASWELL), &dump(SANDYBRIDGE)],
    );
    ok(s, &["vm", "create", "lab", "web", "--type", "hvm"]);
    ok(s, &["vm", "start", "lab", "web"]);
    let shown: Value = serde_json::from_str(&ok(s, &["--json", "vm", "list", "lab"])).unwrap();
    let fs = Featureset::parse_xapi(shown[0]["featureset"]["xapi"].as_str().unwrap()).unwrap();
    // XAPI: the string, on its own line.
    let xapi = ok(s, &["vm", "config", "lab", "web", "--format", "xapi"]);
    assert!(
        xapi.contains(&format!("\nplatform:featureset={}\n", fs.xapi())),
        "{xapi}"
    );
    // xl.cfg: Haswell's features above the level are switched off, with libxl's spelling.
    let xl = ok(s, &["vm", "config", "lab", "web", "--format", "xl"]);
    let line = xl
        .lines()
        .find(|l| l.starts_with("cpuid = \"host,"))
        .unwrap();
    for off in ["avx2=0", "fma=0", "movbe=0"] {
        assert!(line.contains(&format!(",{off}")), "{off} in {line}");
    }
    assert!(
        !line.contains("sse4_2=0") && !line.contains(",avx=0"),
        "{line}"
    );
    // libvirt: required features by libvirt's names; read back as a host, the same set.
    let xml = ok(s, &["vm", "config", "lab", "web", "--format", "libvirt"]);
    assert!(
        xml.contains("<cpu mode='custom' match='exact' check='full'>"),
        "{xml}"
    );
    assert!(
        xml.contains("<feature policy='require' name='sse4.2'/>"),
        "{xml}"
    );
    assert!(
        xml.contains("<feature policy='disable' name='avx2'/>"),
        "{xml}"
    );
    assert!(xml.contains("<vendor>Intel</vendor>"), "{xml}");
    let file = dir.path().join("web-cpu.xml");
    std::fs::write(&file, &xml).unwrap();
    let f = file.display().to_string();
    ok(s, &["pool", "init", "virt"]);
    ok(s, &["pool", "import", "virt", &f, "--name", "kvm1"]);
    let pool: Value = serde_json::from_str(&ok(s, &["--json", "pool", "show", "virt"])).unwrap();
    let host = &pool["pool"]["hosts"][0];
    assert_eq!(host["source"]["kind"], "libvirt-cpu");
    let hvm_max = Featureset::parse_xapi(host["hvm"]["max"].as_str().unwrap()).unwrap();
    // Everything libvirt can name comes back (the Xen-only behaviour bits cannot).
    let named: Featureset = fs
        .closed()
        .iter()
        .filter(|f| libvirt_name(*f).is_some())
        .fold(Featureset::EMPTY, |mut acc, f| {
            acc.insert(f);
            acc
        });
    assert!(
        named.is_subset(&hvm_max.closed()),
        "lost: {}",
        (named - hvm_max.closed()).names()
    );
    assert!(!hvm_max.contains(Feature::AVX2));
    // A model levelctl does not know is refused, naming the line.
    std::fs::write(
        &file,
        "<cpu>\n  <vendor>Intel</vendor>\n  <model>Skylake-Client</model>\n</cpu>\n",
    )
    .unwrap();
    let Run {
        code, stderr: err, ..
    } = levelctl(s, &["pool", "import", "virt", &f, "--name", "kvm2"]);
    assert_eq!(code, 2);
    assert!(
        has(&err, "web-cpu.xml:3: libvirt CPU model `Skylake-Client`"),
        "{err}"
    );
}

#[test]
fn xe_cpu_info_is_imported_too() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path();
    ok(s, &["pool", "init", "lab", &dump(HASWELL)]);
    let info = data_path("xapi-cpu-info-haswell-10w.txt")
        .display()
        .to_string();
    let out = ok(s, &["pool", "import", "lab", &info, "--name", "xs1"]);
    assert!(out.contains("xs1"), "{out}");
}

/// True if `text` holds `needle`, whatever the line folding at 80 columns did to either.
fn has(text: &str, needle: &str) -> bool {
    let squash = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
    squash(text).contains(&squash(needle))
}
