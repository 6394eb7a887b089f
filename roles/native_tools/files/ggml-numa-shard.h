/* ggml-numa-shard.h - put each tensor of a GGUF model on the NUMA node a layer map names.

   USAGE
     In exactly one C or C++ file of the program:

         #define GGML_NUMA_SHARD_IMPLEMENTATION
         #include "ggml-numa-shard.h"

     Everywhere else, include it without the define. To keep every function private to a
     program that includes it from a single file, define GGML_NUMA_SHARD_STATIC as well.

         if (ggml_numa_shard_init() < 0)
             fprintf(stderr, "%s\n", ggml_numa_shard_last_error());
         for each tensor:                       (after its data is mapped or loaded)
             ggml_numa_shard_assign(name, data, nbytes);
         ggml_numa_shard_stats();
         ggml_numa_shard_cleanup();

   ENVIRONMENT
     GGML_NUMA_SHARD_MAP    the layer map, e.g. "0-39:node0,40-79:node1,*:node1"; the syntax
                            and resolution rules are in docs/shard-map.md. When it is unset,
                            ggml_numa_shard_init() does nothing and returns 0.
     GGML_NUMA_SHARD_SYSFS  read the node tree from this directory instead of
                            /sys/devices/system/node (tests use fake trees).

   OPTIONS (define before including)
     GGML_NUMA_SHARD_IMPLEMENTATION  compile the implementation into this file.
     GGML_NUMA_SHARD_STATIC          make every function static (single-file programs).
     GGML_NUMA_SHARD_DISABLE         compile placement as a no-op, as on systems without NUMA.

   WHAT ggml_numa_shard_assign() DOES (Linux)
     - Huge pages at the tensor's edges are split first (a huge page migrates whole).
     - Every whole page inside the tensor goes to the tensor's node. A page shared with
       other tensors goes to the tensor that owns most of its bytes (ties: the lower address),
       whatever order the tensors are assigned in.
     - It faults the pages in (one read per page) under a preferred-node task policy, so page
       cache pages of an mmapped model are allocated on the node, then binds the range
       (MPOL_BIND) and migrates pages that sit elsewhere (MPOL_MF_MOVE; with CAP_SYS_NICE
       also pages other processes map, MPOL_MF_MOVE_ALL).
     - It checks every page with move_pages(2) and counts whole pages as placed (on the
       node), failed (elsewhere, or the binding failed) or pending (not faulted yet).
     - It returns the node, or -1 when the tensor could not be resolved or some of its pages
       are not on the node; ggml_numa_shard_last_error() says why.
     Raw system calls only: no libnuma needed. Off Linux, with GGML_NUMA_SHARD_DISABLE, or
     on a kernel without NUMA, the map is still parsed and resolved but nothing is placed.
     With a single memory node, everything is bound to it (cheap: nothing moves).

   LIMITS
     Not thread-safe: call everything from one thread. Node ids run to 1023.
*/
#ifndef GGML_NUMA_SHARD_H
#define GGML_NUMA_SHARD_H

#include <stddef.h>

#define GGML_NUMA_SHARD_VERSION "0.1.0"
#define GGML_NUMA_SHARD_MAX_NODE_ID 1023

#if defined(__GNUC__) || defined(__clang__)
#define GGML_NUMA_SHARD_UNUSED __attribute__((unused))
#else
#define GGML_NUMA_SHARD_UNUSED
#endif

#ifdef GGML_NUMA_SHARD_STATIC
#define GGML_NUMA_SHARD_API static GGML_NUMA_SHARD_UNUSED
#else
#define GGML_NUMA_SHARD_API extern
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- The placement API ---------------------------------------------------------------- */

/* Read GGML_NUMA_SHARD_MAP and the node tree. Returns 1 when placement is on, 0 when there
   is nothing to do (no map, no NUMA), -1 on error (a bad rule, a node that is offline or
   has no memory): see ggml_numa_shard_last_error(). */
GGML_NUMA_SHARD_API int ggml_numa_shard_init(void);

/* Use this map and these memory nodes instead of the environment and sysfs; placement is
   on when the kernel supports it. Returns like ggml_numa_shard_init(). */
GGML_NUMA_SHARD_API int ggml_numa_shard_configure(const char *map, const int *mem_nodes, int n_mem_nodes);

/* Place the tensor `name` at [data, data + size). Returns its node, or -1. */
GGML_NUMA_SHARD_API int ggml_numa_shard_assign(const char *name, void *data, size_t size);

/* The node the loaded map gives `tensor_name`, with no system calls; -1 before init. */
GGML_NUMA_SHARD_API int ggml_numa_shard_node_for(const char *tensor_name);

/* Print per-node counts to stderr. */
GGML_NUMA_SHARD_API void ggml_numa_shard_stats(void);

/* Forget the map and the counts (placed pages stay where they are). */
GGML_NUMA_SHARD_API void ggml_numa_shard_cleanup(void);

/* Why the last call failed or did nothing; "" when it did not. */
GGML_NUMA_SHARD_API const char *ggml_numa_shard_last_error(void);

typedef struct ggml_numa_shard_counts {
    size_t tensors;       /* tensors assigned to the node */
    size_t placed_bytes;  /* whole pages verified on the node */
    size_t failed_bytes;  /* whole pages on another node, or whose binding failed */
    size_t pending_bytes; /* whole pages bound but not faulted in yet */
} ggml_numa_shard_counts;

/* The counts of `node` (all zero for a node nothing went to). Returns 0, or -1 before init. */
GGML_NUMA_SHARD_API int ggml_numa_shard_counts_for(int node, ggml_numa_shard_counts *out);

/* ---- Building blocks, shared with numa-shard-bench and numa-shard-place ---------------- */

enum ggml_numa_shard_type {
    GGML_NUMA_SHARD_TYPE_NONE = -1,
    GGML_NUMA_SHARD_TYPE_ATTN = 0,
    GGML_NUMA_SHARD_TYPE_FFN = 1,
    GGML_NUMA_SHARD_TYPE_NORM = 2,
    GGML_NUMA_SHARD_TYPE_EMBED = 3
};

enum ggml_numa_shard_rule_kind {
    GGML_NUMA_SHARD_RULE_RANGE = 0, /* N-M:nodeX or N:nodeX */
    GGML_NUMA_SHARD_RULE_TYPE = 1,  /* attn|ffn|norm|embed:nodeX */
    GGML_NUMA_SHARD_RULE_ANY = 2    /* *:nodeX */
};

typedef struct ggml_numa_shard_rule {
    int kind, type, node;
    size_t pos, len;          /* 1-based position and length of the rule in the map text */
    size_t first, first_len;  /* range bounds: spans of decimal digits in the map text, */
    size_t last, last_len;    /* leading zeros dropped (layers have no upper bound) */
} ggml_numa_shard_rule;

typedef struct ggml_numa_shard_map {
    char *text;
    ggml_numa_shard_rule *rules;
    size_t n_rules;
    int type_node[4]; /* by enum ggml_numa_shard_type; -1: no rule */
    int any_node;     /* the `*` node; -1: no rule (tensors with no layer go to node 0) */
} ggml_numa_shard_map;

/* Parse `text`. On error returns -1, writes "GGML_NUMA_SHARD_MAP position P ('rule'): why"
   to err and the 1-based byte position to *err_pos (either may be NULL). */
GGML_NUMA_SHARD_API int ggml_numa_shard_map_parse(ggml_numa_shard_map *map, const char *text,
                                                  char *err, size_t err_size, size_t *err_pos);
GGML_NUMA_SHARD_API void ggml_numa_shard_map_free(ggml_numa_shard_map *map);
/* Resolve a name; `nodes` (sorted ascending) are the online memory nodes for round-robin. */
GGML_NUMA_SHARD_API int ggml_numa_shard_map_node_for(const ggml_numa_shard_map *map, const char *name,
                                                     const int *nodes, int n_nodes);
GGML_NUMA_SHARD_API int ggml_numa_shard_tensor_type(const char *name);
/* The layer of "blk.N." names: 1 and N (saturated at LLONG_MAX) in *layer; 0 without one. */
GGML_NUMA_SHARD_API int ggml_numa_shard_layer_of(const char *name, long long *layer);

/* A node mask sized at run time; node ids are bit indices. */
typedef struct ggml_numa_shard_nodemask {
    unsigned long *bits;
    size_t nbits; /* a multiple of the bits in a long */
} ggml_numa_shard_nodemask;

GGML_NUMA_SHARD_API int ggml_numa_shard_nodemask_init(ggml_numa_shard_nodemask *mask, int max_node);
GGML_NUMA_SHARD_API void ggml_numa_shard_nodemask_free(ggml_numa_shard_nodemask *mask);
GGML_NUMA_SHARD_API void ggml_numa_shard_nodemask_clear(ggml_numa_shard_nodemask *mask);
GGML_NUMA_SHARD_API int ggml_numa_shard_nodemask_set(ggml_numa_shard_nodemask *mask, int node);
GGML_NUMA_SHARD_API int ggml_numa_shard_nodemask_isset(const ggml_numa_shard_nodemask *mask, int node);
/* The `maxnode` argument of mbind/set_mempolicy/get_mempolicy for this mask. */
GGML_NUMA_SHARD_API unsigned long ggml_numa_shard_nodemask_maxnode(const ggml_numa_shard_nodemask *mask);

/* Parse the kernel's list syntax ("0-3,8,10-14"). Returns the count and a malloc'd array in
   *out (NULL when empty), or -1 on bad syntax or an id above max_id. */
GGML_NUMA_SHARD_API int ggml_numa_shard_parse_list(const char *text, int max_id, int **out);
/* Write ascending ids in the same syntax ("0-3,8") into buf, truncated to fit. */
GGML_NUMA_SHARD_API void ggml_numa_shard_format_list(const int *ids, int n, char *buf, size_t size);
/* The CPUs the calling thread may run on (sched_getaffinity), ascending: the count and a
   malloc'd array in *out, or -1 with errno set (ENOSYS off Linux and in a disabled build). */
GGML_NUMA_SHARD_API int ggml_numa_shard_allowed_cpus(int **out);

typedef struct ggml_numa_shard_node {
    int id;
    int has_memory;
    long long mem_total_kb, mem_free_kb; /* -1 when unknown */
    int n_cpus;
    int *cpus;
} ggml_numa_shard_node;

typedef struct ggml_numa_shard_topology {
    int numa;           /* 0: the kernel shows no node tree */
    int n_nodes;        /* online nodes, in id order */
    ggml_numa_shard_node *nodes;
    int *distance;      /* n_nodes x n_nodes in node order, or NULL */
    int max_possible;   /* highest possible node id (sizes node masks) */
} ggml_numa_shard_topology;

/* Read the node tree (dir: NULL means $GGML_NUMA_SHARD_SYSFS or /sys/devices/system/node).
   Returns 0, or -1 with a message in err. */
GGML_NUMA_SHARD_API int ggml_numa_shard_topology_read(ggml_numa_shard_topology *topo, const char *dir,
                                                      char *err, size_t err_size);
GGML_NUMA_SHARD_API void ggml_numa_shard_topology_free(ggml_numa_shard_topology *topo);
GGML_NUMA_SHARD_API const ggml_numa_shard_node *ggml_numa_shard_topology_node(const ggml_numa_shard_topology *topo, int id);
/* Distance between two node ids, or -1 when unknown. */
GGML_NUMA_SHARD_API int ggml_numa_shard_topology_distance(const ggml_numa_shard_topology *topo, int a, int b);

#ifdef __cplusplus
}
#endif
#endif /* GGML_NUMA_SHARD_H */

/* ======================================================================================= */
#ifdef GGML_NUMA_SHARD_IMPLEMENTATION
#ifndef GGML_NUMA_SHARD_IMPLEMENTATION_DONE
#define GGML_NUMA_SHARD_IMPLEMENTATION_DONE

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__linux__) && !defined(GGML_NUMA_SHARD_DISABLE)
#include <sys/syscall.h>
#include <unistd.h>
#if defined(SYS_mbind) && defined(SYS_move_pages) && defined(SYS_set_mempolicy) && defined(SYS_get_mempolicy)
#define GNS_LINUX 1
#ifndef __cplusplus
/* Strict C99 hides syscall(); this declaration is compatible with the C library's. */
extern long syscall(long gns_number, ...);
#endif
#endif
#endif

#define GNS_INTERNAL static GGML_NUMA_SHARD_UNUSED
#define GNS_LONG_BITS (8 * sizeof(unsigned long))
#if defined(__GNUC__) || defined(__clang__)
#define GNS_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define GNS_PRINTF(a, b)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- small helpers --------------------------------------------------------------------- */

GNS_PRINTF(3, 4) GNS_INTERNAL void gns_format(char *buf, size_t size, const char *fmt, ...) {
    va_list ap;
    if (!buf || !size) return;
    va_start(ap, fmt);
    vsnprintf(buf, size, fmt, ap);
    va_end(ap);
}

GNS_INTERNAL int gns_is_space(char c) { return c == ' ' || c == '\t'; }
GNS_INTERNAL int gns_is_digit(char c) { return c >= '0' && c <= '9'; }

/* Trim spaces and tabs from the span [*off, *off + *len) of s. */
GNS_INTERNAL void gns_trim(const char *s, size_t *off, size_t *len) {
    while (*len && gns_is_space(s[*off])) { ++*off; --*len; }
    while (*len && gns_is_space(s[*off + *len - 1])) --*len;
}

GNS_INTERNAL int gns_all_digits(const char *s, size_t len) {
    size_t i;
    if (!len) return 0;
    for (i = 0; i < len; i++)
        if (!gns_is_digit(s[i])) return 0;
    return 1;
}

/* Drop leading zeros of a digit span (keeping one digit). */
GNS_INTERNAL void gns_norm_digits(const char *s, size_t *off, size_t *len) {
    while (*len > 1 && s[*off] == '0') { ++*off; --*len; }
}

/* Compare two normalized digit spans as numbers. */
GNS_INTERNAL int gns_numcmp(const char *a, size_t alen, const char *b, size_t blen) {
    int c;
    if (alen != blen) return alen < blen ? -1 : 1;
    c = memcmp(a, b, alen);
    return (c > 0) - (c < 0);
}

GNS_INTERNAL unsigned long gns_nummod(const char *a, size_t len, unsigned long m) {
    unsigned long r = 0;
    size_t i;
    for (i = 0; i < len; i++) r = (r * 10 + (unsigned long)(a[i] - '0')) % m;
    return r;
}

/* A normalized digit span as a long long, saturated. */
GNS_INTERNAL long long gns_numval(const char *a, size_t len) {
    long long v = 0;
    size_t i;
    for (i = 0; i < len; i++) {
        if (v > (LLONG_MAX - 9) / 10) return LLONG_MAX;
        v = v * 10 + (a[i] - '0');
    }
    return v;
}

GNS_INTERNAL char *gns_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = (char *)malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

GNS_INTERNAL int gns_cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* ---- tensor names ----------------------------------------------------------------------- */

GGML_NUMA_SHARD_API int ggml_numa_shard_tensor_type(const char *name) {
    static const char *const embed[] = {"token_embd", "position_embd", "token_types"};
    size_t i;
    for (i = 0; i < 3; i++)
        if (strncmp(name, embed[i], strlen(embed[i])) == 0) return GGML_NUMA_SHARD_TYPE_EMBED;
    if (strstr(name, "norm")) return GGML_NUMA_SHARD_TYPE_NORM;
    if (strstr(name, "attn")) return GGML_NUMA_SHARD_TYPE_ATTN;
    if (strstr(name, "ffn")) return GGML_NUMA_SHARD_TYPE_FFN;
    return GGML_NUMA_SHARD_TYPE_NONE;
}

/* The digit span of the layer in "blk.N." (normalized); 0 when the name has none. */
GNS_INTERNAL int gns_layer_span(const char *name, size_t *off, size_t *len) {
    size_t n = 0;
    if (strncmp(name, "blk.", 4) != 0) return 0;
    while (gns_is_digit(name[4 + n])) n++;
    if (!n || name[4 + n] != '.') return 0;
    *off = 4;
    *len = n;
    gns_norm_digits(name, off, len);
    return 1;
}

GGML_NUMA_SHARD_API int ggml_numa_shard_layer_of(const char *name, long long *layer) {
    size_t off, len;
    if (!gns_layer_span(name, &off, &len)) return 0;
    if (layer) *layer = gns_numval(name + off, len);
    return 1;
}

/* ---- the map ---------------------------------------------------------------------------- */

static const char *const gns_type_names[4] = {"attn", "ffn", "norm", "embed"};

GGML_NUMA_SHARD_API void ggml_numa_shard_map_free(ggml_numa_shard_map *map) {
    if (!map) return;
    free(map->text);
    free(map->rules);
    memset(map, 0, sizeof *map);
    map->type_node[0] = map->type_node[1] = map->type_node[2] = map->type_node[3] = -1;
    map->any_node = -1;
}

GNS_INTERNAL char gns_printable(char c) { return (unsigned char)c < 0x20 || c == 0x7f ? '?' : c; }

/* Report a bad rule: the message names its position and text (shortened when long). */
GNS_PRINTF(6, 7) GNS_INTERNAL int gns_map_fail(char *err, size_t err_size, size_t *err_pos, const char *text,
                                               const ggml_numa_shard_rule *r, const char *fmt, ...) {
    char why[256], rule[64];
    va_list ap;
    int shown = r->len > 60 ? 57 : (int)r->len, i;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    /* Control characters shown as '?': the message stays one line, whatever the map holds. */
    for (i = 0; i < shown; i++) rule[i] = gns_printable(text[r->pos - 1 + (size_t)i]);
    for (i = 0; why[i]; i++) why[i] = gns_printable(why[i]);
    gns_format(err, err_size, "GGML_NUMA_SHARD_MAP position %lu ('%.*s%s'): %s", (unsigned long)r->pos, shown, rule,
               r->len > 60 ? "..." : "", why);
    if (err_pos) *err_pos = r->pos;
    return -1;
}

GGML_NUMA_SHARD_API int ggml_numa_shard_map_parse(ggml_numa_shard_map *map, const char *text, char *err,
                                                  size_t err_size, size_t *err_pos) {
    ggml_numa_shard_map m;
    size_t n = strlen(text), start = 0, i, cap;
    int blank = 1;

    memset(&m, 0, sizeof m);
    ggml_numa_shard_map_free(&m);
    if (err && err_size) err[0] = 0;
    if (err_pos) *err_pos = 0;
    for (i = 0; i < n; i++)
        if (!gns_is_space(text[i])) blank = 0;
    m.text = gns_strdup(text);
    cap = 1;
    for (i = 0; i < n; i++) cap += text[i] == ',';
    m.rules = (ggml_numa_shard_rule *)calloc(cap, sizeof *m.rules);
    if (!m.text || !m.rules) {
        ggml_numa_shard_map_free(&m);
        gns_format(err, err_size, "GGML_NUMA_SHARD_MAP: out of memory");
        return -1;
    }
    if (blank) {
        *map = m;
        return 0;
    }
    for (;;) {
        size_t end = start, off, len, colon = 0, colons = 0, toff, tlen, noff, nlen;
        ggml_numa_shard_rule *r = &m.rules[m.n_rules];
        const char *mt = m.text;
        while (end < n && text[end] != ',') end++;
        off = start;
        len = end - start;
        gns_trim(text, &off, &len);
        if (!len) off = end; /* an empty rule sits where its comma is */
        r->pos = off + 1;
        r->len = len;
        if (!len) {
            gns_map_fail(err, err_size, err_pos, mt, r, "empty rule");
            goto fail;
        }
        for (i = off; i < off + len; i++)
            if (text[i] == ':') { colons++; colon = i; }
        if (colons != 1) {
            gns_map_fail(err, err_size, err_pos, mt, r, "expected TARGET:nodeX");
            goto fail;
        }
        toff = off; tlen = colon - off;
        noff = colon + 1; nlen = off + len - colon - 1;
        gns_trim(text, &toff, &tlen);
        gns_trim(text, &noff, &nlen);

        /* node = "node" ID | ID */
        {
            size_t doff = noff, dlen = nlen;
            if (dlen > 4 && strncmp(text + doff, "node", 4) == 0) { doff += 4; dlen -= 4; }
            if (!gns_all_digits(text + doff, dlen)) {
                gns_map_fail(err, err_size, err_pos, mt, r, "bad node '%.*s': expected nodeX or X", (int)nlen, text + noff);
                goto fail;
            }
            gns_norm_digits(text, &doff, &dlen);
            if (dlen > 4 || gns_numval(text + doff, dlen) > GGML_NUMA_SHARD_MAX_NODE_ID) {
                gns_map_fail(err, err_size, err_pos, mt, r, "node id %.*s is above %d", (int)dlen, text + doff,
                             GGML_NUMA_SHARD_MAX_NODE_ID);
                goto fail;
            }
            r->node = (int)gns_numval(text + doff, dlen);
        }

        if (tlen == 1 && text[toff] == '*') {
            if (m.any_node >= 0) {
                gns_map_fail(err, err_size, err_pos, mt, r, "'*' given twice");
                goto fail;
            }
            r->kind = GGML_NUMA_SHARD_RULE_ANY;
            m.any_node = r->node;
        } else {
            int t, type = -1;
            for (t = 0; t < 4; t++)
                if (tlen == strlen(gns_type_names[t]) && strncmp(text + toff, gns_type_names[t], tlen) == 0) type = t;
            if (type >= 0) {
                if (m.type_node[type] >= 0) {
                    gns_map_fail(err, err_size, err_pos, mt, r, "type '%s' given twice", gns_type_names[type]);
                    goto fail;
                }
                r->kind = GGML_NUMA_SHARD_RULE_TYPE;
                r->type = type;
                m.type_node[type] = r->node;
            } else {
                /* N or N-M */
                size_t dash = toff;
                size_t j;
                while (dash < toff + tlen && text[dash] != '-') dash++;
                r->first = toff;
                r->first_len = dash - toff;
                if (dash < toff + tlen) {
                    r->last = dash + 1;
                    r->last_len = toff + tlen - dash - 1;
                } else {
                    r->last = r->first;
                    r->last_len = r->first_len;
                }
                if (!gns_all_digits(text + r->first, r->first_len) || !gns_all_digits(text + r->last, r->last_len)) {
                    gns_map_fail(err, err_size, err_pos, mt, r,
                                 "unknown target '%.*s': expected N, N-M, attn, ffn, norm, embed or *", (int)tlen,
                                 text + toff);
                    goto fail;
                }
                gns_norm_digits(text, &r->first, &r->first_len);
                gns_norm_digits(text, &r->last, &r->last_len);
                if (gns_numcmp(text + r->first, r->first_len, text + r->last, r->last_len) > 0) {
                    gns_map_fail(err, err_size, err_pos, mt, r, "range %.*s-%.*s runs backwards", (int)r->first_len,
                                 text + r->first, (int)r->last_len, text + r->last);
                    goto fail;
                }
                r->kind = GGML_NUMA_SHARD_RULE_RANGE;
                for (j = 0; j < m.n_rules; j++) {
                    const ggml_numa_shard_rule *o = &m.rules[j];
                    const char *lo, *hi;
                    size_t lo_len, hi_len;
                    if (o->kind != GGML_NUMA_SHARD_RULE_RANGE) continue;
                    if (gns_numcmp(text + r->first, r->first_len, text + o->last, o->last_len) > 0 ||
                        gns_numcmp(text + o->first, o->first_len, text + r->last, r->last_len) > 0)
                        continue;
                    /* the overlap runs from the larger first to the smaller last */
                    if (gns_numcmp(text + o->first, o->first_len, text + r->first, r->first_len) > 0) {
                        lo = text + o->first; lo_len = o->first_len;
                    } else {
                        lo = text + r->first; lo_len = r->first_len;
                    }
                    if (gns_numcmp(text + o->last, o->last_len, text + r->last, r->last_len) < 0) {
                        hi = text + o->last; hi_len = o->last_len;
                    } else {
                        hi = text + r->last; hi_len = r->last_len;
                    }
                    gns_map_fail(err, err_size, err_pos, mt, r, "layers %.*s-%.*s are also in rule '%.*s'", (int)lo_len,
                                 lo, (int)hi_len, hi, (int)o->len, text + o->pos - 1);
                    goto fail;
                }
            }
        }
        m.n_rules++;
        if (end >= n) break;
        start = end + 1;
    }
    *map = m;
    return 0;
fail:
    ggml_numa_shard_map_free(&m);
    return -1;
}

GGML_NUMA_SHARD_API int ggml_numa_shard_map_node_for(const ggml_numa_shard_map *map, const char *name,
                                                     const int *nodes, int n_nodes) {
    int type = ggml_numa_shard_tensor_type(name);
    size_t off, len, i;
    if (type >= 0 && map->type_node[type] >= 0) return map->type_node[type];
    if (!gns_layer_span(name, &off, &len)) return map->any_node >= 0 ? map->any_node : 0;
    for (i = 0; i < map->n_rules; i++) {
        const ggml_numa_shard_rule *r = &map->rules[i];
        if (r->kind == GGML_NUMA_SHARD_RULE_RANGE &&
            gns_numcmp(map->text + r->first, r->first_len, name + off, len) <= 0 &&
            gns_numcmp(name + off, len, map->text + r->last, r->last_len) <= 0)
            return r->node;
    }
    if (n_nodes <= 0) return 0;
    return nodes[gns_nummod(name + off, len, (unsigned long)n_nodes)];
}

/* ---- node masks and lists --------------------------------------------------------------- */

GGML_NUMA_SHARD_API int ggml_numa_shard_nodemask_init(ggml_numa_shard_nodemask *mask, int max_node) {
    size_t longs = (size_t)(max_node < 0 ? 0 : max_node) / GNS_LONG_BITS + 1;
    mask->bits = (unsigned long *)calloc(longs, sizeof(unsigned long));
    mask->nbits = mask->bits ? longs * GNS_LONG_BITS : 0;
    return mask->bits ? 0 : -1;
}

GGML_NUMA_SHARD_API void ggml_numa_shard_nodemask_free(ggml_numa_shard_nodemask *mask) {
    free(mask->bits);
    mask->bits = NULL;
    mask->nbits = 0;
}

GGML_NUMA_SHARD_API void ggml_numa_shard_nodemask_clear(ggml_numa_shard_nodemask *mask) {
    if (mask->bits) memset(mask->bits, 0, mask->nbits / 8);
}

GGML_NUMA_SHARD_API int ggml_numa_shard_nodemask_set(ggml_numa_shard_nodemask *mask, int node) {
    if (node < 0 || (size_t)node >= mask->nbits) return -1;
    mask->bits[(size_t)node / GNS_LONG_BITS] |= 1UL << ((size_t)node % GNS_LONG_BITS);
    return 0;
}

GGML_NUMA_SHARD_API int ggml_numa_shard_nodemask_isset(const ggml_numa_shard_nodemask *mask, int node) {
    if (node < 0 || (size_t)node >= mask->nbits) return 0;
    return (mask->bits[(size_t)node / GNS_LONG_BITS] >> ((size_t)node % GNS_LONG_BITS)) & 1UL ? 1 : 0;
}

/* The kernel reads maxnode - 1 bits (mm/mempolicy.c get_nodes), so pass one more. */
GGML_NUMA_SHARD_API unsigned long ggml_numa_shard_nodemask_maxnode(const ggml_numa_shard_nodemask *mask) {
    return (unsigned long)mask->nbits + 1;
}

GGML_NUMA_SHARD_API int ggml_numa_shard_parse_list(const char *text, int max_id, int **out) {
    const char *p = text;
    int *ids = NULL, n = 0, cap = 0;
    *out = NULL;
    while (gns_is_space(*p) || *p == '\n') p++;
    if (!*p) return 0;
    for (;;) {
        long lo, hi, v;
        char *end;
        if (!gns_is_digit(*p)) goto bad;
        lo = strtol(p, &end, 10);
        p = end;
        hi = lo;
        if (*p == '-') {
            if (!gns_is_digit(p[1])) goto bad;
            hi = strtol(p + 1, &end, 10);
            p = end;
        }
        if (lo < 0 || hi < lo || hi > max_id) goto bad;
        for (v = lo; v <= hi; v++) {
            if (n == cap) {
                int *grown;
                cap = cap ? 2 * cap : 16;
                grown = (int *)realloc(ids, (size_t)cap * sizeof *ids);
                if (!grown) goto bad;
                ids = grown;
            }
            ids[n++] = (int)v;
        }
        while (*p == ' ' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        if (*p++ != ',') goto bad;
        while (gns_is_space(*p)) p++;
    }
    *out = ids;
    return n;
bad:
    free(ids);
    return -1;
}

GGML_NUMA_SHARD_API void ggml_numa_shard_format_list(const int *ids, int n, char *buf, size_t size) {
    size_t used = 0;
    int i = 0;
    if (!size) return;
    buf[0] = 0;
    while (i < n && used < size) {
        int j = i, w;
        while (j + 1 < n && ids[j + 1] == ids[j] + 1) j++;
        if (j == i) w = snprintf(buf + used, size - used, "%s%d", i ? "," : "", ids[i]);
        else w = snprintf(buf + used, size - used, "%s%d-%d", i ? "," : "", ids[i], ids[j]);
        if (w < 0) break;
        used += (size_t)w;
        i = j + 1;
    }
}

GGML_NUMA_SHARD_API int ggml_numa_shard_allowed_cpus(int **out) {
#if defined(GNS_LINUX) && defined(SYS_sched_getaffinity)
    size_t longs = 16, i;
    unsigned long *bits;
    long got;
    int *ids, n = 0;
    *out = NULL;
    for (;;) { /* the kernel refuses (EINVAL) a mask smaller than its own CPU count */
        bits = (unsigned long *)calloc(longs, sizeof *bits);
        if (!bits) return -1;
        got = syscall(SYS_sched_getaffinity, 0, longs * sizeof *bits, bits);
        if (got >= 0) break;
        free(bits);
        if (errno != EINVAL || longs >= ((size_t)1 << 16)) return -1;
        longs *= 2;
    }
    ids = (int *)malloc(longs * GNS_LONG_BITS * sizeof *ids);
    if (!ids) {
        free(bits);
        return -1;
    }
    for (i = 0; i < (size_t)got * 8; i++)
        if ((bits[i / GNS_LONG_BITS] >> (i % GNS_LONG_BITS)) & 1UL) ids[n++] = (int)i;
    free(bits);
    *out = ids;
    return n;
#else
    *out = NULL;
    errno = ENOSYS;
    return -1;
#endif
}

/* ---- the node tree ---------------------------------------------------------------------- */

/* Read a small text file into buf; 0 on success. */
GNS_INTERNAL int gns_read_file(const char *dir, const char *name, char *buf, size_t size) {
    char path[4096];
    FILE *f;
    size_t got;
    gns_format(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "r");
    if (!f) return -1;
    got = fread(buf, 1, size - 1, f);
    buf[got] = 0;
    fclose(f);
    return 0;
}

/* Read a list file; -1 when missing, -2 when malformed. */
GNS_INTERNAL int gns_read_list(const char *dir, const char *name, int max_id, int **out) {
    char buf[16384];
    int n;
    *out = NULL;
    if (gns_read_file(dir, name, buf, sizeof buf) != 0) return -1;
    n = ggml_numa_shard_parse_list(buf, max_id, out);
    return n < 0 ? -2 : n;
}

/* "Node N MemTotal:  123 kB" */
GNS_INTERNAL long long gns_meminfo(const char *buf, const char *key) {
    const char *p = strstr(buf, key);
    if (!p) return -1;
    p += strlen(key);
    while (gns_is_space(*p)) p++;
    return gns_is_digit(*p) ? strtoll(p, NULL, 10) : -1;
}

GGML_NUMA_SHARD_API void ggml_numa_shard_topology_free(ggml_numa_shard_topology *topo) {
    int i;
    for (i = 0; topo->nodes && i < topo->n_nodes; i++) free(topo->nodes[i].cpus);
    free(topo->nodes);
    free(topo->distance);
    memset(topo, 0, sizeof *topo);
}

#define GNS_MAX_TREE_NODE 65535
#define GNS_MAX_CPU ((1 << 22) - 1)

GGML_NUMA_SHARD_API int ggml_numa_shard_topology_read(ggml_numa_shard_topology *topo, const char *dir, char *err,
                                                      size_t err_size) {
    char buf[65536], sub[64];
    int *online = NULL, *possible = NULL, *memory = NULL, n_online, n_possible, n_memory, i, j;
    memset(topo, 0, sizeof *topo);
    if (!dir) dir = getenv("GGML_NUMA_SHARD_SYSFS");
    if (!dir || !*dir) dir = "/sys/devices/system/node";

    n_online = gns_read_list(dir, "online", GNS_MAX_TREE_NODE, &online);
    if (n_online == -1) return 0; /* no node tree: no NUMA */
    if (n_online <= 0) {
        gns_format(err, err_size, "%s/online: not a node list", dir);
        goto fail;
    }
    topo->numa = 1;
    topo->n_nodes = n_online;
    topo->nodes = (ggml_numa_shard_node *)calloc((size_t)n_online, sizeof *topo->nodes);
    if (!topo->nodes) goto oom;
    n_possible = gns_read_list(dir, "possible", GNS_MAX_TREE_NODE, &possible);
    topo->max_possible = online[n_online - 1];
    for (i = 0; i < n_possible; i++)
        if (possible[i] > topo->max_possible) topo->max_possible = possible[i];
    n_memory = gns_read_list(dir, "has_memory", GNS_MAX_TREE_NODE, &memory);
    if (n_memory == -2) {
        gns_format(err, err_size, "%s/has_memory: not a node list", dir);
        goto fail;
    }
    for (i = 0; i < n_online; i++) {
        ggml_numa_shard_node *nd = &topo->nodes[i];
        int n;
        nd->id = online[i];
        nd->mem_total_kb = nd->mem_free_kb = -1;
        gns_format(sub, sizeof sub, "node%d/cpulist", nd->id);
        n = gns_read_list(dir, sub, GNS_MAX_CPU, &nd->cpus);
        if (n == -2) {
            gns_format(err, err_size, "%s/%s: not a CPU list", dir, sub);
            goto fail;
        }
        nd->n_cpus = n < 0 ? 0 : n;
        gns_format(sub, sizeof sub, "node%d/meminfo", nd->id);
        if (gns_read_file(dir, sub, buf, sizeof buf) == 0) {
            nd->mem_total_kb = gns_meminfo(buf, "MemTotal:");
            nd->mem_free_kb = gns_meminfo(buf, "MemFree:");
        }
        if (n_memory >= 0) {
            for (j = 0; j < n_memory; j++)
                if (memory[j] == nd->id) nd->has_memory = 1;
        } else {
            nd->has_memory = nd->mem_total_kb >= 1024;
        }
    }
    /* Each distance row lists the online nodes in id order. */
    topo->distance = (int *)malloc((size_t)n_online * (size_t)n_online * sizeof(int));
    if (!topo->distance) goto oom;
    for (i = 0; i < n_online && topo->distance; i++) {
        const char *p = buf;
        gns_format(sub, sizeof sub, "node%d/distance", online[i]);
        if (gns_read_file(dir, sub, buf, sizeof buf) != 0) {
            free(topo->distance);
            topo->distance = NULL;
            break;
        }
        for (j = 0; j < n_online; j++) {
            char *end;
            long d = strtol(p, &end, 10);
            if (end == p || d < 0 || d > 255) {
                gns_format(err, err_size, "%s/%s: expected %d distances", dir, sub, n_online);
                goto fail;
            }
            topo->distance[i * n_online + j] = (int)d;
            p = end;
        }
    }
    free(online);
    free(possible);
    free(memory);
    return 0;
oom:
    gns_format(err, err_size, "out of memory");
fail:
    free(online);
    free(possible);
    free(memory);
    ggml_numa_shard_topology_free(topo);
    return -1;
}

GGML_NUMA_SHARD_API const ggml_numa_shard_node *ggml_numa_shard_topology_node(const ggml_numa_shard_topology *topo,
                                                                             int id) {
    int i;
    for (i = 0; i < topo->n_nodes; i++)
        if (topo->nodes[i].id == id) return &topo->nodes[i];
    return NULL;
}

GGML_NUMA_SHARD_API int ggml_numa_shard_topology_distance(const ggml_numa_shard_topology *topo, int a, int b) {
    int i, ia = -1, ib = -1;
    if (!topo->distance) return -1;
    for (i = 0; i < topo->n_nodes; i++) {
        if (topo->nodes[i].id == a) ia = i;
        if (topo->nodes[i].id == b) ib = i;
    }
    return ia < 0 || ib < 0 ? -1 : topo->distance[ia * topo->n_nodes + ib];
}

/* ---- placement state --------------------------------------------------------------------- */

enum { GNS_PLACED = 0, GNS_FAILED = 1, GNS_PENDING = 2 };

typedef struct gns_page_rec { /* a page shared by tensors: who owns most of it */
    uintptr_t page;           /* 0: free slot */
    size_t bytes;
    uintptr_t start;
    int node, state;
} gns_page_rec;

#define GNS_QUERY_PAGES 4096

static struct gns_state {
    int configured, placing;
    ggml_numa_shard_map map;
    int *nodes, n_nodes, max_node;
    ggml_numa_shard_counts *counts; /* [max_node + 1] */
    char error[512];
#ifdef GNS_LINUX
    size_t page;
    ggml_numa_shard_nodemask mask, saved_mask;
    int saved_mode, saved_ok, move_all;
    gns_page_rec *recs;
    size_t rec_cap, rec_used;
    void **qpages;
    int *qstatus;
#endif
} gns_g;

GNS_PRINTF(1, 2) GNS_INTERNAL void gns_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(gns_g.error, sizeof gns_g.error, fmt, ap);
    va_end(ap);
}

GGML_NUMA_SHARD_API const char *ggml_numa_shard_last_error(void) { return gns_g.error; }

GGML_NUMA_SHARD_API void ggml_numa_shard_cleanup(void) {
    ggml_numa_shard_map_free(&gns_g.map);
    free(gns_g.nodes);
    free(gns_g.counts);
#ifdef GNS_LINUX
    ggml_numa_shard_nodemask_free(&gns_g.mask);
    ggml_numa_shard_nodemask_free(&gns_g.saved_mask);
    free(gns_g.recs);
    free(gns_g.qpages);
    free(gns_g.qstatus);
#endif
    memset(&gns_g, 0, sizeof gns_g);
}

GGML_NUMA_SHARD_API int ggml_numa_shard_node_for(const char *tensor_name) {
    if (!gns_g.configured) return -1;
    return ggml_numa_shard_map_node_for(&gns_g.map, tensor_name, gns_g.nodes, gns_g.n_nodes);
}

GGML_NUMA_SHARD_API int ggml_numa_shard_counts_for(int node, ggml_numa_shard_counts *out) {
    if (!gns_g.configured) return -1;
    memset(out, 0, sizeof *out);
    if (node >= 0 && node <= gns_g.max_node) *out = gns_g.counts[node];
    return 0;
}

/* Load a map over the memory nodes (topo, when given, explains a rejected node). */
GNS_INTERNAL int gns_install(const char *text, const int *nodes, int n_nodes, const ggml_numa_shard_topology *topo,
                             int check_nodes) {
    ggml_numa_shard_map map;
    size_t i;
    int j, max_node = 0;
    char err[sizeof gns_g.error];

    ggml_numa_shard_cleanup();
    if (ggml_numa_shard_map_parse(&map, text, err, sizeof err, NULL) != 0) {
        gns_error("%s", err);
        return -1;
    }
    for (j = 0; j < n_nodes; j++)
        if (nodes[j] > max_node) max_node = nodes[j];
    for (i = 0; i < map.n_rules; i++) {
        const ggml_numa_shard_rule *r = &map.rules[i];
        int known = 0;
        for (j = 0; j < n_nodes; j++) known |= nodes[j] == r->node;
        if (r->node > max_node) max_node = r->node;
        if (!known && check_nodes) {
            const ggml_numa_shard_node *nd = topo ? ggml_numa_shard_topology_node(topo, r->node) : NULL;
            const char *why = !topo ? "is not an online memory node" : nd ? "has no memory" : "is offline or does not exist";
            gns_error("GGML_NUMA_SHARD_MAP position %lu ('%.*s'): node %d %s", (unsigned long)r->pos, (int)r->len,
                      map.text + r->pos - 1, r->node, why);
            ggml_numa_shard_map_free(&map);
            return -1;
        }
    }
    gns_g.map = map;
    gns_g.n_nodes = n_nodes;
    gns_g.max_node = max_node;
    gns_g.nodes = (int *)malloc((size_t)(n_nodes > 0 ? n_nodes : 1) * sizeof(int));
    gns_g.counts = (ggml_numa_shard_counts *)calloc((size_t)max_node + 1, sizeof(ggml_numa_shard_counts));
    if (!gns_g.nodes || !gns_g.counts) {
        ggml_numa_shard_cleanup();
        gns_error("ggml_numa_shard: out of memory");
        return -1;
    }
    if (n_nodes > 0) memcpy(gns_g.nodes, nodes, (size_t)n_nodes * sizeof(int));
    qsort(gns_g.nodes, (size_t)n_nodes, sizeof(int), gns_cmp_int);
    gns_g.configured = 1;
    return 0;
}

#ifdef GNS_LINUX
#define GNS_MPOL_PREFERRED 1
#define GNS_MPOL_BIND 2
#define GNS_MPOL_MF_MOVE (1 << 1)
#define GNS_MPOL_MF_MOVE_ALL (1 << 2)
#define GNS_MADV_POPULATE_READ 22
#define GNS_MADV_COLD 20

/* Turn placement on: page size, node masks, the task policy to restore, query buffers. */
GNS_INTERNAL int gns_start_placing(int max_possible) {
    int max_node = gns_g.max_node > max_possible ? gns_g.max_node : max_possible;
    long ps = sysconf(_SC_PAGESIZE);
    gns_g.page = ps > 0 ? (size_t)ps : 4096;
    if (ggml_numa_shard_nodemask_init(&gns_g.mask, max_node) != 0 ||
        ggml_numa_shard_nodemask_init(&gns_g.saved_mask, max_node) != 0)
        goto oom;
    gns_g.qpages = (void **)malloc(GNS_QUERY_PAGES * sizeof(void *));
    gns_g.qstatus = (int *)malloc(GNS_QUERY_PAGES * sizeof(int));
    if (!gns_g.qpages || !gns_g.qstatus) goto oom;
    if (syscall(SYS_get_mempolicy, &gns_g.saved_mode, gns_g.saved_mask.bits,
                ggml_numa_shard_nodemask_maxnode(&gns_g.saved_mask), 0UL, 0UL) != 0) {
        if (errno == ENOSYS) {
            gns_error("ggml_numa_shard: the kernel has no NUMA support; nothing is placed");
            return 0;
        }
        gns_error("ggml_numa_shard: get_mempolicy: %s", strerror(errno));
        return -1;
    }
    gns_g.saved_ok = 1;
    gns_g.move_all = 1; /* until the kernel says EPERM */
    gns_g.placing = 1;
    return 1;
oom:
    gns_error("ggml_numa_shard: out of memory");
    return -1;
}

/* Fault [start, end) in so that new pages come from `node` (a preferred task policy only
   shapes allocation; an already cached page stays where it is until it is moved). */
GNS_INTERNAL void gns_populate(uintptr_t start, uintptr_t end) {
    int preferred = syscall(SYS_set_mempolicy, (int)GNS_MPOL_PREFERRED, gns_g.mask.bits,
                            ggml_numa_shard_nodemask_maxnode(&gns_g.mask)) == 0;
    if (syscall(SYS_madvise, (unsigned long)start, (size_t)(end - start), (int)GNS_MADV_POPULATE_READ) != 0 &&
        errno == EINVAL) {
        uintptr_t a; /* kernels before 5.14: read one byte per page */
        for (a = start; a < end; a += gns_g.page) (void)*(volatile const char *)a;
    }
    if (preferred && gns_g.saved_ok)
        syscall(SYS_set_mempolicy, gns_g.saved_mode, gns_g.saved_mask.bits,
                ggml_numa_shard_nodemask_maxnode(&gns_g.saved_mask));
}

/* Count the pages of [start, end) by where they are: out[GNS_PLACED|FAILED|PENDING]. */
GNS_INTERNAL int gns_query(uintptr_t start, uintptr_t end, int node, size_t out[3]) {
    uintptr_t a = start;
    while (a < end) {
        unsigned long n = 0, i;
        while (a < end && n < GNS_QUERY_PAGES) {
            gns_g.qpages[n++] = (void *)a;
            a += gns_g.page;
        }
        if (syscall(SYS_move_pages, (int)0, n, gns_g.qpages, (const int *)0, gns_g.qstatus, (int)0) != 0) return -1;
        for (i = 0; i < n; i++) {
            int s = gns_g.qstatus[i];
            out[s == node ? GNS_PLACED : s >= 0 ? GNS_FAILED : (s == -ENOENT || s == -EFAULT) ? GNS_PENDING : GNS_FAILED]++;
        }
    }
    return 0;
}

/* Put the whole pages [start, end) on `node`; out[] gets where they ended up, in pages.
   The first error number is kept in *err. */
GNS_INTERNAL void gns_bind(uintptr_t start, uintptr_t end, int node, size_t out[3], int *err) {
    ggml_numa_shard_nodemask_clear(&gns_g.mask);
    ggml_numa_shard_nodemask_set(&gns_g.mask, node);
    out[0] = out[1] = out[2] = 0;
    gns_populate(start, end);
    for (;;) {
        unsigned flags = GNS_MPOL_MF_MOVE | (gns_g.move_all ? GNS_MPOL_MF_MOVE_ALL : 0U);
        if (syscall(SYS_mbind, (unsigned long)start, (unsigned long)(end - start), (unsigned long)GNS_MPOL_BIND,
                    gns_g.mask.bits, ggml_numa_shard_nodemask_maxnode(&gns_g.mask), flags) == 0)
            break;
        if (errno == EPERM && gns_g.move_all) { /* no CAP_SYS_NICE: move only pages no one else maps */
            gns_g.move_all = 0;
            continue;
        }
        if (!*err) *err = errno;
        break;
    }
    if (gns_query(start, end, node, out) != 0) {
        if (!*err) *err = errno;
        out[GNS_FAILED] = (end - start) / gns_g.page;
        out[GNS_PLACED] = out[GNS_PENDING] = 0;
    }
}

/* A huge page migrates whole: one that straddles two tensors would follow whichever was
   bound last. Split the huge pages at the tensor's edges first (MADV_COLD on part of a huge
   page only this process maps splits it, since Linux 5.4; it also ages those two pages). */
GNS_INTERNAL void gns_split_edges(uintptr_t head_page, uintptr_t tail_page) {
    syscall(SYS_madvise, (unsigned long)head_page, gns_g.page, (int)GNS_MADV_COLD);
    if (tail_page != head_page) syscall(SYS_madvise, (unsigned long)tail_page, gns_g.page, (int)GNS_MADV_COLD);
}

GNS_INTERNAL void gns_count(int node, int state, size_t bytes, int sign) {
    ggml_numa_shard_counts *c = &gns_g.counts[node];
    size_t *field = state == GNS_PLACED ? &c->placed_bytes : state == GNS_FAILED ? &c->failed_bytes : &c->pending_bytes;
    if (sign > 0) *field += bytes; else *field -= bytes;
}

/* The record of a shared page, inserted when missing (open addressing, load <= 1/2). */
GNS_INTERNAL gns_page_rec *gns_page_record(uintptr_t page) {
    size_t i;
    if (2 * (gns_g.rec_used + 1) > gns_g.rec_cap) {
        size_t cap = gns_g.rec_cap ? 2 * gns_g.rec_cap : 1024, k;
        gns_page_rec *recs = (gns_page_rec *)calloc(cap, sizeof *recs);
        if (!recs) return NULL;
        for (k = 0; k < gns_g.rec_cap; k++) {
            gns_page_rec *o = &gns_g.recs[k];
            if (!o->page) continue;
            for (i = (o->page / gns_g.page) & (cap - 1); recs[i].page; i = (i + 1) & (cap - 1)) {}
            recs[i] = *o;
        }
        free(gns_g.recs);
        gns_g.recs = recs;
        gns_g.rec_cap = cap;
    }
    for (i = (page / gns_g.page) & (gns_g.rec_cap - 1); gns_g.recs[i].page; i = (i + 1) & (gns_g.rec_cap - 1))
        if (gns_g.recs[i].page == page) return &gns_g.recs[i];
    gns_g.recs[i].page = page;
    gns_g.recs[i].node = -1;
    gns_g.rec_used++;
    return &gns_g.recs[i];
}

/* A tensor starting at `start` holds `bytes` of the shared page: bind the page to its node
   when it now owns most of the page. Returns 1 when the page ended up elsewhere. */
GNS_INTERNAL int gns_claim(uintptr_t page, size_t bytes, uintptr_t start, int node, int *err) {
    size_t got[3];
    gns_page_rec *r = gns_page_record(page);
    if (!r) {
        if (!*err) *err = ENOMEM;
        return 1;
    }
    if (r->node >= 0 && (r->bytes > bytes || (r->bytes == bytes && r->start < start))) return 0;
    if (r->node >= 0) gns_count(r->node, r->state, gns_g.page, -1);
    gns_bind(page, page + gns_g.page, node, got, err);
    r->bytes = bytes;
    r->start = start;
    r->node = node;
    r->state = got[GNS_PLACED] ? GNS_PLACED : got[GNS_PENDING] ? GNS_PENDING : GNS_FAILED;
    gns_count(node, r->state, gns_g.page, +1);
    return r->state == GNS_FAILED;
}
#endif /* GNS_LINUX */

GGML_NUMA_SHARD_API int ggml_numa_shard_configure(const char *map, const int *mem_nodes, int n_mem_nodes) {
    int max_possible = 0, i;
    if (gns_install(map, mem_nodes, n_mem_nodes, NULL, 1) != 0) return -1;
    for (i = 0; i < n_mem_nodes; i++)
        if (mem_nodes[i] > max_possible) max_possible = mem_nodes[i];
    gns_g.error[0] = 0;
#ifdef GNS_LINUX
    return gns_start_placing(max_possible);
#else
    (void)max_possible;
    gns_error("ggml_numa_shard: NUMA placement is not available in this build; nothing is placed");
    return 0;
#endif
}

GGML_NUMA_SHARD_API int ggml_numa_shard_init(void) {
    const char *text = getenv("GGML_NUMA_SHARD_MAP");
    int zero = 0;
    ggml_numa_shard_cleanup();
    if (!text) {
        gns_error("ggml_numa_shard: GGML_NUMA_SHARD_MAP is not set; nothing is placed");
        return 0;
    }
#ifdef GNS_LINUX
    {
        ggml_numa_shard_topology topo;
        char err[512];
        int *mem = NULL, n_mem = 0, i, rc;
        if (ggml_numa_shard_topology_read(&topo, NULL, err, sizeof err) != 0) {
            gns_error("ggml_numa_shard: %s", err);
            return -1;
        }
        if (topo.numa) {
            mem = (int *)malloc((size_t)topo.n_nodes * sizeof(int));
            if (!mem) {
                ggml_numa_shard_topology_free(&topo);
                gns_error("ggml_numa_shard: out of memory");
                return -1;
            }
            for (i = 0; i < topo.n_nodes; i++)
                if (topo.nodes[i].has_memory) mem[n_mem++] = topo.nodes[i].id;
            if (!n_mem) {
                free(mem);
                ggml_numa_shard_topology_free(&topo);
                gns_error("ggml_numa_shard: no online node has memory");
                return -1;
            }
            rc = gns_install(text, mem, n_mem, &topo, 1);
            if (rc == 0) {
                gns_g.error[0] = 0;
                rc = gns_start_placing(topo.max_possible);
            }
            free(mem);
            ggml_numa_shard_topology_free(&topo);
            return rc;
        }
        ggml_numa_shard_topology_free(&topo);
    }
#endif
    /* No NUMA here: the map must still be valid, and resolves over node 0 alone. */
    if (gns_install(text, &zero, 1, NULL, 0) != 0) return -1;
#ifdef GNS_LINUX
    gns_error("ggml_numa_shard: no NUMA node tree on this system; nothing is placed");
#else
    gns_error("ggml_numa_shard: NUMA placement is not available in this build; nothing is placed");
#endif
    return 0;
}

GGML_NUMA_SHARD_API int ggml_numa_shard_assign(const char *name, void *data, size_t size) {
    int node;
    if (!gns_g.configured) {
        gns_error("ggml_numa_shard_assign(%s): call ggml_numa_shard_init first", name);
        return -1;
    }
    node = ggml_numa_shard_node_for(name);
    gns_g.counts[node].tensors++;
#ifdef GNS_LINUX
    if (gns_g.placing) {
        uintptr_t ps = gns_g.page, s = (uintptr_t)data, e = s + size, hp, tp;
        size_t failed = 0, got[3];
        int err = 0;
        if (!size) return node;
        if (e < s) {
            gns_error("ggml_numa_shard_assign(%s): the range wraps around the address space", name);
            return -1;
        }
        hp = s & ~(ps - 1);
        tp = (e - 1) & ~(ps - 1);
        gns_split_edges(hp, tp);
        if (hp == tp && size < ps) {
            failed += gns_claim(hp, size, s, node, &err);
        } else {
            uintptr_t fw = s % ps ? hp + ps : hp, lw = e % ps ? tp : tp + ps;
            if (s % ps) failed += gns_claim(hp, (size_t)(fw - s), s, node, &err);
            if (fw < lw) {
                gns_bind(fw, lw, node, got, &err);
                gns_count(node, GNS_PLACED, got[GNS_PLACED] * ps, +1);
                gns_count(node, GNS_FAILED, got[GNS_FAILED] * ps, +1);
                gns_count(node, GNS_PENDING, got[GNS_PENDING] * ps, +1);
                failed += got[GNS_FAILED];
            }
            if (e % ps) failed += gns_claim(tp, (size_t)(e - tp), s, node, &err);
        }
        if (failed || err) {
            gns_error("ggml_numa_shard_assign(%s): %lu pages are not on node %d%s%s", name, (unsigned long)failed, node,
                      err ? ": " : "", err ? strerror(err) : "");
            return -1;
        }
        return node;
    }
#else
    (void)data;
    (void)size;
#endif
    if (!gns_g.error[0]) gns_error("ggml_numa_shard_assign(%s): placement is off", name);
    return -1;
}

GGML_NUMA_SHARD_API void ggml_numa_shard_stats(void) {
    int n;
    size_t placed = 0, failed = 0, pending = 0;
    if (!gns_g.configured) {
        fprintf(stderr, "ggml_numa_shard: not configured (%s)\n", gns_g.error);
        return;
    }
    fprintf(stderr, "ggml_numa_shard: map '%s', placement %s\n", gns_g.map.text, gns_g.placing ? "on" : "off");
    for (n = 0; n <= gns_g.max_node; n++) {
        const ggml_numa_shard_counts *c = &gns_g.counts[n];
        if (!c->tensors && !c->placed_bytes && !c->failed_bytes && !c->pending_bytes) continue;
        fprintf(stderr, "ggml_numa_shard: node %d: %lu tensors, %.1f MiB placed, %.1f MiB failed, %.1f MiB pending\n", n,
                (unsigned long)c->tensors, c->placed_bytes / 1048576.0, c->failed_bytes / 1048576.0,
                c->pending_bytes / 1048576.0);
        placed += c->placed_bytes;
        failed += c->failed_bytes;
        pending += c->pending_bytes;
    }
    if (placed + failed + pending)
        fprintf(stderr, "ggml_numa_shard: %.3f%% of faulted pages on their planned node, %.1f MiB not faulted yet\n",
                placed + failed ? 100.0 * (double)placed / (double)(placed + failed) : 100.0, pending / 1048576.0);
}

#ifdef __cplusplus
}
#endif
#endif /* GGML_NUMA_SHARD_IMPLEMENTATION_DONE */
#endif /* GGML_NUMA_SHARD_IMPLEMENTATION */
