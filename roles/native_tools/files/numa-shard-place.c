/* numa-shard-place - put a model's page-cache pages on NUMA nodes before an unmodified
   llama-server maps the file, or run a program under a CPU list and a memory policy.

   usage: numa-shard-place [--map MAP] [--evict] [--verify] [--plan] [--min-percent P] [--json] MODEL.gguf
          numa-shard-place --interleave NODES [--weights N:W,...] [--evict | --verify] [--min-percent P]
                           [--json] FILE...
          numa-shard-place --evict [--json] FILE...
          numa-shard-place --exec [--cpus CPUS] [--policy POLICY [--nodes NODES] [--weights N:W,...]]
                           -- PROGRAM ARGS...

   Shard (the first form): the map comes from --map or GGML_NUMA_SHARD_MAP (docs/shard-map.md).
   Every page of tensor data gets a planned node: a whole page inside a tensor gets the
   tensor's node, a page shared by tensors the node of the tensor owning most of its bytes
   (ties: the lower offset). Placing runs of pages: a preferred-node task policy while the
   run is read ahead and faulted in (new page-cache pages are allocated on the node), then
   every page is checked with move_pages(2) and pages cached elsewhere are migrated (pages
   other processes map too when the tool has CAP_SYS_NICE; without it they stay, and are
   reported).
   Interleave: page i of each file goes to the i-th node of the cycle in which each node
   appears its weight times in a row (default weight 1), placed the same way.
   --evict without a map or --interleave only drops the files' page cache.
   --exec sets the CPU affinity and the task memory policy, which execve keeps, then runs
   the program in place of this one.

   Exit: 0 done, 1 bad model, map or file, or a node this host lacks, 2 bad flags, 3 below
   --min-percent, 4 a node refused pages (named on stderr); --exec: 126 the program cannot
   run, 127 it does not exist, else the program's own status.
   Build: gcc -O2 numa-shard-place.c -o numa-shard-place (docs/native-tools.md)
*/
#define _GNU_SOURCE
#define GGML_NUMA_SHARD_IMPLEMENTATION
#define GGML_NUMA_SHARD_STATIC
#include "ggml-numa-shard.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

/* ---- GGUF --------------------------------------------------------------------------------- */

#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NAME 64 /* names this long or longer are rejected by the loader too */
#define GGUF_MAX_ARRAY_DEPTH 4
#define GGUF_MAX_KEY 65535 /* the format's limit on a key */

/* Block size (elements) and block bytes of each ggml type id; 0 for ids no longer in use. */
static const struct { const char *name; unsigned block, bytes; } ggml_types[] = {
    {"F32", 1, 4},       {"F16", 1, 2},      {"Q4_0", 32, 18},    {"Q4_1", 32, 20},     {NULL, 0, 0},
    {NULL, 0, 0},        {"Q5_0", 32, 22},   {"Q5_1", 32, 24},    {"Q8_0", 32, 34},     {"Q8_1", 32, 36},
    {"Q2_K", 256, 84},   {"Q3_K", 256, 110}, {"Q4_K", 256, 144},  {"Q5_K", 256, 176},   {"Q6_K", 256, 210},
    {"Q8_K", 256, 292},  {"IQ2_XXS", 256, 66}, {"IQ2_XS", 256, 74}, {"IQ3_XXS", 256, 98}, {"IQ1_S", 256, 50},
    {"IQ4_NL", 32, 18},  {"IQ3_S", 256, 110}, {"IQ2_S", 256, 82}, {"IQ4_XS", 256, 136}, {"I8", 1, 1},
    {"I16", 1, 2},       {"I32", 1, 4},      {"I64", 1, 8},       {"F64", 1, 8},        {"IQ1_M", 256, 56},
    {"BF16", 1, 2},      {NULL, 0, 0},       {NULL, 0, 0},        {NULL, 0, 0},         {"TQ1_0", 256, 54},
    {"TQ2_0", 256, 66},  {NULL, 0, 0},       {NULL, 0, 0},        {NULL, 0, 0},         {"MXFP4", 32, 17},
    {"NVFP4", 64, 36},   {"Q1_0", 128, 18},
};
#define GGML_TYPE_COUNT (sizeof ggml_types / sizeof ggml_types[0])

typedef struct gguf_tensor {
    char name[GGUF_MAX_NAME];
    uint32_t type, n_dims;
    uint64_t dims[GGUF_MAX_DIMS];
    uint64_t offset; /* from the start of the file */
    uint64_t size;   /* bytes */
} gguf_tensor;

typedef struct gguf_file {
    uint32_t version;
    uint64_t n_tensors, n_kv, alignment, data_offset;
    gguf_tensor *tensors;
} gguf_file;

typedef struct reader {
    const unsigned char *p;
    uint64_t len, pos;
    char *err;
    size_t err_size;
} reader;

static int fail(reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(reader *r, const char *fmt, ...) {
    va_list ap;
    int n = snprintf(r->err, r->err_size, "offset %llu: ", (unsigned long long)r->pos);
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < r->err_size) vsnprintf(r->err + n, r->err_size - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static int need(reader *r, uint64_t n, const char *what) {
    if (n > r->len - r->pos)
        return fail(r, "%s (%llu bytes) runs past the end of the file (%llu bytes)", what, (unsigned long long)n,
                    (unsigned long long)r->len);
    return 0;
}

static uint64_t le(const unsigned char *p, int n) {
    uint64_t v = 0;
    int i;
    for (i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static int rd_u32(reader *r, uint32_t *v, const char *what) {
    if (need(r, 4, what)) return -1;
    *v = (uint32_t)le(r->p + r->pos, 4);
    r->pos += 4;
    return 0;
}

static int rd_u64(reader *r, uint64_t *v, const char *what) {
    if (need(r, 8, what)) return -1;
    *v = le(r->p + r->pos, 8);
    r->pos += 8;
    return 0;
}

/* A GGUF string: u64 length, then the bytes. */
static int rd_str(reader *r, const unsigned char **s, uint64_t *n, const char *what) {
    uint64_t start = r->pos;
    if (rd_u64(r, n, what)) return -1;
    if (*n > r->len - r->pos) { /* name the string's own offset */
        r->pos = start;
        return fail(r, "%s (%llu bytes) runs past the end of the file (%llu bytes)", what, (unsigned long long)*n,
                    (unsigned long long)r->len);
    }
    *s = r->p + r->pos;
    r->pos += *n;
    return 0;
}

static unsigned value_size(uint32_t type) {
    static const unsigned sizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return type < 13 ? sizes[type] : 0;
}

static int skip_value(reader *r, uint32_t type, int depth) {
    const unsigned char *s;
    uint64_t n, count, i;
    uint32_t elem;
    if (value_size(type)) {
        if (need(r, value_size(type), "a value")) return -1;
        r->pos += value_size(type);
        return 0;
    }
    if (type == 8) return rd_str(r, &s, &n, "a string value");
    if (type != 9) return fail(r, "unknown value type %u", type);
    if (depth >= GGUF_MAX_ARRAY_DEPTH) return fail(r, "arrays nested more than %d deep", GGUF_MAX_ARRAY_DEPTH);
    if (rd_u32(r, &elem, "an array type") || rd_u64(r, &count, "an array length")) return -1;
    if (value_size(elem)) {
        if (count > (r->len - r->pos) / value_size(elem))
            return fail(r, "array of %llu values runs past the end of the file", (unsigned long long)count);
        r->pos += count * value_size(elem);
        return 0;
    }
    if (elem != 8 && elem != 9) return fail(r, "unknown array element type %u", elem);
    if (count > (r->len - r->pos) / 8) /* every element takes 8 bytes or more */
        return fail(r, "array of %llu values runs past the end of the file", (unsigned long long)count);
    for (i = 0; i < count; i++)
        if (skip_value(r, elem, depth + 1)) return -1;
    return 0;
}

static int cmp_offset(const void *a, const void *b) {
    const gguf_tensor *x = (const gguf_tensor *)a, *y = (const gguf_tensor *)b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const gguf_tensor *)a)->name, ((const gguf_tensor *)b)->name);
}

/* Well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF), as Python decodes it. */
static int gguf_utf8_ok(const unsigned char *s, uint64_t n) {
    uint64_t i = 0;
    while (i < n) {
        unsigned c = s[i], len, k;
        unsigned lo = 0x80, hi = 0xBF; /* the second byte's range */
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c >= 0xE0 && c <= 0xEF) len = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        else if (c >= 0xF0 && c <= 0xF4) len = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        else return 0;
        if (len > n - i) return 0;
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return 0;
        i += len;
    }
    return 1;
}

typedef struct gguf_key { const unsigned char *s; uint64_t n, at; } gguf_key;

static int cmp_key(const void *a, const void *b) {
    const gguf_key *x = (const gguf_key *)a, *y = (const gguf_key *)b;
    int c = memcmp(x->s, y->s, (size_t)(x->n < y->n ? x->n : y->n));
    if (c) return c;
    if (x->n != y->n) return (x->n > y->n) - (x->n < y->n);
    return (x->at > y->at) - (x->at < y->at); /* a duplicate is reported where it appears again */
}

static __attribute__((unused)) void gguf_free(gguf_file *f) {
    free(f->tensors);
    memset(f, 0, sizeof *f);
}

/* Parse the header of a GGUF file held in buf[0..len). On success the tensors are sorted by
   offset and lie inside the file without overlapping. Returns 0, or -1 with a message. */
static __attribute__((unused)) int gguf_parse(const unsigned char *buf, uint64_t len, gguf_file *f, char *err, size_t err_size) {
    reader r;
    uint64_t i, j, n_keys = 0, keys_cap = 0;
    gguf_tensor *sorted = NULL;
    gguf_key *keys = NULL;
    const gguf_tensor *prev = NULL;
    memset(f, 0, sizeof *f);
    r.p = buf;
    r.len = len;
    r.pos = 0;
    r.err = err;
    r.err_size = err_size;
    f->alignment = 32;
    if (len < 4 || memcmp(buf, "GGUF", 4) != 0) return fail(&r, "not a GGUF file (no GGUF magic)");
    r.pos = 4;
    if (rd_u32(&r, &f->version, "the version")) return -1;
    if (f->version == 0x02000000 || f->version == 0x03000000) {
        r.pos = 4;
        return fail(&r, "big-endian GGUF is not supported");
    }
    if (f->version != 2 && f->version != 3) {
        r.pos = 4;
        return fail(&r, "GGUF version %u is not supported (only 2 and 3)", f->version);
    }
    if (rd_u64(&r, &f->n_tensors, "the tensor count") || rd_u64(&r, &f->n_kv, "the key-value count")) return -1;
    if (f->n_kv > (len - r.pos) / 13) /* a key-value takes 13 bytes or more */
        return fail(&r, "%llu key-value pairs cannot fit in a %llu-byte file", (unsigned long long)f->n_kv,
                    (unsigned long long)len);
    for (i = 0; i < f->n_kv; i++) {
        const unsigned char *key;
        uint64_t key_len, key_at = r.pos;
        uint32_t type;
        if (rd_str(&r, &key, &key_len, "a key")) goto bad;
        if (key_len > GGUF_MAX_KEY || !gguf_utf8_ok(key, key_len)) {
            r.pos = key_at;
            fail(&r, key_len > GGUF_MAX_KEY ? "a key of %llu bytes (the limit is %d)" : "a key of %llu bytes is not UTF-8",
                 (unsigned long long)key_len, GGUF_MAX_KEY);
            goto bad;
        }
        if (n_keys == keys_cap) { /* grows with the keys really there, never with the claimed count */
            gguf_key *grown = (gguf_key *)realloc(keys, (keys_cap = keys_cap ? 2 * keys_cap : 64) * sizeof *keys);
            if (!grown) {
                fail(&r, "out of memory");
                goto bad;
            }
            keys = grown;
        }
        keys[n_keys].s = key;
        keys[n_keys].n = key_len;
        keys[n_keys++].at = key_at;
        if (rd_u32(&r, &type, "a value type")) goto bad;
        if (key_len == 17 && memcmp(key, "general.alignment", 17) == 0) {
            uint32_t a;
            if (type != 4) {
                fail(&r, "general.alignment has value type %u, not uint32", type);
                goto bad;
            }
            if (rd_u32(&r, &a, "general.alignment")) goto bad;
            if (a == 0 || (a & (a - 1)) != 0) {
                fail(&r, "general.alignment %u is not a power of two", a);
                goto bad;
            }
            f->alignment = a;
        } else if (skip_value(&r, type, 0)) {
            goto bad;
        }
    }
    if (n_keys) qsort(keys, (size_t)n_keys, sizeof *keys, cmp_key);
    for (i = 1; i < n_keys; i++)
        if (keys[i].n == keys[i - 1].n && memcmp(keys[i].s, keys[i - 1].s, (size_t)keys[i].n) == 0) {
            r.pos = keys[i].at;
            fail(&r, "key '%.*s' appears twice", (int)(keys[i].n < 200 ? keys[i].n : 200), (const char *)keys[i].s);
            goto bad;
        }
    free(keys);
    keys = NULL;
    if (f->n_tensors > (len - r.pos) / 32) { /* a tensor info takes 32 bytes or more */
        fail(&r, "%llu tensors cannot fit in a %llu-byte file", (unsigned long long)f->n_tensors, (unsigned long long)len);
        goto bad;
    }
    f->tensors = (gguf_tensor *)calloc(f->n_tensors ? (size_t)f->n_tensors : 1, sizeof *f->tensors);
    if (!f->tensors) {
        fail(&r, "out of memory");
        goto bad;
    }
    for (i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        const unsigned char *name;
        uint64_t name_len, elements = 1, blocks;
        if (rd_str(&r, &name, &name_len, "a tensor name")) goto bad;
        if (name_len >= GGUF_MAX_NAME) {
            fail(&r, "tensor name of %llu bytes (the limit is %d)", (unsigned long long)name_len, GGUF_MAX_NAME - 1);
            goto bad;
        }
        if (memchr(name, 0, (size_t)name_len)) {
            fail(&r, "tensor name holds a NUL byte");
            goto bad;
        }
        if (!gguf_utf8_ok(name, name_len)) {
            r.pos -= name_len + 8;
            fail(&r, "tensor name of %llu bytes is not UTF-8", (unsigned long long)name_len);
            goto bad;
        }
        memcpy(t->name, name, (size_t)name_len);
        if (rd_u32(&r, &t->n_dims, "a dimension count")) goto bad;
        if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS) {
            fail(&r, "tensor '%s' has %u dimensions (%s %d)", t->name, t->n_dims, t->n_dims ? "at most" : "at least",
                 t->n_dims ? GGUF_MAX_DIMS : 1);
            goto bad;
        }
        for (j = 0; j < GGUF_MAX_DIMS; j++) t->dims[j] = 1;
        for (j = 0; j < t->n_dims; j++) {
            if (rd_u64(&r, &t->dims[j], "a dimension")) goto bad;
            if (t->dims[j] > (uint64_t)INT64_MAX || (t->dims[j] && elements > (uint64_t)INT64_MAX / t->dims[j])) {
                fail(&r, "tensor '%s' has too many elements", t->name);
                goto bad;
            }
            elements *= t->dims[j];
        }
        if (rd_u32(&r, &t->type, "a tensor type")) goto bad;
        if (t->type >= GGML_TYPE_COUNT || !ggml_types[t->type].block) {
            fail(&r, "tensor '%s' has unknown ggml type %u", t->name, t->type);
            goto bad;
        }
        if (t->dims[0] % ggml_types[t->type].block) {
            fail(&r, "tensor '%s': %llu elements per row is not a multiple of the %s block (%u)", t->name,
                 (unsigned long long)t->dims[0], ggml_types[t->type].name, ggml_types[t->type].block);
            goto bad;
        }
        blocks = elements / ggml_types[t->type].block;
        if (blocks > UINT64_MAX / ggml_types[t->type].bytes) {
            fail(&r, "tensor '%s' is too large", t->name);
            goto bad;
        }
        t->size = blocks * ggml_types[t->type].bytes;
        if (rd_u64(&r, &t->offset, "a tensor offset")) goto bad;
        if (t->offset % f->alignment) {
            fail(&r, "tensor '%s' offset %llu is not a multiple of the alignment %llu", t->name,
                 (unsigned long long)t->offset, (unsigned long long)f->alignment);
            goto bad;
        }
    }
    f->data_offset = (r.pos + f->alignment - 1) / f->alignment * f->alignment;
    for (i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        if (t->offset > len || t->size > len - t->offset || f->data_offset > len - t->offset - t->size) {
            r.pos = f->data_offset;
            fail(&r, "tensor '%s' (%llu bytes at data offset %llu) runs past the end of the file (%llu bytes)", t->name,
                 (unsigned long long)t->size, (unsigned long long)t->offset, (unsigned long long)len);
            goto bad;
        }
        t->offset += f->data_offset;
    }
    /* No name twice, no two tensors sharing bytes. */
    sorted = (gguf_tensor *)malloc((f->n_tensors ? (size_t)f->n_tensors : 1) * sizeof *sorted);
    if (!sorted) {
        fail(&r, "out of memory");
        goto bad;
    }
    memcpy(sorted, f->tensors, (size_t)f->n_tensors * sizeof *sorted);
    qsort(sorted, (size_t)f->n_tensors, sizeof *sorted, cmp_name);
    for (i = 1; i < f->n_tensors; i++)
        if (strcmp(sorted[i - 1].name, sorted[i].name) == 0) {
            fail(&r, "tensor '%s' appears twice", sorted[i].name);
            goto bad;
        }
    free(sorted);
    sorted = NULL;
    qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, cmp_offset);
    for (i = 0; i < f->n_tensors; i++) { /* against the last tensor with bytes: empty ones overlap nothing */
        const gguf_tensor *b = &f->tensors[i];
        if (!b->size) continue;
        if (prev && prev->offset + prev->size > b->offset) {
            r.pos = b->offset;
            fail(&r, "tensors '%s' and '%s' overlap", prev->name, b->name);
            goto bad;
        }
        prev = b;
    }
    return 0;
bad:
    free(keys);
    free(sorted);
    gguf_free(f);
    return -1;
}

/* ---- the page plan ------------------------------------------------------------------------ */

typedef struct page_run {
    uint64_t first, count; /* pages */
    int node;
} page_run;

typedef struct plan {
    page_run *runs;
    size_t n, cap;
} plan;

static int plan_emit(plan *pl, uint64_t page, uint64_t count, int node) {
    page_run *last = pl->n ? &pl->runs[pl->n - 1] : NULL;
    if (!count) return 0;
    if (last && last->node == node && last->first + last->count == page) {
        last->count += count;
        return 0;
    }
    if (pl->n == pl->cap) {
        size_t cap = pl->cap ? 2 * pl->cap : 64;
        page_run *runs = (page_run *)realloc(pl->runs, cap * sizeof *runs);
        if (!runs) return -1;
        pl->runs = runs;
        pl->cap = cap;
    }
    pl->runs[pl->n].first = page;
    pl->runs[pl->n].count = count;
    pl->runs[pl->n].node = node;
    pl->n++;
    return 0;
}

/* Pages of tensors sorted by offset (nodes[i] for tensor i) as runs of one node each.
   A partly covered page goes to the tensor with most bytes in it; ties to the earlier one. */
static __attribute__((unused)) int plan_pages(const gguf_tensor *t, const int *nodes, size_t n, uint64_t ps, plan *pl) {
    uint64_t open_page = 0, best_bytes = 0;
    int open = 0, best_node = 0;
    size_t i;
    memset(pl, 0, sizeof *pl);
#define CLOSE() do { if (open && plan_emit(pl, open_page, 1, best_node)) return -1; open = 0; } while (0)
#define CONTEST(pg, bytes, node) do {                                              \
        if (open && open_page == (pg)) {                                           \
            if ((bytes) > best_bytes) { best_bytes = (bytes); best_node = (node); } \
        } else {                                                                   \
            CLOSE();                                                               \
            open = 1; open_page = (pg); best_bytes = (bytes); best_node = (node);  \
        }                                                                          \
    } while (0)
    for (i = 0; i < n; i++) {
        uint64_t s = t[i].offset, e = s + t[i].size, hp, tp;
        if (!t[i].size) continue;
        hp = s / ps;
        tp = (e - 1) / ps;
        if (open && open_page != hp) CLOSE();
        if (hp == tp) {
            CONTEST(hp, e - s, nodes[i]);
        } else {
            uint64_t fw = s % ps ? hp + 1 : hp, lw = e % ps ? tp : tp + 1;
            if (s % ps) {
                CONTEST(hp, ps - s % ps, nodes[i]);
                CLOSE();
            }
            if (plan_emit(pl, fw, lw - fw, nodes[i])) return -1;
            if (e % ps) CONTEST(tp, e % ps, nodes[i]);
        }
    }
    CLOSE();
#undef CLOSE
#undef CONTEST
    return 0;
}

#ifndef NUMA_SHARD_PLACE_NO_MAIN
/* Above: the GGUF reader and the page plan, which tests/c programs include with their own
   helpers. Below: the tool, with the helpers it shares with numa-shard-bench. */
#define NUMA_SHARD_TOOL "numa-shard-place"
#include "numa-shard-tool.h"

/* ---- placement ---------------------------------------------------------------------------- */

#define MADV_POPULATE_READ_ 22
#define CHUNK 4096

/* Per node: pages planned for it (resident anywhere, on it, elsewhere, moved to it, refused
   by it), tensors planned for it, and resident pages of the file that sit on it. */
typedef struct tally {
    uint64_t planned, resident, on_node, elsewhere, moved, tensors, failed, here;
    int fail_errno; /* the first reason the node refused pages */
} tally;

/* Every node's counts added up (the first failure's errno is per node and stays there). */
static tally sum_tallies(const tally *per, int n) {
    tally total;
    int i;
    memset(&total, 0, sizeof total);
    for (i = 0; i < n; i++) {
        total.planned += per[i].planned;
        total.resident += per[i].resident;
        total.on_node += per[i].on_node;
        total.elsewhere += per[i].elsewhere;
        total.moved += per[i].moved;
        total.tensors += per[i].tensors;
        total.failed += per[i].failed;
        total.here += per[i].here;
    }
    return total;
}

#define NODE_SLOTS (GGML_NUMA_SHARD_MAX_NODE_ID + 1) /* tallies are indexed by node id */

static size_t g_page;
static ggml_numa_shard_nodemask g_mask;
static int g_move_all = 1; /* until the kernel says EPERM */

static void set_node(int node) {
    ggml_numa_shard_nodemask_clear(&g_mask);
    ggml_numa_shard_nodemask_set(&g_mask, node);
}

/* Fault pages in without allocating beyond them (the mapping is MADV_RANDOM). */
static void populate(char *addr, size_t len) {
    if (syscall(SYS_madvise, (unsigned long)addr, len, (int)MADV_POPULATE_READ_) != 0 && errno == EINVAL) {
        size_t o; /* kernels before 5.14 */
        for (o = 0; o < len; o += g_page) (void)*(volatile const char *)(addr + o);
    }
}

static void note_failure(tally *t, int err) {
    t->failed++;
    if (!t->fail_errno) t->fail_errno = err;
}

/* move_pages(2) to targets[], moving pages other processes map too while allowed. */
static long move_batch(void **pages, const int *targets, int *status, uint64_t k) {
    long rc = -1;
    if (g_move_all) {
        rc = syscall(SYS_move_pages, 0, (unsigned long)k, pages, targets, status, (int)MPOL_MF_MOVE_ALL_);
        if (rc < 0 && errno == EPERM) g_move_all = 0; /* no CAP_SYS_NICE: pages others map stay */
    }
    if (!g_move_all) rc = syscall(SYS_move_pages, 0, (unsigned long)k, pages, targets, status, (int)MPOL_MF_MOVE_);
    return rc;
}

/* Count the outcome of each page moved: on its target, or refused by it (ENOMEM: no free
   memory there; EBUSY: locked, pinned or under I/O). Other outcomes (a page shared without
   CAP_SYS_NICE) show as elsewhere when the pages are counted. */
static void count_moves(tally *per, const int *targets, const int *status, uint64_t k) {
    uint64_t i;
    for (i = 0; i < k; i++) {
        if (status[i] == targets[i]) per[targets[i]].moved++;
        else if (status[i] == -ENOMEM || status[i] == -EBUSY) note_failure(&per[targets[i]], -status[i]);
    }
}

/* Count a chunk's pages against their target nodes (targets[i] for page i); with `move`,
   migrate pages found elsewhere first. */
static void check_chunk(char *addr, uint64_t n, const int *targets, int move, tally *per,
                        const unsigned char *resident) {
    static void *pages[CHUNK], *wrong[CHUNK], *group[CHUNK];
    static int status[CHUNK], wrong_targets[CHUNK], wrong_status[CHUNK], group_targets[CHUNK];
    uint64_t i, j, k = 0;
    if (page_nodes(addr, (unsigned long)n, g_page, pages, status) != 0) die(1, "move_pages: %s", strerror(errno));
    for (i = 0; i < n; i++) {
        if (resident && !(resident[i] & 1)) continue;
        if (status[i] >= 0 && status[i] != targets[i] && move) {
            wrong[k] = pages[i];
            wrong_targets[k++] = targets[i];
        }
    }
    if (k) {
        if (move_batch(wrong, wrong_targets, wrong_status, k) >= 0) {
            count_moves(per, wrong_targets, wrong_status, k);
        } else { /* one node can fail the whole call (ENODEV): move each node's pages alone, to name it */
            for (i = 0; i < k; i++) {
                uint64_t g = 0;
                if (!wrong[i]) continue;
                for (j = i; j < k; j++)
                    if (wrong[j] && wrong_targets[j] == wrong_targets[i]) {
                        group[g] = wrong[j];
                        group_targets[g++] = wrong_targets[j];
                        if (j > i) wrong[j] = NULL;
                    }
                if (move_batch(group, group_targets, wrong_status, g) >= 0) {
                    count_moves(per, group_targets, wrong_status, g);
                } else {
                    int e = errno;
                    for (j = 0; j < g; j++) note_failure(&per[group_targets[j]], e);
                }
            }
        }
        if (page_nodes(addr, (unsigned long)n, g_page, pages, status) != 0) die(1, "move_pages: %s", strerror(errno));
    }
    for (i = 0; i < n; i++) {
        tally *t = &per[targets[i]];
        if (resident && !(resident[i] & 1)) continue;
        if (status[i] >= 0) t->resident++;
        if (status[i] == targets[i]) t->on_node++;
        else if (status[i] >= 0) t->elsewhere++;
        if (status[i] >= 0 && status[i] < NODE_SLOTS) per[status[i]].here++;
    }
}

/* A chunk of one run's node: every page's target is `node`. */
static const int *same_node(int node, uint64_t n) {
    static int targets[CHUNK];
    uint64_t i;
    for (i = 0; i < n; i++) targets[i] = node;
    return targets;
}

static void place_run(int fd, char *map, const page_run *run, tally *per) {
    char *addr = map + run->first * g_page;
    uint64_t len = run->count * g_page, done;
    set_node(run->node);
    /* The policy of the mapping (and, on tmpfs, of the file) and of this thread's allocations. */
    syscall(SYS_mbind, (unsigned long)addr, (unsigned long)len, (unsigned long)MPOL_BIND_, g_mask.bits,
            ggml_numa_shard_nodemask_maxnode(&g_mask), 0U);
    if (syscall(SYS_set_mempolicy, (int)MPOL_PREFERRED_, g_mask.bits, ggml_numa_shard_nodemask_maxnode(&g_mask)) != 0)
        die(1, "set_mempolicy(node %d): %s", run->node, strerror(errno));
    posix_fadvise(fd, (off_t)(run->first * g_page), (off_t)len, POSIX_FADV_WILLNEED);
    populate(addr, (size_t)len);
    syscall(SYS_set_mempolicy, (int)MPOL_DEFAULT_, (const unsigned long *)0, 0UL);
    for (done = 0; done < run->count; done += CHUNK) {
        uint64_t n = run->count - done < CHUNK ? run->count - done : CHUNK;
        check_chunk(addr + done * g_page, n, same_node(run->node, n), 1, per, NULL);
    }
}

static void verify_run(char *map, const page_run *run, const unsigned char *vec, tally *per) {
    uint64_t done, i;
    for (done = 0; done < run->count; done += CHUNK) {
        uint64_t n = run->count - done < CHUNK ? run->count - done : CHUNK, first = run->first + done;
        char *addr = map + first * g_page;
        for (i = 0; i < n;) { /* map the cached pages only: faulting the others would read them */
            uint64_t j = i;
            while (j < n && (vec[first + j] & 1)) j++;
            if (j > i) populate(addr + i * g_page, (size_t)((j - i) * g_page));
            i = j + 1;
        }
        check_chunk(addr, n, same_node(run->node, n), 0, per, vec + first);
    }
}

/* ---- output ------------------------------------------------------------------------------- */

static double percent(uint64_t part, uint64_t whole) { return whole ? 100.0 * (double)part / (double)whole : 100.0; }

static void usage(void) {
    printf(
            "usage: numa-shard-place [--map MAP] [--evict] [--verify] [--plan] [--min-percent P] [--json] MODEL.gguf\n"
            "       numa-shard-place --interleave NODES [--weights N:W,...] [--evict | --verify] [--min-percent P]\n"
            "                        [--json] MODEL.gguf...\n"
            "       numa-shard-place --evict [--json] FILE...      (no map: only drop the files' page cache)\n"
            "       numa-shard-place --exec [--cpus CPUS] [--policy POLICY] [--nodes NODES] [--weights N:W,...]\n"
            "                        -- PROGRAM ARGS...\n"
            "  POLICY: bind, preferred, interleave, weighted-interleave (Linux 6.9+), local or default\n");
}

/* One line per node that refused pages during placement; returns how many nodes did. */
static int report_failures(const char *path, const tally *per) {
    int i, bad = 0;
    for (i = 0; i < NODE_SLOTS; i++) {
        const tally *t = &per[i];
        const char *why = t->fail_errno == ENOMEM ? " (the node has no free memory left)"
                          : t->fail_errno == EBUSY ? " (the pages are locked, pinned or under I/O)"
                                                   : "";
        if (!t->failed) continue;
        fprintf(stderr, "numa-shard-place: %s: node %d could not take %llu of its %llu pages: %s%s\n", path, i,
                (unsigned long long)t->failed, (unsigned long long)t->planned, strerror(t->fail_errno), why);
        bad++;
    }
    return bad;
}

/* ---- checking flags ------------------------------------------------------------------------- */

static ggml_numa_shard_topology g_topo;

/* A node list flag checked against this host's node tree, read once. */
static int host_nodes(const char *flag, const char *text, int **out) {
    static int topo_read;
    char err[512];
    if (!topo_read) {
        if (ggml_numa_shard_topology_read(&g_topo, NULL, err, sizeof err) != 0) die(1, "%s", err);
        topo_read = 1;
    }
    return parse_nodes(&g_topo, flag, text, out);
}

/* --weights N:W,...: weights 1..255 (the kernel's range) by node, -1 where not given.
   Every node named must be in nodes[], and every node of nodes[] must be named. */
static void parse_weights(const char *text, const char *nodes_flag, const int *nodes, int n, int *weights) {
    const char *p = text;
    int i;
    for (i = 0; i < n; i++) weights[i] = -1;
    for (;;) {
        char *end;
        long node, w;
        if (*p < '0' || *p > '9') goto bad;
        node = strtol(p, &end, 10);
        if (*end != ':' || end[1] < '0' || end[1] > '9') goto bad;
        w = strtol(end + 1, &end, 10);
        if (w < 1 || w > 255 || node > GGML_NUMA_SHARD_MAX_NODE_ID) goto bad;
        for (i = 0; i < n && nodes[i] != node; i++) {}
        if (i == n) die(2, "--weights: node %ld is not in %s", node, nodes_flag);
        if (weights[i] >= 0) die(2, "--weights: node %ld given twice", node);
        weights[i] = (int)w;
        p = end;
        if (!*p) break;
        if (*p++ != ',') goto bad;
    }
    for (i = 0; i < n; i++)
        if (weights[i] < 0) die(2, "--weights: node %d of %s has no weight", nodes[i], nodes_flag);
    return;
bad:
    die(2, "--weights: expected NODE:WEIGHT,... with weights 1..255, got '%s'", text);
}

/* ---- --evict: drop a file's page cache ---------------------------------------------------- */

/* Write the file's dirty pages back and drop its cached ones; returns the pages still cached
   (mapped by another process, dirty again or locked). `map` is our mapping of all of it. */
static uint64_t evict_file(const char *path, int fd, unsigned char *map, size_t size, unsigned char *vec) {
    uint64_t still = 0, i, pages = (size + g_page - 1) / g_page;
    madvise(map, size, MADV_DONTNEED); /* our own mappings of the pages first */
    if (fdatasync(fd) != 0) die(1, "%s: fdatasync: %s", path, strerror(errno));
    if ((errno = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)) != 0) die(1, "%s: posix_fadvise: %s", path, strerror(errno));
    if (mincore(map, size, vec) != 0) die(1, "%s: mincore: %s", path, strerror(errno));
    for (i = 0; i < pages; i++) still += vec[i] & 1;
    return still;
}

/* Open a regular, non-empty file; exits 1 naming it otherwise. */
static int open_file(const char *path, size_t *size) {
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die(1, "%s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0) die(1, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) die(1, "%s: not a regular file", path);
    if (st.st_size == 0) die(1, "%s: the file is empty", path);
    *size = (size_t)st.st_size;
    return fd;
}

/* Every file opens before any is changed: a bad name changes nothing. */
static void check_files(char **files, int n) {
    int i;
    size_t size;
    for (i = 0; i < n; i++) close(open_file(files[i], &size));
}

/* Open a regular, non-empty file and map all of it. */
static unsigned char *map_file(const char *path, int *fd, size_t *size) {
    unsigned char *map;
    *fd = open_file(path, size);
    map = (unsigned char *)mmap(NULL, *size, PROT_READ, MAP_SHARED, *fd, 0);
    if (map == MAP_FAILED) die(1, "%s: mmap: %s", path, strerror(errno));
    return map;
}

static int evict_main(int n_files, char **files, int json) {
    int f;
    if (!n_files) die(2, "--evict: no file given");
    check_files(files, n_files);
    if (json) printf("{\"mode\": \"evict\", \"page_size\": %lu, \"files\": [", (unsigned long)g_page);
    for (f = 0; f < n_files; f++) {
        int fd;
        size_t size;
        unsigned char *map = map_file(files[f], &fd, &size), *vec;
        uint64_t pages = (size + g_page - 1) / g_page, still;
        vec = (unsigned char *)malloc((size_t)pages + 1);
        if (!vec) die(1, "out of memory");
        still = evict_file(files[f], fd, map, size, vec);
        if (json) {
            printf("%s\n  {\"path\": ", f ? "," : "");
            json_str(files[f]);
            printf(", \"pages\": %llu, \"still_cached_pages\": %llu}", (unsigned long long)pages, (unsigned long long)still);
        } else {
            printf("%s: %llu pages dropped from the page cache, %llu stayed cached (mapped by another process, dirty "
                   "or locked)\n",
                   files[f], (unsigned long long)(pages - still), (unsigned long long)still);
        }
        free(vec);
        munmap(map, size);
        close(fd);
    }
    if (json) printf("\n]}\n");
    return 0;
}

/* ---- --interleave: page i of the file on the i-th node of the sequence ---------------------- */

typedef struct sequence {
    int *nodes, *weights, n; /* nodes ascending */
    int *cycle, period;      /* each node weights[k] times in a row, in node order */
} sequence;

static void sequence_build(sequence *q) {
    int k, j;
    q->period = 0;
    for (k = 0; k < q->n; k++) q->period += q->weights[k];
    q->cycle = (int *)malloc((size_t)q->period * sizeof *q->cycle);
    if (!q->cycle) die(1, "out of memory");
    for (k = 0, j = 0; k < q->n; k++) {
        int w;
        for (w = 0; w < q->weights[k]; w++) q->cycle[j++] = q->nodes[k];
    }
}

static int interleave_file(const char *path, const sequence *q, int evict, int verify, double min_percent, int json,
                           int weighted) {
    int fd, k, status;
    size_t size;
    unsigned char *map = map_file(path, &fd, &size), *vec;
    uint64_t pages = (size + g_page - 1) / g_page, done, still = 0, here_total = 0;
    tally *per = (tally *)calloc(NODE_SLOTS, sizeof *per), total;
    static int targets[CHUNK];
    double pct;
    vec = (unsigned char *)malloc((size_t)pages + 1);
    if (!per || !vec) die(1, "out of memory");
    madvise(map, size, MADV_RANDOM); /* no readahead past the chunk being placed */
    if (evict) still = evict_file(path, fd, map, size, vec);
    if (verify && mincore(map, size, vec) != 0) die(1, "%s: mincore: %s", path, strerror(errno));
    nodemask_of(&g_mask, q->nodes, q->n);
    for (done = 0; done < pages; done += CHUNK) {
        uint64_t n = pages - done < CHUNK ? pages - done : CHUNK, i;
        char *addr = (char *)map + done * g_page;
        for (i = 0; i < n; i++) {
            targets[i] = q->cycle[(done + i) % (uint64_t)q->period];
            per[targets[i]].planned++;
        }
        if (verify) { /* map the cached pages only: faulting the others would read them */
            for (i = 0; i < n;) {
                uint64_t j = i;
                while (j < n && (vec[done + j] & 1)) j++;
                if (j > i) populate(addr + i * g_page, (size_t)((j - i) * g_page));
                i = j + 1;
            }
        } else {
            /* New page-cache pages follow the task policy: interleaved, most land right at once;
               move_pages then puts each page exactly (pages already cached anywhere too). The
               policy only saves migrations, so a refusal here is left to move_pages to report. */
            (void)syscall(SYS_set_mempolicy, (int)MPOL_INTERLEAVE_, g_mask.bits, ggml_numa_shard_nodemask_maxnode(&g_mask));
            posix_fadvise(fd, (off_t)(done * g_page), (off_t)(n * g_page), POSIX_FADV_WILLNEED);
            populate(addr, (size_t)(n * g_page));
            syscall(SYS_set_mempolicy, (int)MPOL_DEFAULT_, (const unsigned long *)0, 0UL);
        }
        check_chunk(addr, n, targets, !verify, per, verify ? vec + done : NULL);
    }
    total = sum_tallies(per, NODE_SLOTS);
    here_total = total.here;
    pct = percent(total.on_node, total.planned);
    if (json) {
        int first = 1;
        printf("{\n  \"model\": ");
        json_str(path);
        printf(",\n  \"mode\": \"%s\",\n  \"policy\": \"%s\",\n  \"interleave\": {\"nodes\": ", verify ? "verify" : "place",
               weighted ? "weighted-interleave" : "interleave");
        json_ints(q->nodes, q->n);
        printf(", \"weights\": ");
        json_ints(q->weights, q->n);
        printf("},\n  \"page_size\": %lu,\n  \"pages\": %llu,\n  \"evict\": ", (unsigned long)g_page,
               (unsigned long long)pages);
        if (evict) printf("{\"still_cached_pages\": %llu}", (unsigned long long)still);
        else printf("null");
        printf(",\n  \"nodes\": [");
        for (k = 0; k < NODE_SLOTS; k++) {
            const tally *t = &per[k];
            int j, w = 0;
            if (!t->planned && !t->here) continue;
            for (j = 0; j < q->n; j++)
                if (q->nodes[j] == k) w = q->weights[j];
            printf("%s\n    {\"node\": %d, \"weight\": %d, \"target_share\": %.6f, \"planned_pages\": %llu, "
                   "\"resident_pages\": %llu, \"on_node_pages\": %llu, \"elsewhere_pages\": %llu, \"moved_pages\": %llu, "
                   "\"failed_pages\": %llu, \"pages\": %llu, \"share\": %.6f, \"percent\": %.3f}",
                   first ? "" : ",", k, w, (double)w / q->period, (unsigned long long)t->planned,
                   (unsigned long long)t->resident, (unsigned long long)t->on_node, (unsigned long long)t->elsewhere,
                   (unsigned long long)t->moved, (unsigned long long)t->failed, (unsigned long long)t->here,
                   here_total ? (double)t->here / (double)here_total : 0.0, percent(t->on_node, t->planned));
            first = 0;
        }
        printf("\n  ],\n  \"total\": {\"planned_pages\": %llu, \"resident_pages\": %llu, \"on_node_pages\": %llu, "
               "\"elsewhere_pages\": %llu, \"moved_pages\": %llu, \"failed_pages\": %llu, \"percent\": %.3f},\n",
               (unsigned long long)total.planned, (unsigned long long)total.resident, (unsigned long long)total.on_node,
               (unsigned long long)total.elsewhere, (unsigned long long)total.moved, (unsigned long long)total.failed,
               pct);
        printf("  \"min_percent\": %.3f,\n  \"ok\": %s\n}", min_percent, pct >= min_percent && !total.failed ? "true" : "false");
    } else {
        double mib = (double)g_page / 1048576.0;
        printf("%s: %llu pages, %s over nodes", path, (unsigned long long)pages,
               weighted ? "weighted interleave" : "interleave");
        for (k = 0; k < q->n; k++) printf("%s%d:%d", k ? "," : " ", q->nodes[k], q->weights[k]);
        printf(" (node:weight)\n");
        if (evict)
            printf("evict: %llu pages stayed cached (mapped by another process, dirty or locked)\n",
                   (unsigned long long)still);
        printf("%-6s %6s %8s %12s %12s %12s %8s %9s\n", "node", "weight", "target", "planned MiB", "here MiB",
               "on node MiB", "share", "on node");
        for (k = 0; k < NODE_SLOTS; k++) {
            const tally *t = &per[k];
            int j, w = 0;
            if (!t->planned && !t->here) continue;
            for (j = 0; j < q->n; j++)
                if (q->nodes[j] == k) w = q->weights[j];
            printf("%-6d %6d %7.2f%% %12.1f %12.1f %12.1f %7.2f%% %8.3f%%\n", k, w, 100.0 * w / q->period,
                   (double)t->planned * mib, (double)t->here * mib, (double)t->on_node * mib,
                   here_total ? percent(t->here, here_total) : 0.0, percent(t->on_node, t->planned));
        }
        printf("%s: %.3f%% of the file's pages on their interleave node (%llu moved), minimum %.3f%%: %s\n",
               verify ? "verify" : "place", pct, (unsigned long long)total.moved, min_percent,
               pct >= min_percent && !total.failed ? "ok" : "BELOW");
    }
    fflush(stdout);
    status = report_failures(path, per) ? 4 : pct >= min_percent ? 0 : 3;
    free(vec);
    free(per);
    munmap(map, size);
    close(fd);
    return status;
}

/* --min-percent's value: a number in 0..100, or exit 2 naming it. */
static double parse_percent(const char *text) {
    char *end;
    double v = strtod(text, &end);
    if (*end || end == text || !(v >= 0 && v <= 100)) die(2, "--min-percent: expected a number in 0..100, got '%s'", text);
    return v;
}

static int interleave_main(int argc, char **argv) {
    const char *nodes_text = NULL, *weights_text = NULL;
    int evict = 0, verify = 0, json = 0, i, n_files = 0, status = 0, max_node;
    double min_percent = 99.9;
    char **files = (char **)calloc((size_t)argc, sizeof *files);
    sequence q;
    if (!files) die(1, "out of memory");
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--interleave") == 0 && i + 1 < argc) nodes_text = argv[++i];
        else if (strcmp(a, "--weights") == 0 && i + 1 < argc) weights_text = argv[++i];
        else if (strcmp(a, "--evict") == 0) evict = 1;
        else if (strcmp(a, "--verify") == 0) verify = 1;
        else if (strcmp(a, "--json") == 0) json = 1;
        else if (strcmp(a, "--min-percent") == 0 && i + 1 < argc) min_percent = parse_percent(argv[++i]);
        else if (strcmp(a, "--map") == 0 || strcmp(a, "--plan") == 0) {
            die(2, "%s is for the shard map; --interleave places by page, not by tensor", a);
        } else if (a[0] == '-' && a[1]) {
            die(2, "unknown option or missing value: '%s'", a);
        } else {
            files[n_files++] = argv[i];
        }
    }
    if (!nodes_text) die(2, "--interleave needs a node list");
    if (!n_files) die(2, "no model given");
    if (evict && verify) die(2, "--evict changes the page cache; --verify only looks");
    q.n = host_nodes("--interleave", nodes_text, &q.nodes);
    q.weights = (int *)malloc((size_t)q.n * sizeof *q.weights);
    if (!q.weights) die(1, "out of memory");
    if (weights_text) parse_weights(weights_text, "--interleave", q.nodes, q.n, q.weights);
    else
        for (i = 0; i < q.n; i++) q.weights[i] = 1;
    check_files(files, n_files);
    sequence_build(&q);
    max_node = q.nodes[q.n - 1];
    if (ggml_numa_shard_nodemask_init(&g_mask, max_node) != 0) die(1, "out of memory");
    if (json && n_files > 1) printf("[");
    for (i = 0; i < n_files; i++) {
        int s;
        if (json && i) printf(",\n");
        s = interleave_file(files[i], &q, evict, verify, min_percent, json, weights_text != NULL);
        if (s > status) status = s;
    }
    if (json) printf(n_files > 1 ? "]\n" : "\n");
    free(q.cycle);
    free(q.weights);
    free(q.nodes);
    free(files);
    ggml_numa_shard_nodemask_free(&g_mask);
    ggml_numa_shard_topology_free(&g_topo);
    return status;
}

/* ---- --exec: CPU affinity and memory policy, then the program -------------------------------- */

#define WEIGHTED_SYSFS "/sys/kernel/mm/mempolicy/weighted_interleave"

static const struct { const char *name; int mode, nodes; } policies[] = {
    /* nodes: 1 needs a node list, 0 takes none, -1 exactly one node */
    {"bind", MPOL_BIND_, 1},       {"preferred", MPOL_PREFERRED_, -1},
    {"interleave", MPOL_INTERLEAVE_, 1}, {"weighted-interleave", MPOL_WEIGHTED_INTERLEAVE_, 1},
    {"local", MPOL_LOCAL_, 0},     {"default", MPOL_DEFAULT_, 0},
};

static void no_weighted_interleave(const char *why) __attribute__((noreturn));
static void no_weighted_interleave(const char *why) {
    struct utsname u;
    if (uname(&u) != 0) strcpy(u.release, "(unknown)");
    die(1, "weighted interleave needs Linux 6.9 or later; this kernel is %s (%s)", u.release, why);
}

/* System-wide weights: /sys/kernel/mm/mempolicy/weighted_interleave/nodeN. */
static void write_weights(const char *dir, const int *nodes, const int *weights, int n) {
    int i;
    for (i = 0; i < n; i++) {
        char path[4096], text[16];
        int fd, len;
        snprintf(path, sizeof path, "%s/node%d", dir, nodes[i]);
        len = snprintf(text, sizeof text, "%d\n", weights[i]);
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0) die(1, "cannot set the weight of node %d: %s: %s", nodes[i], path, strerror(errno));
        if (write(fd, text, (size_t)len) != len) die(1, "cannot set the weight of node %d: %s: %s", nodes[i], path, strerror(errno));
        close(fd);
    }
}

static int exec_main(int argc, char **argv) {
    const char *cpus_text = NULL, *policy = NULL, *nodes_text = NULL, *weights_text = NULL;
    int i, prog = -1, p = -1, *nodes = NULL, n_nodes = 0, *weights = NULL;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            prog = i + 1;
            break;
        }
        if (strcmp(a, "--exec") == 0) continue;
        if (strcmp(a, "--cpus") && strcmp(a, "--policy") && strcmp(a, "--nodes") && strcmp(a, "--weights"))
            die(2, "--exec takes --cpus, --policy, --nodes and --weights, then -- PROGRAM ARGS...; got '%s'", a);
        if (i + 1 >= argc) die(2, "--exec: %s needs a value, and the program comes after --", a);
        if (strcmp(a, "--cpus") == 0) cpus_text = argv[++i];
        else if (strcmp(a, "--policy") == 0) policy = argv[++i];
        else if (strcmp(a, "--nodes") == 0) nodes_text = argv[++i];
        else weights_text = argv[++i];
    }
    if (prog < 0 || prog >= argc) die(2, "--exec: expected -- PROGRAM ARGS... at the end");
    if (policy) {
        for (i = 0; i < (int)(sizeof policies / sizeof policies[0]); i++)
            if (strcmp(policies[i].name, policy) == 0) p = i;
        if (p < 0)
            die(2, "--policy: expected bind, preferred, interleave, weighted-interleave, local or default, got '%s'", policy);
    } else if (nodes_text || weights_text) {
        die(2, "--exec: %s needs --policy", nodes_text ? "--nodes" : "--weights");
    }
    if (weights_text && policies[p].mode != MPOL_WEIGHTED_INTERLEAVE_)
        die(2, "--weights goes with --policy weighted-interleave, not %s", policy);
    if (p >= 0 && policies[p].nodes == 0 && nodes_text) die(2, "--policy %s takes no --nodes", policy);
    if (p >= 0 && policies[p].nodes != 0 && !nodes_text) {
        if (policies[p].mode == MPOL_WEIGHTED_INTERLEAVE_ && weights_text) { /* the nodes the weights name */
            char *list = strdup(weights_text), *r, *w;
            if (!list) die(1, "out of memory");
            for (r = w = list; *r; r++) { /* "0:3,1:1" -> "0,1" */
                if (*r == ':') while (r[1] && r[1] != ',') r++;
                else *w++ = *r;
            }
            *w = 0;
            n_nodes = host_nodes("--weights", list, &nodes);
            free(list);
        } else {
            die(2, "--policy %s needs --nodes", policy);
        }
    } else if (nodes_text) {
        n_nodes = host_nodes("--nodes", nodes_text, &nodes);
    }
    if (p >= 0 && policies[p].nodes < 0 && n_nodes != 1)
        die(2, "--policy preferred takes one node, got '%s'", nodes_text);
    if (weights_text) {
        weights = (int *)malloc((size_t)n_nodes * sizeof *weights);
        if (!weights) die(1, "out of memory");
        parse_weights(weights_text, "--nodes", nodes, n_nodes, weights);
    }

    /* CPUs: each one must be in the allowed set (a cpuset or an outer affinity can hide some). */
    if (cpus_text) {
        int *cpus, n_cpus, *allowed, n_allowed, j, k, max_cpu;
        char list[256];
        cpu_set_t *set;
        size_t set_size;
        n_cpus = ggml_numa_shard_parse_list(cpus_text, GNS_MAX_CPU, &cpus);
        if (n_cpus <= 0) die(2, "--cpus: expected a CPU list such as 0-3,8, got '%s'", cpus_text);
        n_allowed = ggml_numa_shard_allowed_cpus(&allowed);
        if (n_allowed < 0) die(1, "cannot read the allowed CPUs (sched_getaffinity): %s", strerror(errno));
        max_cpu = 0;
        for (j = 0; j < n_cpus; j++) {
            for (k = 0; k < n_allowed && allowed[k] != cpus[j]; k++) {}
            if (k == n_allowed) {
                ggml_numa_shard_format_list(allowed, n_allowed, list, sizeof list);
                die(2, "--cpus: CPU %d is not in this process's allowed CPUs (%s)", cpus[j], list);
            }
            if (cpus[j] > max_cpu) max_cpu = cpus[j];
        }
        set = CPU_ALLOC(max_cpu + 1);
        if (!set) die(1, "out of memory");
        set_size = CPU_ALLOC_SIZE(max_cpu + 1);
        CPU_ZERO_S(set_size, set);
        for (j = 0; j < n_cpus; j++) CPU_SET_S(cpus[j], set_size, set);
        if (sched_setaffinity(0, set_size, set) != 0) die(1, "cannot run on CPUs %s: %s", cpus_text, strerror(errno));
        CPU_FREE(set);
        free(cpus);
        free(allowed);
    }

    /* The memory policy, which execve keeps. */
    if (p >= 0) {
        int mode = policies[p].mode;
        long rc;
        if (mode == MPOL_WEIGHTED_INTERLEAVE_) {
            const char *dir = getenv("NUMA_SHARD_WEIGHTED_SYSFS"); /* tests point it at a fake tree */
            struct stat st;
            if (!dir || !*dir) dir = WEIGHTED_SYSFS;
            if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
                char why[4200];
                snprintf(why, sizeof why, "%s is missing", dir);
                no_weighted_interleave(why);
            }
            if (weights) write_weights(dir, nodes, weights, n_nodes);
        }
        if (ggml_numa_shard_nodemask_init(&g_mask, n_nodes ? nodes[n_nodes - 1] : 0) != 0) die(1, "out of memory");
        nodemask_of(&g_mask, nodes, n_nodes);
        rc = syscall(SYS_set_mempolicy, mode, n_nodes ? g_mask.bits : (const unsigned long *)0,
                     n_nodes ? ggml_numa_shard_nodemask_maxnode(&g_mask) : 0UL);
        if (rc != 0 && mode == MPOL_WEIGHTED_INTERLEAVE_ && errno == EINVAL)
            no_weighted_interleave("set_mempolicy(MPOL_WEIGHTED_INTERLEAVE) is refused");
        if (rc != 0) die(1, "set_mempolicy(%s, nodes %s): %s", policy, nodes_text ? nodes_text : "", strerror(errno));
        ggml_numa_shard_nodemask_free(&g_mask);
    }
    free(nodes);
    free(weights);
    ggml_numa_shard_topology_free(&g_topo);
    /* A bare name is looked up in PATH. A path runs as given, with no /bin/sh fallback for a
       file without #! (execvp has one), as a unit's ExecStart= would refuse it too. */
    if (strchr(argv[prog], '/')) execv(argv[prog], argv + prog);
    else execvp(argv[prog], argv + prog);
    fprintf(stderr, "numa-shard-place: cannot run %s: %s\n", argv[prog], strerror(errno));
    return errno == ENOENT ? 127 : 126;
}

/* Which mode the flags ask for. Values of flags that take one are skipped; nothing after --. */
enum { MODE_SHARD, MODE_EVICT, MODE_INTERLEAVE, MODE_EXEC };

static int mode_of(int argc, char **argv) {
    static const char *const valued[] = {"--map", "--min-percent", "--interleave", "--weights",
                                         "--cpus", "--policy", "--nodes"};
    int i, j, exec = 0, interleave = 0, map = getenv("GGML_NUMA_SHARD_MAP") != NULL, evict = 0, other = 0;
    const char *exec_only = NULL, *weights = NULL;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) break;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage();
            exit(0);
        }
        if (strcmp(a, "--exec") == 0) exec = 1;
        else if (strcmp(a, "--interleave") == 0) interleave = 1;
        else if (strcmp(a, "--map") == 0) map = 1;
        else if (strcmp(a, "--evict") == 0) evict = 1;
        else if (strcmp(a, "--verify") == 0 || strcmp(a, "--plan") == 0) other = 1;
        if (strcmp(a, "--cpus") == 0 || strcmp(a, "--policy") == 0 || strcmp(a, "--nodes") == 0) exec_only = a;
        if (strcmp(a, "--weights") == 0) weights = a;
        for (j = 0; j < (int)(sizeof valued / sizeof valued[0]); j++)
            if (strcmp(a, valued[j]) == 0 && i + 1 < argc) i++;
    }
    if (exec) return MODE_EXEC;
    if (exec_only) die(2, "%s goes with --exec", exec_only);
    if (interleave) return MODE_INTERLEAVE;
    if (weights) die(2, "--weights goes with --interleave or --exec --policy weighted-interleave");
    if (evict && !map && !other) return MODE_EVICT;
    return MODE_SHARD;
}

int main(int argc, char **argv) {
    const char *model = NULL, *map_text = getenv("GGML_NUMA_SHARD_MAP");
    int evict = 0, verify = 0, show_plan = 0, json = 0, i, rc, max_node = 0;
    double min_percent = 99.9;
    int fd;
    struct stat st;
    unsigned char *file;
    gguf_file gf;
    plan pl;
    int *nodes;
    char err[1024];
    tally *per, total;
    uint64_t still_cached = 0, tensor_pages = 0;
    unsigned char *vec = NULL;
    size_t r;

    {
        int mode = mode_of(argc, argv);
        g_page = page_size();
        if (mode == MODE_EXEC) return exec_main(argc, argv);
        if (mode == MODE_INTERLEAVE) return interleave_main(argc, argv);
        if (mode == MODE_EVICT) {
            int json_out = 0, n = 0;
            char **files = (char **)calloc((size_t)argc, sizeof *files);
            if (!files) die(1, "out of memory");
            for (i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--json") == 0) json_out = 1;
                else if (strcmp(argv[i], "--evict") != 0 && argv[i][0] == '-' && argv[i][1])
                    die(2, "--evict without a map only drops the page cache; unknown option or missing value: '%s'",
                        argv[i]);
                else if (strcmp(argv[i], "--evict") != 0) files[n++] = argv[i];
            }
            rc = evict_main(n, files, json_out);
            free(files);
            return rc;
        }
    }
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--map") == 0 && i + 1 < argc) map_text = argv[++i];
        else if (strcmp(a, "--evict") == 0) evict = 1;
        else if (strcmp(a, "--verify") == 0) verify = 1;
        else if (strcmp(a, "--plan") == 0) show_plan = 1;
        else if (strcmp(a, "--json") == 0) json = 1;
        else if (strcmp(a, "--min-percent") == 0 && i + 1 < argc) min_percent = parse_percent(argv[++i]);
        else if (a[0] == '-' && a[1]) {
            die(2, "unknown option or missing value: '%s'", a);
        } else if (model) {
            die(2, "one model at a time ('%s' and '%s')", model, a);
        } else {
            model = a;
        }
    }
    if (!model) die(2, "no model given");
    if (evict && verify) die(2, "--evict changes the page cache; --verify only looks");
    if (!map_text) die(1, "no map: set GGML_NUMA_SHARD_MAP or pass --map");

    /* The map, checked against the node tree: the same checks as the header's. */
    if (setenv("GGML_NUMA_SHARD_MAP", map_text, 1) != 0) die(1, "setenv: %s", strerror(errno));
    rc = ggml_numa_shard_init();
    if (rc < 0) die(1, "%s", ggml_numa_shard_last_error());
    if (rc == 0 && !show_plan) die(1, "%s", ggml_numa_shard_last_error());

    fd = open(model, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die(1, "%s: %s", model, strerror(errno));
    if (fstat(fd, &st) != 0) die(1, "%s: %s", model, strerror(errno));
    if (!S_ISREG(st.st_mode)) die(1, "%s: not a regular file", model);
    if (st.st_size < 4) die(1, "%s: offset 0: not a GGUF file (%lld bytes)", model, (long long)st.st_size);
    file = (unsigned char *)mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (file == MAP_FAILED) die(1, "%s: mmap: %s", model, strerror(errno));
    if (gguf_parse(file, (uint64_t)st.st_size, &gf, err, sizeof err) != 0) die(1, "%s: %s", model, err);
    madvise(file, (size_t)st.st_size, MADV_RANDOM); /* from now on no readahead past the run being placed */

    nodes = (int *)malloc((gf.n_tensors ? (size_t)gf.n_tensors : 1) * sizeof *nodes);
    if (!nodes) die(1, "out of memory");
    for (r = 0; r < gf.n_tensors; r++) {
        nodes[r] = ggml_numa_shard_node_for(gf.tensors[r].name);
        if (nodes[r] > max_node) max_node = nodes[r];
    }
    if (show_plan) {
        if (json) {
            printf("{\"model\": ");
            json_str(model);
            printf(", \"map\": ");
            json_str(map_text);
            printf(", \"version\": %u, \"alignment\": %llu, \"data_offset\": %llu, \"tensors\": [", gf.version,
                   (unsigned long long)gf.alignment, (unsigned long long)gf.data_offset);
        }
        for (r = 0; r < gf.n_tensors; r++) {
            const gguf_tensor *t = &gf.tensors[r];
            if (json) {
                printf("%s\n  {\"name\": ", r ? "," : "");
                json_str(t->name);
                printf(", \"type\": \"%s\", \"offset\": %llu, \"bytes\": %llu, \"node\": %d}", ggml_types[t->type].name,
                       (unsigned long long)t->offset, (unsigned long long)t->size, nodes[r]);
            } else {
                printf("%-48s %-8s %14llu %14llu  node %d\n", t->name, ggml_types[t->type].name,
                       (unsigned long long)t->offset, (unsigned long long)t->size, nodes[r]);
            }
        }
        if (json) printf("\n]}\n");
        free(nodes);
        gguf_free(&gf);
        ggml_numa_shard_cleanup();
        return 0;
    }
    if (plan_pages(gf.tensors, nodes, (size_t)gf.n_tensors, g_page, &pl) != 0) die(1, "out of memory");
    if (ggml_numa_shard_nodemask_init(&g_mask, max_node) != 0) die(1, "out of memory");
    per = (tally *)calloc(NODE_SLOTS, sizeof *per);
    if (!per) die(1, "out of memory");
    for (r = 0; r < gf.n_tensors; r++) per[nodes[r]].tensors++;
    for (r = 0; r < pl.n; r++) {
        per[pl.runs[r].node].planned += pl.runs[r].count;
        tensor_pages += pl.runs[r].count;
    }

    vec = (unsigned char *)malloc((size_t)((st.st_size + (off_t)g_page - 1) / (off_t)g_page) + 1);
    if (!vec) die(1, "out of memory");
    if (evict) {
        /* Drop our own mappings of the pages, write dirty pages back, then drop the clean ones. */
        madvise(file, (size_t)st.st_size, MADV_DONTNEED);
        if (fdatasync(fd) != 0) die(1, "%s: fdatasync: %s", model, strerror(errno));
        if ((errno = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)) != 0) die(1, "posix_fadvise: %s", strerror(errno));
        if (mincore(file, (size_t)st.st_size, vec) != 0) die(1, "mincore: %s", strerror(errno));
        for (r = 0; r < pl.n; r++) {
            uint64_t k;
            for (k = 0; k < pl.runs[r].count; k++) still_cached += vec[pl.runs[r].first + k] & 1;
        }
    }
    if (verify) {
        if (mincore(file, (size_t)st.st_size, vec) != 0) die(1, "mincore: %s", strerror(errno));
        for (r = 0; r < pl.n; r++) verify_run((char *)file, &pl.runs[r], vec, per);
    } else {
        for (r = 0; r < pl.n; r++) place_run(fd, (char *)file, &pl.runs[r], per);
    }

    total = sum_tallies(per, NODE_SLOTS);
    {
        double pct = percent(total.on_node, total.planned);
        int ok = pct >= min_percent;
        if (json) {
            int first = 1;
            printf("{\n  \"model\": ");
            json_str(model);
            printf(",\n  \"map\": ");
            json_str(map_text);
            printf(",\n  \"mode\": \"%s\",\n  \"page_size\": %lu,\n  \"tensors\": %llu,\n  \"evict\": ",
                   verify ? "verify" : "place", (unsigned long)g_page, (unsigned long long)gf.n_tensors);
            if (evict) printf("{\"still_cached_pages\": %llu}", (unsigned long long)still_cached);
            else printf("null");
            printf(",\n  \"nodes\": [");
            for (i = 0; i < NODE_SLOTS; i++) {
                const tally *t = &per[i];
                if (!t->planned && !t->tensors) continue;
                printf("%s\n    {\"node\": %d, \"tensors\": %llu, \"planned_pages\": %llu, \"resident_pages\": %llu, "
                       "\"on_node_pages\": %llu, \"elsewhere_pages\": %llu, \"moved_pages\": %llu, \"failed_pages\": %llu, "
                       "\"percent\": %.3f}",
                       first ? "" : ",", i, (unsigned long long)t->tensors, (unsigned long long)t->planned,
                       (unsigned long long)t->resident, (unsigned long long)t->on_node,
                       (unsigned long long)t->elsewhere, (unsigned long long)t->moved, (unsigned long long)t->failed,
                       percent(t->on_node, t->planned));
                first = 0;
            }
            printf("\n  ],\n  \"total\": {\"planned_pages\": %llu, \"resident_pages\": %llu, \"on_node_pages\": %llu, "
                   "\"elsewhere_pages\": %llu, \"moved_pages\": %llu, \"failed_pages\": %llu, \"percent\": %.3f},\n",
                   (unsigned long long)total.planned, (unsigned long long)total.resident,
                   (unsigned long long)total.on_node, (unsigned long long)total.elsewhere,
                   (unsigned long long)total.moved, (unsigned long long)total.failed, pct);
            printf("  \"min_percent\": %.3f,\n  \"ok\": %s\n}\n", min_percent, ok ? "true" : "false");
        } else {
            double mib = (double)g_page / 1048576.0;
            printf("%s: %llu tensors, %llu pages of tensor data, map '%s'\n", model, (unsigned long long)gf.n_tensors,
                   (unsigned long long)tensor_pages, map_text);
            if (evict)
                printf("evict: %llu pages stayed cached (mapped by another process, dirty or locked)\n",
                       (unsigned long long)still_cached);
            printf("%-6s %8s %12s %13s %13s %13s %9s\n", "node", "tensors", "planned MiB", "resident MiB",
                   "on node MiB", "elsewhere MiB", "on node");
            for (i = 0; i < NODE_SLOTS; i++) {
                const tally *t = &per[i];
                if (!t->planned && !t->tensors) continue;
                printf("%-6d %8llu %12.1f %13.1f %13.1f %13.1f %8.3f%%\n", i, (unsigned long long)t->tensors,
                       (double)t->planned * mib, (double)t->resident * mib, (double)t->on_node * mib,
                       (double)t->elsewhere * mib, percent(t->on_node, t->planned));
            }
            printf("%s: %.3f%% of the model's pages on their planned node (%llu moved), minimum %.3f%%: %s\n",
                   verify ? "verify" : "place", pct, (unsigned long long)total.moved, min_percent,
                   ok ? "ok" : "BELOW");
        }
        free(vec);
        free(pl.runs);
        free(nodes);
        gguf_free(&gf);
        munmap(file, (size_t)st.st_size);
        close(fd);
        ggml_numa_shard_nodemask_free(&g_mask);
        ggml_numa_shard_cleanup();
        if (report_failures(model, per)) {
            free(per);
            return 4;
        }
        free(per);
        return ok ? 0 : 3;
    }
}
#endif /* NUMA_SHARD_PLACE_NO_MAIN */
