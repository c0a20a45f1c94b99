/* fork (copying written memory), exec in the child, more mappings in the parent afterwards. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char *a = mmap(NULL, 24 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(a + 16 * 4096, 8 * 4096);  /* room for the neighbours below */
    memset(a, 1, 8 * 4096);
    char *h = malloc(200000);
    memset(h, 2, 200000);
    pid_t pid = fork();
    if (pid == 0) {
        /* The child: its anon_vmas came through fork, so new neighbours do not merge with them. */
        char *b = mmap(a + 16 * 4096, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        b[0] = 1;
        mprotect(a + 4096, 4096, PROT_READ);
        mprotect(a + 4096, 4096, PROT_READ | PROT_WRITE);
        munmap(a + 2 * 4096, 4096);
        execl(argc > 1 ? argv[1] : "/bin/true", "true", (char *)NULL);
        _exit(127);
    }
    waitpid(pid, NULL, 0);
    char *c = mmap(a + 16 * 4096, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    c[0] = 1;
    mprotect(a, 4096, PROT_NONE);
    free(h);
    return 0;
}
