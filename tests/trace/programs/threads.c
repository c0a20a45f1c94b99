/* Threads with guard pages (glibc's thread stacks) and per-thread malloc arenas. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static void *work(void *arg) {
    size_t n = (size_t)arg;
    for (int i = 0; i < 64; i++) {
        char *p = malloc(n * (i + 1));
        memset(p, i, n * (i + 1));
        free(p);
    }
    char *big = malloc(1 << 20);
    memset(big, 1, 1 << 20);
    free(big);
    return NULL;
}

int main(int argc, char **argv) {
    int nthreads = argc > 1 ? atoi(argv[1]) : 4;
    pthread_t t[64];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setguardsize(&attr, 3 * 4096);
    for (int i = 0; i < nthreads; i++)
        pthread_create(&t[i], i % 2 ? &attr : NULL, work, (void *)(size_t)(1000 + i * 100));
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
    return 0;
}
