/*
 * cpuid_mask.so: run a program as if on a smaller x86-64 CPU kind, by clearing CPUID feature bits.
 *
 * Every library picks its kernels from CPUID: ONNX Runtime's MLAS (int8 with or without VNNI),
 * OpenVINO and oneDNN, PyTorch's cpuinfo. Environment caps reach only some of them
 * (ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY); ONNX Runtime has none. With LD_PRELOAD of this file,
 * the process turns on Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID, where the CPU offers
 * `cpuid_fault`), so that each CPUID instruction traps; the SIGSEGV handler runs the real CPUID,
 * clears the bits of the kind named by CPUID_MASK and returns the result. The kernels then run
 * natively: an AVX2-only CPU's code paths and numerics (U8S8 int8 without VNNI) on this core.
 *
 *   CPUID_MASK=avx2         no AVX512, no VNNI (AVX512 or AVX), no bf16, no AMX
 *   CPUID_MASK=avx512_core  AVX512F/BW/DQ/VL kept; no VNNI, no bf16, no AMX (Skylake-SP)
 *   CPUID_MASK_REQUIRED=1   exit with status 3 where CPUID faulting is unavailable
 *
 * Threads inherit the setting; execve resets it and LD_PRELOAD sets it again in the new program.
 * A program that installs its own SIGSEGV handler (Python's faulthandler) is chained behind ours.
 * The dynamic loader's own CPUID reads (glibc's memcpy selection) happen before this constructor.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

/* Bits cleared, per CPUID leaf 7 register (Intel SDM vol. 2A, CPUID, table 3-8). */
struct leaf7_mask {
    uint32_t ebx0, ecx0, edx0; /* sub-leaf 0 */
    uint32_t eax1, edx1;       /* sub-leaf 1 */
};

#define BIT(n) (1u << (n))
/* VNNI (AVX512_VNNI, AVX-VNNI, AVX-VNNI-INT8/INT16), bf16 (AVX512_BF16, AVX-NE-CONVERT), AMX,
 * AVX512_FP16 and AVX10: everything above AVX512F/BW/DQ/VL (bit numbers per the SDM). */
#define ECX0_ABOVE_CORE (BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14))
#define EDX0_ABOVE_CORE (BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25))
#define EAX1_ABOVE_CORE (BIT(4) | BIT(5) | BIT(21) | BIT(23))
#define EDX1_ABOVE_CORE (BIT(4) | BIT(5) | BIT(10) | BIT(19))
/* AVX512F, DQ, IFMA, PF, ER, CD, BW, VL */
#define EBX0_AVX512 (BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31))

static const struct {
    const char *name;
    struct leaf7_mask mask;
} kinds[] = {
    {"avx2", {EBX0_AVX512, ECX0_ABOVE_CORE, EDX0_ABOVE_CORE, EAX1_ABOVE_CORE, EDX1_ABOVE_CORE}},
    {"avx512_core", {0, ECX0_ABOVE_CORE, EDX0_ABOVE_CORE, EAX1_ABOVE_CORE, EDX1_ABOVE_CORE}},
};

static struct leaf7_mask active;
static int masking; /* set once CPUID faulting is on */
static struct sigaction chained; /* the program's own SIGSEGV handler, if it installs one */
static int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);

static long set_cpuid_enabled(int enabled) {
    return syscall(SYS_arch_prctl, ARCH_SET_CPUID, enabled);
}

static void on_sigsegv(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    greg_t *reg = uc->uc_mcontext.gregs;
    /* A CPUID fault is a general-protection fault (SI_KERNEL) at a 0F A2 instruction. */
    const unsigned char *ip = (const unsigned char *)reg[REG_RIP];
    if (info->si_code == SI_KERNEL && ip[0] == 0x0f && ip[1] == 0xa2) {
        uint32_t leaf = (uint32_t)reg[REG_RAX], sub = (uint32_t)reg[REG_RCX];
        uint32_t a, b, c, d;
        set_cpuid_enabled(1);
        __cpuid_count(leaf, sub, a, b, c, d);
        set_cpuid_enabled(0);
        if (leaf == 7 && sub == 0) {
            b &= ~active.ebx0;
            c &= ~active.ecx0;
            d &= ~active.edx0;
        } else if (leaf == 7 && sub == 1) {
            a &= ~active.eax1;
            d &= ~active.edx1;
        }
        reg[REG_RAX] = a;
        reg[REG_RBX] = b;
        reg[REG_RCX] = c;
        reg[REG_RDX] = d;
        reg[REG_RIP] += 2;
        return;
    }
    if (chained.sa_flags & SA_SIGINFO && chained.sa_sigaction) {
        chained.sa_sigaction(sig, info, context);
    } else if (chained.sa_handler != SIG_DFL && chained.sa_handler != SIG_IGN && chained.sa_handler) {
        chained.sa_handler(sig);
    } else {
        /* default action: returning re-runs the faulting instruction, which now kills */
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        real_sigaction(SIGSEGV, &dfl, NULL);
    }
}

/* Keep our handler first when the program installs its own SIGSEGV handler; chain to it. */
int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    if (!real_sigaction) real_sigaction = dlsym(RTLD_NEXT, "sigaction");
    if (sig != SIGSEGV || !masking) return real_sigaction(sig, act, old);
    if (old) *old = chained;
    if (act) chained = *act;
    return 0;
}

int __sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    return sigaction(sig, act, old);
}

/* glibc's signal() and its variants install handlers without calling sigaction() */
static sighandler_t set_handler(int sig, sighandler_t handler, const char *name) {
    if (sig != SIGSEGV || !masking) {
        sighandler_t (*real)(int, sighandler_t) = dlsym(RTLD_NEXT, name);
        return real(sig, handler);
    }
    struct sigaction act = {.sa_handler = handler}, old;
    sigaction(sig, &act, &old);
    return old.sa_handler;
}

sighandler_t signal(int sig, sighandler_t handler) { return set_handler(sig, handler, "signal"); }
sighandler_t bsd_signal(int sig, sighandler_t handler) {
    return set_handler(sig, handler, "bsd_signal");
}
sighandler_t sysv_signal(int sig, sighandler_t handler) {
    return set_handler(sig, handler, "sysv_signal");
}
sighandler_t __sysv_signal(int sig, sighandler_t handler) {
    return set_handler(sig, handler, "__sysv_signal");
}
sighandler_t sigset(int sig, sighandler_t handler) { return set_handler(sig, handler, "sigset"); }

__attribute__((constructor)) static void cpuid_mask_init(void) {
    real_sigaction = dlsym(RTLD_NEXT, "sigaction");
    const char *kind = getenv("CPUID_MASK");
    if (!kind || !*kind) return;
    const struct leaf7_mask *mask = NULL;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; ++i)
        if (!strcmp(kind, kinds[i].name)) mask = &kinds[i].mask;
    if (!mask) {
        fprintf(stderr, "cpuid_mask: CPUID_MASK=%s is not a kind (avx2, avx512_core)\n", kind);
        exit(2);
    }
    /* no SA_ONSTACK: a CPUID fault has a healthy stack, and a library may leave a freed
     * alternate signal stack registered */
    struct sigaction handler = {.sa_sigaction = on_sigsegv, .sa_flags = SA_SIGINFO};
    sigemptyset(&handler.sa_mask);
    if (real_sigaction(SIGSEGV, &handler, &chained) != 0 || set_cpuid_enabled(0) != 0) {
        real_sigaction(SIGSEGV, &chained, NULL);
        fprintf(stderr,
                "cpuid_mask: CPUID faulting is unavailable on this CPU or kernel (no cpuid_fault "
                "flag): libraries see the real CPU, CPUID_MASK=%s has no effect\n",
                kind);
        if (getenv("CPUID_MASK_REQUIRED") && !strcmp(getenv("CPUID_MASK_REQUIRED"), "1")) exit(3);
        return;
    }
    active = *mask;
    masking = 1;
}
