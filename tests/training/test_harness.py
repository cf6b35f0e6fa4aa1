"""The evaluation harness: end to end on a random tiny model, each section against an oracle model that
draws exactly the toy clip it is asked for, and its argument checks."""

import contextlib
import io
import json
import math
from datetime import datetime

import numpy as np
import pytest
from PIL import Image

from core.model_loader import resolve_model
from core.pipeline import Engine
from core.request import LoraSpec
from training.data.toy_world import HELD_OUT_TRIPLES, render_clip, sample_truth, toy_shots
from training.data.toy_world.sampling import photo_truth
from training.eval.harness import HarnessSettings, main, run_harness
from training.eval.harness_run import HarnessRun
from training.eval.harness_sections import (
    SECTIONS, run_adherence, run_adherence_seen, run_adherence_vae, run_i2v, run_multishot, run_subject,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, lora_file):
    """(report JSON, printed output) of the whole harness on random:tiny: 2 clips a section, 2 steps."""
    out = tmp_path_factory.mktemp("harness") / "report.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["--model", "random:tiny", "--count", "2", "--steps", "2", "--lora", f"{lora_file}:1.0",
                     "--out", str(out)])
    assert code == 0
    return json.loads(out.read_text()), printed.getvalue()


def test_random_tiny_is_a_64x64_9_frame_preset():
    d = resolve_model("random:tiny").defaults
    assert (d.width, d.height, d.num_frames, d.max_frames) == (64, 64, 9, 65)


def test_report_has_every_section_with_sane_scores(tiny_run):
    report, _ = tiny_run
    assert list(report["sections"]) == list(SECTIONS)
    assert all(section["clip_count"] == 2 and section["wall_s"] > 0 for section in report["sections"].values())
    assert len(report["model"]["weights_sha256"]) == 64 and report["model"]["preset"] == "tiny"
    settings = report["settings"]
    assert (settings["width"], settings["height"], settings["num_frames"], settings["steps"]) == (64, 64, 9, 2)
    assert settings["loras"][0]["strength"] == 1.0 and len(settings["loras"][0]["sha256"]) == 64
    assert datetime.fromisoformat(report["started_at"]) <= datetime.fromisoformat(report["finished_at"])
    assert report["wall_s"] > 0 and report["command"].startswith("python -m training.eval.harness --model random:tiny")

    adherence = report["sections"]["adherence"]
    assert all(0 <= v <= 1 for v in adherence["scores"].values())
    assert adherence["target"] == {"score": "colour+shape+motion", "at_least": 0.8, "met": False}  # untrained
    for clip in adherence["clips"]:
        colour, shape, _ = clip["triple"]
        assert tuple(clip["triple"]) in HELD_OUT_TRIPLES and colour in clip["caption"] and shape in clip["caption"]
    for section in ("i2v", "vae"):
        scores = report["sections"][section]["scores"]
        assert math.isfinite(scores["psnr_db"]) and 0 < scores["psnr_db"] < 60
        assert -1 <= scores["ssim"] <= 1
    multishot = report["sections"]["multishot"]
    assert [len(c["shots"]) for c in multishot["clips"]] == [2, 3]
    assert all(shot["frames"] == 9 for c in multishot["clips"] for shot in c["shots"])
    assert all(0 <= v <= 1 for v in multishot["scores"].values())


def test_subject_section_generates_with_and_without_the_lora(tiny_run):
    subject = tiny_run[0]["sections"]["subject"]
    assert set(subject["scores"]) == {"found_without_lora", "found_with_lora"}
    assert subject["photo"] == "cat" and "cat" in subject["prompt"]
    for clip in subject["clips"]:  # the same seed and prompt: only the LoRA differs, and it changes the clip
        assert clip["with_lora"]["score"] != clip["without_lora"]["score"]


def test_table_shows_every_section_and_its_target(tiny_run):
    report, printed = tiny_run
    assert "| section | score | value | target | clips | seconds |" in printed
    for section in SECTIONS:
        assert f"| {section} |" in printed
    assert "| adherence | colour+shape+motion |" in printed and "≥ 0.8 (missed)" in printed
    assert "| vae | psnr_db |" in printed and "≥ 32 (missed)" in printed


def test_sampler_and_guidance_reach_every_generation_and_the_report():
    engine = Engine(device="cpu")
    source = resolve_model("random:tiny")
    default = HarnessRun(engine, source, seed=0, steps=2).generate(1, prompt="a red circle on black")
    for changed in ({"sampler": "heun"}, {"guidance_scale": 1.0}, {"shift": 9.0}):
        other = HarnessRun(engine, source, seed=0, steps=2, **changed).generate(1, prompt="a red circle on black")
        assert other.shape == default.shape and not np.array_equal(other, default), changed
    settings = HarnessSettings("random:tiny", ("vae",), {"vae": 1}, steps=1, sampler="unipc", guidance_scale=2.5,
                               shift=9.0)
    recorded = run_harness(settings, engine)["settings"]
    assert (recorded["sampler"], recorded["guidance_scale"], recorded["shift"]) == ("unipc", 2.5, 9.0)
    recorded = run_harness(HarnessSettings("random:tiny", ("vae",), {"vae": 1}, steps=1), engine)["settings"]
    assert (recorded["sampler"], recorded["guidance_scale"]) == (source.defaults.sampler, source.defaults.guidance_scale)


def test_same_seed_gives_the_same_clips_and_scores():
    engine = Engine(device="cpu")
    settings = HarnessSettings("random:tiny", ("adherence", "vae"), {"adherence": 1, "vae": 1}, seed=0, steps=1)
    first, again = run_harness(settings, engine), run_harness(settings, engine)
    for section in ("adherence", "vae"):
        assert first["sections"][section]["clips"] == again["sections"][section]["clips"]
    other = run_harness(HarnessSettings("random:tiny", ("vae",), {"vae": 1}, seed=1, steps=1), engine)
    assert other["sections"]["vae"]["clips"][0]["seed"] != first["sections"]["vae"]["clips"][0]["seed"]


class OracleRun(HarnessRun):
    """A perfect model for the bundled size: it draws exactly the toy clip that the harness asked for.

    It knows how each section seeds its clips, and checks that the request carries that clip's caption.
    """

    def generate(self, seed, prompt="", image=None, shots=(), loras=()):
        d = self.defaults
        size = dict(width=d.width, height=d.height, fps=d.fps)
        if shots:
            sample = toy_shots(seed, num_shots=len(shots), frame_choices=(9, 13, 17), **size)
            assert [s.prompt for s in shots] == [s.caption for s in sample.shots]
            return np.concatenate([s.frames for s in sample.shots])
        if image is not None:
            first = np.asarray(Image.open(image).convert("RGB"))
            return np.repeat(first[None], d.num_frames, axis=0)
        if "cat" in prompt:  # the subject prompt: only the subject LoRA knows the held-out photo
            truth = photo_truth(np.random.default_rng(seed), "cat", "pan right", num_frames=d.num_frames, **size)
            return render_clip(truth) if loras else render_clip(sample_truth(seed, kind="shape", **size))
        truth = sample_truth(seed, num_frames=d.num_frames, kind="shape", held_out=True, camera=False, **size)
        if prompt != truth.caption:  # not a held-out triple: adherence_seen's clip of a triple training shows
            truth = sample_truth(seed, num_frames=d.num_frames, kind="shape", held_out=False, camera=False, **size)
        assert prompt == truth.caption
        return render_clip(truth)


@pytest.fixture(scope="module")
def oracle():
    return OracleRun(engine=None, source=resolve_model("random:small"), seed=0,
                     loras=(LoraSpec("subject.safetensors"),))


def test_a_perfect_model_meets_the_adherence_target(oracle):
    result = run_adherence(oracle, 6)
    assert result["scores"]["colour+shape+motion"] == 1.0 and not result["skipped"]
    colours = {clip["triple"][0] for clip in result["clips"]}
    assert len(result["clips"]) == 6 and len(colours) == 6  # spread over the triples, not the first six
    assert all([[f["colour"], f["shape"], f["motion"]] for f in clip["found"]] == [clip["triple"]]
               for clip in result["clips"])  # what the detectors saw is kept with each clip


def test_seen_triples_are_ones_training_shows_and_a_perfect_model_gets_them(oracle):
    result = run_adherence_seen(oracle, 5)
    assert result["scores"]["colour+shape+motion"] == 1.0 and len(result["clips"]) == 5
    assert not any(tuple(clip["triple"]) in HELD_OUT_TRIPLES for clip in result["clips"])
    held_out_seeds = {clip["seed"] for clip in run_adherence(oracle, 5)["clips"]}
    assert held_out_seeds.isdisjoint(clip["seed"] for clip in result["clips"])


def test_adherence_through_the_vae_is_the_ceiling_a_transformer_can_reach():
    """The held-out clips through a VAE: the bundled one keeps what the detectors need, a random one does not."""
    engine = Engine(device="cpu")
    bundled = run_adherence_vae(HarnessRun(engine, resolve_model("kelp-small"), seed=0), 4)
    assert [tuple(clip["triple"]) for clip in bundled["clips"]] == [HELD_OUT_TRIPLES[i] for i in (0, 12, 25, 37)]
    assert bundled["scores"]["colour"] == 1.0 and bundled["scores"]["colour+shape+motion"] >= 0.75
    untrained = run_adherence_vae(HarnessRun(engine, resolve_model("random:small"), seed=0), 4)
    assert untrained["scores"]["colour+shape+motion"] == 0.0


def test_a_perfect_model_gives_back_the_i2v_condition_image(oracle):
    scores = run_i2v(oracle, 2)["scores"]
    assert scores["psnr_db"] == math.inf and scores["ssim"] == pytest.approx(1.0)


def test_multishot_compares_the_shots_it_asked_for(oracle):
    result = run_multishot(oracle, 2)
    for clip in result["clips"]:
        assert clip["subject_consistency"] == pytest.approx(clip["reference_consistency"])
        assert clip["shot_adherence"] >= 0.75


def test_subject_is_found_only_where_the_lora_draws_it(oracle):
    result = run_subject(oracle, 3, "cat", None)
    assert result["scores"] == {"found_without_lora": 0.0, "found_with_lora": 1.0}


@pytest.mark.parametrize("args, named", [
    (["--sections", "adherence,bogus"], "bogus"),
    (["--sections", ","], "','"),
    (["--count", "0"], "got 0"),
    (["--steps", "0"], "got 0"),
    (["--sampler", "ddim"], "'ddim'"),
    (["--guidance-scale", "-1"], "got -1.0"),
    (["--shift", "0"], "--shift must be from 0.01 to 100, got 0.0"),
    (["--lora", "{folder}/missing.safetensors"], "missing.safetensors"),
    (["--lora", "{folder}/subject.safetensors:9"], "got 9.0"),
    (["--lora", "{folder}/subject.safetensors:strong"], "'strong'"),
    (["--subject-photo", "dog"], "'dog'"),
    (["--subject-prompt", " "], "' '"),
    (["--model", "random:nope"], "'random:nope'"),
])
def test_bad_arguments_exit_2_naming_the_value(args, named, tmp_path, capsys, monkeypatch):
    def no_engine(*args, **kwargs):
        raise AssertionError("an Engine was built before the arguments were checked")

    monkeypatch.setattr("training.eval.harness.Engine", no_engine)
    (tmp_path / "subject.safetensors").write_bytes(b"")
    argv = ["--model", "random:tiny"] + [a.format(folder=tmp_path) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert named in capsys.readouterr().err
