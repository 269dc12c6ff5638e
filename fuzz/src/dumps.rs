//! The real CPUID dumps of `../../shared/cpuid-dumps`, compiled in so that the fuzzers need
//! no files at run time.

/// (file name, text) of every dump.
pub const DUMPS: [(&str, &str); 22] = [
    ("AuthenticAMD0100F21_K10_Barcelona_CPUID.txt", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/cpuid-dumps/AuthenticAMD0100F21_K10_Barcelona_CPUID.txt"))),
    ("AuthenticAMD0100F80_K10_Istanbul_CPUID.txt", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/cpuid-dumps/AuthenticAMD0100F80_K10_Istanbul_CPUID.txt"))),
    ("AuthenticAMD0600F12_K15_Interlagos_CPUID3.txt", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/cpuid-dumps/AuthenticAMD0600F12_K15_Interlagos_CPUID3.txt"))),
    ("AuthenticAMD0830F10_K17_CastlePeak_CPUID.txt", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/cpuid-dumps/AuthenticAMD0830F10_K17_CastlePeak_CPUID.txt"))),
    ("AuthenticAMD0A10F11_K19_Genoa_02_CPUID.txt", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/cpuid-dumps/AuthenticAMD0A10F11_K19_Genoa_02_CPUID.txt"))),
    ("GenuineIntel0010676_Penryn_CPUID.txt", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/cpuid-dumps/GenuineIntel0010676_Penryn_CPUID.txt"))),
    ("GenuineIntel00106A2_Nehalem-EP_CPUID.txt", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/cpuid-dumps/GenuineIntel00106A2_Nehalem-EP_CPUID.txt"))),
    ("GenuineIntel00206A7_SandyBridge2_CPUID.txt", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/cpuid-dumps/GenuineIntel00206A7_SandyBridge2_CPUID.txt"))),
    ("GenuineIntel00206D7_SandyBridgeE_00_CPUID.txt", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/cpuid-dumps/GenuineIntel00206D7_SandyBridgeE_00_CPUID.txt"))),
    ("GenuineIntel00306A9_IvyBridge_CPUID.txt", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/cpuid-dumps/GenuineIntel00306A9_IvyBridge_CPUID.txt"))),
    ("GenuineIntel00306C3_HaswellXeon_CPUID.txt", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/cpuid-dumps/GenuineIntel00306C3_HaswellXeon_CPUID.txt"))),
    ("GenuineIntel00306C3_Haswell_CPUID.txt", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/cpuid-dumps/GenuineIntel00306C3_Haswell_CPUID.txt"))),
    ("GenuineIntel00306D4_Broadwell2_CPUID.txt", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/cpuid-dumps/GenuineIntel00306D4_Broadwell2_CPUID.txt"))),
    ("GenuineIntel00306F2_HaswellEP_01_CPUID.txt", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/cpuid-dumps/GenuineIntel00306F2_HaswellEP_01_CPUID.txt"))),
    ("GenuineIntel0040671_BroadwellH_CPUID.txt", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/cpuid-dumps/GenuineIntel0040671_BroadwellH_CPUID.txt"))),
    ("GenuineIntel0050654_SkylakeXeon_20_CPUID.txt", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/cpuid-dumps/GenuineIntel0050654_SkylakeXeon_20_CPUID.txt"))),
    ("GenuineIntel0050654_SkylakeXeon_CPUID.txt", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/cpuid-dumps/GenuineIntel0050654_SkylakeXeon_CPUID.txt"))),
    ("GenuineIntel00606A6_ICX_04_CPUID.txt", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/cpuid-dumps/GenuineIntel00606A6_ICX_04_CPUID.txt"))),
    ("GenuineIntel00806F8_SapphireRapids_05_CPUID.txt", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/cpuid-dumps/GenuineIntel00806F8_SapphireRapids_05_CPUID.txt"))),
    ("GenuineIntel0090672_AlderLake_03_CPUID.txt", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/cpuid-dumps/GenuineIntel0090672_AlderLake_03_CPUID.txt"))),
    ("GenuineIntel00B0671_RaptorLake_04_CPUID.txt", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/cpuid-dumps/GenuineIntel00B0671_RaptorLake_04_CPUID.txt"))),
    ("HygonGenuine0900F02_Hygon_CPUID.txt", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/cpuid-dumps/HygonGenuine0900F02_Hygon_CPUID.txt"))),
];
