//! dom0's toolstack: reads the levelling caps, a featureset and the PV default policy;
//! builds a guest policy from it (A, [`Dom0::built`]); creates guests, sets A, reads it back
//! (B, [`Dom0::read_back`]) and starts them; then walks every error path of set_cpu_policy,
//! each followed by a read-back (C, [`Dom0::reread`]) that must still be B.

use core::ffi::CStr;

use xen_levelling::Feature;
use xen_levelling::abi::dispatch::errno::{
    E2BIG, EACCES, EEXIST, EFAULT, EINVAL, ENOBUFS, ENOSYS, EOPNOTSUPP, EOVERFLOW, ERANGE, ESRCH,
};
use xen_levelling::abi::{
    DOMCTL_GET_CPU_POLICY, DOMCTL_GET_LEVELLING, SYSCTL_GET_CPU_FEATURESET,
    SYSCTL_GET_CPU_LEVELLING_CAPS, SYSCTL_GET_CPU_POLICY, XenCpuidLeaf, XenDomctlCpuPolicy,
    XenDomctlLevelling, XenMsrEntry, XenSysctlCpuFeatureset, XenSysctlCpuLevellingCaps,
    XenSysctlCpuPolicy, levelling_flags,
};
use xen_levelling::cpuid::NO_SUBLEAF;
use xen_levelling::feature::NR_WORDS;
use xen_levelling::msr::PLATFORM_INFO;
use xen_levelling::policy::serialise::{MAX_SERIALISED_LEAVES, MAX_SERIALISED_MSRS};
use xl_user::{CREATE_BEST_EFFORT, DATA_PAGE_SIZE, HC_DOMCTL, HC_SYSCTL, KIND_PV, USER_CODE};

use crate::boot_data::{BootData, Expectation};
use crate::hypercall::{call, check_eq, check_name, check_ret, check_tagged, err, exit};
use crate::policy::PolicyBuffer;
use crate::toolstack::{self, ERR_FIELDS_POISON, Toolstack};
use crate::{ABORT, xl_toolstack};

/// The system policy index of the PV default (`XEN_SYSCTL_cpu_policy_pv_default`).
const PV_DEFAULT: u32 = 4;
/// The featureset index of the PV default (`XEN_SYSCTL_cpu_featureset_pv`).
const FEATURESET_PV: u32 = 2;
/// A featureset index past the last one.
const BAD_FEATURESET_INDEX: u32 = 6;
/// A policy index past the last one.
const BAD_POLICY_INDEX: u32 = 6;
/// A domctl and sysctl command nobody implements.
const UNKNOWN_COMMAND: u32 = 99;

/// Featureset buffers: room for more words than any featureset has.
const FEATURESET_ROOM: usize = 32;
const _: () = assert!(NR_WORDS <= FEATURESET_ROOM);

/// An unmapped user address, and a kernel one (mapped supervisor-only in every domain).
const UNMAPPED: u64 = USER_CODE + 0x30_0000;
const KERNEL_ADDRESS: u64 = 0x10_0000;
/// What the error fields read after an error that names no leaf or MSR.
const NONE: u64 = 0xffff_ffff;

/// What dom0 takes out of the PV default policy: SSE3 (`CPUID.01H:ECX[0]`, which drags its
/// dependents with it when the hypervisor recalculates) and POPCNT (`CPUID.01H:ECX[23]`),
/// and BMI2 (`CPUID.07H.0:EBX[8]`).
const REMOVE_1C: u32 = Feature::SSE3.mask() | Feature::POPCNT.mask();
const REMOVE_7B: u32 = Feature::BMI2.mask();
/// A feature dom0 keeps and checks is still there: SSE2 (`CPUID.01H:EDX[26]`).
const KEEP_1D: u32 = Feature::SSE2.mask();
/// A feature no PV policy may have, the incompatible-policy input: VMX (`CPUID.01H:ECX[5]`,
/// HVM only).
const HVM_ONLY_1C: u32 = Feature::VMX.mask();

/// CPUID output registers, as [`Expectation::register`] numbers them.
const EBX: u32 = 1;
const ECX: u32 = 2;
const EDX: u32 = 3;
const EAX: u32 = 0;

/// The registers a started guest checks: (leaf, subleaf as serialised, subleaf asked,
/// register, mask). The masks leave out what the hypervisor fills in from the guest's live
/// state: OSXSAVE (`CPUID.01H:ECX[27]`, CR4.OSXSAVE) and OSPKE (`CPUID.07H.0:ECX[4]`,
/// CR4.PKE).
const EXPECT: [(u32, u32, u32, u32, u32); 11] = [
    (0, NO_SUBLEAF, 0, EBX, !0), // CPUID.00H:EBX,EDX,ECX: the vendor
    (0, NO_SUBLEAF, 0, ECX, !0),
    (0, NO_SUBLEAF, 0, EDX, !0),
    (1, NO_SUBLEAF, 0, ECX, !Feature::OSXSAVE.mask()), // CPUID.01H:ECX
    (1, NO_SUBLEAF, 0, EDX, !0),                       // CPUID.01H:EDX
    (7, 0, 0, EBX, !0),                                // CPUID.07H.0:EBX
    (7, 0, 0, ECX, !Feature::OSPKE.mask()),            // CPUID.07H.0:ECX
    (7, 0, 0, EDX, !0),                                // CPUID.07H.0:EDX
    (0x8000_0001, NO_SUBLEAF, 0, ECX, !0),             // CPUID.80000001H:ECX
    (0x8000_0001, NO_SUBLEAF, 0, EDX, !0),             // CPUID.80000001H:EDX
    (0xd, 1, 1, EAX, !0),                              // CPUID.0DH.1:EAX
];
const _: () = assert!(EXPECT.len() <= crate::boot_data::EXPECT_SLOTS);

/// The check names of one refused set_cpu_policy.
struct Refusal {
    /// `<case>-<errno>`: what it returned.
    returns: &'static CStr,
    /// `<case>-err-leaf`, `<case>-err-subleaf`, `<case>-err-msr`: its error fields.
    err_fields: [&'static CStr; 3],
    /// `<case>-unchanged`: the domain's policy after it.
    unchanged: &'static CStr,
}

/// The [`Refusal`] of `case`, refused with the errno named `errno` (lower case).
macro_rules! refusal {
    ($case:literal, $errno:literal) => {
        Refusal {
            returns: check_name!($case, "-", $errno),
            err_fields: [
                check_name!($case, "-err-leaf"),
                check_name!($case, "-err-subleaf"),
                check_name!($case, "-err-msr"),
            ],
            unchanged: check_name!($case, "-unchanged"),
        }
    };
}

/// dom0's state: its calls, its three policies and its data page.
struct Dom0 {
    ts: Toolstack,
    /// The policy it builds and sets (A).
    built: PolicyBuffer,
    /// What it reads back after setting A (B).
    read_back: PolicyBuffer,
    /// Every later read-back, compared with B (C).
    reread: PolicyBuffer,
    /// Its data page: the page after it is not mapped.
    data: u64,
}

/// dom0's program; `data` is its data page.
pub extern "C" fn run(data: u64) -> ! {
    let mut dom0 = Dom0 {
        ts: Toolstack::new(),
        built: PolicyBuffer::EMPTY,
        read_back: PolicyBuffer::EMPTY,
        reread: PolicyBuffer::EMPTY,
        data,
    };
    let featureset = dom0.system();
    dom0.build_policy(&featureset);
    let boot = dom0.domu1();
    dom0.domu2(&boot);
    dom0.domu3();
    dom0.bad_counts_and_entries();
    dom0.bad_addresses();
    dom0.bad_commands_and_domains();
    check_eq(c"toolstack-done", 0, 0);
    exit(0)
}

impl Dom0 {
    /// The system calls: levelling caps, the PV featureset (returned) and the PV default
    /// policy (into A), each with its short-buffer and bad-index errors.
    fn system(&mut self) -> [u32; FEATURESET_ROOM] {
        let ts = &mut self.ts;
        let ret = ts.sysctl(
            SYSCTL_GET_CPU_LEVELLING_CAPS,
            &XenSysctlCpuLevellingCaps::default(),
        );
        check_ret(c"sysctl/levelling-caps", ret, 0);
        let caps = ts.sysctl_out::<XenSysctlCpuLevellingCaps>().caps;
        // The nine `XEN_SYSCTL_CPU_LEVELCAP_*` bits, 0 to 8 (`abi::levelcap`).
        check_eq(
            c"sysctl/levelling-caps-known-bits-only",
            u64::from(caps) & !0x1ff,
            0,
        );

        // The featureset: the NULL size query, the full read, a short buffer, a bad index.
        let mut featureset = [0u32; FEATURESET_ROOM];
        let mut scratch = [0u32; FEATURESET_ROOM];
        let query = |nr_features: u32, index: u32, buf: &mut [u32; FEATURESET_ROOM]| {
            XenSysctlCpuFeatureset {
                index,
                nr_features: nr_features.min(FEATURESET_ROOM as u32),
                features: buf.as_mut_ptr() as u64,
            }
        };
        let size = XenSysctlCpuFeatureset {
            index: FEATURESET_PV,
            ..Default::default()
        };
        let ret = ts.sysctl(SYSCTL_GET_CPU_FEATURESET, &size);
        check_ret(c"sysctl/featureset-size-query", ret, 0);
        let nr = ts.sysctl_out::<XenSysctlCpuFeatureset>().nr_features;
        check_eq(
            c"sysctl/featureset-size-query-nr",
            u64::from(nr),
            NR_WORDS as u64,
        );
        let ret = ts.sysctl(
            SYSCTL_GET_CPU_FEATURESET,
            &query(nr, FEATURESET_PV, &mut featureset),
        );
        check_ret(c"sysctl/featureset-pv-default", ret, 0);
        let got = ts.sysctl_out::<XenSysctlCpuFeatureset>().nr_features;
        check_eq(
            c"sysctl/featureset-pv-default-nr",
            u64::from(got),
            u64::from(nr),
        );
        let short = nr.wrapping_sub(1);
        let ret = ts.sysctl(
            SYSCTL_GET_CPU_FEATURESET,
            &query(short, FEATURESET_PV, &mut scratch),
        );
        check_ret(c"sysctl/featureset-short-buffer-enobufs", ret, err(ENOBUFS));
        let got = ts.sysctl_out::<XenSysctlCpuFeatureset>().nr_features;
        check_eq(
            c"sysctl/featureset-short-buffer-nr",
            u64::from(got),
            u64::from(short),
        );
        let ret = ts.sysctl(
            SYSCTL_GET_CPU_FEATURESET,
            &query(nr, BAD_FEATURESET_INDEX, &mut scratch),
        );
        check_ret(c"sysctl/featureset-bad-index-einval", ret, err(EINVAL));

        // The system policy: the size query, PV default into A, a short buffer, bad input.
        let ret = ts.sysctl(
            SYSCTL_GET_CPU_POLICY,
            &XenSysctlCpuPolicy {
                index: PV_DEFAULT,
                ..Default::default()
            },
        );
        check_ret(c"sysctl/policy-size-query", ret, 0);
        let size = ts.sysctl_out::<XenSysctlCpuPolicy>();
        check_eq(
            c"sysctl/policy-size-query-leaves",
            u64::from(size.nr_leaves),
            MAX_SERIALISED_LEAVES as u64,
        );
        check_eq(
            c"sysctl/policy-size-query-msrs",
            u64::from(size.nr_msrs),
            MAX_SERIALISED_MSRS as u64,
        );
        let ret = self.system_policy_into_a(PV_DEFAULT, MAX_SERIALISED_LEAVES as u32);
        check_ret(c"sysctl/policy-pv-default", ret, 0);
        let got = self.ts.sysctl_out::<XenSysctlCpuPolicy>();
        check_tagged(
            c"sysctl/policy-pv-default-has-leaves",
            got.nr_leaves > 0,
            u64::from(got.nr_leaves),
            0,
            0,
        );
        let (nr_leaves, nr_msrs) = (got.nr_leaves, got.nr_msrs);
        let ret = self.system_policy_into_a(PV_DEFAULT, nr_leaves.wrapping_sub(1));
        check_ret(c"sysctl/policy-short-buffer-enobufs", ret, err(ENOBUFS));
        let ret = self.system_policy_into_a(BAD_POLICY_INDEX, MAX_SERIALISED_LEAVES as u32);
        check_ret(c"sysctl/policy-bad-index-einval", ret, err(EINVAL));
        // Refetch A (the short-buffer call may have left part of it).
        let ret = self.system_policy_into_a(PV_DEFAULT, MAX_SERIALISED_LEAVES as u32);
        check_ret(c"sysctl/policy-pv-default-again", ret, 0);
        self.built.nr_leaves = nr_leaves;
        self.built.nr_msrs = nr_msrs;
        featureset
    }

    /// sysctl get_cpu_policy `index` into A, with room for `nr_leaves` leaves.
    fn system_policy_into_a(&mut self, index: u32, nr_leaves: u32) -> i64 {
        let payload = XenSysctlCpuPolicy {
            index,
            nr_leaves,
            nr_msrs: MAX_SERIALISED_MSRS as u32,
            rsvd: 0,
            leaves: self.built.leaves_address(),
            msrs: self.built.msrs_address(),
        };
        self.ts.sysctl(SYSCTL_GET_CPU_POLICY, &payload)
    }

    /// Checks that the featureset and policy A agree, then makes A the guest policy: the PV
    /// default minus [`REMOVE_1C`] and [`REMOVE_7B`].
    fn build_policy(&mut self, featureset: &[u32; FEATURESET_ROOM]) {
        let found = self.built.find(1, NO_SUBLEAF).is_some();
        check_tagged(c"sysctl/policy-has-leaf-1", found, u64::from(found), 0, 0);
        let Some(leaf1) = self.built.find_mut(1, NO_SUBLEAF) else {
            exit(ABORT)
        };
        // Xen's featureset word 0 is CPUID.01H:EDX, word 1 CPUID.01H:ECX.
        check_eq(
            c"sysctl/featureset-matches-policy-leaf1-ecx",
            u64::from(leaf1.c),
            u64::from(featureset[1]),
        );
        check_eq(
            c"sysctl/featureset-matches-policy-leaf1-edx",
            u64::from(leaf1.d),
            u64::from(featureset[0]),
        );
        leaf1.c &= !REMOVE_1C;
        if let Some(leaf7) = self.built.find_mut(7, 0) {
            leaf7.b &= !REMOVE_7B;
        }
    }

    /// domU1: created without best effort, A set, read back into B, its levelling read; the
    /// guests' boot data built from B (returned); started: refused exactly when its hardware
    /// cannot hide what its policy lacks (fail closed, no best effort asked).
    fn domu1(&mut self) -> BootData {
        check_ret(c"create/domU1", toolstack::create(1, KIND_PV, 0), 0);
        let ret = toolstack::create(1, KIND_PV, 0);
        check_ret(c"create/existing-id-eexist", ret, err(EEXIST));
        let ret = toolstack::create(5, 7, 0);
        check_ret(c"create/bad-kind-einval", ret, err(EINVAL));
        let ret = toolstack::create(5, KIND_PV, 2);
        check_ret(c"create/bad-flags-einval", ret, err(EINVAL));
        let ret = self.ts.set_policy_from(1, &mut self.built);
        check_ret(c"domctl/set-policy-domU1", ret, 0);
        check_eq(
            c"domctl/set-policy-success-leaves-err-fields",
            u64::from(self.ts.err_fields()[0]),
            u64::from(ERR_FIELDS_POISON),
        );
        let ret = self
            .ts
            .domctl(DOMCTL_GET_CPU_POLICY, 1, &XenDomctlCpuPolicy::default());
        check_ret(c"domctl/get-policy-size-query", ret, 0);
        let size = self.ts.domctl_out::<XenDomctlCpuPolicy>();
        check_eq(
            c"domctl/get-policy-size-query-leaves",
            u64::from(size.nr_leaves),
            MAX_SERIALISED_LEAVES as u64,
        );
        let ret = self.ts.get_policy_into(1, &mut self.read_back);
        check_ret(c"domctl/get-policy-domU1", ret, 0);
        let found = self.read_back.find(1, NO_SUBLEAF).copied();
        check_tagged(
            c"domctl/read-back-has-leaf-1",
            found.is_some(),
            u64::from(found.is_some()),
            0,
            0,
        );
        let Some(leaf1) = found else { exit(ABORT) };
        check_eq(
            c"domctl/read-back-lacks-removed-leaf1-ecx",
            u64::from(leaf1.c & REMOVE_1C),
            0,
        );
        check_eq(
            c"domctl/read-back-keeps-sse2",
            u64::from(leaf1.d & KEEP_1D),
            u64::from(KEEP_1D),
        );
        let leaf7b = self.read_back.find(7, 0).map_or(0, |leaf7| leaf7.b);
        check_eq(
            c"domctl/read-back-lacks-removed-leaf7-ebx",
            u64::from(leaf7b & REMOVE_7B),
            0,
        );

        // domU1's levelling (extension domctl): what can its hardware not hide?
        let mut unenforceable = [0u32; FEATURESET_ROOM];
        let payload = XenDomctlLevelling {
            nr_features: FEATURESET_ROOM as u32,
            unenforceable: unenforceable.as_mut_ptr() as u64,
            ..Default::default()
        };
        let ret = self.ts.domctl(DOMCTL_GET_LEVELLING, 1, &payload);
        check_ret(c"domctl/get-levelling-domU1", ret, 0);
        let levelling = self.ts.domctl_out::<XenDomctlLevelling>();
        check_eq(
            c"domctl/levelling-domU1-levelled",
            u64::from(levelling.flags & levelling_flags::LEVELLED),
            u64::from(levelling_flags::LEVELLED),
        );
        let words = (levelling.nr_features as usize).min(FEATURESET_ROOM);
        let any_unenforceable = unenforceable[..words].iter().any(|&word| word != 0);

        let mut boot = self.boot_data();
        let ret = toolstack::start(1, &raw mut boot as u64, boot.len());
        let expected = if any_unenforceable {
            err(EOPNOTSUPP)
        } else {
            0
        };
        check_ret(c"start/domU1-refused-iff-unenforceable", ret, expected);
        boot
    }

    /// The boot data for a guest: each register of [`EXPECT`] that B holds, masked.
    fn boot_data(&self) -> BootData {
        let mut boot = BootData::default();
        for (leaf, serialised, subleaf, register, mask) in EXPECT {
            if let Some(entry) = self.read_back.find(leaf, serialised) {
                let value = [entry.a, entry.b, entry.c, entry.d][register as usize] & mask;
                boot.push(Expectation {
                    leaf,
                    subleaf,
                    register,
                    mask,
                    value,
                });
            }
        }
        boot
    }

    /// domU2: best effort, A, started.
    fn domu2(&mut self, boot: &BootData) {
        let ret = toolstack::create(2, KIND_PV, CREATE_BEST_EFFORT);
        check_ret(c"create/domU2-best-effort", ret, 0);
        let ret = self.ts.set_policy_from(2, &mut self.built);
        check_ret(c"domctl/set-policy-domU2", ret, 0);
        self.check_unchanged(c"domctl/domU2-reads-back-as-domU1", 2);
        let mut boot = *boot;
        let (data, len) = (&raw mut boot as u64, boot.len());
        check_ret(c"start/domU2", toolstack::start(2, data, len), 0);
        let ret = toolstack::start(2, data, len);
        check_ret(c"start/already-started-eexist", ret, err(EEXIST));
        let ret = toolstack::start(42, 0, 0);
        check_ret(c"start/no-such-domain-esrch", ret, err(ESRCH));
    }

    /// domU3: never started; the target of every error path. set(get(policy)) is the
    /// identity.
    fn domu3(&mut self) {
        check_ret(c"create/domU3", toolstack::create(3, KIND_PV, 0), 0);
        let ret = self.ts.set_policy_from(3, &mut self.built);
        check_ret(c"domctl/set-policy-domU3", ret, 0);
        self.check_unchanged(c"domctl/domU3-reads-back-as-domU1", 3);
        let ret = toolstack::start(3, KERNEL_ADDRESS, 8);
        check_ret(
            c"start/boot-data-at-kernel-address-efault",
            ret,
            err(EFAULT),
        );
        let ret = self.ts.set_policy_from(3, &mut self.read_back);
        check_ret(c"domctl/set-read-back-policy", ret, 0);
        self.check_unchanged(c"domctl/set-get-is-identity", 3);
    }

    /// Too many leaves or MSRs, a bad leaf, bad MSRs, a feature the PV max policy lacks:
    /// each refused with the error fields naming what was wrong, and nothing changed.
    fn bad_counts_and_entries(&mut self) {
        let a_leaves = (self.built.leaves_address(), self.built.nr_leaves);
        let a_msrs = (self.built.msrs_address(), self.built.nr_msrs);
        let too_many = (a_leaves.0, MAX_SERIALISED_LEAVES as u32 + 1);
        let ret = self.ts.set_policy(3, too_many, a_msrs);
        let case = refusal!("error/too-many-leaves", "e2big");
        self.check_refused(3, case, (ret, E2BIG), Some([NONE, NONE, NONE]));
        let too_many = (a_msrs.0, MAX_SERIALISED_MSRS as u32 + 1);
        let ret = self.ts.set_policy(3, a_leaves, too_many);
        let case = refusal!("error/too-many-msrs", "e2big");
        self.check_refused(3, case, (ret, E2BIG), None);

        // A good leaf that changes the policy, then a bad one (leaf 1 has no subleaves):
        // -ERANGE naming the bad one, and the good one not applied either.
        let bad_subleaf = XenCpuidLeaf {
            leaf: 1,
            subleaf: 5,
            ..Default::default()
        };
        let mut leaves = [self.read_back_leaf1_without_edx(), bad_subleaf];
        let ret = self
            .ts
            .set_policy(3, (leaves.as_mut_ptr() as u64, 2), (a_msrs.0, 0));
        let case = refusal!("error/bad-leaf", "erange");
        self.check_refused(3, case, (ret, ERANGE), Some([1, 5, NONE]));

        // MSRs: non-zero flags -EINVAL, a PLATFORM_INFO (MSR CEh) value over 32 bits
        // -EOVERFLOW (Xen's policy keeps 32 bits of it), an MSR no policy holds -ERANGE; each
        // names the MSR.
        let platform_info = u64::from(PLATFORM_INFO);
        let flags = XenMsrEntry {
            idx: PLATFORM_INFO,
            flags: 1,
            val: 0,
        };
        let ret = self.set_one_msr(flags);
        let case = refusal!("error/msr-flags", "einval");
        self.check_refused(3, case, (ret, EINVAL), Some([NONE, NONE, platform_info]));
        let over_32_bits = XenMsrEntry {
            idx: PLATFORM_INFO,
            flags: 0,
            val: 1 << 32,
        };
        let ret = self.set_one_msr(over_32_bits);
        let case = refusal!("error/platform-info-overflow", "eoverflow");
        self.check_refused(3, case, (ret, EOVERFLOW), Some([NONE, NONE, platform_info]));
        let unknown = XenMsrEntry {
            idx: 0x1234,
            flags: 0,
            val: 0,
        };
        let ret = self.set_one_msr(unknown);
        let case = refusal!("error/unknown-msr", "erange");
        self.check_refused(3, case, (ret, ERANGE), Some([NONE, NONE, 0x1234]));

        // A feature the PV max policy lacks: -EINVAL naming leaf 1 (only the leaf is checked).
        let mut leaf1 = self.read_back_leaf1_without_edx();
        leaf1.c |= HVM_ONLY_1C;
        let ret = self
            .ts
            .set_policy(3, (&raw mut leaf1 as u64, 1), (a_msrs.0, 0));
        check_ret(c"error/incompatible-policy-einval", ret, err(EINVAL));
        check_eq(
            c"error/incompatible-policy-err-leaf",
            u64::from(self.ts.err_fields()[0]),
            1,
        );
        self.check_unchanged(c"error/incompatible-policy-unchanged", 3);
    }

    /// Buffers that fault: unmapped, a kernel address, an array running off the data page, a
    /// read-back into read-only code, the domctl and sysctl themselves at bad addresses.
    fn bad_addresses(&mut self) {
        let nr_leaves = self.built.nr_leaves;
        let a_msrs = (self.built.msrs_address(), self.built.nr_msrs);
        let ret = self.ts.set_policy(3, (UNMAPPED, nr_leaves), a_msrs);
        let case = refusal!("error/leaves-unmapped", "efault");
        self.check_refused(3, case, (ret, EFAULT), None);
        let ret = self.ts.set_policy(3, (KERNEL_ADDRESS, nr_leaves), a_msrs);
        let case = refusal!("error/leaves-at-kernel-address", "efault");
        self.check_refused(3, case, (ret, EFAULT), None);

        // The last entry of the data page: a second one would be in the unmapped page after.
        let size = core::mem::size_of::<XenCpuidLeaf>() as u64;
        let last = self.data + DATA_PAGE_SIZE - size;
        // SAFETY: `last` is within this domain's data page (mapped writable, a page long,
        // used by nothing else of this program) and aligned for a `XenCpuidLeaf`.
        unsafe {
            core::ptr::write(
                last as *mut XenCpuidLeaf,
                self.read_back_leaf1_without_edx(),
            )
        };
        let ret = self.ts.set_policy(3, (last, 2), (a_msrs.0, 0));
        let case = refusal!("error/leaves-crossing-into-unmapped", "efault");
        self.check_refused(3, case, (ret, EFAULT), None);

        let a_leaves = (self.built.leaves_address(), nr_leaves);
        let ret = self.ts.set_policy(3, a_leaves, (KERNEL_ADDRESS, 1));
        let case = refusal!("error/msrs-at-kernel-address", "efault");
        self.check_refused(3, case, (ret, EFAULT), None);
        let code = xl_toolstack as *const () as u64;
        let ret = self.ts.get_policy(3, code, self.reread.msrs_address());
        check_ret(
            c"error/read-back-into-read-only-code-efault",
            ret,
            err(EFAULT),
        );
        let ret = call(HC_DOMCTL, [KERNEL_ADDRESS, 0, 0, 0, 0]);
        check_ret(c"error/domctl-at-kernel-address-efault", ret, err(EFAULT));
        let ret = call(HC_SYSCTL, [UNMAPPED, 0, 0, 0, 0]);
        check_ret(c"error/sysctl-unmapped-efault", ret, err(EFAULT));
    }

    /// Interface versions, unknown commands, a running domain, dom0 itself, a domain that
    /// does not exist; and after all of it domU3 still has its policy.
    fn bad_commands_and_domains(&mut self) {
        let ts = &mut self.ts;
        ts.prepare_domctl(DOMCTL_GET_CPU_POLICY, 3, &XenDomctlCpuPolicy::default());
        ts.domctl.interface_version -= 1;
        let ret = ts.domctl_as_is();
        check_ret(c"error/domctl-bad-version-eacces", ret, err(EACCES));
        ts.prepare_sysctl(
            SYSCTL_GET_CPU_LEVELLING_CAPS,
            &XenSysctlCpuLevellingCaps::default(),
        );
        ts.sysctl.interface_version += 1;
        let ret = ts.sysctl_as_is();
        check_ret(c"error/sysctl-bad-version-eacces", ret, err(EACCES));
        let ret = ts.domctl(UNKNOWN_COMMAND, 3, &XenDomctlCpuPolicy::default());
        check_ret(c"error/domctl-unknown-command-enosys", ret, err(ENOSYS));
        let ret = ts.sysctl(UNKNOWN_COMMAND, &XenSysctlCpuLevellingCaps::default());
        check_ret(c"error/sysctl-unknown-command-enosys", ret, err(ENOSYS));

        let ret = self.ts.set_policy_from(2, &mut self.built);
        let case = refusal!("error/set-running-domain", "eexist");
        self.check_refused(2, case, (ret, EEXIST), None);
        let ret = self.ts.set_policy_from(0, &mut self.built);
        check_ret(c"error/set-itself-einval", ret, err(EINVAL));
        let ret = self.ts.set_policy_from(42, &mut self.built);
        check_ret(c"error/set-no-such-domain-esrch", ret, err(ESRCH));
        let ret = self.ts.get_policy_into(42, &mut self.reread);
        check_ret(c"error/get-no-such-domain-esrch", ret, err(ESRCH));
        self.check_unchanged(c"error/after-all-errors-domU3-unchanged", 3);
    }

    /// set_cpu_policy(domU3) with no leaves and the one MSR `msr`.
    fn set_one_msr(&mut self, msr: XenMsrEntry) -> i64 {
        let mut msrs = [msr];
        let leaves = (self.built.leaves_address(), 0);
        self.ts.set_policy(3, leaves, (msrs.as_mut_ptr() as u64, 1))
    }

    /// B's leaf 1 with EDX cleared: a change nobody could miss.
    fn read_back_leaf1_without_edx(&self) -> XenCpuidLeaf {
        let Some(&leaf1) = self.read_back.find(1, NO_SUBLEAF) else {
            exit(ABORT)
        };
        XenCpuidLeaf { d: 0, ..leaf1 }
    }

    /// Reads `domain`'s policy into C and checks it is B: `name` reports 0 when it is, the
    /// read-back's error when that failed, and 1 when the policies differ.
    fn check_unchanged(&mut self, name: &CStr, domain: u16) {
        let ret = self.ts.get_policy_into(domain, &mut self.reread);
        let got = match ret {
            0 => u64::from(!self.reread.same_as(&self.read_back)),
            error => error as u64,
        };
        check_eq(name, got, 0);
    }

    /// Checks a refused set_cpu_policy on `domain`: it returned `-errno`, its error fields
    /// (leaf, subleaf, MSR) read `err_fields` where given, and `domain`'s policy is still B.
    fn check_refused(
        &mut self,
        domain: u16,
        case: Refusal,
        (ret, errno): (i64, i32),
        err_fields: Option<[u64; 3]>,
    ) {
        check_ret(case.returns, ret, err(errno));
        if let Some(expected) = err_fields {
            let got = self.ts.err_fields();
            for ((name, got), expected) in case.err_fields.into_iter().zip(got).zip(expected) {
                check_eq(name, u64::from(got), expected);
            }
        }
        self.check_unchanged(case.unchanged, domain);
    }
}
