/* Open-file identity decides merges: mappings of one file through one open (or a dup, or a fork's
 * copy of it) may merge, through two opens never.  The descriptor numbers are reused on purpose, so
 * a tracer that does not tell open files apart maps the wrong one. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static long pg;

static void map_at(char *at, int fd, long page, int pages)
{
	if (mmap(at, pages * pg, PROT_READ, MAP_SHARED | MAP_FIXED, fd, page * pg) == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
}

int main(int argc, char **argv)
{
	pg = sysconf(_SC_PAGESIZE);
	const char *path = argc > 1 ? argv[1] : "/tmp/vmasim-trace-opens";
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 64 * pg))
		return 1;
	close(fd);
	char *r = mmap(NULL, 64 * pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int a = open(path, O_RDONLY);
	int b = open(path, O_RDONLY);
	map_at(r, a, 0, 4);
	map_at(r + 4 * pg, a, 4, 4);     /* one open: merges */
	map_at(r + 8 * pg, b, 8, 4);     /* another open: does not */
	close(a);
	int a2 = open(path, O_RDONLY);   /* takes a's number */
	map_at(r + 12 * pg, a2, 12, 4);  /* a new open on the old number: does not merge with b */
	int c = dup(b);
	close(b);
	map_at(r + 16 * pg, c, 16, 4);   /* unrelated: the gap before */
	map_at(r + 20 * pg, c, 20, 4);   /* b's open through a dup: merges */
	munmap(r + 16 * pg, 4 * pg);
	map_at(r + 16 * pg, a2, 16, 4);  /* a2 again, next to its own: merges with the one before */
	pid_t child = fork();
	if (child == 0) {
		map_at(r + 24 * pg, c, 24, 4); /* the inherited open: merges with the mapping before */
		close(c);
		int d = open(path, O_RDONLY);
		map_at(r + 28 * pg, d, 28, 4); /* a new open in the child */
		_exit(0);
	}
	int status;
	waitpid(child, &status, 0);
	for (int i = 0; i < 150; i++) {  /* many opens, mapped and closed: the tracer's duplicates are swept */
		int e = open(path, O_RDONLY);
		map_at(r + 32 * pg + (i % 8) * pg, e, 32 + i % 8, 1);
		close(e);
	}
	unlink(path);
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
