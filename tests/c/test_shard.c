/* Unit tests and test helper for ggml-numa-shard.h.

     test_shard unit              run the unit tests (map parsing, names, masks, lists)
     test_shard topology DIR      print the node tree read from DIR, one node per line
     test_shard init NAME...      ggml_numa_shard_init() from the environment, then the node of each NAME
     test_shard crosscheck        read cases from stdin, print one result line per case (see below)
     test_shard assign NAME SIZE  init, then assign a fresh SIZE-byte buffer to NAME

   crosscheck input, one case per line: MAPHEX NODES NAMEHEX [NAMEHEX...]
     MAPHEX/NAMEHEX are hex-encoded bytes ("-" for empty), NODES a comma list of memory nodes.
   Output: "E <pos>" (parse error), "M <message>" (a rule names a node not in NODES), or
   "OK <node> <node> ..." with one node per name from ggml_numa_shard_node_for().
*/
#define _GNU_SOURCE
#define GGML_NUMA_SHARD_IMPLEMENTATION
#define GGML_NUMA_SHARD_STATIC
#include "ggml-numa-shard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static int failures, checks;

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        checks++;                                                             \
        if (!(cond)) {                                                        \
            failures++;                                                       \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
        }                                                                     \
    } while (0)

static int node_of(const char *map_text, const int *nodes, int n, const char *name) {
    ggml_numa_shard_map map;
    char err[256];
    int node;
    if (ggml_numa_shard_map_parse(&map, map_text, err, sizeof err, NULL) != 0) {
        fprintf(stderr, "unexpected parse error: %s\n", err);
        return -100;
    }
    node = ggml_numa_shard_map_node_for(&map, name, nodes, n);
    ggml_numa_shard_map_free(&map);
    return node;
}

static void test_seed_examples(void) {
    static const int four[] = {0, 1, 2, 3};
    const char *seed = "0-8:node3,9-17:node2,attn:node3";
    CHECK(node_of(seed, four, 4, "blk.0.ffn_up.weight") == 3, "range 0-8");
    CHECK(node_of(seed, four, 4, "blk.8.ffn_down.weight") == 3, "range end is inclusive");
    CHECK(node_of(seed, four, 4, "blk.9.ffn_gate.weight") == 2, "range 9-17");
    CHECK(node_of(seed, four, 4, "blk.17.attn_norm.weight") == 2, "norm is not attn");
    CHECK(node_of(seed, four, 4, "blk.12.attn_q.weight") == 3, "type rules come first");
    CHECK(node_of(seed, four, 4, "blk.18.ffn_up.weight") == 2, "round-robin: 18 %% 4 = 2");
    CHECK(node_of(seed, four, 4, "blk.21.ffn_up.weight") == 1, "round-robin: 21 %% 4 = 1");
    CHECK(node_of(seed, four, 4, "token_embd.weight") == 0, "no layer: node 0");
    CHECK(node_of(seed, four, 4, "output.weight") == 0, "no layer: node 0");
    CHECK(node_of("7:node1", four, 4, "blk.7.ffn_up.weight") == 1, "single layer");
    CHECK(node_of("7:1", four, 4, "blk.7.ffn_up.weight") == 1, "bare node id");
    CHECK(node_of("", four, 4, "blk.6.ffn_up.weight") == 2, "empty map is round-robin");
    CHECK(node_of(" \t ", four, 4, "blk.6.ffn_up.weight") == 2, "blank map is empty");
    CHECK(node_of(" 0-3 : node1 ", four, 4, "blk.2.ffn_up.weight") == 1, "spaces around rules and nodes");
    CHECK(node_of("\t0-3\t:\tnode1\t, embed : 2", four, 4, "token_embd.weight") == 2, "tabs and spaces");
    CHECK(node_of("norm:1,attn:2,ffn:3,embed:0", four, 4, "blk.0.attn_norm.weight") == 1, "norm before attn");
}

static void test_sparse_ids(void) {
    static const int sparse[] = {0, 8, 252, 253, 254, 255};
    static const int two[] = {0, 8};
    CHECK(node_of("0-19:node8,20-39:node0,*:node8", two, 2, "output.weight") == 8, "* sends layerless tensors");
    CHECK(node_of("0-19:node8,20-39:node0,*:node8", two, 2, "blk.40.ffn_up.weight") == 0, "40 %% 2 -> nodes[0]");
    CHECK(node_of("0-19:node8,20-39:node0,*:node8", two, 2, "blk.41.ffn_up.weight") == 8, "41 %% 2 -> nodes[1]");
    CHECK(node_of("", sparse, 6, "blk.4.ffn_up.weight") == 254, "round-robin over sparse ids");
    CHECK(node_of("embed:node1023", sparse, 6, "token_embd.weight") == 1023, "node 1023 is allowed");
    CHECK(node_of("0-0:node0255", sparse, 6, "blk.0.x") == 255, "leading zeros in a node id");
    CHECK(node_of("007-009:1", sparse, 6, "blk.8.ffn_up") == 1, "leading zeros in layers");
    CHECK(node_of("007-009:1", sparse, 6, "blk.0008.ffn_up") == 1, "leading zeros in names");
    CHECK(node_of("100000000000000000000-100000000000000000005:8", sparse, 6,
                  "blk.100000000000000000003.ffn_up") == 8,
          "layers beyond 64 bits");
    /* 10^20 = 4 (mod 6), so 10^20 + 3 = 1 (mod 6) */
    CHECK(node_of("", sparse, 6, "blk.100000000000000000003.ffn_up") == sparse[1], "round-robin beyond 64 bits");
}

static void test_errors(void) {
    static const struct {
        const char *map;
        size_t pos;
        const char *msg;
    } cases[] = {
        {"0-3:node0,,4:node1", 11, "empty rule"},
        {"0-3:node0, ,4:node1", 12, "empty rule"},
        {",0:1", 1, "empty rule"},
        {"0:1,", 5, "empty rule"},
        {"0-3:node0,attn", 11, "expected TARGET:nodeX"},
        {"0-3:node0:1", 1, "expected TARGET:nodeX"},
        {"0-3:nodeX", 1, "bad node 'nodeX'"},
        {"0-3:", 1, "bad node ''"},
        {"0-3:node", 1, "bad node 'node'"},
        {"0-3:Node1", 1, "bad node 'Node1'"},
        {"0-3:node-1", 1, "bad node 'node-1'"},
        {"0-3:node 1", 1, "bad node 'node 1'"},
        {"attn:node1024", 1, "node id 1024 is above 1023"},
        {"attn:99999999999999999999999", 1, "node id 99999999999999999999999 is above 1023"},
        {"  mlp:node1", 3, "unknown target 'mlp'"},
        {"0-3:0, atn:1", 8, "unknown target 'atn'"},
        {"-1:node0", 1, "unknown target '-1'"},
        {"1-:node0", 1, "unknown target '1-'"},
        {"1-2-3:node0", 1, "unknown target '1-2-3'"},
        {":node0", 1, "unknown target ''"},
        {"9-3:node1", 1, "range 9-3 runs backwards"},
        {"0-8:node3,8-17:node2", 11, "layers 8-8 are also in rule '0-8:node3'"},
        {"5-9:0,0-20:1", 7, "layers 5-9 are also in rule '5-9:0'"},
        {"3:0,1-2:1,2:0", 11, "layers 2-2 are also in rule '1-2:1'"},
        {"attn:1,ffn:0,attn:2", 14, "type 'attn' given twice"},
        {"*:1,0:1,*:0", 9, "'*' given twice"},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ggml_numa_shard_map map;
        char err[256] = "";
        size_t pos = 0;
        char where[64];
        int rc = ggml_numa_shard_map_parse(&map, cases[i].map, err, sizeof err, &pos);
        snprintf(where, sizeof where, "position %lu ", (unsigned long)cases[i].pos);
        CHECK(rc == -1, "'%s' should fail", cases[i].map);
        CHECK(pos == cases[i].pos, "'%s': position %lu, expected %lu (%s)", cases[i].map, (unsigned long)pos,
              (unsigned long)cases[i].pos, err);
        CHECK(strstr(err, cases[i].msg) != NULL, "'%s': message '%s' lacks '%s'", cases[i].map, err, cases[i].msg);
        CHECK(strstr(err, where) != NULL, "'%s': message '%s' lacks '%s'", cases[i].map, err, where);
        if (rc == 0) ggml_numa_shard_map_free(&map);
    }
}

static void test_names(void) {
    static const struct {
        const char *name;
        int type;
        long long layer; /* -1: none */
    } cases[] = {
        /* llama / mixtral (llama with experts) */
        {"token_embd.weight", GGML_NUMA_SHARD_TYPE_EMBED, -1},
        {"output_norm.weight", GGML_NUMA_SHARD_TYPE_NORM, -1},
        {"output.weight", GGML_NUMA_SHARD_TYPE_NONE, -1},
        {"rope_freqs.weight", GGML_NUMA_SHARD_TYPE_NONE, -1},
        {"blk.0.attn_q.weight", GGML_NUMA_SHARD_TYPE_ATTN, 0},
        {"blk.0.attn_k.weight", GGML_NUMA_SHARD_TYPE_ATTN, 0},
        {"blk.0.attn_v.weight", GGML_NUMA_SHARD_TYPE_ATTN, 0},
        {"blk.0.attn_output.weight", GGML_NUMA_SHARD_TYPE_ATTN, 0},
        {"blk.0.attn_norm.weight", GGML_NUMA_SHARD_TYPE_NORM, 0},
        {"blk.31.ffn_norm.weight", GGML_NUMA_SHARD_TYPE_NORM, 31},
        {"blk.31.ffn_gate.weight", GGML_NUMA_SHARD_TYPE_FFN, 31},
        {"blk.31.ffn_up.weight", GGML_NUMA_SHARD_TYPE_FFN, 31},
        {"blk.31.ffn_down.weight", GGML_NUMA_SHARD_TYPE_FFN, 31},
        {"blk.7.ffn_gate_inp.weight", GGML_NUMA_SHARD_TYPE_FFN, 7},
        {"blk.7.ffn_gate_exps.weight", GGML_NUMA_SHARD_TYPE_FFN, 7},
        {"blk.7.ffn_up_exps.weight", GGML_NUMA_SHARD_TYPE_FFN, 7},
        {"blk.7.ffn_down_exps.weight", GGML_NUMA_SHARD_TYPE_FFN, 7},
        {"blk.7.attn_rot_embd", GGML_NUMA_SHARD_TYPE_ATTN, 7},
        /* qwen2 biases, qwen3 / qwen3moe / gemma3 q/k norms */
        {"blk.3.attn_q.bias", GGML_NUMA_SHARD_TYPE_ATTN, 3},
        {"blk.3.attn_q_norm.weight", GGML_NUMA_SHARD_TYPE_NORM, 3},
        {"blk.3.attn_k_norm.weight", GGML_NUMA_SHARD_TYPE_NORM, 3},
        /* gemma2 / gemma3 */
        {"blk.5.post_attention_norm.weight", GGML_NUMA_SHARD_TYPE_NORM, 5},
        {"blk.5.post_ffw_norm.weight", GGML_NUMA_SHARD_TYPE_NORM, 5},
        /* deepseek2 (MLA, shared experts) */
        {"blk.60.attn_kv_a_mqa.weight", GGML_NUMA_SHARD_TYPE_ATTN, 60},
        {"blk.60.attn_kv_a_norm.weight", GGML_NUMA_SHARD_TYPE_NORM, 60},
        {"blk.60.attn_kv_b.weight", GGML_NUMA_SHARD_TYPE_ATTN, 60},
        {"blk.60.attn_k_b.weight", GGML_NUMA_SHARD_TYPE_ATTN, 60},
        {"blk.60.attn_v_b.weight", GGML_NUMA_SHARD_TYPE_ATTN, 60},
        {"blk.60.attn_q_a.weight", GGML_NUMA_SHARD_TYPE_ATTN, 60},
        {"blk.60.attn_q_a_norm.weight", GGML_NUMA_SHARD_TYPE_NORM, 60},
        {"blk.60.attn_q_b.weight", GGML_NUMA_SHARD_TYPE_ATTN, 60},
        {"blk.60.ffn_gate_shexp.weight", GGML_NUMA_SHARD_TYPE_FFN, 60},
        {"blk.60.ffn_up_shexp.weight", GGML_NUMA_SHARD_TYPE_FFN, 60},
        {"blk.60.ffn_down_shexp.weight", GGML_NUMA_SHARD_TYPE_FFN, 60},
        {"blk.60.exp_probs_b.bias", GGML_NUMA_SHARD_TYPE_NONE, 60},
        /* gpt-oss */
        {"blk.23.attn_sinks.weight", GGML_NUMA_SHARD_TYPE_ATTN, 23},
        {"blk.23.ffn_gate_inp.bias", GGML_NUMA_SHARD_TYPE_FFN, 23},
        /* other embeddings and odd names */
        {"position_embd.weight", GGML_NUMA_SHARD_TYPE_EMBED, -1},
        {"token_types.weight", GGML_NUMA_SHARD_TYPE_EMBED, -1},
        {"token_embd_norm.weight", GGML_NUMA_SHARD_TYPE_EMBED, -1},
        {"blk.12", GGML_NUMA_SHARD_TYPE_NONE, -1},
        {"blk..ffn_up", GGML_NUMA_SHARD_TYPE_FFN, -1},
        {"blk.x1.ffn_up", GGML_NUMA_SHARD_TYPE_FFN, -1},
        {"xblk.1.ffn_up", GGML_NUMA_SHARD_TYPE_FFN, -1},
        {"blk.012.ffn_up", GGML_NUMA_SHARD_TYPE_FFN, 12},
        {"", GGML_NUMA_SHARD_TYPE_NONE, -1},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long long layer = -7;
        int has = ggml_numa_shard_layer_of(cases[i].name, &layer);
        CHECK(ggml_numa_shard_tensor_type(cases[i].name) == cases[i].type, "type of '%s': %d", cases[i].name,
              ggml_numa_shard_tensor_type(cases[i].name));
        CHECK(has == (cases[i].layer >= 0) && (!has || layer == cases[i].layer), "layer of '%s': %d %lld",
              cases[i].name, has, layer);
    }
}

static void test_masks_and_lists(void) {
    ggml_numa_shard_nodemask mask;
    int *ids, n, i;
    CHECK(ggml_numa_shard_nodemask_init(&mask, 1023) == 0, "init");
    CHECK(mask.nbits == 1024, "1024 bits for ids up to 1023, got %lu", (unsigned long)mask.nbits);
    CHECK(ggml_numa_shard_nodemask_maxnode(&mask) == 1025, "maxnode is nbits + 1");
    CHECK(ggml_numa_shard_nodemask_set(&mask, 1023) == 0 && ggml_numa_shard_nodemask_set(&mask, 252) == 0, "set");
    CHECK(ggml_numa_shard_nodemask_set(&mask, 1024) == -1 && ggml_numa_shard_nodemask_set(&mask, -1) == -1,
          "out of range");
    CHECK(ggml_numa_shard_nodemask_isset(&mask, 1023) && ggml_numa_shard_nodemask_isset(&mask, 252), "isset");
    CHECK(!ggml_numa_shard_nodemask_isset(&mask, 253) && !ggml_numa_shard_nodemask_isset(&mask, 5000), "not set");
    CHECK(mask.bits[1023 / (8 * sizeof(long))] == 1UL << (1023 % (8 * sizeof(long))), "bit 1023 is the top bit");
    ggml_numa_shard_nodemask_clear(&mask);
    CHECK(!ggml_numa_shard_nodemask_isset(&mask, 1023), "cleared");
    ggml_numa_shard_nodemask_free(&mask);
    CHECK(ggml_numa_shard_nodemask_init(&mask, 0) == 0 && mask.nbits == 8 * sizeof(long), "one long minimum");
    ggml_numa_shard_nodemask_free(&mask);
    CHECK(ggml_numa_shard_nodemask_init(&mask, 64) == 0 && mask.nbits == 128, "id 64 needs a second long");
    ggml_numa_shard_nodemask_free(&mask);

    n = ggml_numa_shard_parse_list("0,8,252-255,1023\n", 1023, &ids);
    CHECK(n == 7 && ids[0] == 0 && ids[1] == 8 && ids[2] == 252 && ids[5] == 255 && ids[6] == 1023, "sparse list");
    free(ids);
    n = ggml_numa_shard_parse_list("\n", 1023, &ids);
    CHECK(n == 0 && ids == NULL, "empty list");
    for (i = 0; i < 5; i++) {
        static const char *const bad[] = {"1024", "3-1", "0,,1", "a", "1-"};
        CHECK(ggml_numa_shard_parse_list(bad[i], 1023, &ids) == -1, "bad list '%s'", bad[i]);
    }
    {
        static const int sparse[] = {0, 1, 2, 3, 8, 10, 11, 1023};
        char buf[64];
        ggml_numa_shard_format_list(sparse, 8, buf, sizeof buf);
        CHECK(strcmp(buf, "0-3,8,10-11,1023") == 0, "format '%s'", buf);
        ggml_numa_shard_format_list(sparse, 0, buf, sizeof buf);
        CHECK(strcmp(buf, "") == 0, "format of nothing '%s'", buf);
        ggml_numa_shard_format_list(sparse, 8, buf, 6);
        CHECK(strcmp(buf, "0-3,8") == 0, "truncated to fit '%s'", buf);
        n = ggml_numa_shard_parse_list("0-3,8,10-11,1023", 1023, &ids);
        CHECK(n == 8 && memcmp(ids, sparse, sizeof sparse) == 0, "format and parse round-trip");
        free(ids);
    }
#ifndef GGML_NUMA_SHARD_DISABLE
    n = ggml_numa_shard_allowed_cpus(&ids);
    CHECK(n >= 1 && ids != NULL, "allowed CPUs: %d", n);
    for (i = 1; i < n; i++) CHECK(ids[i] > ids[i - 1], "allowed CPUs ascend");
    free(ids);
#else
    CHECK(ggml_numa_shard_allowed_cpus(&ids) == -1 && ids == NULL, "no allowed CPUs in a disabled build");
#endif
}

static void test_global_state(void) {
    static const int nodes[] = {0, 2};
    CHECK(ggml_numa_shard_node_for("blk.0.ffn_up.weight") == -1, "-1 before configure");
    CHECK(ggml_numa_shard_configure("0-3:node5", nodes, 2) == -1, "node 5 is not a memory node");
    CHECK(strstr(ggml_numa_shard_last_error(), "position 1 ('0-3:node5'): node 5 is not an online memory node") != NULL,
          "%s", ggml_numa_shard_last_error());
    CHECK(ggml_numa_shard_configure("0-3:node1,", nodes, 2) == -1, "bad map");
    CHECK(strstr(ggml_numa_shard_last_error(), "position 11") != NULL, "%s", ggml_numa_shard_last_error());
    CHECK(ggml_numa_shard_configure("0-3:node2,embed:0", nodes, 2) >= 0, "%s", ggml_numa_shard_last_error());
    CHECK(ggml_numa_shard_node_for("blk.1.attn_q.weight") == 2, "range");
    CHECK(ggml_numa_shard_node_for("blk.5.attn_q.weight") == 2, "round-robin over {0,2}: 5 -> 2");
    CHECK(ggml_numa_shard_node_for("blk.4.attn_q.weight") == 0, "round-robin over {0,2}: 4 -> 0");
    ggml_numa_shard_cleanup();
    CHECK(ggml_numa_shard_node_for("blk.1.attn_q.weight") == -1, "-1 after cleanup");
}

static int run_unit(void) {
    test_seed_examples();
    test_sparse_ids();
    test_errors();
    test_names();
    test_masks_and_lists();
    test_global_state();
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}

static int run_topology(const char *dir) {
    ggml_numa_shard_topology topo;
    char err[512];
    int i, j;
    if (ggml_numa_shard_topology_read(&topo, dir, err, sizeof err) != 0) {
        printf("error %s\n", err);
        return 1;
    }
    printf("numa %d max_possible %d\n", topo.numa, topo.max_possible);
    for (i = 0; i < topo.n_nodes; i++) {
        const ggml_numa_shard_node *nd = &topo.nodes[i];
        printf("node %d memory %d total_kb %lld cpus", nd->id, nd->has_memory, nd->mem_total_kb);
        for (j = 0; j < nd->n_cpus; j++) printf("%c%d", j ? ',' : ' ', nd->cpus[j]);
        printf(" distances");
        for (j = 0; j < topo.n_nodes; j++)
            printf(" %d", ggml_numa_shard_topology_distance(&topo, nd->id, topo.nodes[j].id));
        printf("\n");
    }
    ggml_numa_shard_topology_free(&topo);
    return 0;
}

static int run_init(int argc, char **argv) {
    int rc = ggml_numa_shard_init(), i;
    printf("init %d %s\n", rc, ggml_numa_shard_last_error());
    for (i = 0; i < argc; i++) printf("%s %d\n", argv[i], ggml_numa_shard_node_for(argv[i]));
    ggml_numa_shard_cleanup();
    return rc < 0 ? 1 : 0;
}

static int run_assign(const char *name, const char *size_text) {
    size_t size = strtoul(size_text, NULL, 10);
    char *buf;
    int rc = ggml_numa_shard_init(), node;
    ggml_numa_shard_counts c;
    printf("init %d %s\n", rc, ggml_numa_shard_last_error());
    if (rc < 0) return 1;
    buf = (char *)mmap(NULL, size + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) return 1;
    memset(buf, 1, size + 4096);
    node = ggml_numa_shard_assign(name, buf + 100, size);
    printf("assign %d %s\n", node, node < 0 ? ggml_numa_shard_last_error() : "");
    if (ggml_numa_shard_counts_for(ggml_numa_shard_node_for(name), &c) == 0)
        printf("counts tensors %lu placed %lu failed %lu pending %lu\n", (unsigned long)c.tensors,
               (unsigned long)c.placed_bytes, (unsigned long)c.failed_bytes, (unsigned long)c.pending_bytes);
    ggml_numa_shard_stats();
    ggml_numa_shard_cleanup();
    return 0;
}

/* Decode hex in place; "-" is the empty string. Returns 0 on success. */
static int unhex(char *s) {
    size_t i, n = strlen(s);
    if (strcmp(s, "-") == 0) {
        s[0] = 0;
        return 0;
    }
    if (n % 2) return -1;
    for (i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1) return -1;
        s[i] = (char)v;
    }
    s[n / 2] = 0;
    return 0;
}

static int run_crosscheck(void) {
    static char line[1 << 20];
    while (fgets(line, sizeof line, stdin)) {
        char *save = NULL, *map_hex = strtok_r(line, " \n", &save), *nodes_text = strtok_r(NULL, " \n", &save), *tok;
        int *nodes = NULL, n_nodes, rc;
        ggml_numa_shard_map map;
        char err[512];
        size_t pos;
        if (!map_hex || !nodes_text || unhex(map_hex) != 0) {
            fprintf(stderr, "crosscheck: bad input line\n");
            return 2;
        }
        n_nodes = ggml_numa_shard_parse_list(nodes_text, 1023, &nodes);
        if (n_nodes <= 0) {
            fprintf(stderr, "crosscheck: bad node list %s\n", nodes_text);
            return 2;
        }
        if (ggml_numa_shard_map_parse(&map, map_hex, err, sizeof err, &pos) != 0) {
            printf("E %lu\n", (unsigned long)pos);
            free(nodes);
            continue;
        }
        ggml_numa_shard_map_free(&map);
        rc = ggml_numa_shard_configure(map_hex, nodes, n_nodes);
        if (rc < 0) {
            printf("M %s\n", ggml_numa_shard_last_error());
            free(nodes);
            continue;
        }
        printf("OK");
        while ((tok = strtok_r(NULL, " \n", &save)) != NULL) {
            if (unhex(tok) != 0) {
                fprintf(stderr, "crosscheck: bad name\n");
                return 2;
            }
            printf(" %d", ggml_numa_shard_node_for(tok));
        }
        printf("\n");
        ggml_numa_shard_cleanup();
        free(nodes);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "unit") == 0) return run_unit();
    if (argc == 3 && strcmp(argv[1], "topology") == 0) return run_topology(argv[2]);
    if (argc >= 2 && strcmp(argv[1], "init") == 0) return run_init(argc - 2, argv + 2);
    if (argc == 4 && strcmp(argv[1], "assign") == 0) return run_assign(argv[2], argv[3]);
    if (argc == 2 && strcmp(argv[1], "crosscheck") == 0) return run_crosscheck();
    fprintf(stderr, "usage: test_shard unit | topology DIR | init NAME... | assign NAME SIZE | crosscheck\n");
    return 2;
}
