"""Attention for one generation: switch a Kelp transformer to sparse attention for the length of a
sampling run, and report what the run did (for the result's metadata and the history)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict
from typing import Iterator

from core.attention.adaptive_sparsity import SparsityController, SparsitySettings


@contextmanager
def generation_attention(transformer, mode: str, settings: SparsitySettings | None) -> Iterator[SparsityController | None]:
    """With mode 'sparse', the transformer attends through a fresh SparsityController (yielded: call its
    `set_step` before each model call) and returns to its previous attention afterwards, even on error
    or cancel. With 'dense', nothing changes and None is yielded."""
    if mode == "dense":
        yield None
        return
    if mode != "sparse":
        raise ValueError(f"`mode` must be 'dense' or 'sparse', got {mode!r}")
    controller = SparsityController(settings if settings is not None else SparsitySettings())
    previous = transformer.attention_backend, transformer.attention_state
    transformer.attention_backend, transformer.attention_state = "sparse", controller
    try:
        yield controller
    finally:
        transformer.attention_backend, transformer.attention_state = previous


def attention_report(mode: str, controller: SparsityController | None, sampling_seconds: float) -> dict:
    """What the attention did, JSON-ready: for sparse runs the settings, the searches, the share of the
    sampling time they took, and per layer and head the sparsity and recall of the latest search."""
    if controller is None:
        return {"mode": mode}
    stats = controller.stats
    report = {
        "mode": mode,
        "settings": asdict(controller.settings),
        "searches": controller.searches,
        "search_seconds": round(controller.search_seconds, 4),
        "search_share": round(controller.search_seconds / sampling_seconds, 4) if sampling_seconds > 0 else None,
    }
    if not stats:  # every call ran dense: too few tokens, or only warm-up steps
        report["ran_dense"] = (f"no search ran: the sequence is shorter than min_tokens={controller.settings.min_tokens} "
                               f"or every step was a warm-up step")
        return report
    per_layer = [
        {"layer": layer, "searched_at": s.searched_at,
         "sparsity": [round(float(x), 4) for x in s.sparsity], "recall": [round(float(x), 4) for x in s.recall]}
        for layer, s in sorted(stats.items())
    ]
    report["mean_sparsity"] = round(sum(sum(l["sparsity"]) / len(l["sparsity"]) for l in per_layer) / len(per_layer), 4)
    report["mean_recall"] = round(sum(sum(l["recall"]) / len(l["recall"]) for l in per_layer) / len(per_layer), 4)
    report["layers"] = per_layer
    return report
