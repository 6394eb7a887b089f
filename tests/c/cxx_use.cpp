// The header from C++ (llama.cpp is C++): the implementation compiled as C++17, used through
// the C API, with the C++ library around it.
#define GGML_NUMA_SHARD_IMPLEMENTATION
#include "ggml-numa-shard.h"

#include <cstdio>
#include <string>
#include <vector>

int main() {
    const std::vector<int> nodes = {0};
    if (ggml_numa_shard_configure("0-3:node0,attn:0,*:node0", nodes.data(), static_cast<int>(nodes.size())) < 0) {
        std::fprintf(stderr, "%s\n", ggml_numa_shard_last_error());
        return 1;
    }
    const std::string names[] = {"blk.2.ffn_up.weight", "blk.9.attn_q.weight", "output.weight"};
    for (const auto &name : names) std::printf("%s %d\n", name.c_str(), ggml_numa_shard_node_for(name.c_str()));
    std::vector<char> tensor(3 * 4096 + 100, 1);
    std::printf("assign %d\n", ggml_numa_shard_assign("blk.1.ffn_up.weight", tensor.data() + 7, 3 * 4096));
    ggml_numa_shard_cleanup();
    return 0;
}
