"""Kelp's history: projects, storyboards, generations (and their queue), assets, LoRAs and training runs in
SQLite, with the files in a content-addressed store. Open it with `Store.open(data_dir)`."""

from core.store.store import Store

__all__ = ["Store"]
