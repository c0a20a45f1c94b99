/* Many threads allocating at once: glibc gives them separate arenas (64 MiB reservations trimmed by mprotect). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_barrier_t barrier;

static void *work(void *arg) {
    (void)arg;
    pthread_barrier_wait(&barrier);
    void *blocks[200];
    for (int i = 0; i < 200; i++) {
        blocks[i] = malloc(1024 + 97 * i);
        memset(blocks[i], i, 1024 + 97 * i);
    }
    for (int i = 0; i < 200; i += 2)
        free(blocks[i]);
    char *big = malloc(200000);
    memset(big, 3, 200000);
    free(big);
    for (int i = 1; i < 200; i += 2)
        free(blocks[i]);
    return NULL;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 8;
    pthread_t t[64];
    pthread_barrier_init(&barrier, NULL, n);
    for (int i = 0; i < n; i++)
        pthread_create(&t[i], NULL, work, NULL);
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    return 0;
}
