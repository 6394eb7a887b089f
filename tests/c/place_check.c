/* place_check - does ggml_numa_shard_assign() put every page on its planned node?

   usage: place_check [--mode anon|file] [--dir DIR] [--size-mb N] [--min-percent P] [--json] [MODEL.gguf]

   Without MODEL it lays out fake tensors of a small model back to back (32-byte aligned, as
   in GGUF, so many pages are shared by two or more tensors) in an anonymous buffer or in a
   file it mmaps read-only (the anonymous buffer asks for transparent huge pages, which
   straddle tensors). With MODEL it maps the model read-only, as llama.cpp does, and
   uses its tensor table. Either way it first-touches every page on the WRONG node (the next
   memory node after the planned one; a model's cached pages are dropped first), assigns the
   tensors in a shuffled order, and checks with move_pages(2) where each page is. A page is
   planned for the tensor owning most of its bytes (ties: the lower address), computed here
   independently of the header. The map comes from GGML_NUMA_SHARD_MAP (unset: "" =
   round-robin over the memory nodes). Pages other processes map can only move with
   CAP_SYS_NICE (run as root).

   Exit: 0 when at least --min-percent (default 99.9) of the pages sit on their planned node,
   1 otherwise or on error. Build: gcc -O2 -I roles/native_tools/files tests/c/place_check.c
*/
#define _GNU_SOURCE
#define NUMA_SHARD_PLACE_NO_MAIN
#include "numa-shard-place.c" /* the header's implementation and the GGUF reader */

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef struct tensor {
    char name[GGUF_MAX_NAME];
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

static void add(tensor *t, size_t *n, size_t *end, const char *name, size_t size) {
    snprintf(t[*n].name, sizeof t[*n].name, "%s", name);
    t[*n].off = *end;
    t[*n].size = size;
    *end = (*end + size + 31) & ~(size_t)31;
    ++*n;
}

/* A small model: embeddings, layers of norms, tiny q/k norms and big matrices, the output. */
static tensor *fake_model(size_t bytes, size_t *n_t, size_t *total) {
    static const char *const kinds[] = {"attn_norm.weight", "attn_q.weight", "attn_q_norm.weight",
                                        "attn_k_norm.weight", "attn_output.weight", "ffn_norm.weight",
                                        "ffn_up.weight", "ffn_down.weight"};
    size_t cap = 8 * (bytes / 20000 + 4), layer, k;
    tensor *t = (tensor *)calloc(cap, sizeof *t);
    char name[GGUF_MAX_NAME];
    *n_t = *total = 0;
    add(t, n_t, total, "token_embd.weight", rnd(200000, 600000));
    for (layer = 0; *total < bytes && *n_t + 10 < cap; layer++)
        for (k = 0; k < 8; k++) {
            snprintf(name, sizeof name, "blk.%lu.%s", (unsigned long)layer, kinds[k]);
            add(t, n_t, total, name, strstr(kinds[k], "norm") ? rnd(100, 3000) : rnd(20000, 400000));
        }
    add(t, n_t, total, "output_norm.weight", 2048);
    add(t, n_t, total, "output.weight", rnd(300000, 900000));
    return t;
}

/* Bind this thread's allocations to `node`, or back to the default (-1). */
static int bind_task(ggml_numa_shard_nodemask *mask, int node) {
    if (node < 0) return (int)syscall(SYS_set_mempolicy, 0, (const unsigned long *)0, 0UL);
    ggml_numa_shard_nodemask_clear(mask);
    ggml_numa_shard_nodemask_set(mask, node);
    return (int)syscall(SYS_set_mempolicy, 2 /* MPOL_BIND */, mask->bits, ggml_numa_shard_nodemask_maxnode(mask));
}

int main(int argc, char **argv) {
    const char *mode = "anon", *dir = "/var/tmp", *model = NULL;
    size_t size_mb = 32, total = 0, ps = (size_t)sysconf(_SC_PAGESIZE), n_pages, n_t = 0, i, p, map_len;
    size_t before_planned = 0, owned = 0, on_node = 0, pending = 0, *best;
    double min_percent = 99.9;
    int json = 0, *mem = NULL, n_mem = 0, *owner, *order, *wrong, fd = -1, k;
    tensor *t;
    char *base, err[512], path[4096] = "";
    ggml_numa_shard_topology topo;
    ggml_numa_shard_nodemask mask;
    void **pages;
    int *status;

    for (k = 1; k < argc; k++) {
        if (strcmp(argv[k], "--mode") == 0 && k + 1 < argc) mode = argv[++k];
        else if (strcmp(argv[k], "--dir") == 0 && k + 1 < argc) dir = argv[++k];
        else if (strcmp(argv[k], "--size-mb") == 0 && k + 1 < argc) size_mb = strtoul(argv[++k], NULL, 10);
        else if (strcmp(argv[k], "--min-percent") == 0 && k + 1 < argc) min_percent = strtod(argv[++k], NULL);
        else if (strcmp(argv[k], "--json") == 0) json = 1;
        else if (argv[k][0] != '-' && !model) model = argv[k];
        else {
            fprintf(stderr, "usage: place_check [--mode anon|file] [--dir DIR] [--size-mb N] [--min-percent P] "
                            "[--json] [MODEL.gguf]\n");
            return 2;
        }
    }
    if (model) mode = "model";
    else if (strcmp(mode, "anon") != 0 && strcmp(mode, "file") != 0) {
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
    for (k = 0; k < topo.n_nodes; k++)
        if (topo.nodes[k].has_memory) mem[n_mem++] = topo.nodes[k].id;
    ggml_numa_shard_nodemask_init(&mask, topo.max_possible);

    /* The tensors, sorted by offset, and the memory that holds them. */
    if (model) {
        struct stat st;
        gguf_file gf;
        fd = open(model, O_RDONLY);
        if (fd < 0 || fstat(fd, &st) != 0) return die(model);
        map_len = (size_t)st.st_size;
        base = (char *)mmap(NULL, map_len, PROT_READ, MAP_SHARED, fd, 0);
        if (base == MAP_FAILED) return die("mmap");
        if (gguf_parse((const unsigned char *)base, map_len, &gf, err, sizeof err) != 0) {
            fprintf(stderr, "place_check: %s: %s\n", model, err);
            return 1;
        }
        n_t = (size_t)gf.n_tensors;
        t = (tensor *)calloc(n_t ? n_t : 1, sizeof *t);
        for (i = 0; i < n_t; i++) {
            memcpy(t[i].name, gf.tensors[i].name, sizeof t[i].name);
            t[i].off = (size_t)gf.tensors[i].offset;
            t[i].size = (size_t)gf.tensors[i].size;
        }
        gguf_free(&gf);
        total = map_len;
        /* Drop the cached pages (those no other process maps), so the first touch below decides. */
        madvise(base, map_len, MADV_DONTNEED);
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        madvise(base, map_len, MADV_RANDOM);
    } else {
        t = fake_model(size_mb << 20, &n_t, &total);
        map_len = (total + ps - 1) / ps * ps;
        if (strcmp(mode, "anon") == 0) {
            base = (char *)mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            /* Huge pages where the kernel allows them: each one straddling two tensors is the
               hard case (llama.cpp's --no-mmap buffers get them under THP "always"). */
            if (base != MAP_FAILED) madvise(base, map_len, MADV_HUGEPAGE);
        } else {
            snprintf(path, sizeof path, "%s/place_check.XXXXXX", dir);
            fd = mkstemp(path);
            if (fd < 0) return die(path);
            if (ftruncate(fd, (off_t)map_len) != 0) return die("ftruncate");
            base = (char *)mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        }
        if (base == MAP_FAILED) return die("mmap");
    }
    n_pages = (total + ps - 1) / ps;

    /* The planned owner of each page: most bytes wins, ties to the lower address. */
    owner = (int *)malloc(n_pages * sizeof *owner);
    best = (size_t *)calloc(n_pages, sizeof *best);
    wrong = (int *)malloc(n_pages * sizeof *wrong);
    for (p = 0; p < n_pages; p++) owner[p] = -1;
    for (i = 0; i < n_t; i++) {
        size_t s = t[i].off, e = t[i].off + t[i].size;
        t[i].node = ggml_numa_shard_node_for(t[i].name);
        for (p = s / ps; t[i].size && p <= (e - 1) / ps; p++) {
            size_t lo = p * ps > s ? p * ps : s, hi = (p + 1) * ps < e ? (p + 1) * ps : e;
            if (hi - lo > best[p]) {
                best[p] = hi - lo;
                owner[p] = (int)i;
            }
        }
    }
    for (p = 0; p < n_pages; p++) {
        int planned = owner[p] >= 0 ? t[owner[p]].node : mem[0];
        wrong[p] = planned;
        for (k = 0; k < n_mem; k++)
            if (mem[k] == planned) wrong[p] = mem[(k + 1) % n_mem];
        if (owner[p] >= 0) t[owner[p]].owned++;
    }

    /* First touch, page by page, on the wrong node. */
    for (p = 0; p < n_pages; p++) {
        if (p == 0 || wrong[p] != wrong[p - 1])
            if (bind_task(&mask, wrong[p]) != 0) return die("set_mempolicy");
        if (model) (void)*(volatile char *)(base + p * ps);
        else memset(base + p * ps, (int)(1 + p % 255), ps); /* never all zero: split THPs remap those */
    }
    bind_task(&mask, -1);
    if (fd >= 0 && !model) { /* clean page cache, read-only mapping: llama.cpp's view of a model file */
        if (msync(base, map_len, MS_SYNC) != 0) return die("msync");
        munmap(base, map_len);
        base = (char *)mmap(NULL, map_len, PROT_READ, MAP_SHARED, fd, 0);
        if (base == MAP_FAILED) return die("mmap");
    }
    pages = (void **)malloc(n_pages * sizeof *pages);
    status = (int *)malloc(n_pages * sizeof *status);
    for (p = 0; p < n_pages; p++) {
        (void)*(volatile char *)(base + p * ps);
        pages[p] = base + p * ps;
    }
    if (syscall(SYS_move_pages, 0, (unsigned long)n_pages, pages, (const int *)0, status, 0) != 0)
        return die("move_pages");
    for (p = 0; p < n_pages; p++) before_planned += owner[p] >= 0 && status[p] == t[owner[p]].node;

    /* Assign in a shuffled order: ownership must not depend on it. */
    order = (int *)malloc((n_t ? n_t : 1) * sizeof *order);
    for (i = 0; i < n_t; i++) order[i] = (int)i;
    for (i = n_t; i > 1; i--) {
        size_t j = rnd(0, i - 1);
        int tmp = order[i - 1];
        order[i - 1] = order[j];
        order[j] = tmp;
    }
    for (i = 0; i < n_t; i++) {
        tensor *x = &t[order[i]];
        x->assigned = ggml_numa_shard_assign(x->name, base + x->off, x->size);
        if (x->assigned != x->node && !json) fprintf(stderr, "place_check: %s\n", ggml_numa_shard_last_error());
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
                printf("%-40s node %-4d assign %-4d %6lu/%-6lu pages on node\n", t[i].name, t[i].node, t[i].assigned,
                       (unsigned long)t[i].on_node, (unsigned long)t[i].owned);
            printf("%s: %lu tensors, %lu pages over %d memory node(s); before: %lu on their planned node; after: "
                   "%lu (%.4f%%), minimum %.3f%%: %s\n",
                   mode, (unsigned long)n_t, (unsigned long)owned, n_mem, (unsigned long)before_planned,
                   (unsigned long)on_node, pct, min_percent, ok ? "ok" : "BELOW");
            ggml_numa_shard_stats();
        }
        munmap(base, map_len);
        if (fd >= 0) close(fd);
        if (path[0]) unlink(path);
        free(pages);
        free(status);
        free(owner);
        free(best);
        free(wrong);
        free(order);
        free(t);
        free(mem);
        ggml_numa_shard_nodemask_free(&mask);
        ggml_numa_shard_topology_free(&topo);
        ggml_numa_shard_cleanup();
        return ok ? 0 : 1;
    }
}
