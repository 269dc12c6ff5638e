//! The levelling mechanism against the silicon model of every real CPU in
//! `data/cpuid-dumps/`: probing finds that generation's mechanism (and nothing usable
//! under an emulator's quirks); a levelled PV guest sees exactly its policy where the hardware
//! can hide, and every difference it cannot hide is in the fail-closed list; Xen and dom0 see
//! the full host; context switches write exactly the MSRs whose value differs.
//!
//! Also writes `target/mechanism-matrix.json`, one row per dump.

use std::fmt::Write as _;

use xen_levelling::dump::Aida64Dump;
use xen_levelling::feature::KNOWN;
use xen_levelling::hardware::Hardware;
use xen_levelling::host::{Host, HostConfig};
use xen_levelling::levelling::domain::EXPOSED_BY_DESIGN;
use xen_levelling::levelling::generation::expected_mechanism;
use xen_levelling::levelling::msr::LEVELLING_MSRS;
use xen_levelling::levelling::trap::{
    CpuidFrame, GuestMemory, MemoryFault, TrapContext, TrapOutcome, handle_gp,
};
use xen_levelling::levelling::{
    DomainLevelling, DomainRole, LevellingCaps, LevellingState, Mechanism, SwitchTo,
};
use xen_levelling::policy::guest::{CpuidEntry, CpuidTable, GuestContext, GuestDomain, VcpuState};
use xen_levelling::policy::system::DomainKind;
use xen_levelling::policy::{CpuPolicy, WORD_HOMES, WordHome};
use xen_levelling::silicon::SiliconModel;
use xen_levelling::{CpuidRegs, Feature, Featureset, Vendor};

mod common;

use common::dumps::{self, DumpFile};

struct Machine {
    file: String,
    /// What the generations table promises for this CPU.
    expected: Mechanism,
    model: SiliconModel,
    raw_model: CpuPolicy,
    /// What "Xen" booted on the model.
    xen: Host,
    cpu: LevellingState,
}

/// Boot "Xen" on the model of `file`: raw policy through the hardware, probe, derive, init.
fn boot(file: &DumpFile, emulator_quirk: bool) -> Machine {
    let text = file.text();
    let dump = Aida64Dump::parse(&text).unwrap_or_else(|error| panic!("{}: {error}", file.name));
    let mut model = SiliconModel::new(&dump, dump.raw_msrs());
    if emulator_quirk {
        model = model.with_emulator_quirk();
    }
    let raw_model = *model.raw();
    let xen = Host::boot(&mut model, HostConfig::default());
    let cpu = LevellingState::init(xen.levelling(), &mut model).unwrap();
    Machine {
        file: file.name.clone(),
        expected: expected_mechanism(&raw_model, dump.raw_msrs()),
        model,
        raw_model,
        xen,
        cpu,
    }
}

fn hosts(emulator_quirk: bool) -> Vec<Machine> {
    dumps::all()
        .iter()
        .map(|f| boot(f, emulator_quirk))
        .collect()
}

/// The PV pool level of every dump of `vendor`.
fn pool_level(hosts: &[Machine], vendor: Vendor) -> Featureset {
    hosts
        .iter()
        .filter(|h| h.xen.system().host.vendor() == vendor)
        .map(|h| h.xen.system().pv_default.featureset())
        .fold(Featureset::FULL, |a, b| a & b)
        .closed()
}

/// A levelled PV guest of `host` at its vendor's pool level (`all` the hosts to level over):
/// its policy, and its levelling with best effort (so the fail-closed list is kept, not refused).
fn pool_guest(host: &Machine, all: &[Machine]) -> (CpuPolicy, DomainLevelling) {
    let vendor = host.xen.system().host.vendor();
    let level = pool_level(all, vendor);
    let policy = host
        .xen
        .system()
        .domain_policy(DomainKind::Pv, vendor, &level)
        .unwrap();
    let levelling = host
        .xen
        .levelling()
        .domain_levelling(DomainKind::Pv, DomainRole::Guest, &policy, true)
        .unwrap();
    (policy, levelling)
}

/// Guest memory with `0F A2` at every address: what a faulting CPUID's RIP points at.
struct CpuidEverywhere;

impl GuestMemory for CpuidEverywhere {
    fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryFault> {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = if (address + i as u64).is_multiple_of(2) {
                0x0f
            } else {
                0xa2
            };
        }
        Ok(())
    }
}

fn guest_context(host: &Machine, kind: DomainKind) -> GuestContext {
    GuestContext {
        domain: GuestDomain {
            kind,
            domid: 1,
            hardware_domain: false,
            host_features: host.xen.system().host.featureset(),
            host_paddr_bits: 46,
            xen_version: (4, 23),
        },
        vcpu_id: 0,
        state: Some(VcpuState {
            entry: CpuidEntry::Fault,
            cr4_osxsave: true,
            cr4_pke: false,
            kernel_mode: true,
            host_cr4_osxsave: true,
            xcr0: 0b11,
            xss: 0,
            apic_enabled: true,
            long_mode: true,
        }),
    }
}

/// What a PV guest running at CPL 3 under `policy` reads with native CPUID: the model's
/// answer, or, if the model faults, the hypervisor's #GP emulation.
fn native_cpuid_at_cpl3(host: &Machine, policy: &CpuPolicy, leaf: u32, subleaf: u32) -> CpuidRegs {
    match host.model.cpuid_at(3, leaf, subleaf) {
        Ok(regs) => regs,
        Err(_) => {
            let guest = guest_context(host, DomainKind::Pv);
            let cpuid = CpuidTable::new(policy, &guest.domain);
            let overlay = cpuid.overlay(&guest);
            let ctx = TrapContext {
                cpuid: &cpuid,
                overlay: &overlay,
                guest: &guest,
                cpl: 3,
                virtual_faulting: false,
            };
            let mut frame = CpuidFrame {
                rax: leaf as u64,
                rcx: subleaf as u64,
                rip: 0x1000,
                ..Default::default()
            };
            assert_eq!(
                handle_gp(&ctx, &mut frame, &CpuidEverywhere, 0),
                TrapOutcome::Emulated
            );
            assert_eq!(frame.rip, 0x1002);
            CpuidRegs::new(
                frame.rax as u32,
                frame.rbx as u32,
                frame.rcx as u32,
                frame.rdx as u32,
            )
        }
    }
}

/// The featureset CPL 3 code reads with native CPUID (CPUID words only).
fn seen_at_cpl3(host: &Machine, policy: &CpuPolicy) -> Featureset {
    let mut fs = Featureset::EMPTY;
    for (word, home) in WORD_HOMES.iter().enumerate() {
        if let WordHome::Cpuid { leaf, subleaf, reg } = *home {
            fs.set_word(
                word,
                reg.get(&native_cpuid_at_cpl3(host, policy, leaf, subleaf)),
            );
        }
    }
    fs
}

fn cpuid_words() -> Featureset {
    let mut fs = Featureset::EMPTY;
    for (word, home) in WORD_HOMES.iter().enumerate() {
        if matches!(home, WordHome::Cpuid { .. }) {
            fs.set_word(word, !0);
        }
    }
    fs
}

fn vcpu(domain: &DomainLevelling) -> SwitchTo<'_> {
    SwitchTo::Vcpu {
        domain,
        cr4_osxsave: true,
        virtual_faulting: false,
    }
}

#[test]
fn probing_finds_each_generations_mechanism() {
    for host in hosts(false) {
        assert_eq!(
            host.xen.levelling().mechanism(),
            host.expected,
            "{}",
            host.file
        );
        let report = &host.xen.levelling().report();
        assert!(
            report.ineffective().is_empty(),
            "{}: {:?}",
            host.file,
            report
        );
        assert!(report.missing().is_empty(), "{}: {:?}", host.file, report);
    }
}

#[test]
fn emulator_quirks_are_detected_not_trusted() {
    for host in hosts(true) {
        let report = &host.xen.levelling().report();
        assert_eq!(report.mechanism, Mechanism::None, "{}", host.file);
        assert!(report.effective.is_empty(), "{}", host.file);
        // The mask MSRs look present (every MSR reads 0 and takes writes) but do nothing.
        if let Mechanism::Masking(m) = host.expected {
            for (kind, _) in m.kinds() {
                assert!(
                    report.ineffective().contains(LevellingCaps::of_mask(kind)),
                    "{}: {kind:?}",
                    host.file
                );
            }
        }
        // And a levelled PV guest is refused: nothing can hide the hardware's features.
        let level = pool_level(
            &hosts_of_vendor(host.xen.system().host.vendor()),
            host.xen.system().host.vendor(),
        );
        let policy = host
            .xen
            .system()
            .domain_policy(DomainKind::Pv, host.xen.system().host.vendor(), &level)
            .unwrap();
        let refused = host.xen.levelling().domain_levelling(
            DomainKind::Pv,
            DomainRole::Guest,
            &policy,
            false,
        );
        assert!(refused.is_err(), "{}", host.file);
        let unenforceable = refused.unwrap_err().features;
        assert!(!unenforceable.is_empty());
        let best = host
            .xen
            .levelling()
            .domain_levelling(DomainKind::Pv, DomainRole::Guest, &policy, true)
            .unwrap();
        assert!(
            best.best_effort() && best.unenforceable() == unenforceable,
            "{}",
            host.file
        );
    }
}

fn hosts_of_vendor(vendor: Vendor) -> Vec<Machine> {
    dumps::all()
        .iter()
        .map(|f| boot(f, false))
        .filter(|h| h.xen.system().host.vendor() == vendor)
        .collect()
}

#[test]
fn levelled_guests_see_their_policy_and_the_rest_is_the_fail_closed_list() {
    let all = hosts(false);
    for mut host in hosts(false) {
        let (policy, d) = pool_guest(&host, &all);
        host.cpu
            .switch_to(host.xen.levelling(), &mut host.model, vcpu(&d))
            .unwrap();
        host.model.set_cr4_osxsave(true);

        let seen = seen_at_cpl3(&host, &policy);
        let wanted = policy.featureset() & cpuid_words();
        // Native CPUID shows these by design, whatever the policy (fast-forwarded or host topology).
        let exposed = Featureset::of(&EXPOSED_BY_DESIGN);
        let leaked = (seen - wanted - exposed) & KNOWN;
        let hidden = (wanted - seen - exposed) & KNOWN;
        let name = &host.file;
        assert_eq!(
            leaked,
            d.unenforceable(),
            "{name}: leaked {} vs list {}",
            leaked.names(),
            d.unenforceable().names()
        );
        assert_eq!(
            hidden,
            d.not_shown(),
            "{name}: not shown {} vs {}",
            hidden.names(),
            d.not_shown().names()
        );
        match host.xen.levelling().mechanism() {
            Mechanism::Faulting { .. } => {
                assert_eq!(
                    seen & !exposed,
                    wanted & !exposed,
                    "{name}: faulted CPUID is the policy"
                );
            }
            Mechanism::Masking(m) => {
                // On every maskable word, nothing beyond the policy shows.
                for (kind, _) in m.kinds() {
                    for &w in kind.words() {
                        let extra =
                            (seen.word(w) & !wanted.word(w)) & !exposed.word(w) & KNOWN.word(w);
                        assert_eq!(extra, 0, "{name}: word {w} leaks {extra:#x} through a mask");
                    }
                }
            }
            Mechanism::None => unreachable!("every real CPU here has a mechanism"),
        }
    }
}

#[test]
fn xen_and_dom0_see_the_full_host() {
    let all = hosts(false);
    for mut host in hosts(false) {
        let (_, guest) = pool_guest(&host, &all);
        let dom0 = host
            .xen
            .levelling()
            .domain_levelling(
                DomainKind::Pv,
                DomainRole::Control,
                &host.xen.system().pv_default,
                false,
            )
            .unwrap();
        assert!(!dom0.levelled() && !dom0.faulting(), "{}", host.file);
        // OSXSAVE and OSPKE follow the live CR4, not the CPU: left out of the comparison.
        let dynamic = Featureset::of(&[Feature::OSXSAVE, Feature::OSPKE]);
        let full = (host.raw_model.featureset() & cpuid_words()) - dynamic;
        // Guest, then dom0: dom0's ring-3 native CPUID is the host's.
        host.cpu
            .switch_to(host.xen.levelling(), &mut host.model, vcpu(&guest))
            .unwrap();
        host.cpu
            .switch_to(host.xen.levelling(), &mut host.model, vcpu(&dom0))
            .unwrap();
        let mut dom0_sees = Featureset::EMPTY;
        let mut xen_sees = Featureset::EMPTY;
        for (word, home) in WORD_HOMES.iter().enumerate() {
            if let WordHome::Cpuid { leaf, subleaf, reg } = *home {
                dom0_sees.set_word(
                    word,
                    reg.get(
                        &host
                            .model
                            .cpuid_at(3, leaf, subleaf)
                            .expect("dom0 does not fault"),
                    ),
                );
            }
        }
        assert_eq!(dom0_sees - dynamic, full, "{}: dom0", host.file);
        // Guest, then Xen itself at CPL 0.
        host.cpu
            .switch_to(host.xen.levelling(), &mut host.model, vcpu(&guest))
            .unwrap();
        host.cpu
            .switch_to(host.xen.levelling(), &mut host.model, SwitchTo::Xen)
            .unwrap();
        for (word, home) in WORD_HOMES.iter().enumerate() {
            if let WordHome::Cpuid { leaf, subleaf, reg } = *home {
                xen_sees.set_word(
                    word,
                    reg.get(&host.model.cpuid_at(0, leaf, subleaf).unwrap()),
                );
            }
        }
        assert_eq!(xen_sees - dynamic, full, "{}: Xen", host.file);
        // Configured to level dom0 (current Xen), dom0 is levelled like a guest.
        let mut levelled = *host.xen.levelling();
        levelled.set_level_dom0(true);
        let dom0 = levelled
            .domain_levelling(
                DomainKind::Pv,
                DomainRole::Control,
                &host.xen.system().pv_default,
                true,
            )
            .unwrap();
        assert!(dom0.levelled(), "{}", host.file);
    }
}

/// Every levelling MSR this model has, read without logging.
fn msr_snapshot(model: &SiliconModel) -> Vec<(u32, u64)> {
    // The read-only enumeration MSR cannot change on a switch; every other levelling MSR can.
    LEVELLING_MSRS
        .iter()
        .filter(|&&i| i != 0xce)
        .filter_map(|&i| model.rdmsr_amd_safe(i).ok().map(|v| (i, v)))
        .collect()
}

struct SwitchRun {
    switches: usize,
    writes: usize,
    lower_bound: usize,
}

/// Random switches between Xen, idle, dom0, two guests with the same policy, a guest at the
/// host default, and an HVM guest with and without its virtual faulting.
fn random_switches(host: &mut Machine, level: &Featureset, count: usize, seed: u64) -> SwitchRun {
    let vendor = host.xen.system().host.vendor();
    let lev = host.xen.levelling();
    let pool = host
        .xen
        .system()
        .domain_policy(DomainKind::Pv, vendor, level)
        .unwrap();
    let levelled =
        |kind, role, policy: &CpuPolicy| lev.domain_levelling(kind, role, policy, true).unwrap();
    let guest_a = levelled(DomainKind::Pv, DomainRole::Guest, &pool);
    let guest_b = guest_a;
    let richer = levelled(
        DomainKind::Pv,
        DomainRole::Guest,
        &host.xen.system().pv_default,
    );
    let dom0 = levelled(
        DomainKind::Pv,
        DomainRole::Control,
        &host.xen.system().pv_default,
    );
    let hvm = levelled(
        DomainKind::HvmHap,
        DomainRole::Guest,
        &host.xen.system().hvm_default,
    );
    let domains = [&guest_a, &guest_b, &richer, &dom0, &hvm];
    let mut rng = seed;
    let mut run = SwitchRun {
        switches: 0,
        writes: 0,
        lower_bound: 0,
    };
    for _ in 0..count {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let pick = (rng % 9) as usize;
        let osxsave = rng & 0x100 != 0;
        let virtual_faulting = rng & 0x200 != 0;
        let next = match pick {
            0 => SwitchTo::Idle,
            1 => SwitchTo::Xen,
            n => SwitchTo::Vcpu {
                domain: domains[(n - 2) % domains.len()],
                cr4_osxsave: osxsave,
                virtual_faulting,
            },
        };
        let before = msr_snapshot(&host.model);
        let writes_before = host.model.writes();
        let stats = host.cpu.switch_to(lev, &mut host.model, next).unwrap();
        let after = msr_snapshot(&host.model);
        let differing = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        let written = host.model.writes() - writes_before;
        assert_eq!(
            written, differing,
            "{}: a switch wrote {written} MSRs, {differing} changed",
            host.file
        );
        assert_eq!(stats.msr_writes as usize, written, "{}", host.file);
        if let SwitchTo::Vcpu { domain, .. } = next
            && domain.faulting()
        {
            assert!(
                host.model.cpuid_at(3, 0, 0).is_err(),
                "{}: faulting not on",
                host.file
            );
        }
        run.switches += 1;
        run.writes += written;
        run.lower_bound += differing;
    }
    run
}

#[test]
fn switches_write_exactly_the_msrs_that_differ() {
    let all = hosts(false);
    for mut host in hosts(false) {
        let level = pool_level(&all, host.xen.system().host.vendor());
        let run = random_switches(&mut host, &level, 2000, 0x2545_f491_4f6c_dd1d);
        assert_eq!(run.writes, run.lower_bound);
        // Switching between two vCPUs of the same policy writes nothing.
        let pool = host
            .xen
            .system()
            .domain_policy(DomainKind::Pv, host.xen.system().host.vendor(), &level)
            .unwrap();
        let d = host
            .xen
            .levelling()
            .domain_levelling(DomainKind::Pv, DomainRole::Guest, &pool, true)
            .unwrap();
        let e = d;
        host.cpu
            .switch_to(host.xen.levelling(), &mut host.model, vcpu(&d))
            .unwrap();
        let s = host
            .cpu
            .switch_to(host.xen.levelling(), &mut host.model, vcpu(&e))
            .unwrap();
        assert_eq!(s.msr_writes, 0, "{}", host.file);
        // Idle leaves everything loaded.
        let s = host
            .cpu
            .switch_to(host.xen.levelling(), &mut host.model, SwitchTo::Idle)
            .unwrap();
        assert_eq!(s.msr_writes, 0, "{}", host.file);
    }
}

#[test]
fn a_mask_msr_that_starts_faulting_fails_closed() {
    use xen_levelling::abi::domain::DomainTable;
    let mut host = boot(
        &dumps::bundled_file("GenuineIntel00206D7_SandyBridgeE_00_CPUID.txt"),
        false,
    );
    let mut abi_host = host.xen;
    let mut domains = DomainTable::<4>::default();
    domains
        .create(&abi_host, 0, DomainKind::Pv, DomainRole::Control, false)
        .unwrap();
    domains
        .create(&abi_host, 1, DomainKind::Pv, DomainRole::Guest, true)
        .unwrap();
    domains.start(0).unwrap();
    domains.start(1).unwrap();
    let guest = domains.get(1).unwrap().levelling();
    let dom0 = domains.get(0).unwrap().levelling();
    assert!(domains.unguaranteed(abi_host.levelling()).next().is_none());

    // As after a microcode update: the leaf 1 mask starts raising #GP.
    assert!(host.model.fail_msr(0x132));
    let fault = host
        .cpu
        .switch_to(abi_host.levelling(), &mut host.model, vcpu(guest))
        .unwrap_err();
    assert_eq!(fault.msr, 0x132);
    // The other masks were still written.
    let others = host
        .model
        .write_log()
        .iter()
        .filter(|w| w.msr != 0x132 && !w.faulted)
        .count();
    assert!(others >= 1, "{:?}", host.model.write_log());
    abi_host.mark_levelling_failed(fault);

    // Xen and dom0 keep running with the full host: the faulting MSR still holds the
    // defaults (its write never happened), the others are put back.
    for _ in 0..3 {
        host.cpu
            .switch_to(abi_host.levelling(), &mut host.model, vcpu(dom0))
            .unwrap();
        let leaf1 = host.model.cpuid_at(3, 1, 0).unwrap();
        assert_eq!(
            leaf1.d,
            host.raw_model.leaf(1, 0).unwrap().d,
            "dom0 sees the host's leaf 1"
        );
        host.cpu
            .switch_to(abi_host.levelling(), &mut host.model, SwitchTo::Xen)
            .unwrap();
    }
    // The running guest is reported; a new levelled PV guest is refused (fail closed) ...
    let unguaranteed: Vec<u16> = domains
        .unguaranteed(abi_host.levelling())
        .map(|d| d.domid())
        .collect();
    assert_eq!(unguaranteed, [1]);
    domains
        .create(&abi_host, 2, DomainKind::Pv, DomainRole::Guest, false)
        .unwrap();
    let refused = domains.start(2).unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("without faulting or mask MSRs"),
        "{refused}"
    );
    // ... unless best effort is asked for; and HVM guests are unaffected.
    domains
        .create(&abi_host, 3, DomainKind::HvmHap, DomainRole::Guest, false)
        .unwrap();
    domains.start(3).unwrap();
}

/// `target/mechanism-matrix.json`: one row per dump, built by hand (no serde in the core's tests).
#[test]
fn write_mechanism_matrix() {
    let all = hosts(false);
    let quirky = hosts(true);
    let mut rows = Vec::new();
    for (mut host, quirk) in hosts(false).into_iter().zip(&quirky) {
        let sig = host.xen.system().host.signature();
        let vendor = host.xen.system().host.vendor();
        let level = pool_level(&all, vendor);
        let (_, d) = pool_guest(&host, &all);
        let run = random_switches(&mut host, &level, 1000, 0x9e37_79b9_7f4a_7c15);
        let mut row = String::new();
        write!(
            row,
            "{{\"file\":\"{}\",\"vendor\":\"{}\",\"family\":{},\"model\":{},\"stepping\":{},\"mechanism\":{},\"emulator_quirk\":{{\"mechanism\":{},\"ineffective\":\"{:?}\"}},\"fail_closed\":[{}],\"switches\":{},\"msr_writes\":{},\"lower_bound\":{}}}",
            host.file,
            vendor,
            sig.family,
            sig.model,
            sig.stepping,
            mechanism_json(host.xen.levelling().mechanism()),
            mechanism_json(quirk.xen.levelling().mechanism()),
            quirk.xen.levelling().report().ineffective(),
            d.unenforceable().iter().map(|f| format!("\"{f}\"")).collect::<Vec<_>>().join(","),
            run.switches,
            run.writes,
            run.lower_bound,
        )
        .unwrap();
        rows.push(row);
    }
    let json = format!("[\n  {}\n]\n", rows.join(",\n  "));
    let target = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target").to_string());
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(format!("{target}/mechanism-matrix.json"), json).unwrap();
}

fn mechanism_json(m: Mechanism) -> String {
    match m {
        Mechanism::Faulting { control, check } => {
            format!("{{\"faulting\":\"{control:?}\",\"check\":\"{check:?}\"}}")
        }
        Mechanism::Masking(msrs) => {
            let list: Vec<String> = msrs
                .kinds()
                .map(|(k, i)| format!("{{\"{}\":\"{i:#x}\"}}", k.name()))
                .collect();
            format!("{{\"masks\":[{}]}}", list.join(","))
        }
        Mechanism::None => "\"none\"".to_string(),
    }
}

#[test]
fn a_pv_kernel_without_cr4_osxsave_does_not_see_xens() {
    // On a masking CPU the hardware fast-forwards Xen's CR4.OSXSAVE unless the mask hides it.
    for file in [
        "GenuineIntel00206D7_SandyBridgeE_00_CPUID.txt",
        "AuthenticAMD0830F10_K17_CastlePeak_CPUID.txt",
    ] {
        // A levelled guest, and dom0, which is not levelled but is a PV kernel all the same.
        for role in [DomainRole::Guest, DomainRole::Control] {
            let mut host = boot(&dumps::bundled_file(file), false);
            let d =
                host.xen
                    .levelling()
                    .assess(DomainKind::Pv, role, &host.xen.system().pv_default);
            assert!(d.xsave(), "{file}");
            host.model.set_cr4_osxsave(true); // Xen's own CR4
            let osxsave = |host: &Machine| {
                host.model.cpuid_at(3, 1, 0).unwrap().c & Feature::OSXSAVE.mask() != 0
            };
            for (guest_cr4, expected) in [(false, false), (true, true), (false, false)] {
                let next = SwitchTo::Vcpu {
                    domain: &d,
                    cr4_osxsave: guest_cr4,
                    virtual_faulting: false,
                };
                host.cpu
                    .switch_to(host.xen.levelling(), &mut host.model, next)
                    .unwrap();
                assert_eq!(
                    osxsave(&host),
                    expected,
                    "{file}: guest CR4.OSXSAVE {guest_cr4}"
                );
            }
        }
    }
}

#[test]
fn arch_capabilities_reach_the_raw_policy_through_the_model() {
    // FORMAT.md 6: Sapphire Rapids recorded MSR 0x10A = 0000-0000-0028-FDEB.
    let host = boot(
        &dumps::bundled_file("GenuineIntel00806F8_SapphireRapids_05_CPUID.txt"),
        false,
    );
    assert_eq!(host.model.rdmsr_safe(0x10a), Ok(0x28_fdeb));
    assert_eq!(host.xen.system().raw.arch_caps(), 0x28_fdeb);
    assert!(
        host.xen.system().raw.featureset().contains(Feature::EIBRS),
        "MSR 0x10A[1]"
    );
    // No ARCH_CAPS enumerated (Penryn): the MSR does not exist.
    let penryn = boot(
        &dumps::bundled_file("GenuineIntel0010676_Penryn_CPUID.txt"),
        false,
    );
    assert!(penryn.model.rdmsr_safe(0x10a).is_err());
}

#[test]
fn mechanisms_describe_themselves() {
    let sandy = boot(
        &dumps::bundled_file("GenuineIntel00206D7_SandyBridgeE_00_CPUID.txt"),
        false,
    );
    assert_eq!(
        sandy.xen.levelling().mechanism().to_string(),
        "mask MSRs 1cd=0x132 e1cd=0x133 Da1=0x134"
    );
    let genoa = boot(
        &dumps::bundled_file("AuthenticAMD0A10F11_K19_Genoa_02_CPUID.txt"),
        false,
    );
    assert_eq!(
        genoa.xen.levelling().mechanism().to_string(),
        "CPUID faulting (MSR 0xc0010015, verified)"
    );
    assert_eq!(Mechanism::None.to_string(), "none");
}
