// tests/escape.rs (check_holder_orphan, check_init_orphan): the caller of a sandbox is SIGKILLed
// right after the sandbox's helper made a process in a new NS namespace (`user`: the short-lived
// holder of the program's namespaces, a clone(2) child that waits in pause(2) until the helper
// kills it; `pid`: the sandbox's init). The timing is made certain with ptrace: PROGRAM runs traced
// (following forks and clones); at the birth of the first process in a new NS namespace, PROGRAM
// is SIGKILLed, the process that made the newborn is held until its own parent is dead (so that it
// dies of its parent-death signal without a chance to clean up), the newborn is held until its maker
// is dead (so that it asks for a parent-death signal too late), and every tracee is let go.
// Prints "LEAKED <pid>" if the newborn outlives its maker, then kills it (init: with its whole pid
// namespace), so that the host is left as it was; else "NO LEAK".
// Usage: holder-orphan user|pid PROGRAM [ARGS...]
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *ns = "user";

static int same_ns(pid_t pid) {
    char path[64], self[64], mine[64] = {0}, theirs[64] = {0};
    snprintf(path, sizeof path, "/proc/%d/ns/%s", pid, ns);
    snprintf(self, sizeof self, "/proc/self/ns/%s", ns);
    if (readlink(self, mine, sizeof mine - 1) < 0) return 1;
    if (readlink(path, theirs, sizeof theirs - 1) < 0) return 1;
    return strcmp(mine, theirs) == 0;
}

/* The state letter and the parent of `pid` (proc(5) stat, after the command's last `)`); state 0
   and parent 0 if it is gone. */
static void stat_of(pid_t pid, char *state, pid_t *ppid) {
    char path[64], buf[512];
    int parent = 0;
    *state = 0;
    *ppid = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *close = strrchr(buf, ')');
    if (!close || sscanf(close + 1, " %c %d", state, &parent) != 2) return;
    *ppid = parent;
}

static pid_t ppid_of(pid_t pid) {
    char state;
    pid_t ppid;
    stat_of(pid, &state, &ppid);
    return ppid;
}

static char state_of(pid_t pid) {
    char state;
    pid_t ppid;
    stat_of(pid, &state, &ppid);
    return state;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: holder-orphan user|pid PROGRAM [ARGS...]\n"); return 2; }
    ns = argv[1];
    argv++;
    alarm(60);
    pid_t top = fork();
    if (top == 0) {
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        raise(SIGSTOP);
        execvp(argv[1], argv + 1);
        _exit(127);
    }
    int st;
    waitpid(top, &st, 0);
    /* EXITKILL: a tracee still attached when this tracer ends (another process of the sandbox, caught
       in its first ptrace stop when the loop below ends) is killed rather than left stopped for good,
       holding the caller's output pipes (a busy machine showed it: the test then waited forever). */
    ptrace(PTRACE_SETOPTIONS, top, 0,
           PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC |
               PTRACE_O_EXITKILL);
    ptrace(PTRACE_CONT, top, 0, 0);
    pid_t holder = 0, helper = 0;
    pid_t held = 0;
    int holder_stopped = 0, holder_free = 0, killed = 0, maker_gone = 0;
    pid_t maker_parent = -2;
    for (;;) {
        pid_t pid = waitpid(-1, &st, __WALL);
        if (pid < 0) break; /* no tracee left */
        if (WIFEXITED(st) || WIFSIGNALED(st)) {
            if (pid == helper) helper = -1;
            if (helper == -1 && holder_stopped && !holder_free) {
                ptrace(PTRACE_DETACH, holder, 0, 0); /* its maker is dead: let it go on */
                holder_free = 1;
            }
            if (pid == maker_parent) maker_gone = 1;
            if (pid == maker_parent && held) { ptrace(PTRACE_CONT, held, 0, 0); held = 0; }
            if (killed && helper == -1 && (holder_stopped || !holder)) break;
            continue;
        }
        if (!WIFSTOPPED(st)) continue;
        int sig = WSTOPSIG(st), event = st >> 16;
        if (event == PTRACE_EVENT_CLONE || event == PTRACE_EVENT_FORK || event == PTRACE_EVENT_VFORK) {
            unsigned long child = 0;
            ptrace(PTRACE_GETEVENTMSG, pid, 0, &child);
            if (!holder && !same_ns((pid_t)child)) {
                holder = (pid_t)child;
                helper = pid;
                maker_parent = ppid_of(pid);
                kill(top, SIGKILL); /* the caller dies; the helper gets its parent-death signal */
                killed = 1;
                held = pid; /* kept stopped until the caller is dead: no chance to kill the holder */
                continue;
            }
            if ((pid_t)child == holder && !maker_gone) { held = pid; continue; }
            ptrace(PTRACE_CONT, pid, 0, 0);
            continue;
        }
        if (event) { ptrace(PTRACE_CONT, pid, 0, 0); continue; }
        /* The holder's first stop may come before its maker's clone event. */
        if (!holder && sig == SIGSTOP && !same_ns(pid)) {
            holder = pid;
            helper = ppid_of(pid);
            maker_parent = ppid_of(helper);
            kill(top, SIGKILL);
            killed = 1;
        }
        if (pid == holder && sig == SIGSTOP && !holder_stopped) {
            holder_stopped = 1;
            if (helper == -1) {
                ptrace(PTRACE_DETACH, pid, 0, 0); /* let it go on */
                holder_free = 1;
                if (killed) break;
            }
            continue; /* else held until its maker is dead */
        }
        /* A new tracee's first stop is a SIGSTOP of ptrace's: swallow it; pass other signals on. */
        ptrace(PTRACE_CONT, pid, 0, sig == SIGSTOP ? 0 : sig);
    }
    if (!holder) { printf("NO LEAK: no process was born in a new %s namespace\n", ns); return 0; }
    /* The helper is dead; the holder, if it is alive, has been handed to another parent. */
    for (int i = 0; i < 200 && state_of(holder) && state_of(holder) != 'Z'; i++) {
        struct timespec t = {0, 10 * 1000 * 1000};
        nanosleep(&t, NULL);
    }
    char s = state_of(holder);
    if (s && s != 'Z') {
        printf("LEAKED %d (state %c)\n", holder, s);
        kill(holder, SIGKILL);
        return 0;
    }
    printf("NO LEAK\n");
    return 0;
}
