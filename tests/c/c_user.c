/* A translation unit that includes only the API; the implementation is compiled separately
   (as C or as C++), so this checks the header's linkage both ways. */
#include "ggml-numa-shard.h"

int main(void) {
    static const int nodes[] = {0, 1};
    if (ggml_numa_shard_configure("0:node1,attn:0", nodes, 2) < 0) return 1;
    if (ggml_numa_shard_node_for("blk.0.ffn_up.weight") != 1 || ggml_numa_shard_node_for("blk.0.attn_q.weight") != 0)
        return 1;
    ggml_numa_shard_cleanup();
    return ggml_numa_shard_node_for("blk.0.ffn_up.weight") == -1 ? 0 : 1;
}
