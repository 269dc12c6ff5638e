//! Every pool and VM rule of levelctl, each on real processors from `data/cpuid-dumps`
//! (and, for the length cases, on a XAPI `cpu_info` of an older Xen that knows 10 words).

mod common;

use common::*;
use levelctl::check::{Cause, VmCpu};
use levelctl::error::Error;
use levelctl::input::{self, HostInputOptions};
use levelctl::model::Origin;
use levelctl::ops::{self, ImportRequest, level_of};
use levelctl::{Change, GuestType, Pool, PowerState};
use xen_levelling::feature::{COMMON_1D, KNOWN, NR_WORDS, SIMPLE_OR};
use xen_levelling::{Feature, Featureset, Vendor};

fn refusal(e: Error) -> Box<levelctl::report::Refusal> {
    match e {
        Error::Refused(r) => r,
        other => panic!("expected a refusal, got {other}"),
    }
}

fn import(name: &str, guest: GuestType, host: Option<&str>, fs: Option<String>) -> ImportRequest {
    ImportRequest {
        name: name.to_string(),
        guest,
        host: host.map(str::to_string),
        vendor: None,
        featureset: fs,
        suspended: false,
        force: false,
    }
}

#[test]
fn level_is_the_closed_intersection_of_the_defaults() {
    let p = pool(
        "intel",
        vec![
            host(HASWELL, "haswell"),
            host(SANDYBRIDGE, "sandy"),
            host(SKYLAKE, "skylake"),
        ],
    );
    for guest in GuestType::ALL {
        let level = p.level(guest).unwrap();
        let and = p
            .hosts
            .iter()
            .fold(Featureset::FULL, |acc, h| acc & h.default_for(guest));
        // Everything but the pool-OR bits comes from the intersection of the defaults.
        assert_eq!(
            level - SIMPLE_OR,
            (and - SIMPLE_OR).closed() - SIMPLE_OR,
            "{guest}"
        );
        assert_eq!(
            level,
            level.closed(),
            "{guest}: the level is dependency-closed"
        );
        for h in &p.hosts {
            assert!(
                level.is_subset(&h.max_for(guest)),
                "{guest}: {} accepts the level",
                h.name
            );
        }
        // SandyBridge has AVX but no AVX2: the level keeps the one and drops the other.
        assert!(level.contains(Feature::AVX) && !level.contains(Feature::AVX2));
    }
}

#[test]
fn pool_or_features_accumulate_as_far_as_every_max_allows() {
    let haswell = host(HASWELL, "haswell");
    let skylake = host(SKYLAKE, "skylake");
    // The 2017 Haswell dump predates the MDS microcode, the Skylake-SP one has MD_CLEAR.
    assert!(!haswell.pv.default.contains(Feature::MD_CLEAR));
    assert!(skylake.pv.default.contains(Feature::MD_CLEAR));
    let p = pool("intel", vec![haswell.clone(), skylake.clone()]);
    let level = p.level(GuestType::Pv).unwrap();
    assert!(
        level.contains(Feature::MD_CLEAR),
        "`|`: any member having it suffices"
    );
    let report = p.level_report();
    assert!(report[0].accumulated.contains(&"md-clear".to_string()));
    // A member whose max policy lacks it keeps it out: the level must stay acceptable.
    let mut strict = haswell;
    strict.pv.max.remove(Feature::MD_CLEAR);
    let p = pool("intel", vec![strict, skylake]);
    assert!(!p.level(GuestType::Pv).unwrap().contains(Feature::MD_CLEAR));
}

#[test]
fn join_names_each_lost_feature_and_the_host_that_holds_it_back() {
    let mut p = pool(
        "intel",
        vec![host(HASWELL, "haswell"), host(SKYLAKE, "skylake")],
    );
    p.create_vm("web", GuestType::Hvm, false).unwrap();
    p.start_vm("web", None).unwrap();
    let report = p
        .apply(Change::Join(Box::new(host(SANDYBRIDGE, "sandy"))))
        .unwrap();
    assert!(report.applied && report.blockers.is_empty());
    let hvm = report
        .levels
        .iter()
        .find(|l| l.guest == GuestType::Hvm)
        .unwrap();
    let avx2 = hvm
        .lost
        .iter()
        .find(|f| f.feature == "avx2")
        .expect("avx2 lost");
    assert_eq!(avx2.locator, "CPUID.07H.0:EBX[5]");
    assert_eq!(avx2.held_back_by.len(), 1);
    assert_eq!(avx2.held_back_by[0].host, "sandy");
    assert_eq!(avx2.held_back_by[0].cause, Cause::NotInHardware);
    // The running VM keeps its set and cannot move to the newcomer.
    let web = report.vms.iter().find(|v| v.vm == "web").unwrap();
    assert!(web.loses_on_reboot.contains(&"avx2".to_string()));
    assert_eq!(web.new_hosts_refusing.len(), 1);
    assert_eq!(web.new_hosts_refusing[0].host, "sandy");
    assert!(
        web.new_hosts_refusing[0]
            .missing
            .iter()
            .any(|m| m.feature == "avx2")
    );
}

#[test]
fn join_refuses_another_vendor_and_changes_nothing() {
    let mut p = pool("intel", vec![host(HASWELL, "haswell")]);
    let before = p.clone();
    let r = refusal(
        p.apply(Change::Join(Box::new(host(GENOA, "genoa"))))
            .unwrap_err(),
    );
    assert_eq!(r.operation, "join");
    assert!(r.reason.contains("CPUs differ"), "{}", r.reason);
    assert_eq!(p, before);
    // Hygon is AMD-like, but a different vendor string: XAPI compares strings.
    let mut amd = pool("amd", vec![host(GENOA, "genoa")]);
    refusal(
        amd.apply(Change::Join(Box::new(host(HYGON, "hygon"))))
            .unwrap_err(),
    );
    // A duplicate name is a usage error, not a refusal.
    let e = amd
        .apply(Change::Join(Box::new(host(CASTLEPEAK, "genoa"))))
        .unwrap_err();
    assert_eq!(e.exit_code(), 2);
}

#[test]
fn leave_raises_the_level_and_waits_for_running_vms() {
    let mut p = pool(
        "intel",
        vec![host(HASWELL, "haswell"), host(SANDYBRIDGE, "sandy")],
    );
    assert!(!p.level(GuestType::Pv).unwrap().contains(Feature::AVX2));
    p.create_vm("db", GuestType::Pv, false).unwrap();
    p.start_vm("db", Some("sandy")).unwrap();
    let r = refusal(p.apply(Change::Leave("sandy".into())).unwrap_err());
    assert!(
        r.reason.contains("VM db is running on sandy"),
        "{}",
        r.reason
    );
    p.evacuate("sandy", false).unwrap();
    let report = p.apply(Change::Leave("sandy".into())).unwrap();
    let pv = &report.levels[0];
    assert!(pv.gained.contains(&"avx2".to_string()));
    assert!(pv.lost.is_empty());
    assert!(p.level(GuestType::Pv).unwrap().contains(Feature::AVX2));
    // db keeps its set until it reboots; then it picks up the higher level.
    let db = p.find_vm("db").unwrap();
    assert!(!db.featureset.unwrap().contains(Feature::AVX2));
    let r = p.reboot_vm("db").unwrap();
    assert!(r.gained.contains(&"avx2".to_string()));
}

#[test]
fn reboot_with_cpuid_option_explains_the_dependency_chain() {
    let mut p = pool(
        "intel",
        vec![host(HASWELL, "haswell"), host(SKYLAKE, "skylake")],
    );
    p.create_vm("web", GuestType::Hvm, false).unwrap();
    p.start_vm("web", Some("skylake")).unwrap();
    let rebooted = host_with(HASWELL, "haswell", Some("no-xsave"));
    let before = p.clone();
    let plan = p.plan(&Change::Reboot(Box::new(rebooted.clone()))).unwrap();
    assert_eq!(p, before, "a what-if changes nothing");
    assert!(!plan.applied && plan.blockers.is_empty());
    let own = plan
        .host_sets
        .iter()
        .find(|s| s.guest == GuestType::Hvm && s.set == "max")
        .unwrap();
    for f in ["xsave", "avx", "avx2", "fma"] {
        assert!(own.lost.contains(&f.to_string()), "{f}");
    }
    let web = plan.vms.iter().find(|v| v.vm == "web").unwrap();
    assert!(web.stranded, "haswell was web's only other destination");
    let lost = &web.lost_destinations[0];
    assert_eq!(lost.host, "haswell");
    let avx2 = lost.missing.iter().find(|m| m.feature == "avx2").unwrap();
    match &avx2.cause {
        Cause::Dependency {
            chain,
            root_feature,
            root,
        } => {
            let edges: Vec<(&str, &str)> = chain
                .iter()
                .map(|l| (l.dependent.as_str(), l.prerequisite.as_str()))
                .collect();
            assert_eq!(edges, [("avx2", "avx"), ("avx", "xsave")]);
            assert!(chain.iter().all(|l| !l.reason.is_empty()));
            assert_eq!(root_feature, "xsave");
            assert_eq!(
                **root,
                Cause::Disabled {
                    option: "cpuid=no-xsave".into()
                }
            );
        }
        other => panic!("expected a dependency chain, got {other:?}"),
    }
    assert_eq!(
        avx2.to_string(),
        "avx2: missing because xsave is absent (disabled at boot by cpuid=no-xsave); avx2 needs \
         avx, avx needs xsave"
    );
    let report = p.apply(Change::Reboot(Box::new(rebooted))).unwrap();
    assert!(report.applied);
    assert!(!p.level(GuestType::Hvm).unwrap().contains(Feature::XSAVE));
    assert_eq!(p.find_host("haswell").unwrap().cpuid_option(), "no-xsave");
}

#[test]
fn a_vm_keeps_its_featureset_until_a_reboot_picks_up_the_level() {
    let mut p = pool(
        "intel",
        vec![host(HASWELL, "haswell"), host(SKYLAKE, "skylake")],
    );
    p.create_vm("web", GuestType::Hvm, false).unwrap();
    p.start_vm("web", Some("haswell")).unwrap();
    let level = p.level(GuestType::Hvm).unwrap();
    let vm = p.find_vm("web").unwrap();
    assert_eq!(vm.featureset, Some(level));
    assert_eq!(vm.vendor, Some(Vendor::Intel));
    p.migrate_vm("web", None, false).unwrap();
    assert_eq!(p.find_vm("web").unwrap().host.as_deref(), Some("skylake"));
    p.suspend_vm("web").unwrap();
    p.resume_vm("web", None, false).unwrap();
    assert_eq!(p.find_vm("web").unwrap().featureset, Some(level));
    // The level drops; the running VM keeps its set.
    p.apply(Change::Join(Box::new(host(SANDYBRIDGE, "sandy"))))
        .unwrap();
    assert_eq!(p.find_vm("web").unwrap().featureset, Some(level));
    let r = p.reboot_vm("web").unwrap();
    assert!(r.lost.contains(&"avx2".to_string()));
    assert_eq!(
        p.find_vm("web").unwrap().featureset,
        p.level(GuestType::Hvm)
    );
    // A shutdown forgets the featureset; a start takes the level again.
    p.shutdown_vm("web").unwrap();
    assert_eq!(p.find_vm("web").unwrap().featureset, None);
}

#[test]
fn a_refused_migration_names_features_and_the_hosts_that_would_accept() {
    let mut p = pool(
        "intel",
        vec![host(HASWELL, "haswell"), host(SKYLAKE, "skylake")],
    );
    p.create_vm("db", GuestType::Pv, false).unwrap();
    p.start_vm("db", Some("skylake")).unwrap();
    p.apply(Change::Join(Box::new(host(SANDYBRIDGE, "sandy"))))
        .unwrap();
    let before = p.clone();
    let r = refusal(p.migrate_vm("db", Some("sandy"), false).unwrap_err());
    assert_eq!(p, before);
    assert_eq!(r.operation, "migrate");
    let check = &r.checks[0];
    assert_eq!(check.host, "sandy");
    let names: Vec<&str> = check.missing.iter().map(|m| m.feature.as_str()).collect();
    assert!(
        names.contains(&"avx2") && names.contains(&"bmi2"),
        "{names:?}"
    );
    assert!(
        check
            .missing
            .iter()
            .all(|m| m.cause == Cause::NotInHardware)
    );
    assert_eq!(r.accepting, Some(vec!["intel/haswell".to_string()]));
    // Without a destination the least loaded accepting host is chosen.
    let m = p.migrate_vm("db", None, false).unwrap();
    assert_eq!(m.host.as_deref(), Some("haswell"));
}

#[test]
fn a_vm_never_crosses_vendors_even_forced() {
    let mut intel = pool("intel", vec![host(HASWELL, "haswell")]);
    let mut amd = pool("amd", vec![host(GENOA, "genoa")]);
    intel.create_vm("web", GuestType::Hvm, false).unwrap();
    intel.start_vm("web", None).unwrap();
    for force in [false, true] {
        let r = refusal(
            ops::migrate_between(&mut intel, "web", &mut amd, Some("genoa"), force).unwrap_err(),
        );
        let mismatch = r.checks[0].vendor_mismatch.as_ref().unwrap();
        assert_eq!(
            (mismatch.vm.as_str(), mismatch.host.as_str()),
            ("GenuineIntel", "AuthenticAMD")
        );
    }
    assert!(intel.find_vm("web").is_some() && amd.vms.is_empty());
}

#[test]
fn halted_vms_and_templates_move_between_pools_without_a_check() {
    let mut a = pool("a", vec![host(SKYLAKE, "skylake")]);
    let mut b = pool("b", vec![host(NEHALEM, "nehalem")]);
    a.create_vm("app", GuestType::Hvm, false).unwrap();
    a.create_vm("tmpl", GuestType::Pv, true).unwrap();
    let r = ops::migrate_between(&mut a, "app", &mut b, None, false).unwrap();
    assert!(r.check.is_none());
    assert!(a.find_vm("app").is_none());
    b.start_vm("app", None).unwrap();
    assert_eq!(
        b.find_vm("app").unwrap().featureset,
        b.level(GuestType::Hvm)
    );
    // A template never starts; its copy may.
    refusal(a.start_vm("tmpl", None).unwrap_err());
    ops::copy_vm(&a, "tmpl", &mut b, "svc", true).unwrap();
    assert!(a.find_vm("tmpl").is_some(), "a copy leaves the original");
    b.start_vm("svc", None).unwrap();
    assert_eq!(b.find_vm("svc").unwrap().featureset, b.level(GuestType::Pv));
    // Only halted VMs are copied.
    refusal(ops::copy_vm(&b, "svc", &mut a, "svc2", false).unwrap_err());
}

#[test]
fn cross_pool_migration_checks_the_destination_host() {
    let mut a = pool(
        "a",
        vec![host(HASWELL, "haswell"), host(SKYLAKE, "skylake")],
    );
    let mut b = pool(
        "b",
        vec![host(SANDYBRIDGE, "sandy"), host(SKYLAKE_C, "sky2")],
    );
    a.create_vm("web", GuestType::Hvm, false).unwrap();
    a.start_vm("web", None).unwrap();
    let r = refusal(ops::migrate_between(&mut a, "web", &mut b, Some("sandy"), false).unwrap_err());
    assert_eq!(r.checks[0].pool, "b");
    assert_eq!(r.accepting, Some(vec!["b/sky2".to_string()]));
    let fs = a.find_vm("web").unwrap().featureset;
    let m = ops::migrate_between(&mut a, "web", &mut b, None, false).unwrap();
    assert_eq!(m.host.as_deref(), Some("sky2"));
    assert_eq!(
        b.find_vm("web").unwrap().featureset,
        fs,
        "the featureset travels"
    );
    assert!(
        m.notes.iter().any(|n| n.contains("can reach 1 of 2 hosts")),
        "{:?}",
        m.notes
    );
    assert!(m.notes.iter().any(|n| n.contains("above pool b's level")));
}

#[test]
fn a_suspended_vm_is_checked_like_a_running_one() {
    let mut p = pool("intel", vec![host(SKYLAKE, "skylake")]);
    p.create_vm("web", GuestType::Hvm, false).unwrap();
    p.start_vm("web", None).unwrap();
    p.apply(Change::Join(Box::new(host(HASWELL, "haswell"))))
        .unwrap();
    p.suspend_vm("web").unwrap();
    let r = refusal(p.resume_vm("web", Some("haswell"), false).unwrap_err());
    assert!(r.checks[0].missing.iter().any(|m| m.feature == "avx512f"));
    assert_eq!(p.find_vm("web").unwrap().power, PowerState::Suspended);
    let ok = p.resume_vm("web", None, false).unwrap();
    assert_eq!(ok.host.as_deref(), Some("skylake"));
    // Across pools too: a suspended VM keeps its set and needs a host that has it.
    p.suspend_vm("web").unwrap();
    let mut old = pool("old", vec![host(SANDYBRIDGE, "sandy")]);
    refusal(ops::migrate_between(&mut p, "web", &mut old, None, false).unwrap_err());
}

#[test]
fn force_waives_one_move_records_it_and_every_later_move_is_checked_again() {
    let mut p = pool("intel", vec![host(SKYLAKE, "skylake")]);
    p.create_vm("web", GuestType::Hvm, false).unwrap();
    p.start_vm("web", None).unwrap();
    p.apply(Change::Join(Box::new(host(SANDYBRIDGE, "sandy"))))
        .unwrap();
    p.apply(Change::Join(Box::new(host(HASWELL, "haswell"))))
        .unwrap();
    let fs = p.find_vm("web").unwrap().featureset.unwrap();
    let sandy_max = p.find_host("sandy").unwrap().hvm.max;
    let r = p.migrate_vm("web", Some("sandy"), true).unwrap();
    let expected = fs.closed() - sandy_max.closed();
    assert_eq!(r.forced, levelctl::report::names(&expected));
    // Anchors from the CPUs' public specifications: Skylake-SP has AVX2 and AVX-512, which
    // Sandy Bridge lacks; both have SSE4.2.
    for lacking in ["avx2", "avx512f", "fma"] {
        assert!(
            r.forced.iter().any(|f| f == lacking),
            "{lacking} in {:?}",
            r.forced
        );
    }
    assert!(
        !r.forced.iter().any(|f| f == "sse4-2" || f == "avx"),
        "{:?}",
        r.forced
    );
    let vm = p.find_vm("web").unwrap();
    assert_eq!(vm.waived(), expected);
    assert_eq!(vm.forced[0].host, "intel/sandy");
    assert_eq!(
        vm.featureset,
        Some(fs),
        "force does not change what the guest was told"
    );
    // The record says what the VM uses beyond its pool's level (Sandy Bridge lowered it).
    let level = p.level(GuestType::Hvm).unwrap();
    assert_eq!(vm.forced[0].above_level, fs.closed() - level);
    assert!(vm.forced[0].above_level.contains(Feature::AVX2));
    // Haswell lacks AVX-512 too: the earlier force does not carry over, the move is refused.
    let cpu = VmCpu::of(vm).unwrap();
    let c = levelctl::check::check("intel", "web", &cpu, p.find_host("haswell").unwrap());
    assert!(!c.accepted);
    assert!(c.missing.iter().any(|m| m.feature == "avx512f"));
    assert!(c.waived.is_empty());
    let r = refusal(p.migrate_vm("web", Some("haswell"), false).unwrap_err());
    assert!(r.reason.contains("haswell lacks"), "{}", r.reason);
    // Forced again: a second record; back to Skylake, which has everything, unforced.
    p.migrate_vm("web", Some("haswell"), true).unwrap();
    assert_eq!(p.find_vm("web").unwrap().forced.len(), 2);
    p.migrate_vm("web", Some("skylake"), false).unwrap();
    // A restart at the pool level clears the record.
    p.reboot_vm("web").unwrap();
    assert!(p.find_vm("web").unwrap().forced.is_empty());
    // force needs a named host.
    assert_eq!(p.migrate_vm("web", None, true).unwrap_err().exit_code(), 2);
}

#[test]
fn a_legacy_vm_without_featureset_gets_the_landing_hosts_max() {
    let mut p = pool(
        "intel",
        vec![host(HASWELL, "haswell"), host(SKYLAKE, "skylake")],
    );
    let r = p
        .import_vm(&import("old", GuestType::Hvm, Some("haswell"), None))
        .unwrap();
    let vm = p.find_vm("old").unwrap();
    let haswell = p.find_host("haswell").unwrap();
    assert_eq!(vm.featureset, Some(haswell.hvm.max));
    assert_eq!(vm.vendor, Some(Vendor::Intel));
    assert_eq!(
        vm.origin,
        Some(Origin::LandingHost {
            host: "haswell".into()
        })
    );
    assert!(r.check.unwrap().accepted);
    // It can go where the landing host's max fits, and reboots into the level.
    p.reboot_vm("old").unwrap();
    assert_eq!(
        p.find_vm("old").unwrap().featureset,
        p.level(GuestType::Hvm)
    );
}

#[test]
fn a_shorter_older_featureset_is_zero_extended() {
    let mut p = pool("intel", vec![host(HASWELL, "haswell")]);
    let level = p.level(GuestType::Pv).unwrap();
    let four: Vec<String> = level.words()[..4]
        .iter()
        .map(|w| format!("{w:08x}"))
        .collect();
    p.import_vm(&import("v1", GuestType::Pv, None, Some(four.join("-"))))
        .unwrap();
    let vm = p.find_vm("v1").unwrap();
    let fs = vm.featureset.unwrap();
    assert_eq!(fs.words()[..4], level.words()[..4]);
    assert!(fs.words()[4..].iter().all(|&w| w == 0));
    assert_eq!(vm.origin, Some(Origin::Recorded { words: 4 }));
}

#[test]
fn bits_the_destination_does_not_know_always_block() {
    // A host whose (older) Xen reports 10 words, from XAPI's cpu_info.
    let old = input::load_host(
        &data_path("xapi-cpu-info-haswell-10w.txt"),
        &HostInputOptions::default(),
    )
    .unwrap()
    .host;
    assert_eq!(old.known_words, 10);
    let mut p = pool("mixed", vec![old.clone()]);
    // A VM recorded by a newer toolstack with a bit in word 16 (MSR_ARCH_CAPS: rdcl-no).
    let mut fs = old.pv.default;
    fs.insert(Feature::RDCL_NO);
    let r = refusal(
        p.import_vm(&import(
            "new",
            GuestType::Pv,
            None,
            Some(fs.xapi().to_string()),
        ))
        .unwrap_err(),
    );
    let m = &r.checks[0].missing;
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].feature, "rdcl-no");
    assert_eq!(
        m[0].cause,
        Cause::UnknownToHost {
            word: 16,
            known_words: 10
        }
    );
    // Text with a set bit past this build's words is refused, never truncated.
    let mut words: Vec<String> = vec!["00000000".to_string(); NR_WORDS + 2];
    words[0] = "00000001".into();
    words[NR_WORDS + 1] = "00000004".into();
    let r = refusal(
        p.import_vm(&import("newer", GuestType::Pv, None, Some(words.join("-"))))
            .unwrap_err(),
    );
    assert!(
        r.reason.contains(&format!("word {}", NR_WORDS + 1)),
        "{}",
        r.reason
    );
    assert!(r.reason.contains("rather than truncating"));
    // Trailing zero words are no problem.
    words[NR_WORDS + 1] = "00000000".into();
    p.import_vm(&import("zeros", GuestType::Pv, None, Some(words.join("-"))))
        .unwrap();
}

#[test]
fn a_legacy_vm_from_a_newer_host_cannot_go_where_its_words_are_unknown() {
    // Landing on Skylake-SP, a legacy VM gets that host's max set, which carries
    // MSR_ARCH_CAPS bits (word 16) Xen always virtualises on Intel.
    let mut new = pool("new", vec![host(SKYLAKE, "skylake")]);
    new.import_vm(&import("legacy", GuestType::Hvm, Some("skylake"), None))
        .unwrap();
    let fs = new.find_vm("legacy").unwrap().featureset.unwrap();
    assert!(fs.word(16) != 0);
    // An older Xen on the same generation of CPU knows only 10 words.
    let old_host = input::load_host(
        &data_path("xapi-cpu-info-haswell-10w.txt"),
        &HostInputOptions::default(),
    )
    .unwrap()
    .host;
    let mut old = pool("old", vec![old_host]);
    let r = refusal(ops::migrate_between(&mut new, "legacy", &mut old, None, false).unwrap_err());
    let unknown: Vec<&str> = r.checks[0]
        .missing
        .iter()
        .filter(|m| {
            matches!(
                m.cause,
                Cause::UnknownToHost {
                    word: 16,
                    known_words: 10
                }
            )
        })
        .map(|m| m.feature.as_str())
        .collect();
    assert!(unknown.contains(&"rsba"), "{unknown:?}");
}

#[test]
fn level_of_hosts_of_different_lengths_zero_extends_the_shorter() {
    let old = input::load_host(
        &data_path("xapi-cpu-info-haswell-10w.txt"),
        &HostInputOptions::default(),
    )
    .unwrap()
    .host;
    let new = host(HASWELL, "haswell");
    let level = level_of(&[old.clone(), new.clone()], GuestType::Pv).unwrap();
    // Same CPU: the 10 words agree, the rest is zero from the older host.
    assert_eq!(level.words()[..10], new.pv.default.closed().words()[..10]);
    assert!(level.words()[10..].iter().all(|&w| w == 0));
    assert_eq!(level, old.pv.default.closed());
}

#[test]
fn evacuation_moves_every_vm_or_names_the_ones_that_cannot_go() {
    let mut p = pool("intel", vec![host(SKYLAKE, "skylake")]);
    p.create_vm("big", GuestType::Hvm, false).unwrap();
    p.start_vm("big", None).unwrap();
    p.apply(Change::Join(Box::new(host(HASWELL, "haswell"))))
        .unwrap();
    p.apply(Change::Join(Box::new(host(SANDYBRIDGE, "sandy"))))
        .unwrap();
    p.create_vm("small", GuestType::Pv, false).unwrap();
    p.start_vm("small", Some("skylake")).unwrap();
    let before = p.clone();
    let r = refusal(p.evacuate("skylake", false).unwrap_err());
    assert_eq!(p, before);
    assert_eq!(r.details, ["VM big has no other host that accepts it"]);
    assert!(r.checks.iter().all(|c| c.vm == "big" && !c.accepted));
    p.shutdown_vm("big").unwrap();
    let plan = p.evacuate("skylake", true).unwrap();
    assert_eq!(p, {
        let mut b = before.clone();
        b.shutdown_vm("big").unwrap();
        b
    });
    assert_eq!(plan.moves.len(), 1);
    let done = p.evacuate("skylake", false).unwrap();
    assert!(done.applied);
    assert_eq!(p.resident("skylake").count(), 0);
}

#[test]
fn what_if_reports_without_changing_and_matches_the_real_change() {
    let mut p = pool(
        "intel",
        vec![host(HASWELL, "haswell"), host(SKYLAKE, "skylake")],
    );
    p.create_vm("web", GuestType::Hvm, false).unwrap();
    p.start_vm("web", Some("skylake")).unwrap();
    let before = p.clone();
    for change in [
        Change::Join(Box::new(host(IVYBRIDGE, "ivy"))),
        Change::Leave("haswell".into()),
        Change::Reboot(Box::new(host_with(SKYLAKE, "skylake", Some("no-avx512f")))),
    ] {
        let plan = p.plan(&change).unwrap();
        assert_eq!(p, before);
        let mut copy = p.clone();
        match copy.apply(change) {
            Ok(mut done) => {
                assert!(done.applied);
                done.applied = false;
                assert_eq!(done, plan);
            }
            Err(e) => {
                assert!(!plan.blockers.is_empty(), "refused: {e}");
            }
        }
    }
    // Leaving haswell strands web on skylake; rebooting skylake is blocked by web.
    let leave = p.plan(&Change::Leave("haswell".into())).unwrap();
    assert!(leave.vms.iter().any(|v| v.vm == "web" && v.stranded));
    let reboot = p
        .plan(&Change::Reboot(Box::new(host(SKYLAKE, "skylake"))))
        .unwrap();
    assert_eq!(
        reboot.blockers,
        ["VM web is running on skylake (evacuate the host first)"]
    );
}

#[test]
fn every_real_dump_can_join_a_pool_of_its_vendor() {
    let mut pools: Vec<Pool> = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(DUMPS)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.contains("_CPUID") && f.ends_with(".txt"))
        .collect();
    files.sort();
    assert!(files.len() >= 20);
    for f in &files {
        let h = input::load_host(&dump_path(f), &HostInputOptions::default())
            .unwrap_or_else(|e| panic!("{e}"))
            .host;
        assert!(
            h.pv.default.is_subset(&h.pv.max) && h.hvm.default.is_subset(&h.hvm.max),
            "{f}"
        );
        match pools.iter_mut().find(|p| p.vendor() == Some(h.vendor)) {
            Some(p) => {
                p.apply(Change::Join(Box::new(h))).unwrap();
            }
            None => pools.push(pool(&format!("p{}", pools.len()), vec![h])),
        }
    }
    for p in &mut pools {
        for guest in GuestType::ALL {
            let name = format!("vm-{guest}");
            p.create_vm(&name, guest, false).unwrap();
            // The level is accepted by every member, however old.
            for h in p.hosts.iter().map(|h| h.name.clone()).collect::<Vec<_>>() {
                p.start_vm(&name, Some(&h)).unwrap();
                p.shutdown_vm(&name).unwrap();
            }
        }
    }
}

#[test]
fn counts_agree_with_the_names_listed_even_on_amd() {
    let p = pool(
        "amd",
        vec![host(GENOA, "genoa"), host(CASTLEPEAK, "castlepeak")],
    );
    let mut level = p.level(GuestType::Pv).unwrap();
    // AMD repeats the common CPUID.01H:EDX bits in word 2, unnamed: neither listed nor counted.
    // Xen's system featuresets have no copies (it masks them out); a domain's policy has them.
    assert_eq!(level.word(2) & COMMON_1D & !KNOWN.word(2), 0);
    level.set_word(2, level.word(2) | (level.word(0) & COMMON_1D));
    let copies = level.word(2) & COMMON_1D & !KNOWN.word(2);
    assert_ne!(
        copies, 0,
        "a domain's AMD featureset carries the word-2 copies"
    );
    let f = levelctl::report::Features::from(&level);
    assert_eq!(f.count, f.names.len());
    assert_eq!(f.count, level.len() - copies.count_ones() as usize);
    assert!(
        !f.names.iter().any(|n| n.starts_with("2:")),
        "{:?}",
        f.names
    );
    assert!(f.names.contains(&"fpu".to_string()));
}

#[test]
fn explanations_name_only_listed_features_but_the_missing_set_stays_whole_on_amd() {
    let genoa = host(GENOA, "genoa");
    let fpu_copy = Feature::from_index(2, Feature::FPU.bit()).unwrap();
    assert!(
        COMMON_1D & Feature::FPU.mask() != 0 && KNOWN.word(2) & fpu_copy.mask() == 0,
        "fpu's word-2 copy is one of AMD's unnamed copies"
    );
    // A VM featureset taken from a domain's policy, which carries AMD's copies (Xen's system
    // featuresets do not).
    let mut featureset = genoa.pv.default;
    assert!(!featureset.contains(fpu_copy));
    featureset.set_word(2, featureset.word(2) | (featureset.word(0) & COMMON_1D));
    let vm = VmCpu {
        guest: GuestType::Pv,
        vendor: Vendor::Amd,
        featureset,
        waived: Featureset::EMPTY,
    };
    assert!(vm.featureset.contains(Feature::FPU) && vm.featureset.contains(fpu_copy));
    // A host whose CPU has no FPU lacks it in leaf 1 and in its word-2 copy alike.
    let mut nofpu = genoa.clone();
    nofpu.name = "nofpu".to_string();
    for f in [Feature::FPU, fpu_copy] {
        nofpu.pv.max.remove(f);
        nofpu.pv.default.remove(f);
        nofpu.hardware.as_mut().unwrap().remove(f);
    }
    let c = levelctl::check::check("amd", "web", &vm, &nofpu);
    assert!(!c.accepted);
    let named: Vec<&str> = c.missing.iter().map(|m| m.feature.as_str()).collect();
    assert!(named.contains(&"fpu"), "{named:?}");
    assert!(
        !named.iter().any(|n| n.starts_with("2:")),
        "only named features are explained: {named:?}"
    );
    assert_eq!(
        named,
        levelctl::report::names(&c.missing_set),
        "explanations follow the report::names rule"
    );
    let fpu = c.missing.iter().find(|m| m.feature == "fpu").unwrap();
    assert_eq!(fpu.cause, Cause::NotInHardware);
    // The acceptance decision and the force record keep the whole set, copies included.
    assert!(c.missing_set.contains(Feature::FPU) && c.missing_set.contains(fpu_copy));
    let explained = levelctl::check::explain_all(
        &nofpu,
        GuestType::Pv,
        levelctl::check::Which::Max,
        &c.missing_set,
    );
    assert_eq!(explained, c.missing);
}

#[test]
fn a_pool_or_feature_no_member_offers_by_default_is_still_explained() {
    // md-clear is `|`: Skylake-SP offers it by default, the 2017 Haswell only in its max.
    let haswell = host(HASWELL, "haswell");
    assert!(SIMPLE_OR.contains(Feature::MD_CLEAR));
    assert!(!haswell.pv.default.contains(Feature::MD_CLEAR));
    assert!(haswell.pv.max.closed().contains(Feature::MD_CLEAR));
    let mut p = pool(
        "intel",
        vec![
            haswell,
            host(SANDYBRIDGE, "sandy"),
            host(SKYLAKE, "skylake"),
        ],
    );
    assert!(p.level(GuestType::Pv).unwrap().contains(Feature::MD_CLEAR));
    let report = p.apply(Change::Leave("skylake".to_string())).unwrap();
    assert!(report.applied);
    let pv = report
        .levels
        .iter()
        .find(|l| l.guest == GuestType::Pv)
        .unwrap();
    let md = pv
        .lost
        .iter()
        .find(|f| f.feature == "md-clear")
        .expect("md-clear lost: no remaining member offers it by default");
    let by: Vec<&str> = md.held_back_by.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(by, ["haswell", "sandy"], "every remaining member");
    for h in &md.held_back_by {
        assert_eq!(
            h.cause,
            Cause::NoMemberDefault {
                guest: GuestType::Pv
            }
        );
        assert_eq!(h.cause.to_string(), "offered by no member by default");
    }
}

#[test]
fn every_lost_feature_is_held_back_by_someone_on_real_dumps() {
    let intel = [
        HASWELL,
        SANDYBRIDGE,
        SKYLAKE,
        SKYLAKE_C,
        IVYBRIDGE,
        NEHALEM,
        PENRYN,
    ];
    let amd = [GENOA, CASTLEPEAK, BARCELONA];
    for files in [&intel[..], &amd[..]] {
        for (i, a) in files.iter().enumerate() {
            for b in &files[i + 1..] {
                for (stay, go) in [(a, b), (b, a)] {
                    let p = pool("p", vec![host(stay, "stay"), host(go, "go")]);
                    let q = pool("q", vec![host(stay, "stay")]);
                    let changes = [
                        p.plan(&Change::Leave("go".to_string())).unwrap(),
                        q.plan(&Change::Join(Box::new(host(go, "go")))).unwrap(),
                    ];
                    for r in &changes {
                        for l in &r.levels {
                            for f in &l.lost {
                                assert!(
                                    !f.held_back_by.is_empty(),
                                    "{stay} + {go}, {}: {} {} lost unexplained",
                                    r.change,
                                    l.guest,
                                    f.feature
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
