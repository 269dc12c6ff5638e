//! Writes seed corpora derived from the real hosts: serialised real policies
//! (`policy_arrays`) and featureset strings in every text form (`featureset_text`).
//! Usage: `cargo +nightly run --release --bin make_seeds -- <seeds dir>`. The trimmed dumps
//! for `dump` come from `trim_dumps.py`.

use std::fs;
use std::path::Path;

use xen_levelling::abi::{Wire, XenCpuidLeaf, XenMsrEntry};
use xen_levelling::policy::serialise::{MAX_SERIALISED_LEAVES, MAX_SERIALISED_MSRS};

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "seeds".into());
    let dir = Path::new(&dir);
    let pa = dir.join("policy_arrays");
    let ft = dir.join("featureset_text");
    fs::create_dir_all(&pa).unwrap();
    fs::create_dir_all(&ft).unwrap();
    for (i, p) in xen_levelling_fuzz::real_policies().iter().enumerate() {
        let mut leaves = [XenCpuidLeaf::default(); MAX_SERIALISED_LEAVES];
        let n = p.write_leaves(&mut leaves).unwrap();
        let mut msrs = [XenMsrEntry::default(); MAX_SERIALISED_MSRS];
        let m = p.write_msrs(&mut msrs).unwrap();
        // Layout of the policy_arrays target: selector, MSR count, 6 context bytes, MSRs, leaves.
        let mut bytes = vec![0u8, m as u8, 0x07, 0x01, 0xe7, 0x02, 0x00, 0x00];
        for e in &msrs[..m] {
            let mut b = [0u8; 16];
            e.encode(&mut b);
            bytes.extend_from_slice(&b);
        }
        for l in &leaves[..n] {
            let mut b = [0u8; 24];
            l.encode(&mut b);
            bytes.extend_from_slice(&b);
        }
        fs::write(pa.join(format!("real-{i:03}")), &bytes).unwrap();
        // The same leaves merged into a real base (selector bit 7), only the first few.
        let mut small = bytes[..8 + 16 * m].to_vec();
        small[0] = 0x80 | (i as u8 & 0x7f);
        small.extend_from_slice(&bytes[8 + 16 * m..8 + 16 * m + 24 * n.min(4)]);
        fs::write(pa.join(format!("merge-{i:03}")), &small).unwrap();

        let fs_ = p.featureset();
        fs::write(ft.join(format!("xapi-{i:03}")), fs_.xapi().to_string()).unwrap();
        if i % 4 == 0 {
            fs::write(
                ft.join(format!("words-{i:03}")),
                fs_.xen_words().to_string(),
            )
            .unwrap();
            fs::write(ft.join(format!("names-{i:03}")), fs_.names().to_string()).unwrap();
            let opt: Vec<String> = fs_.iter().take(6).map(|f| format!("no-{f}")).collect();
            fs::write(ft.join(format!("cpuid-{i:03}")), opt.join(",")).unwrap();
        }
    }
    // A few hand-written XAPI strings (Dundee-era host.cpu_info features), short and odd forms.
    for (name, s) in [
        (
            "xapi-dundee",
            "17cbfbff-f7fa3223-2d93fbff-00000023-00000001-000007ab-00000000-00000000-00001000",
        ),
        ("xapi-short", "178bfbff-f6f83203"),
        ("xapi-empty", ""),
        ("words-mixed", "178bfbff:f6f83203-2c100800:0"),
        ("names-word-bit", "fpu,sse2 avx2,5:22,18:31"),
        ("cpuid-opt", "no-avx512f,no-rdrand, no-tsx"),
    ] {
        fs::write(ft.join(name), s).unwrap();
    }
    println!("seeds written to {}", dir.display());
}
