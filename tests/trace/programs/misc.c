/* The rarer memory calls: userfaultfd, mseal, mlock2, mlockall, guard regions, fork with
 * DONTFORK/WIPEONFORK, mbind, set_mempolicy, KSM merge, anonymous names, SysV shm, sbrk, tmpfs files. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/mempolicy.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif
#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#endif

static const long pg = 4096;

static volatile int got_signal;

static void on_signal(int sig) {
    (void)sig;
    got_signal = 1;
}

static char *anon(size_t pages) {
    return mmap(NULL, pages * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

int main(void) {
    /* A failed execve leaves the address space alone; signals and a group-stop are passed on. */
    execl("/nonexistent/vmasim-no-such-program", "x", (char *)NULL);
    signal(SIGUSR1, on_signal);
    raise(SIGUSR1);
    pid_t waker = fork();
    if (waker == 0) {
        usleep(20000);
        kill(getppid(), SIGCONT);
        _exit(0);
    }
    raise(SIGSTOP);
    waitpid(waker, NULL, 0);
    if (!got_signal)
        return 3;
    /* userfaultfd: register part of a mapping, unregister some of it, close the rest away. */
    int uffd = syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
    if (uffd < 0)
        uffd = syscall(SYS_userfaultfd, O_CLOEXEC);
    char *u = anon(16);
    if (uffd >= 0) {
        struct uffdio_api api = {.api = UFFD_API, .features = 0};
        ioctl(uffd, UFFDIO_API, &api);
        struct uffdio_register reg = {.range = {(unsigned long)u + 4 * pg, 8 * pg}, .mode = UFFDIO_REGISTER_MODE_MISSING};
        ioctl(uffd, UFFDIO_REGISTER, &reg);
        struct uffdio_range r = {(unsigned long)u + 4 * pg, 2 * pg};
        ioctl(uffd, UFFDIO_UNREGISTER, &r);
        int dup_fd = dup(uffd);
        close(uffd);
        close(dup_fd); /* the last descriptor: the rest is released */
    }
    /* mseal, mlock2 on fault, mlockall/munlockall, guard regions. */
    char *s = anon(8);
    syscall(462, s + 2 * pg, 2 * pg, 0);
    char *l = anon(8);
    syscall(SYS_mlock2, l, 4 * pg, 1);
    munlock(l, 8 * pg);
    mlockall(MCL_CURRENT | MCL_ONFAULT);
    munlockall();
    char *g = anon(8);
    g[0] = 1;
    madvise(g + 3 * pg, pg, MADV_GUARD_INSTALL);
    /* fork with DONTFORK and WIPEONFORK ranges; the child changes things and exits. */
    char *f = anon(12);
    memset(f, 1, 12 * pg);
    madvise(f, 4 * pg, MADV_DONTFORK);
    madvise(f + 8 * pg, 4 * pg, MADV_WIPEONFORK);
    pid_t pid = fork();
    if (pid == 0) {
        char *c = anon(4);
        c[0] = 1;
        mprotect(f + 4 * pg, 2 * pg, PROT_READ);
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    /* NUMA policies (one node here), KSM, names (EINVAL without CONFIG_ANON_VMA_NAME). */
    char *n = anon(8);
    unsigned long node0 = 1;
    syscall(SYS_mbind, n + 2 * pg, 2 * pg, MPOL_BIND, &node0, 2, 0);
    syscall(SYS_set_mempolicy, MPOL_PREFERRED, &node0, 2);
    syscall(SYS_set_mempolicy, MPOL_DEFAULT, NULL, 0);
    prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)n, 4 * pg, (unsigned long)"name");
    prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0);
    char *k = anon(4);
    k[0] = 1;
    prctl(PR_SET_MEMORY_MERGE, 0, 0, 0, 0);
    /* SysV shared memory (not modelled: imported from /proc). */
    int id = shmget(IPC_PRIVATE, 4 * pg, IPC_CREAT | 0600);
    if (id >= 0) {
        char *shm = shmat(id, NULL, 0);
        if (shm != (char *)-1) {
            shm[0] = 1;
            shmdt(shm);
        }
        shmctl(id, IPC_RMID, NULL);
    }
    /* The heap through sbrk, and a file on tmpfs (/dev/shm) mapped twice through one descriptor. */
    char *b = sbrk(64 * pg);
    b[0] = 1;
    sbrk(-32 * pg);
    int fd = open("/dev/shm/vmasim-trace-misc", O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
        ftruncate(fd, 16 * pg);
        char *t = mmap(NULL, 8 * pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        mmap(t + 8 * pg, 8 * pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 8 * pg);
        unlink("/dev/shm/vmasim-trace-misc");
        close(fd);
    }
    /* Many short-lived shared anonymous objects (each its own shmem file). */
    for (int i = 0; i < 40; i++) {
        char *sh = mmap(NULL, (1 + i % 5) * pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        sh[0] = 1;
        if (i % 3)
            munmap(sh, (1 + i % 5) * pg);
    }
    /* mremap with MREMAP_DONTUNMAP, and a move onto a fixed address. */
    char *m = anon(4);
    m[0] = 1;
    char *moved = mremap(m, 4 * pg, 4 * pg, MREMAP_MAYMOVE | MREMAP_DONTUNMAP);
    char *dst = anon(8);
    munmap(dst, 8 * pg);
    mremap(moved, 4 * pg, 4 * pg, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
    return 0;
}
