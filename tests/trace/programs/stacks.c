/* Stacks made by hand: MAP_GROWSDOWN|MAP_STACK regions with mprotect'd guard pages, grown and shrunk. */
#define _GNU_SOURCE
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <fcntl.h>
#include <stdlib.h>

int main(void) {
    long pg = 4096;
    for (int i = 0; i < 4; i++) {
        char *s = mmap(NULL, 64 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        mprotect(s, 2 * pg, PROT_NONE);              /* guard at the bottom */
        memset(s + 60 * pg, 1, 4 * pg);               /* the top of the stack is used */
        mprotect(s + 2 * pg, 8 * pg, PROT_READ);      /* a read-only band */
        mprotect(s + 2 * pg, 8 * pg, PROT_READ | PROT_WRITE);
        madvise(s + 40 * pg, 10 * pg, MADV_DONTNEED);
        madvise(s + 10 * pg, 10 * pg, MADV_NOHUGEPAGE);
        if (i % 2)
            munmap(s, 64 * pg);
    }
    char *g = mmap(NULL, 16 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN, -1, 0);
    g[15 * pg] = 1;
    mprotect(g + 15 * pg, pg, PROT_READ | PROT_WRITE | PROT_GROWSDOWN);
    /* A file and a memfd, shared and private, next to each other. */
    int fd = memfd_create("trace-test", 0);
    ftruncate(fd, 32 * pg);
    char *m = mmap(NULL, 32 * pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    m[0] = 1;
    mprotect(m + 8 * pg, 8 * pg, PROT_READ);
    mprotect(m + 8 * pg, 8 * pg, PROT_READ | PROT_WRITE);
    char *p = mmap(m + 32 * pg, 8 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED_NOREPLACE, fd, 32 * pg);
    (void)p;
    int fd2 = dup(fd);
    close(fd);
    char *q = mmap(NULL, 8 * pg, PROT_READ, MAP_SHARED, fd2, 0);
    (void)q;
    close(fd2);
    mlock(m, 4 * pg);
    munlock(m, 4 * pg);
    return 0;
}
