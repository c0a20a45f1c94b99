/*
 * vmasim kernel executor: runs vmasim programs against the host kernel.
 *
 * One exec of this binary is a *driver*.  It reads programs from stdin in the
 * line protocol written by vmasim/kernel/protocol.py, forks a fresh child per
 * program, and the child runs the program's ops as raw system calls, then
 * reports what /proc/self/smaps and /proc/self/numa_maps show for the window
 * and the heap.  Everything is written to stdout as short text lines, decoded
 * by vmasim/kernel/decode.py.
 *
 * Rules this file keeps, and why:
 *  - No malloc and no stdio: either may map memory (or grow the heap) behind
 *    the program's back and pollute the layout we are measuring.  All buffers
 *    are static (bss, mapped once at exec, far below any window).
 *  - The program child never calls anything that can create a VMA except the
 *    ops it was asked to run (and the walls, built before the first op).
 *  - Raw syscalls (inline asm) return -errno directly: no errno TLS, and the
 *    uffd watcher, which shares our memory, can use them safely.
 *  - Each op's result is written out before the next op starts, so a process
 *    that dies leaves the results of the ops it finished, and the op it was
 *    running is the first one without a result.  The program's processes
 *    write to a pipe that the driver relays to stdout, one write per program.
 *  - Limits (memory, tasks) stop a program; they never change what the kernel
 *    answers to a program that stays below them.
 *
 * Usage: executor TMPDIR TIMEOUT_MS [OPTION]...
 *        executor --resume FD    (internal: a program process after its exec op, see op_exec)
 *   TMPDIR                  directory on disk for `file` objects (O_TMPFILE: never named)
 *   tasks=N                 most processes one program may have (its fork depth + 1)
 *   join=PATH               a cgroup.procs file the driver joins at start (repeatable)
 *   leave=PATH              a cgroup.procs file to go back to if vmasim dies first
 *   oom=PATH                memory.events / memory.oom_control: its oom_kill count
 *   rmdir=PATH              a cgroup to remove if vmasim dies first (repeatable)
 *   rss=BYTES               no memory cgroup: a watchdog stops programs above this RSS
 *
 * Input (all numbers hex unless noted; see protocol.py for the op table):
 *   P <window_start> <window_length> <walls 0|1> [<features>]
 *                                features: 1 = the program creates SysV segments (see "SysV shm")
 *   <code> <idx dec> <out slot dec|-1> <arg>...      one line per op
 *   E
 * An <arg> is `<hex>` (immediate), `<slot dec>:<hex>` (slot value + offset,
 * modulo 2^64) or `x<hex bytes>` (a NUL-terminated string; the value is its
 * address).  A fork op `K` is followed by the lines of its child ops
 * (arg 0 = how many lines, nested forks included).
 *
 * Output:
 *   H <initial break>            first line of each program
 *   R <idx dec> <value hex> <errno dec>   one per op (touch: pages, fault)
 *   N <idx dec> <major hex> <minor hex> <inode dec>   object created by op idx
 *   S <idx dec> <shmid dec> <ns 0|1>   SysV segment created by op idx (ns 1: in the
 *                                program's own IPC namespace); the driver removes ns-0 ones
 *   C <idx dec> ... Z <depth dec> <wait status dec>   a fork child's report,
 *                                nested; depth: the forking process's (0: the first)
 *   V <smaps header line>  F <VmFlags values>  Y <numa_maps line>
 *   U <depth dec> <idx dec>      op idx of the process at that fork depth blocked
 *                                forever on a userfaultfd; that process was killed
 *   L <idx dec> <0|1>            fork op idx would exceed the task limit (1: the
 *                                host refused the fork); the program was killed
 *   D <wait status dec> <O|T|B|M> <oom kills dec>   driver: program done (ok,
 *                                timeout, bad input, RSS watchdog), and how many
 *                                processes the memory cgroup's OOM killer killed
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef PR_SET_CHILD_SUBREAPER
#define PR_SET_CHILD_SUBREAPER 36
#endif
#ifndef O_TMPFILE
#define O_TMPFILE (020000000 | O_DIRECTORY)
#endif
#ifndef CLONE_NEWIPC
#define CLONE_NEWIPC 0x08000000
#endif
#define IPC_PRIVATE_KEY 0
#define IPC_CREAT_FLAG 01000
#define IPC_RMID_CMD 0
#define NR_PIDFD_OPEN 434
#define NR_PROCESS_MADVISE 440
/* where `file` objects with fs=tmpfs live (like shm_open()) */
#define SHM_DIR "/dev/shm"

#define PAGE 4096ULL
#define MAX_OPS 65536
#define MAX_ARGS 7
#define MAX_SLOTS 65536
#define MAX_BOOT_VMAS 512
#define MAX_CGROUPS 4

typedef uint64_t u64;

/* ------------------------------------------------------------------ syscalls */

static inline long sys6(long n, long a, long b, long c, long d, long e, long f)
{
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}
#define sys0(n) sys6((n), 0, 0, 0, 0, 0, 0)
#define sys1(n, a) sys6((n), (long)(a), 0, 0, 0, 0, 0)
#define sys2(n, a, b) sys6((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define sys3(n, a, b, c) sys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define sys4(n, a, b, c, d) sys6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)

/* The kernel reports failure as a return value in [-4095, -1]. */
static inline int is_err(long r) { return (unsigned long)r >= (unsigned long)-4095L; }

/* ------------------------------------------------------------------ output */

static char obuf[1 << 16];
static size_t olen;

static void write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		long w = sys3(SYS_write, fd, p, n);
		if (w == -EINTR)
			continue;
		if (w <= 0)
			return; /* reader gone: nothing sensible left to do */
		p += w;
		n -= (size_t)w;
	}
}

static void oflush(void)
{
	write_all(1, obuf, olen);
	olen = 0;
}

static void oput(const char *s, size_t n)
{
	if (olen + n > sizeof obuf)
		oflush();
	if (n > sizeof obuf) {
		write_all(1, s, n);
		return;
	}
	memcpy(obuf + olen, s, n);
	olen += n;
}

static void ostr(const char *s) { oput(s, strlen(s)); }
static void och(char c) { oput(&c, 1); }

static void ohex(u64 v)
{
	char t[17];
	int i = 16;
	do {
		t[--i] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	oput(t + i, (size_t)(16 - i));
}

static void odec(long long v)
{
	char t[24];
	int i = 24;
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
	do {
		t[--i] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		t[--i] = '-';
	oput(t + i, (size_t)(24 - i));
}

static void result(int idx, u64 value, long err)
{
	och('R');
	och(' ');
	odec(idx);
	och(' ');
	ohex(value);
	och(' ');
	odec(err);
	och('\n');
}

/* A syscall return as a result line: success value or errno. */
static void result_sys(int idx, long r)
{
	if (is_err(r))
		result(idx, 0, -r);
	else
		result(idx, (u64)r, 0);
}

/* ------------------------------------------------------------------ line reader */

struct reader {
	int fd;
	char *buf;
	size_t cap, start, end;
	int eof;
	int cut;  /* the last line returned was cut at the buffer size */
	int skip; /* discarding the rest of a cut line */
};

/* Next line without its newline, NUL-terminated in place; NULL at end of input.
 * A line longer than the buffer is returned cut (r->cut set) and its rest is
 * skipped, so that it can never be taken for the lines that follow it. */
static char *rd_line(struct reader *r, size_t *len)
{
	r->cut = 0;
	for (;;) {
		char *nl = memchr(r->buf + r->start, '\n', r->end - r->start);
		if (nl && r->skip) {
			r->skip = 0;
			r->start = (size_t)(nl - r->buf) + 1;
			continue;
		}
		if (nl) {
			char *line = r->buf + r->start;
			*nl = 0;
			*len = (size_t)(nl - line);
			r->start = (size_t)(nl - r->buf) + 1;
			return line;
		}
		if (r->skip)
			r->start = r->end = 0;
		if (r->start > 0) {
			memmove(r->buf, r->buf + r->start, r->end - r->start);
			r->end -= r->start;
			r->start = 0;
		}
		if (r->eof || r->end >= r->cap - 1) {
			if (r->end == 0)
				return NULL;
			r->buf[r->end] = 0;
			*len = r->end;
			if (!r->eof) {
				r->cut = 1;
				r->skip = 1;
			}
			r->start = r->end = 0;
			return r->buf;
		}
		long n = sys3(SYS_read, r->fd, r->buf + r->end, r->cap - 1 - r->end);
		if (n == -EINTR)
			continue;
		if (n <= 0)
			r->eof = 1;
		else
			r->end += (size_t)n;
	}
}

/* ------------------------------------------------------------------ parsing helpers */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static u64 parse_hex(const char **pp)
{
	const char *p = *pp;
	u64 v = 0;
	int d;
	while ((d = hexval(*p)) >= 0) {
		v = (v << 4) | (u64)d;
		p++;
	}
	*pp = p;
	return v;
}

static long long parse_dec(const char **pp)
{
	const char *p = *pp;
	int neg = 0;
	long long v = 0;
	if (*p == '-') {
		neg = 1;
		p++;
	}
	while (*p >= '0' && *p <= '9')
		v = v * 10 + (*p++ - '0');
	*pp = p;
	return neg ? -v : v;
}

static const char *skip_sp(const char *p)
{
	while (*p == ' ')
		p++;
	return p;
}

/* ------------------------------------------------------------------ program state */

struct op {
	char code;
	unsigned char nargs;
	uint16_t check; /* op_hash() of the other fields: see "self-checks" */
	int idx;
	int out;
	int slot[MAX_ARGS];
	u64 imm[MAX_ARGS];
};

static struct op ops[MAX_OPS];
static int nops;
static u64 slots[MAX_SLOTS];
static char strpool[1 << 18];
static size_t strpool_len;

static u64 win_start, win_end;
static int walls;
static int features;     /* from the P line */
static int shm_private;  /* this program runs in an IPC namespace of its own */
static u64 init_brk, cur_brk;
static const char *tmpdir;
static unsigned file_counter;
static pid_t driver_pid;

/* The process running ops: its pid, its fork depth (0 for the program's first
 * process) and the most processes a program may have. */
static pid_t self_pid;
static int depth;
static long task_limit = 256;

/* The userfaultfds this process opened live in an epoll set (no fixed count):
 * the uffd watcher waits on the set.  ep_owner tells a fork child that the set
 * it inherited is its parent's. */
static int ep_fd = -1;
static pid_t ep_owner;
static long nuffd;

/*
 * Self-checks.  A program can write into the executor's own memory (a write
 * touch, MAP_FIXED or MADV_DONTNEED over its bss: absolute addresses reach
 * everything) without crashing it, and the ops that follow would then run
 * with wrong arguments and give answers that look right.  So every op record
 * carries a hash of itself, every slot one too (slot_check), and the
 * state the report depends on a hash (state_sum); all are checked before each
 * op and before the layout is read.  A mismatch stops the program: "Q <idx>".
 * (Not a defence against a determined program, which could forge the checks:
 * a tripwire for the plausible accidents, touches and zeroing.)
 */
static uint16_t slot_check[MAX_SLOTS];
static u64 state_sum;

static u64 mix(u64 h, u64 v)
{
	h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
	return h * 0x100000001b3ULL;
}

/* 16 bits that are never 0, so that zeroed memory never passes */
static uint16_t fold16(u64 h)
{
	uint16_t v = (uint16_t)(h ^ h >> 16 ^ h >> 32 ^ h >> 48);
	return v ? v : 1;
}

static uint16_t op_hash(const struct op *o)
{
	u64 h = mix(0x243f6a8885a308d3ULL, (u64)(unsigned char)o->code | (u64)o->nargs << 8);
	h = mix(h, (u64)(uint32_t)o->idx | (u64)(uint32_t)o->out << 32);
	for (int k = 0; k < MAX_ARGS; k++)
		h = mix(mix(h, (u64)(uint32_t)o->slot[k]), o->imm[k]);
	return fold16(h);
}

static char *put_dec(char *p, unsigned long v)
{
	char t[24];
	int i = 0;
	do {
		t[i++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (i)
		*p++ = t[--i];
	return p;
}

/* idx: the op about to run, or -1 before the layout is read */
static void corrupted(int idx)
{
	static const char msg[] = "\nQ ";
	char t[32];
	char *p = t;
	if (idx < 0)
		*p++ = '-', idx = 1;
	p = put_dec(p, (unsigned long)idx);
	*p++ = '\n';
	write_all(1, msg, sizeof msg - 1);
	write_all(1, t, (size_t)(p - t));
	sys2(SYS_kill, 0, SIGKILL);
	for (;;)
		sys0(SYS_pause);
}

static u64 state_hash(void)
{
	u64 h = mix(mix(mix(0x452821e638d01377ULL, win_start), win_end), init_brk);
	h = mix(mix(mix(h, cur_brk), (u64)walls), (u64)depth);
	h = mix(mix(mix(h, (u64)self_pid), (u64)task_limit), (u64)nops);
	for (const char *c = tmpdir; c && *c; c++)
		h = mix(h, (u64)(unsigned char)*c);
	return h;
}

/* after every legitimate change of the state state_hash() covers */
static void state_seal(void)
{
	state_sum = state_hash();
}

static void state_check(const struct op *o)
{
	if (state_sum != state_hash() || (o && o->check != op_hash(o)))
		corrupted(o ? o->idx : -1);
}

static u64 slot_value(int s, int idx)
{
	u64 v = slots[s];
	if (slot_check[s] != fold16(mix(0x13198a2e03707344ULL, v)))
		corrupted(idx);
	return v;
}

static void set_slot(int s, u64 v)
{
	slots[s] = v;
	slot_check[s] = fold16(mix(0x13198a2e03707344ULL, v));
}

static u64 arg(const struct op *o, int k)
{
	return (o->slot[k] >= 0 ? slot_value(o->slot[k], o->idx) : 0) + o->imm[k];
}

static void bind(const struct op *o, u64 v)
{
	if (o->out >= 0)
		set_slot(o->out, v);
}

/* Parse one op line into ops[nops]; 0 on success. */
static int parse_op(const char *line)
{
	if (nops >= MAX_OPS)
		return -1;
	struct op *o = &ops[nops];
	const char *p = line;
	o->code = *p++;
	p = skip_sp(p);
	o->idx = (int)parse_dec(&p);
	p = skip_sp(p);
	o->out = (int)parse_dec(&p);
	if (o->out >= MAX_SLOTS)
		return -1;
	o->nargs = 0;
	for (int k = 0; k < MAX_ARGS; k++) {
		o->slot[k] = -1;
		o->imm[k] = 0;
	}
	for (;;) {
		p = skip_sp(p);
		if (!*p)
			break;
		if (o->nargs >= MAX_ARGS)
			return -1;
		int k = o->nargs++;
		o->slot[k] = -1;
		o->imm[k] = 0;
		if (*p == 'x') {
			/* a string, hex-encoded so that it can hold any byte but NUL */
			p++;
			char *s = strpool + strpool_len;
			while (hexval(p[0]) >= 0 && hexval(p[1]) >= 0) {
				if (strpool_len + 2 >= sizeof strpool)
					return -1;
				strpool[strpool_len++] = (char)(hexval(p[0]) << 4 | hexval(p[1]));
				p += 2;
			}
			if (strpool_len + 1 >= sizeof strpool)
				return -1;
			strpool[strpool_len++] = 0;
			o->imm[k] = (u64)(uintptr_t)s;
			continue;
		}
		const char *q = p;
		while (*q && *q != ' ' && *q != ':')
			q++;
		if (*q == ':') {
			long long s = parse_dec(&p);
			if (s < 0 || s >= MAX_SLOTS || *p != ':')
				return -1;
			p++;
			o->slot[k] = (int)s;
		}
		o->imm[k] = parse_hex(&p);
		if (*p && *p != ' ')
			return -1;
	}
	o->check = op_hash(o);
	nops++;
	return 0;
}

/* ------------------------------------------------------------------ signals and touch */

static sigjmp_buf touch_env;
static volatile sig_atomic_t touch_active;
static volatile u64 touch_pages;

static void on_signal(int sig)
{
	if (touch_active) {
		touch_active = 0;
		siglongjmp(touch_env, sig);
	}
	if (sig == SIGUSR1)
		return; /* a late "UFFD" notice from a watcher that is being stopped */
	/* A fault outside touch: die by it, so the driver reports a crash. */
	signal(sig, SIG_DFL);
}


/*
 * The uffd watcher.  A fault on a userfaultfd-registered page blocks until a
 * handler resolves it; we have none, so we must tell "blocked on uffd" apart
 * from "slow".  The pending fault message is only visible while the faulting
 * thread waits (when a signal interrupts the wait, the kernel withdraws the
 * message), so a timer plus a later poll cannot see it.  Instead, while an op
 * runs and this process has a userfaultfd open, a helper sharing our memory and
 * fd table (clone CLONE_VM|CLONE_FILES, own static stack, raw syscalls only,
 * maps nothing) waits on the process's epoll set of userfaultfds.  Every
 * message is synchronous (pagefaults and fork/remap/remove/unmap events all
 * wait until a handler reads them), so a readable uffd means we are blocked:
 *  - during touch, it signals us (SIGUSR1) and the touch records "UFFD": a
 *    user-mode fault waits interruptibly, so the signal gets us out;
 *  - during any other op (mlock, MADV_POPULATE_*, a fork with EVENT_FORK, ...)
 *    the kernel waits killably, so nothing but SIGKILL ends it: the helper
 *    prints "U <depth> <op index>" and kills us, and the run fails fast and
 *    precisely instead of at the timeout.
 * It never reads the messages: reading a fork event would complete the fork.
 * A fork child watches only the userfaultfds it opens itself: the ones it
 * inherits belong to its parent's mm (uffd contexts are per mm, and fork drops
 * the child's registrations unless EVENT_FORK, which blocks the fork itself),
 * so nothing the child does can make them readable.
 */
static char watcher_stack[1 << 14] __attribute__((aligned(64)));
static int watcher_ep;
static pid_t watcher_target;
static int watcher_touch;
static char watcher_note[48];
static size_t watcher_note_len;

static int watcher_main(void *unused)
{
	(void)unused;
	struct epoll_event ev;
	sys2(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL);
	/* the RSS watchdog knows its helpers by name: they share the mm they watch */
	sys2(SYS_prctl, PR_SET_NAME, "vmasim-watch");
	for (;;) {
		long r = sys4(SYS_epoll_wait, watcher_ep, &ev, 1, -1);
		if (r == -EINTR || r == 0)
			continue;
		if (r < 0)
			break; /* no usable set: never report a block we did not see */
		if (ev.events & EPOLLIN) {
			if (watcher_touch) {
				sys2(SYS_kill, watcher_target, SIGUSR1);
			} else {
				sys3(SYS_write, 1, watcher_note, watcher_note_len);
				sys2(SYS_kill, watcher_target, SIGKILL);
			}
			break;
		}
		/* not (or no longer) a usable uffd */
		sys4(SYS_epoll_ctl, watcher_ep, EPOLL_CTL_DEL, ev.data.fd, 0);
	}
	for (;;)
		sys0(SYS_pause);
	return 0;
}

static pid_t watcher_start(const struct op *o)
{
	watcher_ep = ep_fd;
	watcher_target = self_pid;
	watcher_touch = o->code == 't';
	/* our own output buffer dies with us; the note goes straight to stdout */
	char *p = watcher_note;
	*p++ = '\n';
	*p++ = 'U';
	*p++ = ' ';
	p = put_dec(p, (unsigned long)depth);
	*p++ = ' ';
	p = put_dec(p, (unsigned long)o->idx);
	*p++ = '\n';
	watcher_note_len = (size_t)(p - watcher_note);
	pid_t pid = clone(watcher_main, watcher_stack + sizeof watcher_stack, CLONE_VM | CLONE_FILES | SIGCHLD, NULL);
	return pid > 0 ? pid : 0;
}

static void watcher_stop(pid_t pid)
{
	int st;
	sys2(SYS_kill, pid, SIGKILL);
	while (sys4(SYS_wait4, pid, &st, __WALL, 0) == -EINTR)
		;
}

static void op_touch(const struct op *o)
{
	u64 addr = arg(o, 0), len = arg(o, 1);
	int write = arg(o, 2) != 0;
	volatile u64 npages = 0; /* volatile: live across siglongjmp */
	if (len) {
		u64 last = addr + len - 1;
		if (last < addr)
			last = ~0ULL;
		npages = (last >> 12) - (addr >> 12) + 1;
	}
	u64 base = addr & ~(PAGE - 1);
	touch_pages = 0;
	int sig = sigsetjmp(touch_env, 1);
	if (sig == 0) {
		touch_active = 1;
		for (u64 i = 0; i < npages; i++) {
			volatile unsigned char *p = (volatile unsigned char *)(uintptr_t)(base + i * PAGE);
			if (write)
				*p = 1;
			else
				(void)*p;
			touch_pages = touch_pages + 1;
		}
		touch_active = 0;
	}
	/* fault code: 0 none, SIGSEGV, SIGBUS, or 1 for a userfaultfd block */
	result(o->idx, touch_pages, sig == SIGUSR1 ? 1 : sig);
}

/* ------------------------------------------------------------------ file objects */

/* This process's own epoll set: a fork child swaps the one it inherited for a
 * fresh one the first time it needs it (closing first, so the number of open
 * fds never changes). */
static int uffd_set(void)
{
	if (ep_owner != self_pid) {
		if (ep_fd >= 0)
			sys1(SYS_close, ep_fd);
		long fd = sys1(SYS_epoll_create1, EPOLL_CLOEXEC);
		ep_fd = is_err(fd) ? -1 : (int)fd;
		ep_owner = self_pid;
		nuffd = 0;
	}
	return ep_fd;
}

static void uffd_add(int fd)
{
	int ep = uffd_set();
	struct epoll_event ev = {.events = EPOLLIN, .data = {.fd = fd}};
	if (ep >= 0 && sys4(SYS_epoll_ctl, ep, EPOLL_CTL_ADD, fd, &ev) == 0)
		nuffd++;
}

/* Whether fd is one of this process's watched userfaultfds (MOD fails on others). */
static int uffd_has(int fd)
{
	struct epoll_event ev = {.events = EPOLLIN, .data = {.fd = fd}};
	return ep_owner == self_pid && ep_fd >= 0 && sys4(SYS_epoll_ctl, ep_fd, EPOLL_CTL_MOD, fd, &ev) == 0;
}

/* Before fd is closed: after the close the set could not be told which fd to drop. */
static void uffd_del(int fd)
{
	if (ep_owner == self_pid && ep_fd >= 0 && sys4(SYS_epoll_ctl, ep_fd, EPOLL_CTL_DEL, fd, 0) == 0)
		nuffd--;
}

/* Report the identity of a created object so that its mappings can be labelled. */
static void report_inode(int idx, int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return;
	och('N');
	och(' ');
	odec(idx);
	och(' ');
	ohex(major(st.st_dev));
	och(' ');
	ohex(minor(st.st_dev));
	och(' ');
	odec((long long)st.st_ino);
	och('\n');
}

/* Size a new file; on failure the object is dropped so that the name is bound to nothing. */
static void finish_object(const struct op *o, long fd, u64 size)
{
	if (is_err(fd)) {
		bind(o, (u64)-1);
		result_sys(o->idx, fd);
		return;
	}
	long r = sys2(SYS_ftruncate, fd, size);
	if (is_err(r)) {
		sys1(SYS_close, fd);
		bind(o, (u64)-1);
		result_sys(o->idx, r);
		return;
	}
	bind(o, (u64)fd);
	result(o->idx, 0, 0);
	report_inode(o->idx, (int)fd);
}

static void op_file(const struct op *o)
{
	/* Program names are labels, never paths.  The file is born unnamed
	 * (O_TMPFILE), so that no signal to vmasim, not even SIGKILL, can leave it
	 * behind; its mappings are labelled by inode (the N line), not by path. */
	const char *dir = arg(o, 1) == 1 ? SHM_DIR : tmpdir;
	long fd = sys4(SYS_openat, AT_FDCWD, dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd == -EOPNOTSUPP || fd == -EISDIR || fd == -EINVAL) {
		/* A filesystem without O_TMPFILE: a unique name, unlinked at once (the
		 * Python side removes what a kill between the two calls could leave). */
		char path[4096];
		size_t n = strlen(dir);
		if (n > sizeof path - 96) {
			bind(o, (u64)-1);
			result(o->idx, 0, ENAMETOOLONG);
			return;
		}
		memcpy(path, dir, n);
		char *p = path + n;
		memcpy(p, "/.vmasim-", 9);
		p = put_dec(p + 9, (unsigned long)driver_pid);
		*p++ = '-';
		p = put_dec(p, (unsigned long)self_pid);
		*p++ = '-';
		p = put_dec(p, file_counter++);
		*p = 0;
		fd = sys4(SYS_openat, AT_FDCWD, path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (!is_err(fd))
			sys1(SYS_unlink, path);
	}
	finish_object(o, fd, arg(o, 0));
}

static void op_open(const struct op *o)
{
	long of = (long)arg(o, 0);
	if (of < 0) {
		bind(o, (u64)-1);
		result(o->idx, 0, EBADF);
		return;
	}
	/* Opening the fd's /proc link gives a new struct file for the same inode. */
	char path[64] = "/proc/self/fd/";
	char *p = put_dec(path + 14, (unsigned long)of);
	*p = 0;
	long fd = sys4(SYS_openat, AT_FDCWD, path, (int)arg(o, 1) | O_CLOEXEC, 0);
	bind(o, is_err(fd) ? (u64)-1 : (u64)fd);
	result_sys(o->idx, is_err(fd) ? fd : 0);
}

static void op_dup(const struct op *o)
{
	long of = (long)arg(o, 0);
	long fd = of < 0 ? -EBADF : sys1(SYS_dup, of);
	bind(o, is_err(fd) ? (u64)-1 : (u64)fd);
	if (!is_err(fd) && uffd_has((int)of))
		uffd_add((int)fd);
	result_sys(o->idx, is_err(fd) ? fd : 0);
}

static void op_close(const struct op *o)
{
	long fd = (long)arg(o, 0);
	if (fd >= 0 && fd <= 0x7fffffff)
		uffd_del((int)fd);
	long r = fd < 0 ? -EBADF : sys1(SYS_close, fd);
	/* The name is gone even if close failed: a later use must not hit a reused fd. */
	if (o->slot[0] >= 0)
		set_slot(o->slot[0], (u64)-1);
	result_sys(o->idx, r);
}

static void op_userfaultfd(const struct op *o)
{
	/* O_NONBLOCK: poll() on a blocking userfaultfd always reports POLLERR, and the
	 * watcher needs poll.  The program never reads the fd, so it cannot tell. */
	const long flags = O_CLOEXEC | O_NONBLOCK;
	long fd = sys1(SYS_userfaultfd, flags);
	if (fd == -EPERM) {
		/* vm.unprivileged_userfaultfd=0 without CAP_SYS_PTRACE: try the device,
		 * then user-mode-only (we never make the kernel fault on our pages). */
		long dev = sys4(SYS_openat, AT_FDCWD, "/dev/userfaultfd", O_RDWR | O_CLOEXEC, 0);
		if (!is_err(dev)) {
			fd = sys3(SYS_ioctl, dev, USERFAULTFD_IOC_NEW, flags);
			sys1(SYS_close, dev);
		}
		if (is_err(fd))
			fd = sys1(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY);
	}
	if (is_err(fd)) {
		bind(o, (u64)-1);
		result_sys(o->idx, fd);
		return;
	}
	struct uffdio_api api = {.api = UFFD_API, .features = arg(o, 0)};
	long r = sys3(SYS_ioctl, fd, UFFDIO_API, &api);
	if (is_err(r)) {
		sys1(SYS_close, fd);
		bind(o, (u64)-1);
		result_sys(o->idx, r);
		return;
	}
	bind(o, (u64)fd);
	uffd_add((int)fd);
	result(o->idx, 0, 0);
}

static void op_uffd_register(const struct op *o, int reg)
{
	long fd = (long)arg(o, 0);
	long r;
	if (reg) {
		struct uffdio_register rg = {.range = {.start = arg(o, 1), .len = arg(o, 2)}, .mode = arg(o, 3)};
		r = fd < 0 ? -EBADF : sys3(SYS_ioctl, fd, UFFDIO_REGISTER, &rg);
	} else {
		struct uffdio_range rn = {.start = arg(o, 1), .len = arg(o, 2)};
		r = fd < 0 ? -EBADF : sys3(SYS_ioctl, fd, UFFDIO_UNREGISTER, &rn);
	}
	result_sys(o->idx, is_err(r) ? r : 0);
}

/* ------------------------------------------------------------------ /proc readers */

static char pbuf[1 << 16];

static int open_proc(const char *path)
{
	long fd = sys4(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
	return is_err(fd) ? -1 : (int)fd;
}

/* Parse "start-end " at the start of a maps/smaps line; 0 if it is not a VMA header. */
static int vma_header(const char *line, u64 *start, u64 *end)
{
	const char *p = line;
	if (hexval(*p) < 0 || (*p >= 'A' && *p <= 'F'))
		return 0;
	*start = parse_hex(&p);
	if (*p != '-')
		return 0;
	p++;
	*end = parse_hex(&p);
	return *p == ' ';
}

static int ends_with(const char *s, size_t n, const char *suffix)
{
	size_t m = strlen(suffix);
	return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static int keep_vma(u64 start, u64 end, const char *line, size_t len)
{
	if (start < win_end && end > win_start)
		return 1;
	return start >= init_brk && ends_with(line, len, "[heap]");
}

/* Nothing we report lies at or above s: the window ends below it and the heap
 * (which starts at the initial break) lies below the window.  Walls, large pads,
 * vdso and stack are all up there, so the dump stops reading early. */
static int past_interest(u64 s)
{
	return s >= win_end && win_start >= init_brk;
}

/* Dump the window's and the heap's VMAs: smaps headers and VmFlags, then numa_maps. */
static void dump(void)
{
	struct reader r = {.buf = pbuf, .cap = sizeof pbuf};
	char *line;
	size_t len;
	u64 s, e, straddle = ~0ULL;
	int keep = 0;

	r.fd = open_proc("/proc/self/smaps");
	if (r.fd >= 0) {
		while ((line = rd_line(&r, &len))) {
			if (vma_header(line, &s, &e)) {
				if (past_interest(s))
					break;
				keep = keep_vma(s, e, line, len);
				if (keep) {
					if (s < win_start)
						straddle = s;
					ostr("V ");
					oput(line, len);
					och('\n');
				}
			} else if (keep && len >= 8 && memcmp(line, "VmFlags:", 8) == 0) {
				ostr("F");
				oput(line + 8, len - 8);
				och('\n');
			}
		}
		sys1(SYS_close, r.fd);
	}
	r = (struct reader){.buf = pbuf, .cap = sizeof pbuf};
	r.fd = open_proc("/proc/self/numa_maps");
	if (r.fd >= 0) {
		while ((line = rd_line(&r, &len))) {
			const char *p = line;
			s = parse_hex(&p);
			if (past_interest(s))
				break;
			int heap = s >= init_brk && strstr(line, " heap") != NULL;
			if ((s >= win_start && s < win_end) || s == straddle || heap) {
				ostr("Y ");
				oput(line, len);
				och('\n');
			}
		}
		sys1(SYS_close, r.fd);
	}
}

/* map_count as the kernel counts it: the lines of maps minus the [vsyscall] gate. */
static long map_count(void)
{
	struct reader r = {.buf = pbuf, .cap = sizeof pbuf};
	char *line;
	size_t len;
	long lines = 0;
	r.fd = open_proc("/proc/self/maps");
	if (r.fd < 0)
		return -1;
	while ((line = rd_line(&r, &len)))
		lines += !ends_with(line, len, "[vsyscall]");
	sys1(SYS_close, r.fd);
	return lines;
}

static long read_sysctl(const char *path)
{
	int fd = open_proc(path);
	if (fd < 0)
		return -1;
	char t[32];
	long n = sys3(SYS_read, fd, t, sizeof t - 1);
	sys1(SYS_close, fd);
	if (n <= 0)
		return -1;
	t[n] = 0;
	const char *p = t;
	return (long)parse_dec(&p);
}

/* Walls built for this program (see build_walls), so that pad can carve one. */
#define MAX_WALLS 64
static u64 wall_start[MAX_WALLS], wall_end[MAX_WALLS];
static int nwalls;

/* Below this many VMAs, pads go below the window (if there is room); above it, into a wall. */
#define PAD_IN_WALL_MIN 1024

static long pad_map(u64 a, int prot)
{
	return sys6(SYS_mmap, (long)a, PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
}

/*
 * Fill the process with unrelated VMAs until map_count == max_map_count - headroom.
 * The sysctl is global (it applies to every process on the host): never touched.
 *
 * Few pads: 1-page PROT_NONE anonymous VMAs at every other page, 64 GiB below the
 * window.  Many pads, or no room below the window: the top end of the largest wall
 * is unmapped (an edge unmap does not split, so it adds no VMA) and filled exactly
 * with contiguous 1-page anonymous VMAs of alternating PROT_NONE and PROT_READ, so
 * that no two merge and no gap is left for hint-less mmaps.  Being above the window,
 * they are never read by dump(), which stops at the window end: smaps of 65k VMAs
 * would otherwise cost ~0.3 s per dump (and per fork child).
 */
static void op_pad(const struct op *o)
{
	long maxc = read_sysctl("/proc/sys/vm/max_map_count");
	long count = map_count();
	long target = maxc - (long)arg(o, 0);
	if (maxc < 0 || count < 0) {
		result(o->idx, 0, EIO);
		return;
	}
	if (count > target) {
		result(o->idx, 0, EINVAL); /* cannot remove VMAs we do not own */
		return;
	}
	u64 need = (u64)(target - count);
	u64 span = (need + 1) * 2 * PAGE;
	int room_below = win_start > (65ULL << 30) + span;
	int big = -1;
	for (int i = 0; i < nwalls; i++)
		if (big < 0 || wall_end[i] - wall_start[i] > wall_end[big] - wall_start[big])
			big = i;
	if (big >= 0 && wall_end[big] - wall_start[big] <= (need + 16) * PAGE)
		big = -1;
	if (need > 0 && big >= 0 && (need >= PAD_IN_WALL_MIN || !room_below)) {
		u64 hole = wall_end[big] - need * PAGE;
		long r = sys2(SYS_munmap, hole, need * PAGE);
		if (is_err(r)) {
			result_sys(o->idx, r);
			return;
		}
		wall_end[big] = hole;
		for (u64 i = 0; i < need; i++) {
			r = pad_map(hole + i * PAGE, (i & 1) ? PROT_READ : PROT_NONE);
			if (is_err(r)) {
				result_sys(o->idx, r);
				return;
			}
		}
	} else if (need > 0) {
		/* without walls (walls=false) the space above the window is free too */
		u64 a = room_below ? win_start - (64ULL << 30) - span : win_end + (64ULL << 30);
		u64 tries = 4 * need + 4096; /* bounded: never crawl through something huge */
		while (count < target) {
			if (tries-- == 0) {
				result(o->idx, 0, EAGAIN);
				return;
			}
			long r = pad_map(a, PROT_NONE);
			a += 2 * PAGE;
			if (r == -EEXIST)
				continue;
			if (is_err(r)) {
				result_sys(o->idx, r);
				return;
			}
			count++;
		}
	}
	/* recount: the contract promises exactly max - headroom */
	result(o->idx, 0, map_count() == target ? 0 : EAGAIN);
}

/* ------------------------------------------------------------------ walls */

static u64 boot_start[MAX_BOOT_VMAS], boot_end[MAX_BOOT_VMAS];

static void wall(int fd, u64 from, u64 to)
{
	long r = sys6(SYS_mmap, (long)from, (long)(to - from), PROT_NONE, MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
	if (!is_err(r) && nwalls < MAX_WALLS) {
		wall_start[nwalls] = from;
		wall_end[nwalls++] = to;
	}
}

/* Take every gap between the window end and (stack - 2 MiB) with PROT_NONE shared
 * memfd mappings: they never merge with anything, so hint-less mmaps are placed
 * top-down from the window end and placement becomes deterministic. */
static void build_walls(void)
{
	struct reader r = {.buf = pbuf, .cap = sizeof pbuf};
	char *line;
	size_t len;
	int n = 0;
	u64 s, e, stack = 0x7ffffffff000ULL;
	r.fd = open_proc("/proc/self/maps");
	if (r.fd < 0)
		return;
	while ((line = rd_line(&r, &len))) {
		if (!vma_header(line, &s, &e))
			continue;
		if (ends_with(line, len, "[stack]"))
			stack = s;
		if (n < MAX_BOOT_VMAS) {
			boot_start[n] = s;
			boot_end[n] = e;
			n++;
		}
	}
	sys1(SYS_close, r.fd);
	u64 limit = stack - (2ULL << 20);
	long fd = sys2(SYS_memfd_create, "vmasim-wall", MFD_CLOEXEC);
	if (is_err(fd))
		return;
	u64 cur = win_end;
	for (int i = 0; i < n && cur < limit; i++) {
		if (boot_end[i] <= cur)
			continue;
		if (boot_start[i] >= limit)
			break;
		if (boot_start[i] > cur)
			wall((int)fd, cur, boot_start[i]);
		cur = boot_end[i];
	}
	if (cur < limit)
		wall((int)fd, cur, limit);
	sys1(SYS_close, fd);
}

/* ------------------------------------------------------------------ ops */

static void run_ops(int lo, int hi);

static void op_sbrk(const struct op *o)
{
	/* libc's sbrk, with the initial break as the floor (the contract's empty heap). */
	int64_t inc = (int64_t)arg(o, 0);
	u64 old = cur_brk;
	if (inc == 0) {
		bind(o, old);
		result(o->idx, old - init_brk, 0);
		return;
	}
	u64 want = old + (u64)inc;
	if ((inc > 0 && want < old) || (inc < 0 && (u64)(-(inc + 1)) + 1 > old - init_brk)) {
		bind(o, (u64)-1);
		result(o->idx, 0, ENOMEM);
		return;
	}
	u64 got = (u64)sys1(SYS_brk, want);
	if (got != want) {
		bind(o, (u64)-1);
		result(o->idx, 0, ENOMEM);
		return;
	}
	cur_brk = want;
	state_seal();
	bind(o, old);
	result(o->idx, old - init_brk, 0);
}

/* brk(2) itself.  The program's heap starts at the initial break (the contract's
 * empty heap): an address below it only asks for the break, as on the model, and
 * never shrinks the executor's own early heap (static glibc's TLS lives there). */
static void op_brk(const struct op *o)
{
	u64 want = arg(o, 0);
	u64 now = want < init_brk ? cur_brk : (u64)sys1(SYS_brk, want);
	cur_brk = now;
	state_seal();
	bind(o, now);
	result(o->idx, now - init_brk, 0);
}

/* ------------------------------------------------------------------ SysV shm */

/*
 * A segment outlives the processes that made it, so the runner must remove it.
 * Where it can, the program runs in an IPC namespace of its own (features bit 1:
 * unshare(CLONE_NEWIPC) needs CAP_SYS_ADMIN), which takes its segments with it
 * when its last process exits, whatever killed it.  Elsewhere each segment is
 * announced ("S ... 0") on the output, which the driver relays and scans, and
 * the driver removes every announced segment when the program is over (also
 * when it was killed, and when vmasim goes away: on_term).
 */
static void op_shmget(const struct op *o)
{
	long id = sys3(SYS_shmget, IPC_PRIVATE_KEY, (long)arg(o, 0), IPC_CREAT_FLAG | 0600 | (long)arg(o, 1));
	if (is_err(id)) {
		bind(o, (u64)-1);
		result_sys(o->idx, id);
		return;
	}
	bind(o, (u64)id);
	result(o->idx, 0, 0);
	ostr("S ");
	odec(o->idx);
	och(' ');
	odec(id);
	och(' ');
	odec(shm_private);
	och('\n');
	/* announced before anything else can happen: a kill after this still finds it */
	oflush();
}

/* process_madvise on our own process (a pidfd of it, opened for the call).  The
 * ranges come packed in a string argument: per range a 32-bit slot (-1: none), a
 * 64-bit offset and a 64-bit length, little-endian; the iovecs are built in pbuf. */
static void op_process_madvise(const struct op *o)
{
	const unsigned char *p = (const unsigned char *)(uintptr_t)arg(o, 0);
	u64 n = arg(o, 1);
	struct { u64 base, len; } *iov = (void *)pbuf;
	if (n > sizeof pbuf / sizeof *iov) {
		result(o->idx, 0, EINVAL);
		return;
	}
	for (u64 k = 0; k < n; k++, p += 20) {
		int32_t slot;
		u64 off, len;
		memcpy(&slot, p, 4);
		memcpy(&off, p + 4, 8);
		memcpy(&len, p + 12, 8);
		if (slot >= MAX_SLOTS)
			corrupted(o->idx);
		iov[k].base = (slot >= 0 ? slot_value(slot, o->idx) : 0) + off;
		iov[k].len = len;
	}
	long pidfd = sys2(NR_PIDFD_OPEN, self_pid, 0);
	if (is_err(pidfd)) {
		result_sys(o->idx, pidfd);
		return;
	}
	long r = sys6(NR_PROCESS_MADVISE, pidfd, (long)iov, (long)n, (long)arg(o, 2), (long)arg(o, 3), 0);
	sys1(SYS_close, pidfd);
	result_sys(o->idx, r);
}

static void child_report_end(void)
{
	oflush();
	state_check(NULL);
	dump();
	oflush();
}

/* ------------------------------------------------------------------ exec */

/*
 * The exec op replaces the process's address space the way the kernel does, by
 * executing this binary again; the new image goes on with the ops after the
 * exec op, so its layout is the runner's baseline (the same static image, ASLR
 * still off: personality and rlimits survive execve) plus the walls, rebuilt.
 * What the new image needs of the old one (the parsed program, the slots, the
 * strings, where to go on) travels in a memfd that is not close-on-exec; the
 * program's own descriptors are made to survive (as a program's descriptors
 * without O_CLOEXEC do).  The results so far were written out before the exec;
 * the exec op's own result is written by the new image, once it runs.
 */
#define RESUME_MAGIC 0x766d617369657865ULL

struct resume_state {
	u64 magic;
	u64 win_start, win_end, init_brk;
	long task_limit;
	size_t strpool_len;
	int nops, nslots, walls, features, shm_private, depth, nofile_raised;
	int exec_idx, resume_at, resume_end;
	pid_t driver_pid;
	unsigned file_counter;
};

static char **saved_envp;
static void init_heap(void);
static void open_uffd_set(void);
static void set_handler(int sig, void (*fn)(int), int flags);
static int nofile_raised;

static int write_full(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n > 0) {
		long w = sys3(SYS_write, fd, c, n);
		if (w == -EINTR)
			continue;
		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

static int read_full(int fd, void *p, size_t n)
{
	char *c = p;
	while (n > 0) {
		long r = sys3(SYS_read, fd, c, n);
		if (r == -EINTR)
			continue;
		if (r <= 0)
			return -1;
		c += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Every descriptor of the program survives the exec; ours (the uffd epoll set) do not. */
static void keep_fds_across_exec(void)
{
	long dfd = sys4(SYS_openat, AT_FDCWD, "/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (is_err(dfd))
		return;
	for (;;) {
		long n = sys3(SYS_getdents64, dfd, pbuf, sizeof pbuf);
		if (n <= 0)
			break;
		for (long off = 0; off < n;) {
			const struct { u64 ino; int64_t off; unsigned short reclen; unsigned char type; char name[]; } *d =
				(const void *)(pbuf + off);
			off += d->reclen;
			const char *q = d->name;
			if (*q < '0' || *q > '9')
				continue;
			long fd = (long)parse_dec(&q);
			if (fd > 2 && fd != dfd && fd != ep_fd)
				sys3(SYS_fcntl, fd, F_SETFD, 0);
		}
	}
	sys1(SYS_close, dfd);
}

static void op_exec(const struct op *o, int i, int hi)
{
	oflush();
	long mfd = sys2(SYS_memfd_create, "vmasim-exec", 0);
	if (is_err(mfd)) {
		result_sys(o->idx, mfd);
		return;
	}
	int nslots = 0;
	for (int k = 0; k < nops; k++) {
		if (ops[k].out >= nslots)
			nslots = ops[k].out + 1;
		for (int a = 0; a < MAX_ARGS; a++)
			if (ops[k].slot[a] >= nslots)
				nslots = ops[k].slot[a] + 1;
	}
	for (int k = 0; k < nops; k++) {
		/* process_madvise's ranges name slots too, inside their strings */
		if (ops[k].code != 'V' || ops[k].slot[0] >= 0 || ops[k].slot[1] >= 0 || ops[k].imm[1] > 4096)
			continue;
		const unsigned char *e = (const unsigned char *)(uintptr_t)ops[k].imm[0];
		for (u64 m = 0; m < ops[k].imm[1]; m++, e += 20) {
			int32_t sl;
			memcpy(&sl, e, 4);
			if (sl >= nslots && sl < MAX_SLOTS)
				nslots = sl + 1;
		}
	}
	struct resume_state st = {
		.magic = RESUME_MAGIC, .win_start = win_start, .win_end = win_end, .init_brk = init_brk,
		.task_limit = task_limit, .strpool_len = strpool_len, .nops = nops, .nslots = nslots,
		.walls = walls, .features = features, .shm_private = shm_private, .depth = depth,
		.nofile_raised = nofile_raised, .exec_idx = o->idx, .resume_at = i + 1, .resume_end = hi,
		.driver_pid = driver_pid, .file_counter = file_counter,
	};
	if (write_full((int)mfd, &st, sizeof st) || write_full((int)mfd, ops, (size_t)nops * sizeof *ops) ||
	    write_full((int)mfd, slots, (size_t)nslots * sizeof *slots) ||
	    write_full((int)mfd, slot_check, (size_t)nslots * sizeof *slot_check) ||
	    write_full((int)mfd, strpool, strpool_len) || sys3(SYS_lseek, mfd, 0, SEEK_SET) != 0) {
		sys1(SYS_close, mfd);
		result(o->idx, 0, ENOMEM);
		return;
	}
	keep_fds_across_exec();
	char fdtext[24];
	char *p = put_dec(fdtext, (unsigned long)mfd);
	*p = 0;
	char *argv[] = {"vmasim-executor", "--resume", fdtext, (char *)tmpdir, NULL};
	long r = sys3(SYS_execve, "/proc/self/exe", argv, saved_envp);
	sys1(SYS_close, mfd);
	result_sys(o->idx, r);
}

/* The new image after an exec op: read the program back and go on after the exec op. */
static void resume(const char *fdtext, const char *dir)
{
	const char *q = fdtext;
	int fd = (int)parse_dec(&q);
	struct resume_state st;
	if (read_full(fd, &st, sizeof st) || st.magic != RESUME_MAGIC || st.nops < 0 || st.nops > MAX_OPS ||
	    st.nslots < 0 || st.nslots > MAX_SLOTS || st.strpool_len > sizeof strpool || st.resume_at < 0 ||
	    st.resume_end > st.nops || st.resume_at > st.resume_end)
		sys1(SYS_exit_group, 3);
	if (read_full(fd, ops, (size_t)st.nops * sizeof *ops) || read_full(fd, slots, (size_t)st.nslots * sizeof *slots) ||
	    read_full(fd, slot_check, (size_t)st.nslots * sizeof *slot_check) || read_full(fd, strpool, st.strpool_len))
		sys1(SYS_exit_group, 3);
	sys1(SYS_close, fd);
	nops = st.nops;
	strpool_len = st.strpool_len;
	win_start = st.win_start;
	win_end = st.win_end;
	walls = st.walls;
	features = st.features;
	shm_private = st.shm_private;
	depth = st.depth;
	task_limit = st.task_limit;
	nofile_raised = st.nofile_raised;
	driver_pid = st.driver_pid;
	file_counter = st.file_counter;
	tmpdir = dir;
	/* handlers do not survive execve */
	set_handler(SIGSEGV, on_signal, SA_NODEFER);
	set_handler(SIGBUS, on_signal, SA_NODEFER);
	set_handler(SIGUSR1, on_signal, SA_NODEFER);
	self_pid = getpid();
	init_heap();
	if (init_brk != st.init_brk)
		corrupted(st.exec_idx); /* not the runner's baseline: nothing after this would compare */
	nwalls = 0;
	ep_fd = -1;
	ep_owner = 0;
	nuffd = 0;
	open_uffd_set();
	state_seal();
	if (walls)
		build_walls();
	result(st.exec_idx, 0, 0);
	run_ops(st.resume_at, st.resume_end);
	child_report_end();
	_exit(0);
}

/* The program would have more processes than it may: say so at this fork op and
 * stop the whole program (its processes are one process group). */
static void stop_for_tasks(const struct op *o, int refused)
{
	ostr("L ");
	odec(o->idx);
	och(' ');
	odec(refused);
	och('\n');
	oflush();
	sys2(SYS_kill, 0, SIGKILL);
	for (;;)
		sys0(SYS_pause);
}

static void op_fork(const struct op *o, int i)
{
	int nchild = (int)arg(o, 0);
	if (depth + 1 >= task_limit)
		stop_for_tasks(o, 0);
	och('C');
	och(' ');
	odec(o->idx);
	och('\n');
	/* flush first: the child starts with an empty buffer, and the parent waits,
	 * so the child's lines land between "C" and "Z" in the stream */
	oflush();
	pid_t parent = self_pid;
	pid_t pid = fork();
	if (pid == 0) {
		/* PDEATHSIG is cleared by fork: set it again in every generation */
		sys2(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		self_pid = getpid();
		depth++;
		state_seal();
		nuffd = 0; /* the inherited set is the parent's: see the uffd watcher */
		run_ops(i + 1, i + 1 + nchild);
		child_report_end();
		_exit(0);
	}
	if (pid < 0) {
		int err = errno;
		ostr("Z ");
		odec(depth);
		ostr(" -1\n");
		/* EAGAIN: a task limit (pids.max, RLIMIT_NPROC, threads-max), never an
		 * answer about the address space; a program is not run into it */
		if (err == EAGAIN)
			stop_for_tasks(o, 1);
		result(o->idx, 0, err);
		return;
	}
	int st = 0;
	while (sys4(SYS_wait4, pid, &st, 0, 0) == -EINTR)
		;
	/* A child that died may have left half a line: end it.  The depth lets the
	 * reader close the reports of descendants that died before closing theirs. */
	ostr(st ? "\nZ " : "Z ");
	odec(depth);
	och(' ');
	odec(st);
	och('\n');
	result(o->idx, 0, 0);
}

static void run_op(const struct op *o, int i)
{
	long r;
	switch (o->code) {
	case 's': /* a plain syscall: arg 0 = number */
		r = sys6((long)arg(o, 0), (long)arg(o, 1), (long)arg(o, 2), (long)arg(o, 3), (long)arg(o, 4),
			 (long)arg(o, 5), (long)arg(o, 6));
		result_sys(o->idx, is_err(r) ? r : 0);
		break;
	case 'm': /* a syscall returning an address (mmap, mremap), bound even when it failed */
		r = sys6((long)arg(o, 0), (long)arg(o, 1), (long)arg(o, 2), (long)arg(o, 3), (long)arg(o, 4),
			 (long)arg(o, 5), (long)arg(o, 6));
		bind(o, is_err(r) ? (u64)-1 : (u64)r);
		result_sys(o->idx, r);
		break;
	case 'N': { /* mbind: maxnode 65 = a 64-bit nodemask */
		u64 nodes = arg(o, 3);
		r = sys6(SYS_mbind, (long)arg(o, 0), (long)arg(o, 1), (long)arg(o, 2), (long)&nodes, 65,
			 (long)arg(o, 4));
		result_sys(o->idx, is_err(r) ? r : 0);
		break;
	}
	case 'Q': {
		u64 nodes = arg(o, 1);
		r = sys3(SYS_set_mempolicy, arg(o, 0), &nodes, 65);
		result_sys(o->idx, is_err(r) ? r : 0);
		break;
	}
	case 't':
		op_touch(o);
		break;
	case 'b':
		op_sbrk(o);
		break;
	case 'k':
		op_brk(o);
		break;
	case 'v': /* a plain syscall whose value is the result (pkey_alloc) */
		r = sys6((long)arg(o, 0), (long)arg(o, 1), (long)arg(o, 2), (long)arg(o, 3), (long)arg(o, 4),
			 (long)arg(o, 5), (long)arg(o, 6));
		result_sys(o->idx, r);
		break;
	case 'W': { /* pwrite from the /proc reader's buffer: what the bytes are does not matter */
		long fd = (long)arg(o, 0);
		u64 len = arg(o, 2) > sizeof pbuf ? sizeof pbuf : arg(o, 2);
		r = fd < 0 ? -EBADF : sys4(SYS_pwrite64, fd, pbuf, len, (long)arg(o, 1));
		result_sys(o->idx, r);
		break;
	}
	case 'I':
		op_shmget(o);
		break;
	case 'V':
		op_process_madvise(o);
		break;
	case 'M':
		finish_object(o, sys2(SYS_memfd_create, "vmasim", 0), arg(o, 0));
		break;
	case 'F':
		op_file(o);
		break;
	case 'O':
		op_open(o);
		break;
	case 'D':
		op_dup(o);
		break;
	case 'C':
		op_close(o);
		break;
	case 'U':
		op_userfaultfd(o);
		break;
	case 'G':
		op_uffd_register(o, 1);
		break;
	case 'g':
		op_uffd_register(o, 0);
		break;
	case 'X':
		op_pad(o);
		break;
	case 'K':
		op_fork(o, i);
		break;
	default:
		result(o->idx, 0, ENOSYS);
	}
}

static void run_ops(int lo, int hi)
{
	for (int i = lo; i < hi && i < nops;) {
		const struct op *o = &ops[i];
		/* The results so far reach stdout before this op runs: if it kills the
		 * process, the report keeps them and names this op. */
		if (olen)
			oflush();
		state_check(o);
		if (o->code == 'e') {
			op_exec(o, i, hi); /* back only if the exec failed */
			i++;
			continue;
		}
		pid_t w = nuffd > 0 ? watcher_start(o) : 0;
		run_op(o, i);
		if (w)
			watcher_stop(w);
		i += 1 + (o->code == 'K' ? (int)arg(o, 0) : 0);
	}
}

/* ------------------------------------------------------------------ driver */

static volatile sig_atomic_t alarm_fired;
static void on_alarm(int sig)
{
	(void)sig;
	alarm_fired = 1;
}

static void set_handler(int sig, void (*fn)(int), int flags)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = fn;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	sigaction(sig, &sa, NULL);
}

/* Limits, from the command line. */
static int cg_leave[MAX_CGROUPS];
static int ncg_leave;
static const char *cg_rmdir[MAX_CGROUPS];
static int ncg_rmdir;
static int oom_fd = -1;
static u64 rss_limit;
static volatile pid_t running; /* the program child being waited for */

/* The epoll set takes an fd: opened at the start of each program, with one
 * more fd allowed (raised once, in the driver), the program can open exactly
 * as many files as it could without the set (EMFILE comes at the same op).
 * Where the limit cannot be raised, the set is opened with the first
 * userfaultfd instead, so that only a program that has one loses an fd. */
static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return;
	rl.rlim_cur++;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < rl.rlim_cur)
		rl.rlim_max = rl.rlim_cur;
	nofile_raised = setrlimit(RLIMIT_NOFILE, &rl) == 0;
}

static void open_uffd_set(void)
{
	ep_fd = -1;
	ep_owner = 0;
	if (nofile_raised)
		uffd_set();
}

static void program_child(void)
{
	sys2(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != driver_pid)
		_exit(1);
	setpgid(0, 0); /* one group per program: a timeout kills all of it */
	set_handler(SIGALRM, SIG_DFL, 0);
	set_handler(SIGTERM, SIG_DFL, 0);
	set_handler(SIGPIPE, SIG_DFL, 0);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* We share the driver's cgroups: whatever the OOM killer kills when the
	 * program goes over its cap, it must be the program, never the driver.
	 * (Raising one's own oom_score_adj needs no privilege; it changes nothing else.) */
	long adj = sys4(SYS_openat, AT_FDCWD, "/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC, 0);
	if (!is_err(adj)) {
		sys3(SYS_write, adj, "1000", 4);
		sys1(SYS_close, adj);
	}
	/* the program's fd table holds stdin, stdout, stderr and nothing of ours */
	for (int k = 0; k < ncg_leave; k++)
		sys1(SYS_close, cg_leave[k]);
	if (oom_fd >= 0)
		sys1(SYS_close, oom_fd);
	self_pid = getpid();
	depth = 0;
	nuffd = 0;
	nwalls = 0;
	file_counter = 0;
	/* SysV segments die with a namespace of the program's own, if we may make one (see "SysV shm") */
	shm_private = (features & 1) && sys1(SYS_unshare, CLONE_NEWIPC) == 0;
	open_uffd_set();
	state_seal();
	if (walls)
		build_walls();
	ostr("H ");
	ohex(init_brk);
	och('\n');
	run_ops(0, nops);
	child_report_end();
	_exit(0);
}

/* The memory cgroup's count of OOM kills ("oom_kill N" in memory.events of
 * cgroup v2 and memory.oom_control of v1); 0 without a cgroup. */
static long oom_kills(void)
{
	char t[512];
	if (oom_fd < 0)
		return 0;
	long n = sys4(SYS_pread64, oom_fd, t, sizeof t - 1, 0);
	if (n <= 0)
		return 0;
	t[n] = 0;
	const char *p = strstr(t, "oom_kill ");
	if (!p)
		return 0;
	p += 9;
	return (long)parse_dec(&p);
}

/*
 * The RSS watchdog, for hosts where no memory cgroup can be made: the summed
 * resident memory of the program's processes (its process group), read from
 * /proc/PID/stat.  Shared pages count once per process that maps them, so it
 * errs towards stopping early; memory nobody maps (a memfd's pages after
 * munmap, page cache) escapes it.  The uffd watchers share the mm they watch
 * and are skipped by name.
 */
#define WATCH_TICK_MS 20
/* the driver's scratch: pbuf, which only program children use */
static char *const dentbuf = pbuf;
static char *const statbuf = pbuf + 16384; /* (pbuf + 32768: the output relay) */
#define DENTBUF_SIZE 16384
#define STATBUF_SIZE 1024

struct dirent64_raw {
	u64 ino;
	int64_t off;
	unsigned short reclen;
	unsigned char type;
	char name[];
};

static u64 group_rss(pid_t pgid)
{
	long dfd = sys4(SYS_openat, AT_FDCWD, "/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (is_err(dfd))
		return 0;
	u64 pages = 0;
	for (;;) {
		long n = sys3(SYS_getdents64, dfd, dentbuf, DENTBUF_SIZE);
		if (n <= 0)
			break;
		for (long off = 0; off < n;) {
			const struct dirent64_raw *d = (const void *)(dentbuf + off);
			off += d->reclen;
			size_t len = strlen(d->name);
			if (d->name[0] < '1' || d->name[0] > '9' || len > 20)
				continue;
			char path[40] = "/proc/";
			memcpy(path + 6, d->name, len);
			memcpy(path + 6 + len, "/stat", 6);
			long fd = sys4(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
			if (is_err(fd))
				continue;
			long m = sys3(SYS_read, fd, statbuf, STATBUF_SIZE - 1);
			sys1(SYS_close, fd);
			if (m <= 0)
				continue;
			statbuf[m] = 0;
			const char *lp = strchr(statbuf, '(');
			const char *rp = strrchr(statbuf, ')');
			if (!lp || !rp || (rp - lp == 13 && memcmp(lp + 1, "vmasim-watch", 12) == 0))
				continue;
			/* after the comm: field 3 (state) ... field 5 (pgrp) ... field 24 (rss, pages) */
			const char *p = rp + 1;
			long long pgrp = -1, rss = 0;
			for (int field = 3; field <= 24 && *p; field++) {
				p = skip_sp(p);
				if (field == 5)
					pgrp = parse_dec(&p);
				else if (field == 24)
					rss = parse_dec(&p);
				while (*p && *p != ' ')
					p++;
			}
			if (pgrp == pgid && rss > 0)
				pages += (u64)rss;
		}
	}
	sys1(SYS_close, dfd);
	return pages * PAGE;
}

static void kill_program(pid_t pid)
{
	sys2(SYS_kill, -pid, SIGKILL);
	sys2(SYS_kill, pid, SIGKILL);
}

/* A timer tick while a program runs: stop it if it timed out or (watchdog) grew too big. */
static void tick(pid_t pid, char *kind, long *elapsed, long tick_ms, long timeout_ms)
{
	if (!alarm_fired || *kind != 'O')
		return;
	alarm_fired = 0;
	*elapsed += tick_ms;
	if (*elapsed >= timeout_ms) {
		*kind = 'T';
		kill_program(pid);
	} else if (rss_limit && group_rss(pid) > rss_limit) {
		*kind = 'M';
		kill_program(pid);
	}
}

/* The SysV segments the program announced (host IPC namespace only), removed when it is over.
 * kernel.shmmni (4096 by default) bounds how many one namespace can hold. */
#define MAX_SEGMENTS 4096
static int shm_ids[MAX_SEGMENTS];
static int nshm;
static int scan_bol = 1, scan_in;
static char scan_line[64];
static size_t scan_len;

static void remove_segments(void)
{
	for (int k = 0; k < nshm; k++)
		sys3(SYS_shmctl, shm_ids[k], IPC_RMID_CMD, 0);
	nshm = 0;
}

/* Relay program output, noting "S <idx> <shmid> 0" lines on the way (lines may span reads). */
static void relay_out(const char *p, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		char c = p[k];
		if (scan_in) {
			if (c == '\n') {
				scan_line[scan_len] = 0;
				const char *q = skip_sp(scan_line);
				(void)parse_dec(&q);
				q = skip_sp(q);
				long long id = parse_dec(&q);
				q = skip_sp(q);
				if (*q == '0' && id >= 0) {
					if (nshm < MAX_SEGMENTS)
						shm_ids[nshm++] = (int)id;
					else /* no room to remember it: it must not outlive the program */
						sys3(SYS_shmctl, (long)id, IPC_RMID_CMD, 0);
				}
				scan_in = 0;
			} else if (scan_len < sizeof scan_line - 1) {
				scan_line[scan_len++] = c;
			}
		} else if (scan_bol && c == 'S') {
			scan_in = 1;
			scan_len = 0;
		}
		scan_bol = c == '\n';
	}
	oput(p, n);
}

/* Run one parsed program in a fresh child; returns its wait status and sets *kind:
 * 'O' it ended by itself, 'T' timed out, 'M' stopped by the RSS watchdog.
 *
 * The program's processes write to a pipe that we relay to our stdout: they
 * write once per op (so that a process that dies leaves its results), and a
 * write that only wakes us is much cheaper than one that wakes vmasim. */
static int run_program(long timeout_ms, char *kind)
{
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) != 0)
		return -1;
	sigset_t term, old;
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	/* no SIGTERM between the fork and `running`: its handler must see the child */
	sigprocmask(SIG_BLOCK, &term, &old);
	pid_t pid = fork();
	if (pid == 0) {
		sys2(SYS_dup2, pfd[1], 1);
		sys1(SYS_close, pfd[0]);
		sys1(SYS_close, pfd[1]);
		program_child();
	}
	if (pid > 0)
		running = pid;
	sigprocmask(SIG_SETMASK, &old, NULL);
	sys1(SYS_close, pfd[1]);
	if (pid < 0) {
		sys1(SYS_close, pfd[0]);
		return -1;
	}
	setpgid(pid, pid);
	scan_bol = 1;
	scan_in = 0;
	/* the watchdog samples every tick; without it one tick is the whole timeout */
	long tick_ms = rss_limit ? WATCH_TICK_MS : timeout_ms;
	struct itimerval it = {.it_value = {.tv_sec = tick_ms / 1000, .tv_usec = (tick_ms % 1000) * 1000}};
	if (rss_limit)
		it.it_interval = it.it_value;
	long elapsed = 0;
	alarm_fired = 0;
	*kind = 'O';
	setitimer(ITIMER_REAL, &it, NULL);
	/* Relay until every process of the program has closed the pipe (exited).
	 * Waiting on the pipe would wake us at every op; so we wait for the first
	 * process to exit (a pidfd) and drain the pipe only now and then, which a
	 * large pipe makes rare. */
	char *relay = pbuf + 32768;
	long pidfd = sys2(SYS_pidfd_open, pid, 0);
	if (!is_err(pidfd)) {
		sys3(SYS_fcntl, pfd[0], F_SETPIPE_SZ, 1 << 20);
		sys3(SYS_fcntl, pfd[0], F_SETFL, O_NONBLOCK);
		for (;;) {
			struct pollfd pf = {.fd = (int)pidfd, .events = POLLIN};
			long r = sys3(SYS_poll, &pf, 1, 10);
			long n;
			while ((n = sys3(SYS_read, pfd[0], relay, 32768)) > 0)
				relay_out(relay, (size_t)n);
			if (r == -EINTR)
				tick(pid, kind, &elapsed, tick_ms, timeout_ms);
			else if (r > 0 || n == 0)
				break;
		}
		sys1(SYS_close, pidfd);
		sys3(SYS_fcntl, pfd[0], F_SETFL, 0);
	}
	for (;;) {
		long n = sys3(SYS_read, pfd[0], relay, 32768);
		if (n > 0)
			relay_out(relay, (size_t)n);
		else if (n == -EINTR)
			tick(pid, kind, &elapsed, tick_ms, timeout_ms);
		else
			break;
	}
	sys1(SYS_close, pfd[0]);
	int st = 0;
	for (;;) {
		long r = sys4(SYS_wait4, pid, &st, 0, 0);
		if (r == pid)
			break;
		if (r != -EINTR)
			break;
		tick(pid, kind, &elapsed, tick_ms, timeout_ms);
	}
	struct itimerval off = {0};
	setitimer(ITIMER_REAL, &off, NULL);
	if (st != 0 || *kind != 'O') {
		/* Something went wrong: kill whatever is left of the program and reap it.
		 * We are a subreaper, so orphaned descendants come back to us. */
		sys2(SYS_kill, -pid, SIGKILL);
		int s2;
		while (sys4(SYS_wait4, -1, &s2, __WALL, 0) != -ECHILD)
			;
	} else {
		int s2;
		while (sys4(SYS_wait4, -1, &s2, __WALL | WNOHANG, 0) > 0)
			;
	}
	running = 0;
	remove_segments();
	return st;
}

/* The cgroups this driver was given to remove should vmasim die first: empty
 * once no program runs.  A process just reaped can keep one busy for a moment. */
static void remove_cgroups(void)
{
	for (int k = 0; k < ncg_rmdir; k++) {
		for (int tries = 0; tries < 200; tries++) {
			long r = sys1(SYS_rmdir, cg_rmdir[k]);
			if (r != -EBUSY)
				break;
			struct timespec ts = {0, 5 * 1000 * 1000};
			sys2(SYS_nanosleep, &ts, 0);
		}
	}
}

/* SIGTERM, which is also our parent-death signal: vmasim is gone or wants us
 * gone.  Stop the program, reap everything and remove our cgroups, so that a
 * killed vmasim leaves nothing behind. */
static void on_term(int sig)
{
	pid_t pid = running;
	if (pid > 0)
		kill_program(pid);
	int st;
	while (sys4(SYS_wait4, -1, &st, __WALL, 0) != -ECHILD)
		;
	remove_segments();
	/* out of our cgroups, which can then be removed */
	for (int k = 0; k < ncg_leave; k++)
		sys3(SYS_write, cg_leave[k], "0", 1);
	remove_cgroups();
	sys1(SYS_exit_group, 128 + sig);
}

static int is_reexec(int argc, char **argv)
{
	return argc > 3 && strcmp(argv[argc - 1], "--reexec") == 0;
}

static void maybe_reexec(int argc, char **argv, char **envp)
{
	/* Determinism: no ASLR, and never the legacy bottom-up layout that an unlimited
	 * RLIMIT_STACK selects.  Both only take effect at exec, hence the re-exec. */
	static char *nargv[64];
	if (is_reexec(argc, argv) || argc > 62)
		return;
	int need = 0;
	int pers = personality(0xffffffff);
	if (pers != -1 && !(pers & ADDR_NO_RANDOMIZE) && personality((unsigned long)pers | ADDR_NO_RANDOMIZE) != -1)
		need = 1;
	struct rlimit rl;
	if (getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur == RLIM_INFINITY) {
		rl.rlim_cur = 8 << 20;
		if (setrlimit(RLIMIT_STACK, &rl) == 0)
			need = 1;
	}
	if (!need)
		return;
	for (int k = 0; k < argc; k++)
		nargv[k] = argv[k];
	nargv[argc] = "--reexec";
	nargv[argc + 1] = NULL;
	execve("/proc/self/exe", nargv, envp);
}

static void init_heap(void)
{
	/* Static glibc put its TLS on the heap already.  Grow the break by a page and
	 * unmap that page: the hole guarantees that nothing lies just below the
	 * initial break that the program's first growth could merge with. */
	u64 cur = (u64)sys1(SYS_brk, 0);
	u64 a = (cur + PAGE - 1) & ~(PAGE - 1);
	if ((u64)sys1(SYS_brk, a + PAGE) == a + PAGE) {
		sys2(SYS_munmap, a, PAGE);
		init_brk = a + PAGE;
	} else {
		init_brk = cur;
	}
	cur_brk = init_brk;
}

static void die(const char *what, const char *arg)
{
	write_all(2, what, strlen(what));
	write_all(2, arg, strlen(arg));
	write_all(2, "\n", 1);
	sys1(SYS_exit_group, 2);
}

static int has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void parse_options(int argc, char **argv)
{
	for (int k = 3; k < argc; k++) {
		const char *a = argv[k];
		const char *p = strchr(a, '=');
		p = p ? p + 1 : a;
		if (has_prefix(a, "rmdir=") && ncg_rmdir < MAX_CGROUPS)
			cg_rmdir[ncg_rmdir++] = p;
	}
	for (int k = 3; k < argc; k++) {
		const char *a = argv[k];
		const char *p = strchr(a, '=');
		p = p ? p + 1 : a;
		if (has_prefix(a, "tasks=")) {
			task_limit = (long)parse_dec(&p);
			if (task_limit < 1)
				die("executor: bad option ", a);
		} else if (has_prefix(a, "join=")) {
			/* Once, here, rather than per program: moving a task between cgroups
			 * takes a system-wide lock that can make it wait milliseconds. */
			long fd = sys4(SYS_openat, AT_FDCWD, p, O_WRONLY | O_CLOEXEC, 0);
			long r = is_err(fd) ? fd : sys3(SYS_write, fd, "0", 1);
			if (is_err(r))
				die("executor: cannot join the cgroup of ", p);
			sys1(SYS_close, fd);
		} else if (has_prefix(a, "leave=")) {
			long fd = sys4(SYS_openat, AT_FDCWD, p, O_WRONLY | O_CLOEXEC, 0);
			if (is_err(fd) || ncg_leave >= MAX_CGROUPS)
				die("executor: cannot open ", p);
			cg_leave[ncg_leave++] = (int)fd;
		} else if (has_prefix(a, "oom=")) {
			long fd = sys4(SYS_openat, AT_FDCWD, p, O_RDONLY | O_CLOEXEC, 0);
			if (is_err(fd))
				die("executor: cannot open ", p);
			oom_fd = (int)fd;
		} else if (has_prefix(a, "rss=")) {
			rss_limit = (u64)parse_dec(&p);
		} else if (!has_prefix(a, "rmdir=") && strcmp(a, "--reexec") != 0) {
			die("executor: unknown option ", a);
		}
	}
}

static char ibuf[1 << 16];

/*
 * The process's layout below the window is part of the model: the static
 * image (up to the end of bss, then static glibc's TLS on the heap) ends at
 * IMAGE_END and the initial break follows (vmasim/program/model.py), and a
 * program with wild hints or a heap sees exactly that.  So the bss ends at
 * the same page whatever this file holds: this pad takes up what the arrays
 * above leave (tests/kernel/test_model_vs_kernel.py checks the geometry).
 */
#ifndef FOOTPRINT_PAD
#define FOOTPRINT_PAD 0x15520
#endif
static char footprint_pad[FOOTPRINT_PAD] __attribute__((used));

int main(int argc, char **argv, char **envp)
{
	saved_envp = envp;
	if (argc == 4 && strcmp(argv[1], "--resume") == 0)
		resume(argv[2], argv[3]);
	if (argc < 3) {
		static const char usage[] = "usage: executor TMPDIR TIMEOUT_MS [OPTION]... < program-lines\n";
		write_all(2, usage, sizeof usage - 1);
		return 2;
	}
	maybe_reexec(argc, argv, envp);
	tmpdir = argv[1];
	const char *tp = argv[2];
	long timeout_ms = (long)parse_dec(&tp);
	if (timeout_ms <= 0)
		timeout_ms = 10000;
	driver_pid = getpid();
	parse_options(argc, argv);
	set_handler(SIGTERM, on_term, 0);
	set_handler(SIGPIPE, SIG_IGN, 0); /* a reader that died must not stop our cleanup */
	/* (a parent that died before this call closed our stdin: we end at EOF) */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	set_handler(SIGALRM, on_alarm, 0); /* no SA_RESTART: the alarm must break wait4 */
	set_handler(SIGSEGV, on_signal, SA_NODEFER);
	set_handler(SIGBUS, on_signal, SA_NODEFER);
	set_handler(SIGUSR1, on_signal, SA_NODEFER);
	raise_nofile();
	init_heap();

	long oom_seen = oom_kills();
	struct reader in = {.fd = 0, .buf = ibuf, .cap = sizeof ibuf};
	char *line;
	size_t len;
	while ((line = rd_line(&in, &len))) {
		if (line[0] != 'P' || in.cut)
			continue;
		const char *p = skip_sp(line + 1);
		win_start = parse_hex(&p);
		p = skip_sp(p);
		win_end = win_start + parse_hex(&p);
		p = skip_sp(p);
		walls = (int)parse_dec(&p);
		p = skip_sp(p);
		features = (int)parse_dec(&p);
		nops = 0;
		strpool_len = 0;
		int bad = 0;
		while ((line = rd_line(&in, &len)) && !(line[0] == 'E' && line[1] == 0))
			if (!bad && (in.cut || parse_op(line) != 0))
				bad = 1;
		char kind = 'B';
		int st = bad ? -1 : run_program(timeout_ms, &kind);
		long oom_now = oom_kills();
		ostr("\nD ");
		odec(st);
		och(' ');
		och(kind);
		och(' ');
		odec(oom_now - oom_seen);
		och('\n');
		oom_seen = oom_now;
		oflush();
		if (!line)
			break;
	}
	oflush();
	return 0; /* our cgroups go back to vmasim, which reuses them */
}
