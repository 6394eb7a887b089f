/* libFuzzer harness for the GGUF header parser and the page planner of numa-shard-place.
   A parsed file must hold its tensors inside the input, sorted and apart; the plan must
   cover each tensor's pages in order, with no page twice. */
#define NUMA_SHARD_PLACE_NO_MAIN
#include "numa-shard-place.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file f;
    plan pl;
    char err[512];
    int *nodes;
    uint64_t i;
    if (gguf_parse(data, size, &f, err, sizeof err) != 0) {
        if (strncmp(err, "offset ", 7) != 0) abort();
        return 0;
    }
    nodes = (int *)malloc((f.n_tensors ? f.n_tensors : 1) * sizeof *nodes);
    for (i = 0; i < f.n_tensors; i++) {
        const gguf_tensor *t = &f.tensors[i];
        if (t->offset < f.data_offset || t->offset > size || t->size > size - t->offset) abort();
        if (i && f.tensors[i - 1].size && t->size && f.tensors[i - 1].offset + f.tensors[i - 1].size > t->offset) abort();
        nodes[i] = (int)(i % 3);
    }
    if (plan_pages(f.tensors, nodes, (size_t)f.n_tensors, 4096, &pl) == 0) {
        for (i = 1; i < pl.n; i++)
            if (pl.runs[i].first < pl.runs[i - 1].first + pl.runs[i - 1].count) abort();
        free(pl.runs);
    }
    free(nodes);
    gguf_free(&f);
    return 0;
}
