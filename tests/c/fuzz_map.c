/* libFuzzer harness for the map parser and resolver of ggml-numa-shard.h.
   Input: MAP, optionally followed by '\n' and tensor names separated by '\n'.
   Checks that a parse either fails with a position inside the map (+1 for the end) or
   succeeds, and that every resolution gives a node the map or the node list holds. */
#define GGML_NUMA_SHARD_IMPLEMENTATION
#define GGML_NUMA_SHARD_STATIC
#include "ggml-numa-shard.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const int nodes[] = {0, 1, 8, 252, 1023};
    char *text = (char *)malloc(size + 1), *names, *name;
    ggml_numa_shard_map map;
    char err[256];
    size_t pos = 0, map_len;
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    names = strchr(text, '\n');
    if (names) *names++ = 0;
    map_len = strlen(text);
    if (ggml_numa_shard_map_parse(&map, text, err, sizeof err, &pos) != 0) {
        if (pos < 1 || pos > map_len + 1 || strncmp(err, "GGML_NUMA_SHARD_MAP position ", 29) != 0) abort();
    } else {
        for (name = names; name;) {
            char *next = strchr(name, '\n');
            size_t i;
            int node, known = 0;
            if (next) *next++ = 0;
            node = ggml_numa_shard_map_node_for(&map, name, nodes, 5);
            for (i = 0; i < 5; i++) known |= node == nodes[i];
            for (i = 0; i < map.n_rules; i++) known |= node == map.rules[i].node;
            if (!known) abort();
            name = next;
        }
        ggml_numa_shard_map_free(&map);
        if (ggml_numa_shard_configure(text, nodes, 5) >= 0 && names) (void)ggml_numa_shard_node_for(names);
        ggml_numa_shard_cleanup();
    }
    free(text);
    return 0;
}
