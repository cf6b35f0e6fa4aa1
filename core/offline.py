"""Kelp never reaches the Hugging Face Hub, and neither may the libraries it imports.

diffusers imports bitsandbytes whenever it is installed, and bitsandbytes, on a CPU with AVX512-BF16, asks the Hub
(through the `kernels` package) at import time whether to download a compiled CPU kernel and load it. That is a
network request from every Kelp start, and on an online machine possibly code fetched and run. With
HF_HUB_OFFLINE set before huggingface_hub is first imported, `kernels` looks only in its local cache, finds
nothing and bitsandbytes keeps its own kernels. A user who sets HF_HUB_OFFLINE themselves keeps their value.
"""

from __future__ import annotations

import logging
import os

# The fallback they report is the one Kelp wants; their warnings would only print on every start.
_QUIET_LOGGERS = ("bitsandbytes.backends.cpu.ops", "kernels._internals.hf_hub")


def keep_libraries_offline() -> None:
    """Set HF_HUB_OFFLINE (unless already set) and quiet the warnings of the refused Hub kernel."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
