"""Shared pytest setup: GPU tests skip cleanly on machines without CUDA, and every test keeps its history
(KELP_DATA_DIR) in its own temporary folder, never in the user's."""

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA; none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def private_data_dir(tmp_path_factory, monkeypatch):
    folder = tmp_path_factory.mktemp("kelp-data")
    monkeypatch.setenv("KELP_DATA_DIR", str(folder))
    return folder
