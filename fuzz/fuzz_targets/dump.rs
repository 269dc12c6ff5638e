//! AIDA64/EVEREST dump parsing, then everything a dump feeds: the raw policy, the silicon
//! model, levelling probing and bring-up, the system policies.
//!
//! Oracles: no panic; the error's line is within the text; on success every recorded entry
//! answers its own lookup, and booting a host on the dump's silicon model does not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

use xen_levelling::cpuid::CpuidSource;
use xen_levelling::dump::Aida64Dump;
use xen_levelling::policy::CpuPolicy;
use xen_levelling::silicon::SiliconModel;
use xen_levelling_fuzz::{BootOptions, boot_model, dumped_msrs};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    let lines = text.split('\n').count().max(1);
    let dump = match Aida64Dump::parse(text) {
        Ok(d) => d,
        Err(e) => {
            let _ = e.to_string();
            assert!(
                e.line() >= 1 && e.line() <= lines,
                "error line {} outside 1..={lines}: {e}",
                e.line()
            );
            return;
        }
    };
    let _ = format!("{dump:?}");
    let _ = (
        dump.format(),
        dump.first_block_line(),
        dump.msr_section_line(),
    );
    for e in dump.entries() {
        assert!(e.line >= 1 && e.line <= lines);
        assert!(dump.seen(e.leaf, e.subleaf), "entry {e:?} not seen");
    }
    for (index, reading) in dump.msrs().take(64) {
        let _ = (index, reading.value(), dump.msr(index));
    }
    let _ = dump.cpuid(0, 0);

    let msrs = dumped_msrs(&dump);
    let raw = CpuPolicy::from_source(&dump, msrs);
    let _ = raw.featureset();
    let model = SiliconModel::new(&dump, msrs);
    let options = BootOptions {
        emulator_quirk: data.len() % 2 == 1,
        hap: data.len() % 3 != 0,
        level_dom0: false,
    };
    let _ = boot_model(model, "fuzz", options);
});
