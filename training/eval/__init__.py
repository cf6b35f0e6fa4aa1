"""Evaluation: explainable detectors and metrics that score generated toy-world clips."""
