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
        "thresholds": {"device": controller.device, "min_tokens": controller.min_tokens(),
                       "min_sparsity": controller.min_sparsity()},  # the settings' or, where None, the device's
        "searches": controller.searches,
        "search_seconds": round(controller.search_seconds, 4),
        "search_share": round(controller.search_seconds / sampling_seconds, 4) if sampling_seconds > 0 else None,
    }
    if not stats:  # every call ran dense: too few tokens, or only warm-up steps
        report["ran_dense"] = (f"no search ran: the sequence is shorter than min_tokens={controller.min_tokens()} "
                               f"or every step was a warm-up step")
        return report
    per_layer = [
        {"layer": layer, "searched_at": s.searched_at, "runs_dense": s.runs_dense,
         "sparsity": [round(float(x), 4) for x in s.sparsity], "recall": [round(float(x), 4) for x in s.recall]}
        for layer, s in sorted(stats.items())
    ]
    # What ran: a layer that fell back to dense attention skipped nothing and kept everything.
    effective = [(0.0, 1.0) if l["runs_dense"] else (_mean(l["sparsity"]), _mean(l["recall"])) for l in per_layer]
    report["mean_sparsity"] = round(_mean([s for s, _ in effective]), 4)
    report["mean_recall"] = round(_mean([r for _, r in effective]), 4)
    report["dense_layers"] = sum(l["runs_dense"] for l in per_layer)
    report["layers"] = per_layer
    return report


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)
