"""Kelp training: data, DiT and VAE trainers, LoRA, recipes and the evaluation harness."""

import core  # noqa: F401  (first: keeps the libraries it imports off the Hub, core/offline.py)
