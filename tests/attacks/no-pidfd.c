// tests/escape.rs (check_without_pidfd_open): runs PROGRAM under a seccomp filter that refuses
// pidfd_open(2) with EPERM, as a container runtime's default profile written before Linux 5.3 does
// (Docker before 20.10 with --cap-add SYS_ADMIN, on a newer kernel): every other system call is
// allowed. Without privileges it sets no_new_privs first (seccomp(2) needs it or CAP_SYS_ADMIN).
// Usage: no-pidfd PROGRAM [ARGS...]
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: no-pidfd PROGRAM [ARGS...]\n"); return 2; }
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 434 /* pidfd_open */, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof filter / sizeof filter[0], .filter = filter };
    if (geteuid() != 0 && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) { perror("no_new_privs"); return 2; }
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) { perror("seccomp"); return 2; }
    if (syscall(434, getpid(), 0) != -1 || errno != EPERM) { fprintf(stderr, "filter not in force\n"); return 2; }
    execvp(argv[1], argv + 1);
    perror("exec");
    return 127;
}
