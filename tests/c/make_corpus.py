"""Write the fuzzers' seed corpus (tests/c/corpus/): small GGUF files made with gguf.GGUFWriter,
the tiny seeds of tests/ggufmutate.py and one mutant of each kind of mutation, and example maps.
The GGUF files are also the CI regression set of tests/test_gguf_corpus.py. Run it again after
changing it (`python -m tests.c.make_corpus` from the repository root); the files are committed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import gguf
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as T

CORPUS = Path(__file__).resolve().parent / "corpus"

MAPS = {
    "seed": "0-8:node3,9-17:node2,attn:node3\nblk.3.attn_q.weight\nblk.12.ffn_up.weight\noutput.weight",
    "sparse": "0-19:node8,20-39:node0,*:node8\nblk.40.ffn_down_exps.weight\ntoken_embd.weight",
    "types": " norm : 1 ,\tattn:node2,ffn:3,embed:0 , * : node1023\nblk.0.attn_norm.weight",
    "huge": "100000000000000000000-100000000000000000005:8\nblk.100000000000000000003.ffn_up",
    "errors": "0-3:node0,,4:node1",
    "overlap": "5-9:0,0-20:1",
}


def write_gguf(path: Path, version_note: str, *, quant: bool, alignment: int | None) -> None:
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_string("general.name", version_note)
    w.add_block_count(2)
    w.add_array("tokenizer.ggml.tokens", ["<s>", "a", "bc"])
    w.add_array("tokenizer.ggml.scores", [0.0, 1.5, -2.0])
    w.add_bool("general.flag", True)
    if alignment:
        w.add_custom_alignment(alignment)
    w.add_tensor("token_embd.weight", np.arange(16, dtype=np.float32).reshape(2, 8))
    for b in range(2):
        w.add_tensor(f"blk.{b}.attn_norm.weight", np.ones(8, np.float32))
        if quant:
            block, size = GGML_QUANT_SIZES[T.Q8_0]
            w.add_tensor(f"blk.{b}.ffn_up.weight", np.zeros((2, size), np.uint8), raw_dtype=T.Q8_0)
        else:
            w.add_tensor(f"blk.{b}.ffn_up.weight", np.ones((2, 4), np.float16))
    w.add_tensor("output.weight", np.ones((1, 8), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


MUTANTS_PER_KIND = 3  # bounded: the corpus stays well under 1 MiB


def write_mutants(out: Path) -> None:
    """Each tiny seed, then the first mutants of the regression seed that exercise each mutation."""
    from tests import ggufmutate

    for i, h in enumerate(ggufmutate.seeds(tiny=True)):
        (out / f"seed-{ggufmutate.SEED_ARCHS[i]}.gguf").write_bytes(h.to_bytes())
    kinds = [m.__name__ for m in ggufmutate.STRUCTURAL + ggufmutate.BYTES]
    taken = dict.fromkeys(kinds, 0)
    for i in range(5000):
        data, how = ggufmutate.mutant(CORPUS_SEED, i, tiny=True)
        kind = how.split("+")[0]
        if taken[kind] < MUTANTS_PER_KIND:
            taken[kind] += 1
            (out / f"mutant-{i:04d}-{kind}.gguf").write_bytes(data)
        if min(taken.values()) >= MUTANTS_PER_KIND:
            break


CORPUS_SEED = 2024


def main() -> None:
    (CORPUS / "map").mkdir(parents=True, exist_ok=True)
    (CORPUS / "gguf").mkdir(parents=True, exist_ok=True)
    for name, text in MAPS.items():
        (CORPUS / "map" / name).write_text(text)
    write_gguf(CORPUS / "gguf" / "f16.gguf", "f16", quant=False, alignment=None)
    write_gguf(CORPUS / "gguf" / "q8_0-align64.gguf", "q8", quant=True, alignment=64)
    write_mutants(CORPUS / "gguf")


if __name__ == "__main__":
    main()
