"""Persistent settings, LoRA records and training-run records on a real SQLite file."""

import pytest

from core.store.loras import get_lora, list_loras, lora_path, register_lora, restore_lora, trash_lora
from core.store.settings import all_settings, delete_setting, get_setting, set_setting
from core.store.training_runs import (create_training_run, finish_training_run, get_training_run, list_training_runs,
                                      record_training_progress, restore_training_run, trash_training_run)


def test_settings_round_trip_json_values(store):
    with store.db.session() as session:
        assert get_setting(session, "ui.steps", 20) == 20
        set_setting(session, "ui.steps", 30)
        set_setting(session, "ui.size", {"width": 512, "height": 288, "presets": [1, 2.5, None, True]})
        set_setting(session, "ui.nothing", None)
    with store.db.session() as session:
        assert get_setting(session, "ui.steps") == 30
        assert get_setting(session, "ui.size")["presets"] == [1, 2.5, None, True]
        assert get_setting(session, "ui.nothing", "default") is None  # stored None is not "unset"
        size = get_setting(session, "ui.size")
        size["width"] = 640  # changed in place, then saved
        set_setting(session, "ui.size", size)
    with store.db.session() as session:
        assert get_setting(session, "ui.size")["width"] == 640
        assert delete_setting(session, "ui.steps") and not delete_setting(session, "ui.steps")
        assert get_setting(session, "ui.steps", 20) == 20
        assert list(all_settings(session)) == ["ui.nothing", "ui.size"]


@pytest.mark.parametrize("key, value, message", [
    ("", 1, r"`key` must be a text of 1..100 characters .* but is ''"),
    (" steps", 1, r"`key` must be .* but is ' steps'"),
    ("k" * 101, 1, r"`key` must be"),
    (3, 1, r"`key` must be .* but is 3"),
    ("steps", float("inf"), r"`value` must be JSON .* but is inf"),
    ("steps", {1, 2}, r"`value` must be JSON"),
    ("steps", object(), r"`value` must be JSON"),
])
def test_bad_settings_are_refused(store, key, value, message):
    with store.db.session() as session, pytest.raises(ValueError, match=message):
        set_setting(session, key, value)


def test_register_list_and_trash_loras(store, tmp_path):
    (tmp_path / "fox.safetensors").write_bytes(b"fox weights")
    (tmp_path / "owl.safetensors").write_bytes(b"owl weights")
    with store.db.session() as session:
        run = create_training_run(session, "fox run", base_model="kelp-small")
        fox = register_lora(store, session, tmp_path / "fox.safetensors", name="Fox", base_model="kelp-small",
                            trigger="fxz", info={"rank": 16, "alpha": 16}, training_run_id=run.id)
        owl = register_lora(store, session, str(tmp_path / "owl.safetensors"), name="Owl", base_model="kelp-base")
        assert fox.asset.kind == "lora" and fox.asset.suffix == ".safetensors"
        assert lora_path(store, session, fox.id).read_bytes() == b"fox weights"
        assert (fox.trigger, fox.info["rank"], fox.training_run.name) == ("fxz", 16, "fox run")
        assert [lora.name for lora in list_loras(session)] == ["Owl", "Fox"]
        assert [lora.name for lora in list_loras(session, base_model="kelp-small")] == ["Fox"]
        trash_lora(session, owl.id)
        assert [lora.name for lora in list_loras(session)] == ["Fox"]
        assert len(list_loras(session, include_deleted=True)) == 2
        restore_lora(session, owl.id)
        assert get_lora(session, owl.id).deleted_at is None


def test_bad_lora_registrations_are_named(store, tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    (tmp_path / "fox.safetensors").write_bytes(b"x")
    with store.db.session() as session:
        with pytest.raises(ValueError, match=r"`path` must be an existing .safetensors file but is '.*weights.bin'"):
            register_lora(store, session, tmp_path / "weights.bin", name="x")
        with pytest.raises(ValueError, match=r"`path` must be an existing .safetensors file but is '.*nope"):
            register_lora(store, session, tmp_path / "nope.safetensors", name="x")
        with pytest.raises(ValueError, match=r"`training_run_id` must be the id of an existing training run but is 5"):
            register_lora(store, session, tmp_path / "fox.safetensors", name="fox", training_run_id=5)
        with pytest.raises(ValueError, match=r"`info` must be a dict with text keys but is 'rank 4'"):
            register_lora(store, session, tmp_path / "fox.safetensors", name="fox", info="rank 4")


def test_training_run_progress_metrics_and_finish(store):
    with store.db.session() as session:
        run_id = create_training_run(session, "fox run", kind="lora", recipe={"lr": 1e-4}, total_steps=200).id
    for step, loss in ((10, 0.9), (20, 0.7)):
        with store.db.session() as session:
            record_training_progress(session, run_id, step=step, metrics={"loss": loss}, worker="host:1")
    with store.db.session() as session:
        run = get_training_run(session, run_id)
        assert (run.status, run.step, run.progress, run.worker) == ("running", 20, 0.1, "host:1")
        assert run.metrics == [{"step": 10, "loss": 0.9}, {"step": 20, "loss": 0.7}]
        assert run.started_at is not None and run.heartbeat_at is not None
        record_training_progress(session, run_id, step=30)  # no metrics: nothing appended
        assert len(run.metrics) == 2
        finish_training_run(session, run_id, "done")
    with store.db.session() as session:
        run = get_training_run(session, run_id)
        assert (run.status, run.progress, run.finished_at is not None) == ("done", 1.0, True)
        assert [r.id for r in list_training_runs(session, status="done")] == [run_id]
        assert list_training_runs(session, status="running") == []


def test_training_runs_list_trash_and_bad_values(store):
    with store.db.session() as session:
        first = create_training_run(session, "first", kind="vae").id
        second = create_training_run(session, "second", kind="dit").id
        assert [r.id for r in list_training_runs(session)] == [second, first]
        trash_training_run(session, first)
        assert [r.id for r in list_training_runs(session)] == [second]
        restore_training_run(session, first)
        assert len(list_training_runs(session)) == 2
        with pytest.raises(ValueError, match=r"`kind` must be one of \('lora', 'dit', 'vae'\) but is 'gan'"):
            create_training_run(session, "x", kind="gan")
        with pytest.raises(ValueError, match=r"`step` must be a whole number from 0 but is -1"):
            record_training_progress(session, first, step=-1)
        with pytest.raises(ValueError, match=r"`metrics` must map names to finite numbers but is \{'loss': nan\}"):
            record_training_progress(session, first, step=1, metrics={"loss": float("nan")})
        with pytest.raises(ValueError, match=r"`status` must be one of .* but is 'running'"):
            finish_training_run(session, first, "running")
        with pytest.raises(ValueError, match=r"`run_id` must be the id of an existing training run but is 77"):
            get_training_run(session, 77)
