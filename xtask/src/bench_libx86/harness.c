/* The C side of `cargo xtask bench-libx86`: thin wrappers over Xen's libx86 (compiled from
 * ../shared/xen-libx86 at bench time, never part of this repository), linked into one Rust
 * process with the crate. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xen-tools/common-macros.h>
#include <xen/asm/x86-vendors.h>
#include <xen/lib/x86/cpu-policy.h>
#include <xen/domctl.h>

size_t xl_policy_size(void) { return sizeof(struct cpu_policy); }

void *xl_policy_new(void) { return calloc(1, sizeof(struct cpu_policy)); }

/* Into an existing policy, as Xen's set_cpu_policy path merges a toolstack's arrays. */
int xl_from_buffer(void *p, const xen_cpuid_leaf_t *leaves, uint32_t nr,
                   const xen_msr_entry_t *msrs, uint32_t nr_msrs)
{
    uint32_t err_leaf, err_subleaf, err_msr;
    int rc = x86_cpuid_copy_from_buffer(p, leaves, nr, &err_leaf, &err_subleaf);
    if ( rc )
        return rc;
    return x86_msr_copy_from_buffer(p, msrs, nr_msrs, &err_msr);
}

/* Fresh: a zeroed policy, then the arrays (the crate's `CpuPolicy::from_arrays`). */
int xl_from_buffer_fresh(void *p, const xen_cpuid_leaf_t *leaves, uint32_t nr,
                         const xen_msr_entry_t *msrs, uint32_t nr_msrs)
{
    memset(p, 0, sizeof(struct cpu_policy));
    return xl_from_buffer(p, leaves, nr, msrs, nr_msrs);
}

int xl_to_buffer(const void *p, xen_cpuid_leaf_t *leaves, uint32_t *nr)
{
    return x86_cpuid_copy_to_buffer(p, leaves, nr);
}

int xl_compatible(const void *host, const void *guest)
{
    struct cpu_policy_errors err = INIT_CPU_POLICY_ERRORS;
    return x86_cpu_policies_are_compatible(host, guest, &err);
}
