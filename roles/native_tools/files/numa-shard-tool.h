/* numa-shard-tool.h - what numa-shard-bench and numa-shard-place share: the one-line error
   exit, JSON output, the memory-policy numbers, page-node queries and node-list flags.

   Internal to the two tools: it is not installed and is no API. Include it after
   ggml-numa-shard.h (built with GGML_NUMA_SHARD_IMPLEMENTATION), with NUMA_SHARD_TOOL
   defined to the program's name, which starts every error line. */
#ifndef NUMA_SHARD_TOOL_H
#define NUMA_SHARD_TOOL_H

#ifndef NUMA_SHARD_TOOL
#error "define NUMA_SHARD_TOOL to the program's name before including numa-shard-tool.h"
#endif

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The kernel's numbers (linux/mempolicy.h), so that no libnuma headers are needed. */
#define MPOL_DEFAULT_ 0
#define MPOL_PREFERRED_ 1
#define MPOL_BIND_ 2
#define MPOL_INTERLEAVE_ 3
#define MPOL_LOCAL_ 4
#define MPOL_WEIGHTED_INTERLEAVE_ 6 /* Linux 6.9 */
#define MPOL_MF_MOVE_ (1 << 1)
#define MPOL_MF_MOVE_ALL_ (1 << 2)

/* Print "NAME: message" on one line and exit with `status`. */
static inline void die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static inline void die(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs(NUMA_SHARD_TOOL ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(status);
}

static inline size_t page_size(void) {
    long page = sysconf(_SC_PAGESIZE);
    return page > 0 ? (size_t)page : 4096;
}

/* ---- JSON --------------------------------------------------------------------------------- */

static inline void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static inline void json_ints(const int *v, int n) {
    int i;
    putchar('[');
    for (i = 0; i < n; i++) printf(i ? ", %d" : "%d", v[i]);
    putchar(']');
}

/* ---- nodes -------------------------------------------------------------------------------- */

static inline void nodemask_of(ggml_numa_shard_nodemask *mask, const int *nodes, int n) {
    int i;
    ggml_numa_shard_nodemask_clear(mask);
    for (i = 0; i < n; i++) ggml_numa_shard_nodemask_set(mask, nodes[i]);
}

/* The node of each of `n` pages from `addr`: status[i] gets a node id or -errno. pages[]
   receives the page addresses, for a later move_pages(2) of some of them. */
static inline long page_nodes(char *addr, unsigned long n, size_t page, void **pages, int *status) {
    unsigned long i;
    for (i = 0; i < n; i++) pages[i] = addr + i * page;
    return syscall(SYS_move_pages, 0, n, pages, (const int *)0, status, 0);
}

/* A node-list flag (`0,2-3`) for `topo`: sorted, every node online with memory. Exits 2 for a
   list that does not parse or names a node twice, 1 for a node this host lacks. Without a
   node tree (topo->numa == 0) node 0 is the one node. Returns the count; *out is malloc'd. */
static inline int parse_nodes(const ggml_numa_shard_topology *topo, const char *flag, const char *text, int **out) {
    int n = ggml_numa_shard_parse_list(text, GGML_NUMA_SHARD_MAX_NODE_ID, out), i;
    if (n <= 0) die(2, "%s: expected a node list such as 0,2-3, got '%s'", flag, text);
    qsort(*out, (size_t)n, sizeof **out, gns_cmp_int);
    for (i = 0; i < n; i++) {
        int id = (*out)[i];
        const ggml_numa_shard_node *nd = ggml_numa_shard_topology_node(topo, id);
        if (i && (*out)[i - 1] == id) die(2, "%s: node %d given twice", flag, id);
        if (!topo->numa && id == 0) continue;
        if (!nd) die(1, "%s: node %d is offline or does not exist", flag, id);
        if (!nd->has_memory) die(1, "%s: node %d has no memory", flag, id);
    }
    return n;
}

#endif /* NUMA_SHARD_TOOL_H */
