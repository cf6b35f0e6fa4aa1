"""Kelp core engine: models, sampling, and the one generate() API."""

from core.offline import keep_libraries_offline

# Before anything imports huggingface_hub (diffusers, transformers, peft): see core/offline.py.
keep_libraries_offline()
