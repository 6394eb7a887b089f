/* place_check - does ggml_numa_shard_assign() put every page on its planned node?

   usage: place_check [--mode anon|file] [--dir DIR] [--size-mb N] [--min-percent P] [--json]

   It lays out fake tensors of a small model back to back (32-byte aligned, as in GGUF, so
   many pages are shared by two or more tensors) in an anonymous buffer or in a file it
   mmaps read-only (as llama.cpp does), first-touches every page on the WRONG node (the
   next memory node after the planned one), assigns the tensors in a shuffled order, and
   checks with move_pages(2) where each page is. A page is planned for the tensor owning
   most of its bytes (ties: the lower address), computed here independently of the header.
   The map comes from GGML_NUMA_SHARD_MAP (unset: "" = round-robin over memory nodes).

   Exit: 0 when at least --min-percent (default 99.9) of the pages sit on their planned node,
   1 otherwise or on error. Build: gcc -O2 -I roles/native_tools/files tests/c/place_check.c
*/
#define _GNU_SOURCE
#define GGML_NUMA_SHARD_IMPLEMENTATION
#define GGML_NUMA_SHARD_STATIC
#include "ggml-numa-shard.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef struct tensor {
    char name[64];
    size_t off, size;
    int node, assigned;
    size_t owned, on_node; /* pages */
} tensor;

static unsigned long long rng = 0x2545f4914f6cdd1dULL;
static size_t rnd(size_t lo, size_t hi) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return lo + (size_t)(rng % (hi - lo + 1));
}

static int die(const char *what) {
    fprintf(stderr, "place_check: %s: %s\n", what, strerror(errno));
    return 1;
}

int main(int argc, char **argv) {
    const char *mode = "anon", *dir = "/var/tmp";
    size_t size_mb = 32, total = 0, ps = (size_t)sysconf(_SC_PAGESIZE), n_pages, n_t = 0, cap = 1024, i, p;
    double min_percent = 99.9;
    int json = 0, *mem = NULL, n_mem = 0, *owner, *order, fd = -1;
    tensor *t;
    char *base, err[512], path[4096] = "";
    ggml_numa_shard_topology topo;
    ggml_numa_shard_nodemask mask;
    size_t before_planned = 0, owned = 0, on_node = 0, pending = 0;

    for (i = 1; i < (size_t)argc; i++) {
        if (strcmp(argv[i], "--mode") == 0 && i + 1 < (size_t)argc) mode = argv[++i];
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < (size_t)argc) dir = argv[++i];
        else if (strcmp(argv[i], "--size-mb") == 0 && i + 1 < (size_t)argc) size_mb = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--min-percent") == 0 && i + 1 < (size_t)argc) min_percent = strtod(argv[++i], NULL);
        else if (strcmp(argv[i], "--json") == 0) json = 1;
        else {
            fprintf(stderr, "usage: place_check [--mode anon|file] [--dir DIR] [--size-mb N] [--min-percent P] [--json]\n");
            return 2;
        }
    }
    if (strcmp(mode, "anon") != 0 && strcmp(mode, "file") != 0) {
        fprintf(stderr, "place_check: --mode is anon or file\n");
        return 2;
    }
    if (!getenv("GGML_NUMA_SHARD_MAP")) setenv("GGML_NUMA_SHARD_MAP", "", 1);
    if (ggml_numa_shard_init() != 1) {
        fprintf(stderr, "place_check: placement is not on: %s\n", ggml_numa_shard_last_error());
        return 1;
    }
    if (ggml_numa_shard_topology_read(&topo, NULL, err, sizeof err) != 0 || !topo.numa) {
        fprintf(stderr, "place_check: no node tree: %s\n", err);
        return 1;
    }
    mem = (int *)malloc((size_t)topo.n_nodes * sizeof *mem);
    for (i = 0; i < (size_t)topo.n_nodes; i++)
        if (topo.nodes[i].has_memory) mem[n_mem++] = topo.nodes[i].id;
    ggml_numa_shard_nodemask_init(&mask, topo.max_possible);

    /* A small model: embeddings, then layers of norms, tiny q/k norms and big matrices. */
    t = (tensor *)calloc(cap, sizeof *t);
    for (i = 0; total < (size_mb << 20) && n_t + 8 < cap; i++) {
        static const char *const kinds[] = {"attn_norm.weight", "attn_q.weight", "attn_q_norm.weight",
                                            "attn_k_norm.weight", "attn_output.weight", "ffn_norm.weight",
                                            "ffn_up.weight", "ffn_down.weight"};
        size_t k;
        if (i == 0) {
            snprintf(t[n_t].name, sizeof t[n_t].name, "token_embd.weight");
            t[n_t].size = rnd(200000, 600000);
            t[n_t].off = total;
            total = (total + t[n_t++].size + 31) & ~(size_t)31;
        }
        for (k = 0; k < 8; k++) {
            int big = strstr(kinds[k], "norm") == NULL;
            snprintf(t[n_t].name, sizeof t[n_t].name, "blk.%lu.%s", (unsigned long)i, kinds[k]);
            t[n_t].size = big ? rnd(20000, 400000) : rnd(100, 3000);
            t[n_t].off = total;
            total = (total + t[n_t++].size + 31) & ~(size_t)31;
        }
    }
    snprintf(t[n_t].name, sizeof t[n_t].name, "output_norm.weight");
    t[n_t].size = 2048;
    t[n_t].off = total;
    total = (total + t[n_t++].size + 31) & ~(size_t)31;
    snprintf(t[n_t].name, sizeof t[n_t].name, "output.weight");
    t[n_t].size = rnd(300000, 900000);
    t[n_t].off = total;
    total += t[n_t++].size;
    n_pages = (total + ps - 1) / ps;

    /* The planned owner of each page, by brute force over the tensors touching it. */
    owner = (int *)malloc(n_pages * sizeof *owner);
    for (i = 0; i < n_t; i++) t[i].node = ggml_numa_shard_node_for(t[i].name);
    for (p = 0; p < n_pages; p++) {
        size_t best = 0, lo = p * ps, hi = lo + ps;
        owner[p] = -1;
        for (i = 0; i < n_t; i++) {
            size_t s = t[i].off > lo ? t[i].off : lo, e = t[i].off + t[i].size < hi ? t[i].off + t[i].size : hi;
            if (e > s && e - s > best) {
                best = e - s;
                owner[p] = (int)i;
            }
        }
        if (owner[p] >= 0) t[owner[p]].owned++;
    }

    /* Memory, first touched page by page on the wrong node. */
    if (strcmp(mode, "anon") == 0) {
        base = (char *)mmap(NULL, n_pages * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED) return die("mmap");
    } else {
        snprintf(path, sizeof path, "%s/place_check.XXXXXX", dir);
        fd = mkstemp(path);
        if (fd < 0) return die(path);
        if (ftruncate(fd, (off_t)(n_pages * ps)) != 0) return die("ftruncate");
        base = (char *)mmap(NULL, n_pages * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (base == MAP_FAILED) return die("mmap");
    }
    for (p = 0; p < n_pages; p++) {
        int planned = owner[p] >= 0 ? t[owner[p]].node : mem[0], wrong = planned, k;
        for (k = 0; k < n_mem; k++)
            if (mem[k] == planned) wrong = mem[(k + 1) % n_mem];
        ggml_numa_shard_nodemask_clear(&mask);
        ggml_numa_shard_nodemask_set(&mask, wrong);
        if (syscall(SYS_set_mempolicy, 2 /* MPOL_BIND */, mask.bits, ggml_numa_shard_nodemask_maxnode(&mask)) != 0)
            return die("set_mempolicy");
        memset(base + p * ps, (int)(p & 0xff), ps);
    }
    syscall(SYS_set_mempolicy, 0, (const unsigned long *)0, 0UL);
    if (fd >= 0) { /* clean page cache, read-only mapping: llama.cpp's view of a model file */
        if (msync(base, n_pages * ps, MS_SYNC) != 0) return die("msync");
        munmap(base, n_pages * ps);
        base = (char *)mmap(NULL, n_pages * ps, PROT_READ, MAP_SHARED, fd, 0);
        if (base == MAP_FAILED) return die("mmap");
    }
    {
        void **pages = (void **)malloc(n_pages * sizeof *pages);
        int *status = (int *)malloc(n_pages * sizeof *status);
        for (p = 0; p < n_pages; p++) {
            (void)*(volatile char *)(base + p * ps);
            pages[p] = base + p * ps;
        }
        if (syscall(SYS_move_pages, 0, (unsigned long)n_pages, pages, (const int *)0, status, 0) != 0)
            return die("move_pages");
        for (p = 0; p < n_pages; p++) before_planned += owner[p] >= 0 && status[p] == t[owner[p]].node;

        /* Assign in a shuffled order: ownership must not depend on it. */
        order = (int *)malloc(n_t * sizeof *order);
        for (i = 0; i < n_t; i++) order[i] = (int)i;
        for (i = n_t - 1; i > 0; i--) {
            size_t j = rnd(0, i);
            int tmp = order[i];
            order[i] = order[j];
            order[j] = tmp;
        }
        for (i = 0; i < n_t; i++) {
            tensor *x = &t[order[i]];
            x->assigned = ggml_numa_shard_assign(x->name, base + x->off, x->size);
            if (x->assigned != x->node && !json)
                fprintf(stderr, "place_check: %s\n", ggml_numa_shard_last_error());
        }
        if (syscall(SYS_move_pages, 0, (unsigned long)n_pages, pages, (const int *)0, status, 0) != 0)
            return die("move_pages");
        for (p = 0; p < n_pages; p++) {
            if (owner[p] < 0) continue;
            owned++;
            if (status[p] == t[owner[p]].node) {
                on_node++;
                t[owner[p]].on_node++;
            } else if (status[p] < 0) {
                pending++;
            }
        }
        free(pages);
        free(status);
    }

    {
        double pct = owned ? 100.0 * (double)on_node / (double)owned : 100.0;
        int ok = pct >= min_percent;
        if (json) {
            printf("{\"mode\": \"%s\", \"memory_nodes\": %d, \"tensors\": %lu, \"pages\": %lu, "
                   "\"planned_before\": %lu, \"on_node\": %lu, \"not_resident\": %lu, \"percent\": %.4f, \"ok\": %s, "
                   "\"per_tensor\": [",
                   mode, n_mem, (unsigned long)n_t, (unsigned long)owned, (unsigned long)before_planned,
                   (unsigned long)on_node, (unsigned long)pending, pct, ok ? "true" : "false");
            for (i = 0; i < n_t; i++)
                printf("%s{\"name\": \"%s\", \"node\": %d, \"assign\": %d, \"pages\": %lu, \"on_node\": %lu}",
                       i ? ", " : "", t[i].name, t[i].node, t[i].assigned, (unsigned long)t[i].owned,
                       (unsigned long)t[i].on_node);
            printf("]}\n");
        } else {
            for (i = 0; i < n_t; i++)
                printf("%-28s node %-4d assign %-4d %6lu/%-6lu pages on node\n", t[i].name, t[i].node, t[i].assigned,
                       (unsigned long)t[i].on_node, (unsigned long)t[i].owned);
            printf("%s: %lu tensors, %lu pages over %d memory node(s); before: %lu on their planned node; after: "
                   "%lu (%.4f%%), minimum %.3f%%: %s\n",
                   mode, (unsigned long)n_t, (unsigned long)owned, n_mem, (unsigned long)before_planned,
                   (unsigned long)on_node, pct, min_percent, ok ? "ok" : "BELOW");
            ggml_numa_shard_stats();
        }
        munmap(base, n_pages * ps);
        if (fd >= 0) {
            close(fd);
            unlink(path);
        }
        free(owner);
        free(order);
        free(t);
        free(mem);
        ggml_numa_shard_nodemask_free(&mask);
        ggml_numa_shard_topology_free(&topo);
        ggml_numa_shard_cleanup();
        return ok ? 0 : 1;
    }
}
