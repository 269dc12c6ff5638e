/*
 * Replays Xen's AFL harness of libx86 (tools/fuzz/cpu-policy/afl-policy-fuzzer.c: clean the
 * unusable leaves, clear out-of-range leaves, recompute the vendor, serialise, deserialise into
 * an empty policy, compare) over files each holding one `struct cpu_policy`, and prints every
 * result as text: every return code, error field, buffer and policy byte. Built twice, against
 * Xen's libx86 and against xen-levelling's C ABI, by `cargo xtask xen-conformance`, which
 * compares the two outputs line by line. Beyond the harness it also exercises the featureset
 * conversions, the vendor lookup, the deep-dependency table, a short serialisation buffer and
 * deserialisation of the file's bytes taken as leaf and MSR arrays.
 *
 * Our own code (MIT OR Apache-2.0), compiled against Xen's header: the layout checks below
 * hold the C ABI's compile-time offsets to the header itself.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xen-tools/common-macros.h>
#include <xen/lib/x86/cpu-policy.h>
#include <xen/domctl.h>

_Static_assert(sizeof(struct cpu_policy) == 1976, "size");
_Static_assert(offsetof(struct cpu_policy, cache) == 224, "cache");
_Static_assert(offsetof(struct cpu_policy, feat) == 320, "feat");
_Static_assert(offsetof(struct cpu_policy, topo) == 368, "topo");
_Static_assert(offsetof(struct cpu_policy, xstate) == 400, "xstate");
_Static_assert(offsetof(struct cpu_policy, extd) == 1408, "extd");
_Static_assert(offsetof(struct cpu_policy, platform_info) == 1952, "platform_info");
_Static_assert(offsetof(struct cpu_policy, arch_caps) == 1960, "arch_caps");
_Static_assert(offsetof(struct cpu_policy, hv_limit) == 1968, "hv_limit");
_Static_assert(offsetof(struct cpu_policy, hv2_limit) == 1969, "hv2_limit");
_Static_assert(offsetof(struct cpu_policy, x86_vendor) == 1970, "x86_vendor");
_Static_assert(sizeof(struct cpu_policy_errors) == 12, "errors");

static void hex(const char *name, const char *what, const void *data, size_t len)
{
    const unsigned char *p = data;

    printf("%s: %s:", name, what);
    for ( size_t i = 0; i < len; ++i )
        printf("%s%02x", i % 16 ? "" : " ", p[i]);
    printf("\n");
}

static void deep_deps(void)
{
    for ( uint32_t f = 0; f < FEATURESET_NR_ENTRIES * 32; ++f )
    {
        const uint32_t *fs = x86_cpu_policy_lookup_deep_deps(f);
        char what[32];

        if ( !fs )
            continue;
        snprintf(what, sizeof(what), "deep deps of %u", f);
        hex("table", what, fs, FEATURESET_NR_ENTRIES * sizeof(*fs));
    }
}

static void replay(const char *name, const struct cpu_policy *input)
{
    struct cpu_policy cp = *input, new = {}, merged;
    xen_cpuid_leaf_t leaves[CPUID_MAX_SERIALISED_LEAVES] = {};
    xen_msr_entry_t msrs[MSR_MAX_SERIALISED_ENTRIES] = {};
    uint32_t nr_leaves = ARRAY_SIZE(leaves), nr_msrs = ARRAY_SIZE(msrs);
    uint32_t err_leaf, err_subleaf, err_msr, fs[FEATURESET_NR_ENTRIES];
    size_t data_end = offsetof(struct cpu_policy, x86_vendor) + sizeof(cp.x86_vendor);
    int rc;

    /* The harness: clean what CPUID cannot reach and the trailing padding, ... */
    memset(&cp.basic.raw[4], 0, sizeof(cp.basic.raw[4]));
    memset(&cp.basic.raw[7], 0, sizeof(cp.basic.raw[7]));
    memset(&cp.basic.raw[0xb], 0, sizeof(cp.basic.raw[0xb]));
    memset(&cp.basic.raw[0xd], 0, sizeof(cp.basic.raw[0xd]));
    memset((char *)&cp + data_end, 0, sizeof(cp) - data_end);

    /* ... fix up what is not expected to survive serialisation, ... */
    x86_cpu_policy_clear_out_of_range_leaves(&cp);
    x86_cpu_policy_recalc_synth(&cp);
    hex(name, "cleared", &cp, sizeof(cp));

    /* ... serialise, ... */
    rc = x86_cpuid_copy_to_buffer(&cp, leaves, &nr_leaves);
    printf("%s: cpuid to buffer: rc %d nr %u\n", name, rc, nr_leaves);
    hex(name, "leaves", leaves, nr_leaves * sizeof(*leaves));
    rc = x86_msr_copy_to_buffer(&cp, msrs, &nr_msrs);
    printf("%s: msr to buffer: rc %d nr %u\n", name, rc, nr_msrs);
    hex(name, "msrs", msrs, nr_msrs * sizeof(*msrs));

    /* ... deserialise into an empty policy and compare. */
    rc = x86_cpuid_copy_from_buffer(&new, leaves, nr_leaves, &err_leaf, &err_subleaf);
    printf("%s: cpuid from buffer: rc %d err %08x:%08x\n", name, rc, err_leaf, err_subleaf);
    rc = x86_msr_copy_from_buffer(&new, msrs, nr_msrs, &err_msr);
    printf("%s: msr from buffer: rc %d err %08x\n", name, rc, err_msr);
    hex(name, "deserialised", &new, sizeof(new));
    printf("%s: round trip identical: %s\n", name, memcmp(&cp, &new, sizeof(cp)) ? "no" : "yes");

    /* Beyond the harness: a buffer one entry short, ... */
    if ( nr_leaves > 0 )
    {
        uint32_t nr = nr_leaves - 1;

        memset(leaves, 0, sizeof(leaves));
        rc = x86_cpuid_copy_to_buffer(&cp, leaves, &nr);
        printf("%s: short cpuid buffer: rc %d nr %u\n", name, rc, nr);
        hex(name, "short leaves", leaves, sizeof(leaves));
    }

    /* ... the featureset both ways, and the vendor, ... */
    x86_cpu_policy_to_featureset(&cp, fs);
    hex(name, "featureset", fs, sizeof(fs));
    merged = cp;
    for ( size_t i = 0; i < ARRAY_SIZE(fs); ++i )
        fs[i] = ~fs[i];
    x86_cpu_featureset_to_policy(fs, &merged);
    hex(name, "inverted featureset", &merged, sizeof(merged));
    printf("%s: vendor %u %s\n", name,
           x86_cpuid_lookup_vendor(input->basic.vendor_ebx, input->basic.vendor_ecx,
                                   input->basic.vendor_edx),
           x86_cpuid_vendor_to_str(cp.x86_vendor));

    /*
     * ... and the file's own bytes as arrays merged into the cleared policy: 82 leaves, and
     * 2 MSRs. A rejected array is compared by its error alone (Xen has merged the entries
     * before the bad one; xen-levelling leaves the policy as it was, on purpose).
     */
    merged = cp;
    rc = x86_cpuid_copy_from_buffer(&merged, (const xen_cpuid_leaf_t *)input,
                                    sizeof(*input) / sizeof(xen_cpuid_leaf_t),
                                    &err_leaf, &err_subleaf);
    printf("%s: raw leaves: rc %d err %08x:%08x\n", name, rc, err_leaf, err_subleaf);
    if ( rc == 0 )
        hex(name, "raw leaves merged", &merged, sizeof(merged));
    merged = cp;
    rc = x86_msr_copy_from_buffer(&merged, (const xen_msr_entry_t *)input, 2, &err_msr);
    printf("%s: raw msrs: rc %d err %08x\n", name, rc, err_msr);
    if ( rc == 0 )
        hex(name, "raw msrs merged", &merged, sizeof(merged));
}

int main(int argc, char **argv)
{
    unsigned int replayed = 0;

    deep_deps();
    for ( int i = 1; i < argc; ++i )
    {
        struct cpu_policy *cp = calloc(1, sizeof(*cp));
        FILE *fp = fopen(argv[i], "rb");
        size_t got;

        if ( !cp || !fp )
        {
            perror(argv[i]);
            return 1;
        }
        got = fread(cp, 1, sizeof(*cp), fp);
        if ( got != sizeof(*cp) || fgetc(fp) != EOF )
        {
            fprintf(stderr, "%s: not exactly %zu bytes\n", argv[i], sizeof(*cp));
            return 1;
        }
        fclose(fp);
        replay(argv[i], cp);
        free(cp);
        replayed++;
    }
    printf("replayed %u policies\n", replayed);
    return 0;
}
