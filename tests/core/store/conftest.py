"""Store fixtures: a fresh history in a temporary folder, and a quick way to add past generations to it."""

import pytest

from core.store import Store
from core.store.schema import Generation


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "data") as opened:
        yield opened


@pytest.fixture
def add_generation(store):
    """add_generation(prompt, **columns) -> id of a finished generation (created_at may be given)."""

    def add(prompt: str = "a red fox", **columns) -> int:
        def write(session):
            values = dict(status="done", model="random:tiny", request={"prompt": prompt, "model": "random:tiny"})
            generation = Generation(prompt=prompt, **{**values, **columns})
            session.add(generation)
            session.flush()
            return generation.id

        return store.db.write(write)

    return add

