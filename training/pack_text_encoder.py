"""Pack the MiniLM text encoder for a machine that lacks its package, cut down to the toy world's words.

    python -m training.pack_text_encoder --out .device/minilm.tar.xz

A GPU machine lent for training cannot download and carries 64 MiB per call, the Kelp tree included; the encoder
is 90 MB. The packed copy keeps the tokenizer whole, stores the weights as float16 and zeroes the embedding rows of
every token the toy world's captions cannot contain (xz then shrinks them to nothing), so it gives the toy world's
captions the embeddings of the full encoder, to float16 rounding. Unpacked, it is a folder for
`model.text_encoder_path` in a training recipe. Any other caption would get wrong embeddings: it is for toy-world
training only, and packing refuses if a sample of real captions holds a token it dropped.
"""

from __future__ import annotations

import argparse
import ast
import re
import tarfile
import tempfile
from pathlib import Path

import torch

from core.text.encoder import MiniLMTextEncoder
from training.data.toy_world.sampling import sample_truth
from training.data.toy_world.shots import sample_shots

TOY_WORLD_SOURCES = Path(__file__).resolve().parent / "data" / "toy_world"
CHECK_SAMPLES = 2000  # captions of clips and of shots, drawn as training draws them, that must be covered


def toy_world_phrases() -> list[str]:
    """Every string constant in the toy world's source: captions are built from these, digits and nothing else."""
    phrases = [str(digit) for digit in range(10)]
    for path in sorted(TOY_WORLD_SOURCES.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                phrases.append(node.value)
    return phrases


def sampled_captions(count: int, seed: int = 12345) -> list[str]:
    """Captions of `count` clips and `count` multi-shot samples (every shot's), without rendering a frame."""
    captions = [sample_truth(seed + i).caption for i in range(count)]
    for i in range(count):
        _, shots = sample_shots(seed + i)
        captions += [shot.caption for shot in shots]
    return captions


def kept_token_ids(tokenizer, phrases: list[str]) -> set[int]:
    kept = set(tokenizer.all_special_ids)
    for phrase in phrases:
        for word in re.findall(r"[^\W_]+|[^\w\s]", phrase):  # words and punctuation, as BERT's pre-tokenizer splits
            kept.update(tokenizer(word, add_special_tokens=False)["input_ids"])
    return kept


def relative_l2(approximate: torch.Tensor, exact: torch.Tensor) -> float:
    return float((approximate - exact).norm() / exact.norm())


def pack(out: Path, check_samples: int = CHECK_SAMPLES) -> dict:
    """Write the packed encoder to `out` (.tar.xz); returns what was kept and how far its embeddings are."""
    full = MiniLMTextEncoder()
    tokenizer, model = full._loaded()
    kept = kept_token_ids(tokenizer, toy_world_phrases())
    captions = sampled_captions(check_samples)
    missing = {caption for caption in captions if not set(tokenizer(caption)["input_ids"]) <= kept}
    if missing:
        raise ValueError(f"toy-world captions hold tokens the toy world's source does not: {sorted(missing)[:3]}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "minilm"
        state = {name: tensor.half() for name, tensor in model.state_dict().items()}
        rows = state["embeddings.word_embeddings.weight"]
        dropped = torch.ones(rows.shape[0], dtype=torch.bool)
        dropped[sorted(kept)] = False
        rows[dropped] = 0
        model.save_pretrained(folder, state_dict=state, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        packed = MiniLMTextEncoder(model_path=folder)
        difference = max(relative_l2(packed.encode([c]).embeddings, full.encode([c]).embeddings) for c in captions[:200])
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        with tarfile.open(partial, "w:xz") as archive:
            archive.add(folder, arcname="minilm")
        partial.replace(out)
    return {"kept_tokens": len(kept), "vocabulary": int(rows.shape[0]), "checked_captions": len(captions),
            "max_relative_l2": difference, "bytes": out.stat().st_size}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.pack_text_encoder", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the .tar.xz to write (unpacks to a folder minilm/)")
    args = parser.parse_args(argv)
    report = pack(args.out)
    print(f"{args.out}: {report['bytes'] / 1e6:.1f} MB, {report['kept_tokens']} of {report['vocabulary']} tokens kept; "
          f"{report['checked_captions']} sampled captions covered; embeddings within "
          f"{report['max_relative_l2']:.1e} (relative L2) of the full encoder's")


if __name__ == "__main__":
    main()
