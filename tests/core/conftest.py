"""The CPU engine that the core tests generate with: one per test module, writing into a temporary folder."""

import pytest

from core.pipeline import Engine


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Engine:
    return Engine(device="cpu", output_dir=tmp_path_factory.mktemp("outputs"))
