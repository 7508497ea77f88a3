// tests/escape.rs (check_volume_setid_unfiltered): as root, with a read-write volume, give a file of
// the volume file capabilities or the setuid bit through routes the seccomp filter does not see:
//   volume-attacker uring-setcap PATH   io_uring IORING_OP_SETXATTR security.capability (cap_setuid,cap_setgid+ep)
//   volume-attacker setxattrat PATH     setxattrat(2) (Linux 6.13, syscall 463), the same value
//   volume-attacker uring-suid PATH     io_uring IORING_OP_OPENAT, O_CREAT with mode 04755
//   volume-attacker tmpfile-suid DIR    open(DIR, O_TMPFILE, 04755) (no O_CREAT, so the filter lets the
//                                       mode through), then linked as DIR/d
//   volume-attacker mmap-write PATH     writes "PWNED" at the start of PATH through a shared
//                                       mapping (no write(2), no truncate: the kernel keeps a setuid bit)
//   volume-attacker caps PATH           (on the host) prints "caps" if PATH has security.capability, else "none"
// Each prints "<what>: ok" or "<what>: <error>". Harmless: it only touches PATH, in a scratch volume.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

static uint32_t cap[5] = {0x02000001 /* VFS_CAP_REVISION_2 | effective */, (1u << 6) | (1u << 7), 0, 0, 0};

static int uring(struct io_uring_sqe *sqe) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    int fd = syscall(__NR_io_uring_setup, 4, &p);
    if (fd < 0) return -errno;
    size_t sl = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cl = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (cl > sl) sl = cl;
    char *sq = mmap(0, sl, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
    char *cq = (p.features & IORING_FEAT_SINGLE_MMAP)
                   ? sq
                   : mmap(0, cl, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_CQ_RING);
    struct io_uring_sqe *sqes = mmap(0, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                                     MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
    if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED) return -ENOMEM;
    unsigned *tail = (unsigned *)(sq + p.sq_off.tail), mask = *(unsigned *)(sq + p.sq_off.ring_mask);
    unsigned idx = *tail & mask;
    sqes[idx] = *sqe;
    ((unsigned *)(sq + p.sq_off.array))[idx] = idx;
    __atomic_store_n(tail, *tail + 1, __ATOMIC_RELEASE);
    if (syscall(__NR_io_uring_enter, fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0) return -errno;
    unsigned head = *(unsigned *)(cq + p.cq_off.head), cmask = *(unsigned *)(cq + p.cq_off.ring_mask);
    return ((struct io_uring_cqe *)(cq + p.cq_off.cqes))[head & cmask].res;
}

static int say(const char *what, int res) {
    if (res < 0) printf("%s: %s\n", what, strerror(-res));
    else printf("%s: ok\n", what);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    const char *what = argv[1], *path = argv[2];
    struct io_uring_sqe s;
    memset(&s, 0, sizeof s);
    if (!strcmp(what, "uring-setcap")) {
        s.opcode = IORING_OP_SETXATTR;
        s.addr = (uintptr_t) "security.capability";
        s.off = (uintptr_t)cap;
        s.addr3 = (uintptr_t)path;
        s.len = sizeof cap;
        return say(what, uring(&s));
    }
    if (!strcmp(what, "uring-suid")) {
        s.opcode = IORING_OP_OPENAT;
        s.fd = AT_FDCWD;
        s.addr = (uintptr_t)path;
        s.len = 04755;
        s.open_flags = O_CREAT | O_WRONLY | O_CLOEXEC;
        return say(what, uring(&s));
    }
    if (!strcmp(what, "setxattrat")) {
        struct { uint64_t value; uint32_t size, flags; } args = {(uintptr_t)cap, sizeof cap, 0};
        long r = syscall(463, AT_FDCWD, path, 0, "security.capability", &args, sizeof args);
        return say(what, r < 0 ? -errno : 0);
    }
    if (!strcmp(what, "tmpfile-suid")) {
        int fd = open(path, O_TMPFILE | O_RDWR, 04755);
        if (fd < 0) return say(what, -errno);
        char proc[64], name[4096];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        snprintf(name, sizeof name, "%s/d", path);
        return say(what, linkat(AT_FDCWD, proc, AT_FDCWD, name, AT_SYMLINK_FOLLOW) ? -errno : 0);
    }
    if (!strcmp(what, "mmap-write")) {
        static const char mark[] = "PWNED";
        int fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0) return say(what, -errno);
        char *m = mmap(0, sizeof mark, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) return say(what, -errno);
        memcpy(m, mark, sizeof mark - 1);
        return say(what, msync(m, sizeof mark, MS_SYNC) ? -errno : 0);
    }
    if (!strcmp(what, "caps")) {
        char buf[64];
        puts(getxattr(path, "security.capability", buf, sizeof buf) >= 0 ? "caps" : "none");
        return 0;
    }
    return 2;
}
