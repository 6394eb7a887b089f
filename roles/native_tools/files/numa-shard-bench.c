/* numa-shard-bench - memory bandwidth and latency per NUMA node, for the shard planner.

   usage: numa-shard-bench [--size-mb N] [--iterations N] [--threads N] [--nodes LIST] [--json]

   For each memory node it binds three arrays of --size-mb MiB to the node (default: 4x the
   machine's last-level caches), first-touches them with threads pinned to the node's CPUs
   (the nearest CPU node for CPU-less memory), checks every page with move_pages(2), and
   times read (sum a), copy (c = a) and triad (a = b + 3c), STREAM-style: best of
   --iterations runs, the first excluded; bytes are the ones the kernel names (read 8,
   copy 16, triad 24 per element); results are checked against the expected values.
   It also measures a CPU-node x memory-node read matrix, pointer-chase latency (a random
   cycle through every cache line of the three arrays, each hop to another page, so the
   prefetchers cannot follow) and three placement strategies: shard
   (every thread reads one node's buffer; harmonic mean over nodes), interleave (one buffer
   interleaved over the nodes) and replicate (each CPU node reads a local copy).
   Bandwidth is in GB/s (10^9 bytes/s). --json prints one document that validates against
   schemas/bench-result.schema.json; docs/native-tools.md describes it.

   Exit: 0 done, 1 bad node, not enough memory or a CPU it cannot pin to (it names the CPU),
   2 bad flags, 3 results failed validation.
   Build: gcc -O3 -march=native numa-shard-bench.c -o numa-shard-bench -lpthread
*/
#define _GNU_SOURCE
#define GGML_NUMA_SHARD_IMPLEMENTATION
#define GGML_NUMA_SHARD_STATIC
#include "ggml-numa-shard.h"
#define NUMA_SHARD_TOOL "numa-shard-bench"
#include "numa-shard-tool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define SCHEMA_VERSION 1
#ifndef NUMA_SHARD_CC_VERSION
#if defined(__clang__)
#define NUMA_SHARD_CC_VERSION "clang " __clang_version__
#elif defined(__GNUC__)
#define NUMA_SHARD_CC_VERSION "gcc " __VERSION__
#else
#define NUMA_SHARD_CC_VERSION "unknown"
#endif
#endif

#define SCALAR 3.0
#define PAD 8 /* doubles per per-thread result slot: one cache line */
#define LATENCY_RUNS 3

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- kernels ------------------------------------------------------------------------------ */

static double k_read(const double *restrict a, size_t n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) { /* eight chains, so the adds keep up with memory */
        s0 += a[i]; s1 += a[i + 1]; s2 += a[i + 2]; s3 += a[i + 3];
        s4 += a[i + 4]; s5 += a[i + 5]; s6 += a[i + 6]; s7 += a[i + 7];
    }
    for (; i < n; i++) s0 += a[i];
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
}

static void k_copy(double *restrict c, const double *restrict a, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) c[i] = a[i];
}

static void k_triad(double *restrict a, const double *restrict b, const double *restrict c, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) a[i] = b[i] + SCALAR * c[i];
}

/* ---- a pool of pinned threads that spin between jobs ------------------------------------- */

enum { J_INIT, J_READ, J_COPY, J_TRIAD, J_CHASE };

typedef struct slice {
    double *a, *b, *c;
    size_t n;
} slice;

typedef struct pool {
    int n;          /* workers; worker 0 is the main thread */
    int *cpus;      /* the CPU of each worker */
    pthread_t *threads;
    unsigned gen;   /* bumped to start a job */
    int done, quit;
    int started;    /* workers that have tried to pin */
    int pin_failed; /* the first CPU a worker could not pin to, or -1 */
    int pin_errno;
    int kind;
    int *rank;      /* per worker: its rank in the job, or -1 */
    int nranks;
    slice *slices;  /* per rank */
    double *sums;   /* per rank, PAD apart */
    void *chase;    /* J_CHASE: start of the cycle */
    size_t hops;
} pool;

static void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static void run_rank(pool *p, int r) {
    slice *s = &p->slices[r];
    size_t i;
    switch (p->kind) {
    case J_INIT:
        for (i = 0; i < s->n; i++) {
            s->a[i] = 1.0;
            s->b[i] = 2.0;
            s->c[i] = 0.0;
        }
        break;
    case J_READ: p->sums[r * PAD] = k_read(s->a, s->n); break;
    case J_COPY: k_copy(s->c, s->a, s->n); break;
    case J_TRIAD: k_triad(s->a, s->b, s->c, s->n); break;
    case J_CHASE: { /* continue where the last walk stopped, so no line is fresh in cache */
        void **q = (void **)p->chase;
        for (i = 0; i < p->hops; i++) q = (void **)*q;
        p->chase = q;
        break;
    }
    }
}

static int pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set);
}

typedef struct worker_arg {
    pool *p;
    int me;
} worker_arg;

static void *worker(void *arg) {
    worker_arg *w = (worker_arg *)arg;
    pool *p = w->p;
    unsigned seen = 0;
    if (pin(p->cpus[w->me]) != 0) { /* the main thread reports it and exits; this one stops here */
        int none = -1, e = errno;
        if (__atomic_compare_exchange_n(&p->pin_failed, &none, p->cpus[w->me], 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            __atomic_store_n(&p->pin_errno, e, __ATOMIC_RELEASE);
        __atomic_add_fetch(&p->started, 1, __ATOMIC_RELEASE);
        return NULL;
    }
    __atomic_add_fetch(&p->started, 1, __ATOMIC_RELEASE);
    for (;;) {
        unsigned g;
        while ((g = __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE)) == seen) relax();
        seen = g;
        if (__atomic_load_n(&p->quit, __ATOMIC_ACQUIRE)) break;
        if (p->rank[w->me] >= 0) {
            run_rank(p, p->rank[w->me]);
            __atomic_add_fetch(&p->done, 1, __ATOMIC_RELEASE);
        }
    }
    return NULL;
}

static worker_arg *g_worker_args;

/* Every CPU a worker will pin to must be in this process's allowed set (a cpuset, taskset or
   CPUAffinity= can hide some): say which one is not, before any thread starts. */
static void check_allowed(const pool *p, const ggml_numa_shard_topology *topo) {
    int *allowed, n_allowed, i, j, k;
    char list[256];
    n_allowed = ggml_numa_shard_allowed_cpus(&allowed);
    if (n_allowed < 0) die(1, "cannot read this process's allowed CPUs (sched_getaffinity): %s", strerror(errno));
    for (i = 0; i < p->n; i++) {
        int cpu = p->cpus[i], ok = 0, node = -1;
        for (j = 0; j < n_allowed && !ok; j++) ok = allowed[j] == cpu;
        if (ok) continue;
        for (j = 0; j < topo->n_nodes && node < 0; j++)
            for (k = 0; k < topo->nodes[j].n_cpus; k++)
                if (topo->nodes[j].cpus[k] == cpu) node = topo->nodes[j].id;
        ggml_numa_shard_format_list(allowed, n_allowed, list, sizeof list);
        die(1, "cannot pin to CPU %d of node %d: it is not in this process's allowed CPUs (%s); run it where every "
               "CPU of the measured nodes is allowed, or pass --threads or --nodes",
            cpu, node, list);
    }
    free(allowed);
}

static void pool_start(pool *p) {
    int i;
    p->threads = (pthread_t *)calloc((size_t)p->n, sizeof *p->threads);
    p->rank = (int *)malloc((size_t)p->n * sizeof *p->rank);
    p->slices = (slice *)calloc((size_t)p->n, sizeof *p->slices);
    p->sums = (double *)calloc((size_t)p->n * PAD, sizeof *p->sums);
    g_worker_args = (worker_arg *)calloc((size_t)p->n, sizeof *g_worker_args);
    if (!p->threads || !p->rank || !p->slices || !p->sums || !g_worker_args) die(1, "out of memory");
    if (pin(p->cpus[0]) != 0) die(1, "cannot pin the main thread to CPU %d: %s", p->cpus[0], strerror(errno));
    p->pin_failed = -1;
    for (i = 1; i < p->n; i++) {
        g_worker_args[i].p = p;
        g_worker_args[i].me = i;
        if (pthread_create(&p->threads[i], NULL, worker, &g_worker_args[i]) != 0) die(1, "pthread_create failed");
    }
    /* Every worker pins or fails at once; an unpinned spinning worker would share a CPU and
       stall the jobs, so wait for all of them and stop on the first failure. */
    while (__atomic_load_n(&p->started, __ATOMIC_ACQUIRE) < p->n - 1) sched_yield();
    if (p->pin_failed >= 0)
        die(1, "cannot pin a thread to CPU %d: %s", p->pin_failed, strerror(__atomic_load_n(&p->pin_errno, __ATOMIC_ACQUIRE)));
}

static void pool_stop(pool *p) {
    int i;
    __atomic_store_n(&p->quit, 1, __ATOMIC_RELEASE);
    __atomic_add_fetch(&p->gen, 1, __ATOMIC_RELEASE);
    for (i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
}

/* Run `kind` on the workers listed (slices already set per rank); returns seconds. */
static double pool_run(pool *p, int kind, const int *workers, int n) {
    double t0, t1;
    int i;
    for (i = 0; i < p->n; i++) p->rank[i] = -1;
    for (i = 0; i < n; i++) p->rank[workers[i]] = i;
    p->kind = kind;
    p->nranks = n;
    __atomic_store_n(&p->done, 0, __ATOMIC_RELEASE);
    t0 = now();
    __atomic_add_fetch(&p->gen, 1, __ATOMIC_RELEASE);
    if (p->rank[0] >= 0) {
        run_rank(p, p->rank[0]);
        __atomic_add_fetch(&p->done, 1, __ATOMIC_RELEASE);
    }
    while (__atomic_load_n(&p->done, __ATOMIC_ACQUIRE) < n) relax();
    t1 = now();
    return t1 - t0;
}

/* Split arrays of n doubles over `ranks` ranks, in cache-line multiples. */
static void split(pool *p, int first_rank, int ranks, double *a, double *b, double *c, size_t n) {
    int r;
    for (r = 0; r < ranks; r++) {
        size_t lo = (n * (size_t)r / (size_t)ranks) & ~(size_t)7;
        size_t hi = r + 1 == ranks ? n : (n * (size_t)(r + 1) / (size_t)ranks) & ~(size_t)7;
        slice *s = &p->slices[first_rank + r];
        s->a = a + lo;
        s->b = b ? b + lo : NULL;
        s->c = c ? c + lo : NULL;
        s->n = hi - lo;
    }
}

/* ---- memory ------------------------------------------------------------------------------- */

static size_t g_page;
static ggml_numa_shard_nodemask g_mask;

static double *alloc_on(size_t bytes, int mode, const int *nodes, int n) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die(1, "cannot map %lu MiB: %s", (unsigned long)(bytes >> 20), strerror(errno));
    nodemask_of(&g_mask, nodes, n);
    if (syscall(SYS_mbind, (unsigned long)p, (unsigned long)bytes, (unsigned long)mode, g_mask.bits,
                ggml_numa_shard_nodemask_maxnode(&g_mask), 0U) != 0)
        die(1, "cannot bind memory to node %d: %s", nodes[0], strerror(errno));
    return (double *)p;
}

/* The share of the pages of [p, p + bytes) that sit on the nodes given. */
static double placement(const void *p, size_t bytes, const int *nodes, int n) {
    enum { CHUNK = 4096 };
    void *pages[CHUNK];
    int status[CHUNK];
    size_t total = bytes / g_page, good = 0, i = 0;
    while (i < total) {
        unsigned long k, m = total - i < CHUNK ? (unsigned long)(total - i) : CHUNK;
        if (page_nodes((char *)p + i * g_page, m, g_page, pages, status) != 0) return -1.0;
        for (k = 0; k < m; k++) {
            int j;
            for (j = 0; j < n; j++) good += status[k] == nodes[j];
        }
        i += m;
    }
    return total ? (double)good / (double)total : 1.0;
}

static unsigned long long xorshift(unsigned long long *x) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Link every cache line of the buffers into one cycle (the walk's first word in each line
   points to the next line). Each hop lands on another page, in a random order, so neither
   the prefetchers nor the caches help: the lines are visited in rounds, one line offset
   per round (offsets in random order), every page once per round in a fresh random order. */
static void *build_chase(char **bufs, int nbufs, size_t bytes_each, unsigned long long seed) {
    size_t per = bytes_each / g_page, np = per * (size_t)nbufs, lpp = g_page / 64, k, x;
    size_t *perm = (size_t *)malloc(np * sizeof *perm), *lines = (size_t *)malloc(lpp * sizeof *lines);
    void **prev = NULL, *first = NULL;
    if (!perm || !lines) die(1, "out of memory");
    seed = seed * 0x9e3779b97f4a7c15ULL | 1;
    for (x = 0; x < lpp; x++) lines[x] = x;
    for (x = lpp - 1; x > 0; x--) {
        size_t y = (size_t)(xorshift(&seed) % (x + 1)), t = lines[x];
        lines[x] = lines[y]; lines[y] = t;
    }
    for (x = 0; x < np; x++) perm[x] = x;
    for (k = 0; k < lpp; k++) {
        for (x = np - 1; x > 0; x--) {
            size_t y = (size_t)(xorshift(&seed) % (x + 1)), t = perm[x];
            perm[x] = perm[y]; perm[y] = t;
        }
        for (x = 0; x < np; x++) {
            void **cur = (void **)(bufs[perm[x] / per] + (perm[x] % per) * g_page + lines[k] * 64);
            if (prev) *prev = cur; else first = cur;
            prev = cur;
        }
    }
    *prev = first;
    free(perm);
    free(lines);
    return first;
}

/* ---- host facts --------------------------------------------------------------------------- */

static int read_text(const char *path, char *buf, size_t size) {
    FILE *f = fopen(path, "r");
    size_t got;
    if (!f) return -1;
    got = fread(buf, 1, size - 1, f);
    buf[got] = 0;
    fclose(f);
    while (got && (buf[got - 1] == '\n' || buf[got - 1] == ' ')) buf[--got] = 0;
    return 0;
}

/* The sum of the distinct last-level caches of the CPUs given, in bytes; 0 when unknown. */
static size_t llc_bytes(const ggml_numa_shard_topology *topo) {
    char seen[256][64], path[256], buf[256], shared[64];
    int n_seen = 0, i, j, k;
    size_t total = 0;
    for (i = 0; i < topo->n_nodes; i++)
        for (j = 0; j < topo->nodes[i].n_cpus; j++) {
            int cpu = topo->nodes[i].cpus[j], best = -1, best_level = 0, idx, dup = 0;
            for (idx = 0; idx < 16; idx++) {
                int level;
                snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/cache/index%d/level", cpu, idx);
                if (read_text(path, buf, sizeof buf) != 0) break;
                level = atoi(buf);
                if (level > best_level) { best_level = level; best = idx; }
            }
            if (best < 0) continue;
            snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/cache/index%d/shared_cpu_list", cpu, best);
            if (read_text(path, buf, sizeof buf) != 0) continue;
            snprintf(shared, sizeof shared, "%d:%.60s", best_level, buf);
            for (k = 0; k < n_seen; k++) dup |= strcmp(seen[k], shared) == 0;
            if (dup) continue;
            if (n_seen < 256) strcpy(seen[n_seen++], shared);
            snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/cache/index%d/size", cpu, best);
            if (read_text(path, buf, sizeof buf) == 0) {
                char *end;
                size_t v = strtoul(buf, &end, 10);
                total += *end == 'K' ? v << 10 : *end == 'M' ? v << 20 : v;
            }
        }
    return total;
}

static void cpu_model(char *out, size_t size) {
    static const char *const keys[] = {"model name", "cpu", "Model", "Processor"};
    char line[512];
    size_t k;
    out[0] = 0;
    for (k = 0; k < sizeof keys / sizeof keys[0] && !out[0]; k++) {
        FILE *f = fopen("/proc/cpuinfo", "r");
        if (!f) return;
        while (fgets(line, sizeof line, f)) {
            char *colon = strchr(line, ':');
            size_t klen = strlen(keys[k]);
            if (colon && strncmp(line, keys[k], klen) == 0 && (line[klen] == ' ' || line[klen] == '\t')) {
                char *v = colon + 1;
                while (*v == ' ') v++;
                v[strcspn(v, "\n")] = 0;
                snprintf(out, size, "%s", v);
                break;
            }
        }
        fclose(f);
    }
}

static void thp_mode(char *out, size_t size) {
    char buf[128], *l, *r;
    out[0] = 0;
    if (read_text("/sys/kernel/mm/transparent_hugepage/enabled", buf, sizeof buf) != 0) return;
    l = strchr(buf, '[');
    r = l ? strchr(l, ']') : NULL;
    if (l && r) snprintf(out, size, "%.*s", (int)(r - l - 1), l + 1);
}

/* ---- JSON --------------------------------------------------------------------------------- */

static void json_str_or_null(const char *s) {
    if (s && *s) json_str(s); else printf("null");
}

static void json_matrix(const double *v, int rows, int cols, const char *fmt) {
    int i, j;
    putchar('[');
    for (i = 0; i < rows; i++) {
        printf(i ? ", [" : "[");
        for (j = 0; j < cols; j++) {
            if (j) printf(", ");
            printf(fmt, v[i * cols + j]);
        }
        putchar(']');
    }
    putchar(']');
}

/* ---- the measurement ---------------------------------------------------------------------- */

typedef struct options {
    size_t size_mb;
    int iterations, threads, json;
    const char *nodes;
} options;

typedef struct node_result {
    int id, cpu_node, threads;
    double placement, read, copy, triad, latency_ns, shard;
} node_result;

static void usage(void) {
    printf(
            "usage: numa-shard-bench [--size-mb N] [--iterations N] [--threads N] [--nodes LIST] [--json]\n"
            "  --size-mb N     MiB per array (default: 4x the last-level caches, at least 64)\n"
            "  --iterations N  timed runs per kernel, 2..100; the first is not counted (default 10)\n"
            "  --threads N     threads per CPU node (default: all of its CPUs)\n"
            "  --nodes LIST    memory nodes to measure, e.g. 0,2-3 (default: all)\n"
            "  --json          one JSON document (schemas/bench-result.schema.json)\n");
}

static long parse_num(const char *flag, const char *v, long lo, long hi) {
    char *end;
    long x;
    if (!v) die(2, "%s needs a value", flag);
    errno = 0;
    x = strtol(v, &end, 10);
    if (errno || *end || end == v || x < lo || x > hi) die(2, "%s: expected a number in %ld..%ld, got '%s'", flag, lo, hi, v);
    return x;
}

static options parse_args(int argc, char **argv) {
    options o;
    int i;
    memset(&o, 0, sizeof o);
    o.iterations = 10;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--size-mb") == 0) { o.size_mb = (size_t)parse_num(a, v, 1, 1L << 24); i++; }
        else if (strcmp(a, "--iterations") == 0) { o.iterations = (int)parse_num(a, v, 2, 100); i++; }
        else if (strcmp(a, "--threads") == 0) { o.threads = (int)parse_num(a, v, 1, 1 << 20); i++; }
        else if (strcmp(a, "--nodes") == 0) {
            if (!v) die(2, "--nodes needs a value");
            o.nodes = v;
            i++;
        } else if (strcmp(a, "--json") == 0) o.json = 1;
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { usage(); exit(0); }
        else die(2, "unknown option '%s'", a);
    }
    return o;
}

static double min_after_first(const double *t, int n) {
    double best = t[1];
    int i;
    for (i = 2; i < n; i++) if (t[i] < best) best = t[i];
    return best;
}

static double rel_err(double got, double want) {
    double d = got - want;
    if (d < 0) d = -d;
    return want != 0 ? d / (want < 0 ? -want : want) : d;
}

int main(int argc, char **argv) {
    options o = parse_args(argc, argv);
    ggml_numa_shard_topology topo;
    char err[512], host[256], model[256], thp[64];
    struct utsname uts;
    int *mem = NULL, n_mem = 0, *rows = NULL, n_rows = 0, i, j, k, r, ok = 1;
    int **node_workers, *node_nworkers, *all_workers, n_all = 0;
    size_t llc, array_bytes, n_el, hops;
    double max_err = 0, t_start = now(), *matrix, *latency, interleave_gbps, replicate_gbps, shard_inv = 0;
    node_result *res;
    pool p;

    if (ggml_numa_shard_topology_read(&topo, NULL, err, sizeof err) != 0) die(1, "%s", err);
    if (!topo.numa) { /* no node tree: one node 0 with every CPU */
        long n_cpu = sysconf(_SC_NPROCESSORS_ONLN);
        topo.n_nodes = 1;
        topo.nodes = (ggml_numa_shard_node *)calloc(1, sizeof *topo.nodes);
        topo.nodes[0].cpus = (int *)malloc((size_t)(n_cpu > 0 ? n_cpu : 1) * sizeof(int));
        topo.nodes[0].has_memory = 1;
        topo.nodes[0].mem_total_kb = topo.nodes[0].mem_free_kb = -1;
        for (i = 0; i < (n_cpu > 0 ? n_cpu : 1); i++) topo.nodes[0].cpus[i] = i;
        topo.nodes[0].n_cpus = i;
    }
    g_page = page_size();
    if (ggml_numa_shard_nodemask_init(&g_mask, topo.max_possible) != 0) die(1, "out of memory");

    /* Memory nodes to measure, and the CPU node that drives each. */
    if (o.nodes) {
        n_mem = parse_nodes(&topo, "--nodes", o.nodes, &mem);
    } else {
        mem = (int *)malloc((size_t)topo.n_nodes * sizeof *mem);
        for (i = 0; i < topo.n_nodes; i++) if (topo.nodes[i].has_memory) mem[n_mem++] = topo.nodes[i].id;
        if (!n_mem) die(1, "no online node has memory");
    }
    res = (node_result *)calloc((size_t)n_mem, sizeof *res);
    rows = (int *)malloc((size_t)topo.n_nodes * sizeof *rows);
    for (i = 0; i < n_mem; i++) {
        const ggml_numa_shard_node *nd = ggml_numa_shard_topology_node(&topo, mem[i]);
        int best = -1, best_d = 1 << 30;
        if (nd->n_cpus) best = nd->id;
        else
            for (j = 0; j < topo.n_nodes; j++) {
                int d = ggml_numa_shard_topology_distance(&topo, mem[i], topo.nodes[j].id);
                if (!topo.nodes[j].n_cpus) continue;
                if (d < 0) d = 1 << 29;
                if (d < best_d) { best_d = d; best = topo.nodes[j].id; }
            }
        if (best < 0) die(1, "no node has CPUs to drive node %d", mem[i]);
        res[i].id = mem[i];
        res[i].cpu_node = best;
        for (j = 0; j < n_rows && rows[j] != best; j++) {}
        if (j == n_rows) rows[n_rows++] = best;
    }
    qsort(rows, (size_t)n_rows, sizeof *rows, gns_cmp_int);

    /* One pinned worker per CPU used: --threads CPUs of each row node. */
    memset(&p, 0, sizeof p);
    p.cpus = (int *)malloc(sizeof(int) * (size_t)(1 << 16));
    node_workers = (int **)calloc((size_t)n_rows, sizeof *node_workers);
    node_nworkers = (int *)calloc((size_t)n_rows, sizeof *node_nworkers);
    all_workers = (int *)malloc(sizeof(int) * (size_t)(1 << 16));
    for (i = 0; i < n_rows; i++) {
        const ggml_numa_shard_node *nd = ggml_numa_shard_topology_node(&topo, rows[i]);
        int use = o.threads && o.threads < nd->n_cpus ? o.threads : nd->n_cpus;
        node_workers[i] = (int *)malloc((size_t)use * sizeof(int));
        for (j = 0; j < use && p.n < (1 << 16); j++) {
            p.cpus[p.n] = nd->cpus[j];
            node_workers[i][j] = p.n;
            all_workers[n_all++] = p.n++;
        }
        node_nworkers[i] = use;
    }
    check_allowed(&p, &topo);

    /* Sizes: each array at least 4x the last-level caches, as STREAM asks. */
    llc = llc_bytes(&topo);
    if (!o.size_mb) {
        o.size_mb = llc ? (4 * llc + (1 << 20) - 1) >> 20 : 256;
        if (o.size_mb < 64) o.size_mb = 64;
    }
    array_bytes = (o.size_mb << 20) / g_page * g_page;
    n_el = array_bytes / sizeof(double);
    hops = 3 * array_bytes / 64 < (1 << 21) ? 3 * array_bytes / 64 : (1 << 21); /* at most one lap */
    for (i = 0; i < n_mem; i++) {
        const ggml_numa_shard_node *nd = ggml_numa_shard_topology_node(&topo, mem[i]);
        long long need_kb = (long long)(3 * array_bytes >> 10) + 65536;
        if (nd->mem_free_kb >= 0 && nd->mem_free_kb < need_kb)
            die(1, "node %d has %lld MiB free; three %lu MiB arrays need %lld MiB (use a smaller --size-mb)", mem[i],
                nd->mem_free_kb >> 10, (unsigned long)o.size_mb, need_kb >> 10);
    }
    if (!o.json)
        printf("numa-shard-bench %s: %d memory node(s), %d thread(s), arrays of %lu MiB (LLC %lu MiB), best of %d\n",
               GGML_NUMA_SHARD_VERSION, n_mem, n_all, (unsigned long)o.size_mb, (unsigned long)(llc >> 20),
               o.iterations - 1);

    pool_start(&p);
    matrix = (double *)calloc((size_t)(n_rows * n_mem), sizeof *matrix);
    latency = (double *)calloc((size_t)(n_rows * n_mem), sizeof *latency);
    {
        double *t = (double *)calloc((size_t)o.iterations * 3, sizeof *t);
        for (i = 0; i < n_mem; i++) {
            int row = 0, m = mem[i];
            double *a = alloc_on(array_bytes, MPOL_BIND_, &m, 1), *b = alloc_on(array_bytes, MPOL_BIND_, &m, 1),
                   *c = alloc_on(array_bytes, MPOL_BIND_, &m, 1);
            double av = 1.0, bv = 2.0, cv = 0.0, *tr = t, *tc = t + o.iterations, *tt = t + 2 * o.iterations;
            while (rows[row] != res[i].cpu_node) row++;
            res[i].threads = node_nworkers[row];

            /* First touch by the node's own threads, outside any timing; then check placement. */
            split(&p, 0, node_nworkers[row], a, b, c, n_el);
            pool_run(&p, J_INIT, node_workers[row], node_nworkers[row]);
            res[i].placement = (placement(a, array_bytes, &m, 1) + placement(b, array_bytes, &m, 1) +
                                placement(c, array_bytes, &m, 1)) / 3;
            if (res[i].placement < 0.99)
                fprintf(stderr, "numa-shard-bench: warning: only %.1f%% of node %d's arrays sit on it\n",
                        100 * res[i].placement, m);

            for (k = 0; k < o.iterations; k++) {
                tr[k] = pool_run(&p, J_READ, node_workers[row], node_nworkers[row]);
                for (r = 0; r < node_nworkers[row]; r++) {
                    double e = rel_err(p.sums[r * PAD], av * (double)p.slices[r].n);
                    if (e > max_err) max_err = e;
                }
                tc[k] = pool_run(&p, J_COPY, node_workers[row], node_nworkers[row]);
                cv = av;
                tt[k] = pool_run(&p, J_TRIAD, node_workers[row], node_nworkers[row]);
                av = bv + SCALAR * cv;
            }
            res[i].read = 8.0 * (double)n_el / min_after_first(tr, o.iterations) / 1e9;
            res[i].copy = 16.0 * (double)n_el / min_after_first(tc, o.iterations) / 1e9;
            res[i].triad = 24.0 * (double)n_el / min_after_first(tt, o.iterations) / 1e9;
            for (size_t x = 0; x < n_el; x++) {
                double e = rel_err(a[x], av);
                if (rel_err(b[x], bv) > e) e = rel_err(b[x], bv);
                if (rel_err(c[x], cv) > e) e = rel_err(c[x], cv);
                if (e > max_err) max_err = e;
            }

            /* The read matrix column: every CPU node reads this node's array. */
            for (j = 0; j < n_rows; j++) {
                if (j == row) {
                    matrix[j * n_mem + i] = res[i].read;
                    continue;
                }
                split(&p, 0, node_nworkers[j], a, NULL, NULL, n_el);
                for (k = 0; k < o.iterations; k++) tr[k] = pool_run(&p, J_READ, node_workers[j], node_nworkers[j]);
                matrix[j * n_mem + i] = 8.0 * (double)n_el / min_after_first(tr, o.iterations) / 1e9;
            }
            /* Shard: every thread reads this node's array. */
            split(&p, 0, n_all, a, NULL, NULL, n_el);
            for (k = 0; k < o.iterations; k++) tr[k] = pool_run(&p, J_READ, all_workers, n_all);
            res[i].shard = 8.0 * (double)n_el / min_after_first(tr, o.iterations) / 1e9;
            shard_inv += 1.0 / res[i].shard;

            /* Latency: one thread per CPU node walks a cycle through every line of a, b, c. */
            {
                char *bufs[3];
                bufs[0] = (char *)a; bufs[1] = (char *)b; bufs[2] = (char *)c;
                p.chase = build_chase(bufs, 3, array_bytes, (unsigned long long)m + 1);
                for (j = 0; j < n_rows; j++) {
                    double best = 0;
                    p.hops = 1 << 16;
                    pool_run(&p, J_CHASE, node_workers[j], 1); /* settle the thread and its TLB */
                    p.hops = hops;
                    for (k = 0; k < LATENCY_RUNS; k++) {
                        double s = pool_run(&p, J_CHASE, node_workers[j], 1);
                        if (!k || s < best) best = s;
                    }
                    latency[j * n_mem + i] = best / (double)hops * 1e9;
                }
                res[i].latency_ns = latency[row * n_mem + i];
            }
            munmap(a, array_bytes);
            munmap(b, array_bytes);
            munmap(c, array_bytes);
        }

        /* Interleave: one buffer spread over the measured nodes, read by every thread. */
        {
            double *a = alloc_on(array_bytes, MPOL_INTERLEAVE_, mem, n_mem);
            split(&p, 0, n_all, a, a, a, n_el);
            pool_run(&p, J_INIT, all_workers, n_all);
            for (k = 0; k < o.iterations; k++) t[k] = pool_run(&p, J_READ, all_workers, n_all);
            interleave_gbps = 8.0 * (double)n_el / min_after_first(t, o.iterations) / 1e9;
            munmap(a, array_bytes);
        }
        /* Replicate: each CPU node reads its own copy on its nearest measured memory node. */
        {
            double **copies = (double **)calloc((size_t)n_rows, sizeof *copies);
            int rank = 0;
            for (j = 0; j < n_rows; j++) {
                int best = mem[0], best_d = 1 << 30;
                for (i = 0; i < n_mem; i++) {
                    int d = mem[i] == rows[j] ? -1 : ggml_numa_shard_topology_distance(&topo, rows[j], mem[i]);
                    if (d < best_d) { best_d = d; best = mem[i]; }
                }
                copies[j] = alloc_on(array_bytes, MPOL_BIND_, &best, 1);
                split(&p, rank, node_nworkers[j], copies[j], copies[j], copies[j], n_el);
                rank += node_nworkers[j];
            }
            pool_run(&p, J_INIT, all_workers, n_all);
            for (k = 0; k < o.iterations; k++) t[k] = pool_run(&p, J_READ, all_workers, n_all);
            replicate_gbps = 8.0 * (double)n_el * n_rows / min_after_first(t, o.iterations) / 1e9;
            for (j = 0; j < n_rows; j++) munmap(copies[j], array_bytes);
            free(copies);
        }
        free(t);
    }
    pool_stop(&p);
    ok = max_err <= 1e-9;

    gethostname(host, sizeof host);
    host[sizeof host - 1] = 0;
    cpu_model(model, sizeof model);
    thp_mode(thp, sizeof thp);
    uname(&uts);
    {
        double shard_gbps = n_mem / shard_inv;
        const char *best = shard_gbps >= interleave_gbps && shard_gbps >= replicate_gbps ? "shard"
                           : interleave_gbps >= replicate_gbps                          ? "interleave"
                                                                                        : "replicate";
        if (o.json) {
            printf("{\n  \"schema_version\": %d,\n", SCHEMA_VERSION);
            printf("  \"tool\": {\"name\": \"numa-shard-bench\", \"version\": \"%s\", \"compiler\": ", GGML_NUMA_SHARD_VERSION);
            json_str(NUMA_SHARD_CC_VERSION);
            printf("},\n  \"host\": {\"hostname\": ");
            json_str(host);
            printf(", \"cpu_model\": ");
            json_str_or_null(model);
            printf(", \"kernel\": ");
            json_str(uts.release);
            printf(", \"machine\": ");
            json_str(uts.machine);
            printf(", \"numa\": %s, \"page_size\": %lu, \"llc_bytes\": ", topo.numa ? "true" : "false",
                   (unsigned long)g_page);
            if (llc) printf("%lu", (unsigned long)llc); else printf("null");
            printf(", \"thp\": ");
            json_str_or_null(thp);
            printf("},\n  \"parameters\": {\"size_mb\": %lu, \"array_bytes\": %lu, \"iterations\": %d, "
                   "\"threads_per_node\": ",
                   (unsigned long)o.size_mb, (unsigned long)array_bytes, o.iterations);
            if (o.threads) printf("%d", o.threads); else printf("null");
            printf(", \"nodes\": ");
            json_ints(mem, n_mem);
            printf(", \"threads_total\": %d, \"latency_hops\": %lu, \"latency_bytes\": %lu, \"meets_4x_llc\": ", n_all,
                   (unsigned long)hops, (unsigned long)(3 * array_bytes));
            if (llc) printf(array_bytes >= 4 * llc ? "true" : "false"); else printf("null");
            printf("},\n  \"nodes\": [\n");
            for (i = 0; i < n_mem; i++) {
                const ggml_numa_shard_node *nd = ggml_numa_shard_topology_node(&topo, mem[i]);
                printf("    {\"id\": %d, \"cpus\": ", mem[i]);
                json_ints(nd->cpus, nd->n_cpus);
                printf(", \"memory_mb\": ");
                if (nd->mem_total_kb >= 0) printf("%lld", nd->mem_total_kb >> 10); else printf("null");
                printf(", \"cpu_node\": %d, \"threads\": %d, \"placement\": %.6f, \"read\": %.3f, \"copy\": %.3f, "
                       "\"triad\": %.3f, \"latency_ns\": %.2f}%s\n",
                       res[i].cpu_node, res[i].threads, res[i].placement, res[i].read, res[i].copy, res[i].triad,
                       res[i].latency_ns, i + 1 < n_mem ? "," : "");
            }
            printf("  ],\n  \"matrix\": {\"kernel\": \"read\", \"unit\": \"GB/s\", \"rows\": ");
            json_ints(rows, n_rows);
            printf(", \"columns\": ");
            json_ints(mem, n_mem);
            printf(", \"values\": ");
            json_matrix(matrix, n_rows, n_mem, "%.3f");
            printf("},\n  \"latency\": {\"unit\": \"ns\", \"rows\": ");
            json_ints(rows, n_rows);
            printf(", \"columns\": ");
            json_ints(mem, n_mem);
            printf(", \"values\": ");
            json_matrix(latency, n_rows, n_mem, "%.2f");
            printf("},\n  \"distances\": ");
            if (topo.distance) {
                int *ids = (int *)malloc((size_t)topo.n_nodes * sizeof(int));
                double *d = (double *)malloc((size_t)(topo.n_nodes * topo.n_nodes) * sizeof(double));
                for (i = 0; i < topo.n_nodes; i++) ids[i] = topo.nodes[i].id;
                for (i = 0; i < topo.n_nodes * topo.n_nodes; i++) d[i] = topo.distance[i];
                printf("{\"nodes\": ");
                json_ints(ids, topo.n_nodes);
                printf(", \"values\": ");
                json_matrix(d, topo.n_nodes, topo.n_nodes, "%.0f");
                printf("}");
                free(ids);
                free(d);
            } else {
                printf("null");
            }
            printf(",\n  \"strategies\": {\n    \"shard\": {\"read\": %.3f, \"per_node\": [", shard_gbps);
            for (i = 0; i < n_mem; i++) printf("%s{\"node\": %d, \"read\": %.3f}", i ? ", " : "", mem[i], res[i].shard);
            printf("]},\n    \"interleave\": {\"read\": %.3f, \"nodes\": ", interleave_gbps);
            json_ints(mem, n_mem);
            printf("},\n    \"replicate\": {\"read\": %.3f, \"copies\": %d},\n    \"best\": \"%s\"\n  },\n",
                   replicate_gbps, n_rows, best);
            printf("  \"validation\": {\"ok\": %s, \"max_relative_error\": %.3g},\n", ok ? "true" : "false", max_err);
            printf("  \"elapsed_s\": %.3f\n}\n", now() - t_start);
        } else {
            printf("\n%-6s %-8s %8s %10s %10s %10s %12s %10s\n", "node", "cpu_node", "threads", "read GB/s",
                   "copy GB/s", "triad GB/s", "latency ns", "placement");
            for (i = 0; i < n_mem; i++)
                printf("%-6d %-8d %8d %10.2f %10.2f %10.2f %12.1f %9.1f%%\n", res[i].id, res[i].cpu_node,
                       res[i].threads, res[i].read, res[i].copy, res[i].triad, res[i].latency_ns,
                       100 * res[i].placement);
            printf("\nread GB/s, CPU node (row) x memory node (column)\n%8s", "");
            for (i = 0; i < n_mem; i++) printf(" %9d", mem[i]);
            printf("\n");
            for (j = 0; j < n_rows; j++) {
                printf("%8d", rows[j]);
                for (i = 0; i < n_mem; i++) printf(" %9.2f", matrix[j * n_mem + i]);
                printf("\n");
            }
            printf("\nlatency ns, CPU node (row) x memory node (column)\n%8s", "");
            for (i = 0; i < n_mem; i++) printf(" %9d", mem[i]);
            printf("\n");
            for (j = 0; j < n_rows; j++) {
                printf("%8d", rows[j]);
                for (i = 0; i < n_mem; i++) printf(" %9.1f", latency[j * n_mem + i]);
                printf("\n");
            }
            printf("\nstrategies, read GB/s with %d threads: shard %.2f, interleave %.2f, replicate %.2f -> %s\n",
                   n_all, shard_gbps, interleave_gbps, replicate_gbps, best);
            printf("validation: %s (max relative error %.3g)\n", ok ? "ok" : "FAILED", max_err);
        }
    }
    if (!ok) fprintf(stderr, "numa-shard-bench: results failed validation (max relative error %.3g)\n", max_err);
    for (j = 0; j < n_rows; j++) free(node_workers[j]);
    free(node_workers); free(node_nworkers); free(all_workers); free(rows); free(mem); free(res);
    free(matrix); free(latency); free(p.cpus); free(p.threads); free(p.rank); free(p.slices); free(p.sums);
    free(g_worker_args);
    ggml_numa_shard_nodemask_free(&g_mask);
    ggml_numa_shard_topology_free(&topo);
    return ok ? 0 : 3;
}
