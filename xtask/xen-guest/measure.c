/*
 * measure: runs in a Linux PV dom0's user space under real Xen, booted by `cargo xtask
 * xen-boot` under QEMU TCG with `-icount shift=0` (RDTSC counts guest instructions exactly).
 *
 * For each leaf it times one CPUID through Xen's forced-emulation prefix
 * (`ud2; .ascii "xen"; cpuid`, bytes 0f 0b 78 65 6e 0f a2: #UD into Xen, which emulates the
 * CPUID against dom0's policy) between two RDTSCs, 4001 times, and prints the median minus the
 * median of the same RDTSC pair around nothing. It does the same for a plain CPUID, which a
 * PV dom0 executes natively unless Xen enables CPUID faulting for it (Xen 4.17 does not for
 * dom0 by default: then the figure is a few instructions, no trap).
 *
 * Output, one line each, for the xtask's parser (src/xen/serial.rs):
 *   xenbench empty <n>
 *   xenbench forced <leaf-hex>.<subleaf-hex> <instructions> <eax> <ebx> <ecx> <edx>
 *   xenbench plain <leaf-hex>.<subleaf-hex> <instructions> <eax> <ebx> <ecx> <edx>
 *   xenbench done
 *
 * Our own code (MIT OR Apache-2.0), built with the host's `gcc -static -O2` at bench time.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define SAMPLES 4001

struct regs { uint32_t a, b, c, d; };

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

static uint64_t samples[SAMPLES];

static uint64_t median(void)
{
    qsort(samples, SAMPLES, sizeof(samples[0]), cmp_u64);
    return samples[SAMPLES / 2];
}

/* RDTSC; (the operation); RDTSC, with nothing else between the two: the first RDTSC's result
 * is moved out of the way after the operation's inputs are set, so the difference is the
 * operation plus the two moves (subtracted with the empty pair). */
static uint64_t time_empty(void)
{
    uint32_t lo0, hi0, lo1, hi1;
    __asm__ volatile("rdtsc\n\tmov %%eax, %0\n\tmov %%edx, %1\n\trdtsc"
                     : "=r"(lo0), "=r"(hi0), "=a"(lo1), "=d"(hi1)
                     :
                     : "memory");
    return (((uint64_t)hi1 << 32) | lo1) - (((uint64_t)hi0 << 32) | lo0);
}

static uint64_t time_forced(uint32_t leaf, uint32_t subleaf, struct regs *r)
{
    uint32_t lo0, hi0, lo1, hi1, a, b, c, d;
    __asm__ volatile("mov %[leaf], %%r8d\n\t"
                     "mov %[sub], %%r9d\n\t"
                     "rdtsc\n\t"
                     "mov %%eax, %%r10d\n\t"
                     "mov %%edx, %%r11d\n\t"
                     "mov %%r8d, %%eax\n\t"
                     "mov %%r9d, %%ecx\n\t"
                     "ud2\n\t.ascii \"xen\"\n\tcpuid\n\t"
                     "mov %%eax, %%r8d\n\t"
                     "mov %%edx, %%r9d\n\t"
                     "rdtsc\n\t"
                     "mov %%r10d, %[lo0]\n\t"
                     "mov %%r11d, %[hi0]\n\t"
                     "mov %%eax, %[lo1]\n\t"
                     "mov %%edx, %[hi1]\n\t"
                     "mov %%r8d, %[a]\n\t"
                     "mov %%r9d, %[d]\n\t"
                     : [lo0] "=&m"(lo0), [hi0] "=&m"(hi0), [lo1] "=&m"(lo1), [hi1] "=&m"(hi1),
                       [a] "=&m"(a), "=&b"(b), "=&c"(c), [d] "=&m"(d)
                     : [leaf] "r"(leaf), [sub] "r"(subleaf)
                     : "rax", "rdx", "r8", "r9", "r10", "r11", "memory");
    r->a = a; r->b = b; r->c = c; r->d = d;
    return (((uint64_t)hi1 << 32) | lo1) - (((uint64_t)hi0 << 32) | lo0);
}

static uint64_t time_plain(uint32_t leaf, uint32_t subleaf, struct regs *r)
{
    uint32_t lo0, hi0, lo1, hi1, a, b, c, d;
    __asm__ volatile("mov %[leaf], %%r8d\n\t"
                     "mov %[sub], %%r9d\n\t"
                     "rdtsc\n\t"
                     "mov %%eax, %%r10d\n\t"
                     "mov %%edx, %%r11d\n\t"
                     "mov %%r8d, %%eax\n\t"
                     "mov %%r9d, %%ecx\n\t"
                     "cpuid\n\t"
                     "mov %%eax, %%r8d\n\t"
                     "mov %%edx, %%r9d\n\t"
                     "rdtsc\n\t"
                     "mov %%r10d, %[lo0]\n\t"
                     "mov %%r11d, %[hi0]\n\t"
                     "mov %%eax, %[lo1]\n\t"
                     "mov %%edx, %[hi1]\n\t"
                     "mov %%r8d, %[a]\n\t"
                     "mov %%r9d, %[d]\n\t"
                     : [lo0] "=&m"(lo0), [hi0] "=&m"(hi0), [lo1] "=&m"(lo1), [hi1] "=&m"(hi1),
                       [a] "=&m"(a), "=&b"(b), "=&c"(c), [d] "=&m"(d)
                     : [leaf] "r"(leaf), [sub] "r"(subleaf)
                     : "rax", "rdx", "r8", "r9", "r10", "r11", "memory");
    r->a = a; r->b = b; r->c = c; r->d = d;
    return (((uint64_t)hi1 << 32) | lo1) - (((uint64_t)hi0 << 32) | lo0);
}

/* The same instructions as time_forced/time_plain without the CPUID: what to subtract. */
static uint64_t time_frame(uint32_t leaf, uint32_t subleaf)
{
    uint32_t lo0, hi0, lo1, hi1, a, b = 0, c = 0, d;
    __asm__ volatile("mov %[leaf], %%r8d\n\t"
                     "mov %[sub], %%r9d\n\t"
                     "rdtsc\n\t"
                     "mov %%eax, %%r10d\n\t"
                     "mov %%edx, %%r11d\n\t"
                     "mov %%r8d, %%eax\n\t"
                     "mov %%r9d, %%ecx\n\t"
                     "mov %%eax, %%r8d\n\t"
                     "mov %%edx, %%r9d\n\t"
                     "rdtsc\n\t"
                     "mov %%r10d, %[lo0]\n\t"
                     "mov %%r11d, %[hi0]\n\t"
                     "mov %%eax, %[lo1]\n\t"
                     "mov %%edx, %[hi1]\n\t"
                     "mov %%r8d, %[a]\n\t"
                     "mov %%r9d, %[d]\n\t"
                     : [lo0] "=&m"(lo0), [hi0] "=&m"(hi0), [lo1] "=&m"(lo1), [hi1] "=&m"(hi1),
                       [a] "=&m"(a), "+&b"(b), "+&c"(c), [d] "=&m"(d)
                     : [leaf] "r"(leaf), [sub] "r"(subleaf)
                     : "rax", "rdx", "r8", "r9", "r10", "r11", "memory");
    (void)a; (void)d;
    return (((uint64_t)hi1 << 32) | lo1) - (((uint64_t)hi0 << 32) | lo0);
}

static const uint32_t leaves[][2] = {
    {0x0, 0}, {0x1, 0}, {0x7, 0}, {0xd, 0}, {0xd, 1}, {0x80000001, 0}, {0x3fffffff, 0},
};

int main(void)
{
    struct regs r;
    int i;
    unsigned l;
    uint64_t frame;

    setvbuf(stdout, NULL, _IOLBF, 0);
    for (i = 0; i < SAMPLES; i++)
        samples[i] = time_empty();
    printf("xenbench empty %llu\n", (unsigned long long)median());
    for (i = 0; i < SAMPLES; i++)
        samples[i] = time_frame(0, 0);
    frame = median();
    printf("xenbench frame %llu\n", (unsigned long long)frame);
    for (l = 0; l < sizeof(leaves) / sizeof(leaves[0]); l++) {
        for (i = 0; i < SAMPLES; i++)
            samples[i] = time_forced(leaves[l][0], leaves[l][1], &r);
        printf("xenbench forced %x.%x %llu %08x %08x %08x %08x\n", leaves[l][0], leaves[l][1],
               (unsigned long long)(median() - frame), r.a, r.b, r.c, r.d);
    }
    for (l = 0; l < sizeof(leaves) / sizeof(leaves[0]); l++) {
        for (i = 0; i < SAMPLES; i++)
            samples[i] = time_plain(leaves[l][0], leaves[l][1], &r);
        printf("xenbench plain %x.%x %llu %08x %08x %08x %08x\n", leaves[l][0], leaves[l][1],
               (unsigned long long)(median() - frame), r.a, r.b, r.c, r.d);
    }
    printf("xenbench done\n");
    fflush(stdout);
    return 0;
}
