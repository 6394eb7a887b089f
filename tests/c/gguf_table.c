/* numa-shard-place's GGUF parser on many files in one process, for the differential test:
   for each path on stdin (one a line) one JSON line, either
     {"ok": false, "error": "offset N: why"}
   or {"ok": true, "version": V, "alignment": A, "data_offset": D,
       "tensors": [[name, type, offset, bytes, layer or null], ...]}   (sorted by offset)
   The same gguf_parse as `numa-shard-place --plan --json`; the test checks that too. */
#define NUMA_SHARD_PLACE_NO_MAIN
#include "numa-shard-place.c"

static void put_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static void table(const char *path) {
    FILE *fp = fopen(path, "rb");
    unsigned char *buf = NULL;
    long size;
    gguf_file f;
    char err[1024];
    uint64_t i;
    if (!fp || fseek(fp, 0, SEEK_END) != 0 || (size = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET) != 0) {
        printf("{\"ok\": false, \"error\": \"cannot read\"}\n");
        if (fp) fclose(fp);
        return;
    }
    buf = (unsigned char *)malloc(size ? (size_t)size : 1);
    if (!buf || fread(buf, 1, (size_t)size, fp) != (size_t)size) {
        printf("{\"ok\": false, \"error\": \"cannot read\"}\n");
        free(buf);
        fclose(fp);
        return;
    }
    fclose(fp);
    if (size < 4) { /* as numa-shard-place's main refuses it, before the parser */
        printf("{\"ok\": false, \"error\": \"offset 0: not a GGUF file (%ld bytes)\"}\n", size);
    } else if (gguf_parse(buf, (uint64_t)size, &f, err, sizeof err) != 0) {
        printf("{\"ok\": false, \"error\": ");
        put_str(err);
        printf("}\n");
    } else {
        printf("{\"ok\": true, \"version\": %u, \"alignment\": %llu, \"data_offset\": %llu, \"tensors\": [", f.version,
               (unsigned long long)f.alignment, (unsigned long long)f.data_offset);
        for (i = 0; i < f.n_tensors; i++) {
            const gguf_tensor *t = &f.tensors[i];
            long long layer;
            printf("%s[", i ? ", " : "");
            put_str(t->name);
            printf(", \"%s\", %llu, %llu, ", ggml_types[t->type].name, (unsigned long long)t->offset,
                   (unsigned long long)t->size);
            if (ggml_numa_shard_layer_of(t->name, &layer)) printf("%lld]", layer);
            else printf("null]");
        }
        printf("]}\n");
        gguf_free(&f);
    }
    free(buf);
}

int main(void) {
    char line[4096];
    while (fgets(line, sizeof line, stdin)) {
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (n) table(line);
        fflush(stdout);
    }
    return 0;
}
