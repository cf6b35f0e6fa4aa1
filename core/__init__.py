"""Kelp core engine: models, sampling, and the one generate() API."""
