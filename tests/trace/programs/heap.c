/* The heap moved by sbrk and brk directly: growth, a read-only page inside it, more growth, a shrink. */
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096

int main(void) {
    char *p = sbrk(16 * PAGE);
    if (p == (void *)-1)
        return 1;
    char *page = (char *)(((uintptr_t)p + PAGE - 1) & ~(uintptr_t)(PAGE - 1));
    page[0] = 1;
    if (mprotect(page + 4 * PAGE, PAGE, PROT_READ))
        return 2;
    if (sbrk(8 * PAGE) == (void *)-1)
        return 3;
    if (sbrk(-4 * PAGE) == (void *)-1)
        return 4;
    return brk(p + 20 * PAGE) ? 5 : 0;
}
