"""Which Linear layers get quantized: attention and MLP projections, chosen by name pattern.

Norms, embeddings (patch, text, time, shot), AdaLN modulation and the output projection keep their precision:
they are small in Wan-style models, and errors there shift every token of a frame at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

_ATTENTION = r"(^|\.)(to_q|to_k|to_v|to_out(\.0)?|to_add_out|add_q_proj|add_k_proj|add_v_proj)$"
_MLP = r"(^|\.)(ff|ff_context|ffn)\.net\.(0\.proj|2)$"  # diffusers FeedForward: GELU(proj) then Linear
_MODULATION = r"(^|\.)(video_mod|text_mod|mod|out_mod)\.linear$"  # Kelp's AdaLN layers


@dataclass(frozen=True)
class QuantRule:
    name: str
    patterns: tuple[str, ...]  # regular expressions over full module names; a Linear matching any is quantized

    def selects(self, name: str, module: nn.Module) -> bool:
        return type(module) is nn.Linear and any(re.search(p, name) for p in self.patterns)


# Kelp's KelpVideoTransformer and diffusers' Wan / Flux-style transformers.
TRANSFORMER_PROJECTIONS = QuantRule("transformer-projections", (_ATTENTION, _MLP))
# The same plus Kelp's per-block AdaLN layers (a third of Kelp-small's weights): for measuring, not the default.
TRANSFORMER_PROJECTIONS_AND_MODULATION = QuantRule(
    "transformer-projections+modulation", (_ATTENTION, _MLP, _MODULATION)
)
# BERT-style text encoders (MiniLM): self-attention and MLP; embeddings, LayerNorms and the pooler stay.
TEXT_ENCODER_PROJECTIONS = QuantRule("text-encoder-projections", (
    r"\.attention\.self\.(query|key|value)$", r"\.attention\.output\.dense$", r"\.intermediate\.dense$",
    r"\.layer\.\d+\.output\.dense$",
))

RULES: dict[str, QuantRule] = {
    rule.name: rule
    for rule in (TRANSFORMER_PROJECTIONS, TRANSFORMER_PROJECTIONS_AND_MODULATION, TEXT_ENCODER_PROJECTIONS)
}


def select_linears(model: nn.Module, rule: QuantRule) -> list[str]:
    """Names of the plain nn.Linear layers of `model` that `rule` quantizes, in module order."""
    return [name for name, module in model.named_modules() if rule.selects(name, module)]
