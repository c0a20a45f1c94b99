/* realloc growth of a large block: glibc moves it with mremap. */
#include <stdlib.h>
#include <string.h>

int main(void) {
    size_t n = 256 * 1024;
    char *p = malloc(n);
    memset(p, 1, n);
    for (int i = 0; i < 40; i++) {
        n += 64 * 1024 + i * 4096;
        p = realloc(p, n);
        memset(p + n - 4096, 2, 4096);
        char *q = malloc(300000);  /* a neighbour mapping in the way of in-place growth */
        q[0] = 1;
        if (i % 3)
            free(q);
    }
    free(p);
    return 0;
}
