"""Write the fuzzers' seed corpus (tests/c/corpus/): small GGUF files made with gguf.GGUFWriter
and example maps. Run it again after changing it; the files are committed."""

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


def main() -> None:
    (CORPUS / "map").mkdir(parents=True, exist_ok=True)
    (CORPUS / "gguf").mkdir(parents=True, exist_ok=True)
    for name, text in MAPS.items():
        (CORPUS / "map" / name).write_text(text)
    write_gguf(CORPUS / "gguf" / "f16.gguf", "f16", quant=False, alignment=None)
    write_gguf(CORPUS / "gguf" / "q8_0-align64.gguf", "q8", quant=True, alignment=64)


if __name__ == "__main__":
    main()
