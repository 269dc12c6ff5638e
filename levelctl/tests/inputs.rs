//! The inputs operators have: AIDA64 dumps, `cpuid -r`, XAPI `cpu_info`, the JSON host report
//! and featureset text; every malformed one refused with file, line and reason. And the
//! levelling mechanism each real CPU generation would use.

mod common;

use common::*;
use levelctl::Change;
use levelctl::cpuid_raw::{CpuidRaw, CpuidRawErrorKind};
use levelctl::input::{
    self, FeaturesetForm, HostInputOptions, HostReport, detect, parse_featureset, parse_host,
};
use levelctl::mechanism::{assess, name};
use levelctl::model::SourceKind;
use xen_levelling::featureset::FeaturesetError;
use xen_levelling::levelling::Mechanism;
use xen_levelling::{CpuidSource, Feature, Featureset, Vendor};

fn no_options() -> HostInputOptions {
    HostInputOptions::default()
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn cpuid_r_output_of_a_real_machine() {
    let path = data_path("cpuid-r-epyc-kvm.txt");
    let text = read(&path);
    assert_eq!(detect(&text), Some(SourceKind::CpuidRaw));
    let raw = CpuidRaw::parse(&text).unwrap();
    assert_eq!(raw.cpus(), 2);
    assert_eq!(raw.cpuid(0, 0).b, 0x6874_7541, "AuthenticAMD");
    assert_eq!(raw.cpuid(0xd, 1).a, 0xf, "leaf 0xD subleaf 1");
    assert_eq!(
        raw.cpuid(0xd, 3),
        xen_levelling::CpuidRegs::ZERO,
        "not printed"
    );
    let loaded = input::load_host(&path, &no_options()).unwrap();
    let h = &loaded.host;
    assert_eq!(h.vendor, Vendor::Amd);
    assert_eq!(h.signature.map(|s| (s.family, s.model)), Some((0x19, 0x11)));
    assert_eq!(h.brand.as_deref(), Some("AMD EPYC"));
    assert_eq!(h.source.kind, SourceKind::CpuidRaw);
    assert_eq!(h.cpuid_faulting, Some(false), "0x80000021 EAX[17] clear");
    assert!(h.pv.default.contains(Feature::AVX2) && h.hvm.default.contains(Feature::AVX512F));
    // Same processor family as the Genoa dump: both join one AMD pool.
    let mut p = pool("amd", vec![host(GENOA, "genoa")]);
    p.apply(Change::Join(Box::new(loaded.host))).unwrap();
}

#[test]
fn cpuid_r_variants_and_errors() {
    let line0 = "   0x00000000 0x00: eax=0x00000001 ebx=0x756e6547 ecx=0x6c65746e edx=0x49656e69";
    let line1 = "   0x00000001 0x00: eax=0x000306c3 ebx=0x00100800 ecx=0x7ffafbff edx=0xbfebfbff";
    let ext = "   0x80000000 0x00: eax=0x80000000 ebx=0x00000000 ecx=0x00000000 edx=0x00000000";
    // `cpuid -1 -r` prints `CPU:`; data without a header is the first CPU too.
    for text in [
        format!("CPU:\n{line0}\n{line1}\n{ext}\n"),
        format!("{line0}\n{line1}\n{ext}\n"),
    ] {
        let raw = CpuidRaw::parse(&text).unwrap();
        assert_eq!(raw.cpus(), 1);
        assert_eq!(raw.cpuid(1, 7).a, 0x306c3, "leaf 1 has no subleaves");
    }
    let cases = [
        (
            format!("CPU 0:\n{line0}\nhello\n"),
            3,
            "not a `cpuid -r` line",
        ),
        (
            format!("CPU 0:\n{line0}\n   0x0000001 0x00: eax=0x0 ebx=0x0 ecx=0x0 edx=0x0\n"),
            3,
            "malformed leaf",
        ),
        (
            format!("CPU 0:\n{line0}\n{}", line1.replace("ecx=", "ecx:")),
            3,
            "`ecx=0x`",
        ),
        (format!("CPU 0:\n{line0}\n{line0}\n"), 3, "appears twice"),
        (format!("CPU 0:\n{line1}\n"), 2, "no leaf 0"),
        (
            format!("CPU 0:\n{line0}\n{line1}\nCPU 1:\n{line0}\n"),
            3,
            "missing CPUID leaves 0x80000000",
        ),
        ("CPU 0:\n".to_string(), 1, "no CPUID data"),
    ];
    for (text, line, reason) in cases {
        let e = CpuidRaw::parse(&text).unwrap_err();
        assert_eq!(e.line, line, "{text}");
        assert!(e.to_string().contains(reason), "{e} / {reason}");
        let e = parse_host(&text, "m.txt", &no_options()).unwrap_err();
        assert!(e.to_string().starts_with(&format!("m.txt:{line}: ")), "{e}");
    }
    // A second CPU's block is checked as well, though not kept.
    let e = CpuidRaw::parse(&format!("CPU 0:\n{line0}\nCPU 1:\n{line0} x\n")).unwrap_err();
    assert_eq!((e.line, e.kind), (4, CpuidRawErrorKind::BadRegister("edx")));
}

/// The first `n` lines of `text`.
fn head(text: &str, n: usize) -> String {
    text.lines().take(n).map(|l| format!("{l}\n")).collect()
}

#[test]
fn cut_short_inputs_are_refused_naming_file_missing_leaves_and_line() {
    // `head -n 5` of a `cpuid -r` output: leaves 0 to 3 of 0x1c (leaf 4 is reserved on AMD).
    let text = read(&data_path("cpuid-r-epyc-kvm.txt"));
    let e = parse_host(&head(&text, 5), "epyc.txt", &no_options()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "epyc.txt:5: the first CPU's block ends here, missing CPUID leaves 0x5-0x1c, 0x80000000 \
         (leaf 0 announces up to 0x1c, and every x86 CPU has leaf 0x80000000): the output is cut \
         short"
    );
    // `head -n 45` of the Haswell dump: lm, nx, rdtscp, cx16 are not lost, the dump is refused.
    let text = read(&dump_path(HASWELL));
    let e = parse_host(&head(&text, 45), "haswell.txt", &no_options()).unwrap_err();
    assert!(
        e.to_string().starts_with(
            "haswell.txt:45: the first CPU block ends here, missing CPUID leaves 0x9-0xd, \
             0x80000000"
        ),
        "{e}"
    );
}

/// Every truncation is refused or keeps every leaf Xen reads (basic and extended ranges; the
/// Transmeta and Centaur ranges `cpuid` prints last announce nothing to check against).
#[test]
fn every_truncation_of_a_cpuid_r_output_is_refused_or_the_same_cpu() {
    let read_by_xen = |raw: &CpuidRaw| -> Vec<_> {
        raw.entries()
            .iter()
            .filter(|e| e.leaf < 0x2000_0000 || (0x8000_0000..0x8001_0000).contains(&e.leaf))
            .copied()
            .collect()
    };
    let text = read(&data_path("cpuid-r-epyc-kvm.txt"));
    let full = CpuidRaw::parse(&text).unwrap();
    let lines = text.lines().count();
    let (mut refused, mut same) = (0, 0);
    for n in 0..=lines {
        match CpuidRaw::parse(&head(&text, n)) {
            Err(_) => refused += 1,
            Ok(raw) => {
                assert_eq!(read_by_xen(&raw), read_by_xen(&full), "cut to {n} lines");
                same += 1;
            }
        }
    }
    assert_eq!(refused + same, lines + 1);
    assert!(
        refused > 50 && same > 50,
        "{refused} refused, {same} the same"
    );
}

#[test]
fn a_malformed_aida64_dump_names_file_and_line() {
    let text = read(&dump_path(HASWELL));
    let (n, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.starts_with("CPUID 00000001:"))
        .unwrap();
    let broken = text.replacen(line, &line.replacen('-', "+", 1), 1);
    let e = parse_host(&broken, "haswell.txt", &no_options()).unwrap_err();
    assert_eq!(e.line, n + 1);
    assert!(
        e.to_string()
            .starts_with(&format!("haswell.txt:{}: CPUID line", n + 1)),
        "{e}"
    );
    let e = parse_host("just text\n", "x.txt", &no_options()).unwrap_err();
    assert!(e.reason.contains("not a host input"), "{e}");
    let e = parse_host("", "x.txt", &no_options()).unwrap_err();
    assert_eq!(e.line, 1);
}

#[test]
fn xapi_cpu_info_of_an_older_xen() {
    let path = data_path("xapi-cpu-info-haswell-10w.txt");
    let h = input::load_host(&path, &no_options()).unwrap().host;
    assert_eq!(h.vendor, Vendor::Intel);
    assert_eq!(h.known_words, 10);
    assert_eq!(
        h.signature.map(|s| (s.family, s.model, s.stepping)),
        Some((6, 60, 3))
    );
    assert_eq!(h.name, "xapi-cpu-info-haswell-10w");
    // `features_pv_host` is the default, `features_pv` the max (XAPI since 2019) ...
    assert!(h.pv.default.is_subset(&h.pv.max) && h.pv.default != h.pv.max);
    // ... and they agree with the dump of the same CPU on the words both know.
    let dumped = host(HASWELL, "haswell");
    assert_eq!(h.pv.default.words()[..10], dumped.pv.default.words()[..10]);
    assert_eq!(h.hvm.max.words()[..10], dumped.hvm.max.words()[..10]);
    // Dundee's form, one set per type, one item per line.
    let dundee = "vendor: GenuineIntel\nfeatures_pv: 1fc9cbf5-f6d83203-28100000\n\
                  features_hvm: 1fcbfbff-f7fa3203-2c100000\n";
    let h = parse_host(dundee, "d.txt", &no_options()).unwrap().host;
    assert_eq!(h.pv.default, h.pv.max);
    assert_eq!(h.known_words, 3);
    // --cpuid applies to reported sets too, dependents included.
    let h = parse_host(
        dundee,
        "d.txt",
        &HostInputOptions {
            name: None,
            cpuid: Some("no-xsave".into()),
        },
    )
    .unwrap()
    .host;
    assert!(!h.hvm.max.contains(Feature::AVX));
}

#[test]
fn malformed_cpu_info_is_refused_with_line_and_reason() {
    let cases = [
        (
            "vendor: GenuineIntel; features_pv: 1fc9-zz; features_hvm: 1",
            1,
            "`features_pv` value",
        ),
        (
            "vendor: GenuineIntel\nfeatures_pv: 1\nfeatures_pv: 2\n",
            3,
            "given twice",
        ),
        (
            "vendor: Cyrix; features_pv: 1; features_hvm: 1",
            1,
            "not one Xen levels",
        ),
        (
            "vendor: GenuineIntel; features_hvm: 1",
            1,
            "no `features_pv`",
        ),
        (
            "vendor: GenuineIntel\nfeatures_pv: 1\nfeatures_hvm: 3\nfeatures_hvm_host: 4\n",
            4,
            "max set lacks",
        ),
        (
            "vendor: GenuineIntel\nfeatures_pv: 1\nfeatures_hvm: 1\nfamily: six\n",
            4,
            "not a decimal",
        ),
        (
            "vendor: GenuineIntel; features_pv: ; features_hvm: 1",
            1,
            "is empty",
        ),
        (
            "vendor: GenuineIntel; features_pv: 1; oops; features_hvm: 1",
            1,
            "not a `key: value`",
        ),
    ];
    for (text, line, reason) in cases {
        let e = parse_host(text, "ci.txt", &no_options()).unwrap_err();
        assert_eq!(e.line, line, "{text}: {e}");
        assert!(e.reason.contains(reason), "{e} / {reason}");
    }
}

#[test]
fn the_json_host_report() {
    let path = data_path("host-report-example.json");
    let h = input::load_host(&path, &no_options()).unwrap().host;
    assert_eq!(h.name, "qemu-nehalem");
    assert_eq!(h.source.kind, SourceKind::HostReport);
    assert_eq!(h.pv.default, h.pv.max, "no max: accepts what it offers");
    assert!(h.hvm.default.contains(Feature::X2APIC));
    assert!(h.hardware.unwrap().contains(Feature::SSE4_2));
    // What a dump-derived host would report reads back to the same host.
    let haswell = host(HASWELL, "haswell");
    let json = serde_json::to_string_pretty(&HostReport::from_host(&haswell)).unwrap();
    let back = parse_host(&json, "r.json", &no_options()).unwrap().host;
    assert_eq!(
        (back.pv, back.hvm, back.hardware),
        (haswell.pv, haswell.hvm, haswell.hardware)
    );
    assert_eq!(back.signature, haswell.signature);
}

#[test]
fn malformed_host_reports_are_refused_with_line_and_reason() {
    let good = read(&data_path("host-report-example.json"));
    let cases = [
        (
            good.replacen("\"sse4-2\"", "\"sse9\"", 1),
            15,
            "`sse9` is not a feature name",
        ),
        (
            good.replace("\"version\": 1", "\"version\": 2"),
            3,
            "version 2",
        ),
        (
            good.replace("\"cpuid_faulting\"", "\"faulting\""),
            10,
            "unknown field `faulting`",
        ),
        (
            good.replace("\"GenuineIntel\"", "\"Cyrix\""),
            5,
            "not one Xen levels",
        ),
        (
            good.replace("\"featureset_words\": 19", "\"featureset_words\": 2"),
            19,
            "in word 2",
        ),
        (good.replacen("{", "{{", 1), 1, "JSON"),
        (
            good.replace("\"levelctl-host-report\"", "\"other\""),
            2,
            "`format` must be",
        ),
    ];
    for (text, line, reason) in cases {
        let e = parse_host(&text, "r.json", &no_options()).unwrap_err();
        assert!(e.reason.contains(reason), "{e} / {reason}");
        assert_eq!(e.line, line, "{e}");
    }
}

#[test]
fn featureset_text_in_every_form_and_length() {
    let names = parse_featureset("fpu, sse2 avx2").unwrap();
    assert_eq!(names.form, FeaturesetForm::Names);
    assert_eq!(
        names.featureset,
        Featureset::of(&[Feature::FPU, Feature::SSE2, Feature::AVX2])
    );
    let xapi = parse_featureset("00000001-00000000-00000000").unwrap();
    assert_eq!((xapi.form, xapi.words), (FeaturesetForm::Xapi, Some(3)));
    assert_eq!(xapi.featureset, Featureset::of(&[Feature::FPU]));
    let xen = parse_featureset("1:0:0:0").unwrap();
    assert_eq!(
        (xen.form, xen.featureset),
        (FeaturesetForm::XenWords, xapi.featureset)
    );
    // A lone hex-looking feature name is a name.
    assert_eq!(
        parse_featureset("f16c").unwrap().featureset,
        Featureset::of(&[Feature::F16C])
    );
    assert_eq!(
        parse_featureset("fb-clear").unwrap().featureset,
        Featureset::of(&[Feature::FB_CLEAR])
    );
    // Longer than this build: zero words are fine, set bits are an error naming the word.
    let long = vec!["0"; 30].join("-");
    assert!(parse_featureset(&long).unwrap().featureset.is_empty());
    let mut words = vec!["0"; 30];
    words[25] = "8";
    assert_eq!(
        parse_featureset(&words.join("-")).unwrap_err(),
        FeaturesetError::UnknownWord { word: 25, value: 8 }
    );
    let e = input::parse_featureset_lines("# two sets\nfpu\n\n1-zz\n", "f.txt").unwrap_err();
    assert_eq!(e.line, 4);
    assert!(e.to_string().starts_with("f.txt:4: column 3"), "{e}");
}

#[test]
fn the_mechanism_each_real_generation_would_use() {
    let cases = [
        (PENRYN, "intel-mask-v1", Some(false)),
        (NEHALEM, "intel-mask-v2", Some(false)),
        (SANDYBRIDGE, "intel-mask-v3", Some(false)),
        (IVYBRIDGE, "faulting", Some(true)),
        (SKYLAKE, "faulting", Some(true)),
        // Format C dump: no MSRs, so faulting is expected by generation, not enumerated.
        (SKYLAKE_C, "faulting", None),
        (BARCELONA, "amd-override", Some(false)),
        (CASTLEPEAK, "amd-override", Some(false)),
        (GENOA, "faulting", Some(true)),
        (HYGON, "amd-override", Some(false)),
    ];
    for (file, mechanism, enumerated) in cases {
        let loaded = input::load_host(&dump_path(file), &no_options()).unwrap();
        let h = &loaded.host;
        assert_eq!(h.cpuid_faulting, enumerated, "{file}");
        let r = loaded.mechanism();
        assert_eq!(name(r.mechanism.as_ref()), mechanism, "{file}");
        assert_eq!(r.basis, "by generation, not yet verified on the model");
        if mechanism == "faulting" {
            assert!(
                r.cannot_hide.is_empty(),
                "{file}: faulting hides everything"
            );
        }
    }
    // SandyBridge's V3 masks cover leaves 1, 0x80000001 and 0xD:1 only: ITSC (leaf
    // 0x80000007) is hidden from PV guests by policy but not by the masks.
    let sandy = host(SANDYBRIDGE, "sandy");
    let r = assess(
        sandy.vendor,
        sandy.signature,
        Some(0xd),
        Some(false),
        sandy.hardware,
        sandy.pv.default,
    );
    assert_eq!(r.hideable_words, ["1d", "1c", "e1d", "e1c", "Da1"]);
    assert_eq!(r.cannot_hide, ["itsc"]);
    // ... and it is a real hardware feature the PV policy hides, not one the CPU lacks.
    assert!(sandy.hardware.unwrap().contains(Feature::ITSC));
    assert!(!sandy.pv.default.contains(Feature::ITSC));
}

/// The CPUID dumps in [`DUMPS`], by file name, sorted.
fn dump_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(DUMPS)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.contains("_CPUID") && f.ends_with(".txt"))
        .collect();
    files.sort();
    files
}

#[test]
fn the_silicon_model_confirms_the_judgement_by_generation_on_every_real_cpu() {
    let files = dump_files();
    for file in &files {
        let loaded = input::load_host(&dump_path(file), &no_options()).unwrap();
        let facts = loaded.facts.as_ref().unwrap();
        let by_generation = loaded.mechanism();
        let model = &facts.model;
        assert_eq!(
            name(Some(&model.mechanism)),
            name(by_generation.mechanism.as_ref()),
            "{file}"
        );
        assert_eq!(model.cannot_hide, by_generation.cannot_hide, "{file}");
        assert!(
            model.ineffective.is_empty() && model.missing.is_empty(),
            "{file}"
        );
    }
    // Sandy Bridge has the V3 XSAVE mask, but no leaf 0xD:1 feature to hide with it.
    let sandy = input::load_host(&dump_path(SANDYBRIDGE), &no_options()).unwrap();
    let model = &sandy.facts.unwrap().model;
    assert_eq!(model.untested, ["mask-da1"]);
    assert_eq!(model.msrs, ["0x132 (1cd)", "0x133 (e1cd)"]);
    // Inputs without CPUID data have no model to run.
    let report = input::load_host(&data_path("host-report-example.json"), &no_options()).unwrap();
    assert!(report.facts.is_none());
}

#[test]
fn the_featuresets_and_the_model_verdict_come_from_one_boot() {
    let files = dump_files();
    assert_eq!(files.len(), 22);
    let mut paths: Vec<_> = files.iter().map(|f| dump_path(f)).collect();
    paths.push(data_path("cpuid-r-epyc-kvm.txt"));
    for path in &paths {
        for cpuid in [None, Some("no-xsave")] {
            let options = HostInputOptions {
                name: None,
                cpuid: cpuid.map(str::to_string),
            };
            let loaded = input::load_host(path, &options).unwrap();
            let facts = loaded.facts.as_ref().unwrap();
            let p = &facts.policies;
            let at = format!("{} {cpuid:?}", path.display());
            // CPUID faulting is decided once: the policies say what the probe found.
            assert_eq!(
                p.host.cpuid_faulting(),
                matches!(facts.model.mechanism, Mechanism::Faulting { .. }),
                "{at}"
            );
            if let Some(enumerated) = loaded.host.cpuid_faulting {
                assert_eq!(enumerated, p.host.cpuid_faulting(), "{at}");
            }
            // ... and the host's sets are that boot's.
            assert_eq!(loaded.host.hardware, Some(p.raw.featureset()), "{at}");
            assert_eq!(facts.xen_host, p.host.featureset(), "{at}");
            assert_eq!(loaded.host.pv.default, p.pv_default.featureset(), "{at}");
            assert_eq!(loaded.host.pv.max, p.pv_max.featureset(), "{at}");
            assert_eq!(loaded.host.hvm.default, p.hvm_default.featureset(), "{at}");
            assert_eq!(loaded.host.hvm.max, p.hvm_max.featureset(), "{at}");
        }
    }
}

#[test]
fn cpuid_option_in_xen_and_xl_cfg_syntax() {
    use levelctl::input::parse_cpuid_option;
    let xen = parse_cpuid_option("no-avx2,no-xsave").unwrap();
    assert_eq!(parse_cpuid_option("avx2=0, xsave=false").unwrap(), xen);
    assert_eq!(parse_cpuid_option("no-avx2,xsave=off,").unwrap(), xen);
    assert_eq!(
        parse_cpuid_option("no-avx2,avx2=1").unwrap_err(),
        "cpuid= column 9: `avx2=1` turns avx2 on; a boot option can only hide features \
         (`no-avx2` or `avx2=0`)"
    );
    assert_eq!(
        parse_cpuid_option("avx2=0,nope=0").unwrap_err(),
        "cpuid= column 8: `nope=0` is not a known feature (give `no-<feature>` or \
         `<feature>=0`)"
    );
    let with = |opt: &str| {
        input::load_host(
            &dump_path(HASWELL),
            &HostInputOptions {
                name: None,
                cpuid: Some(opt.to_string()),
            },
        )
        .unwrap()
        .host
    };
    assert_eq!(with("avx2=0"), with("no-avx2"));
    assert!(!with("avx2=0").hvm.default.contains(Feature::AVX2));
}
