"""The VAE latent-optimum benchmark: it measures the harness's own VAE clips (its encoder PSNR is the harness's), and
gradient steps on the latents improve the bundled decoder's reconstruction by no more than Adam's step size moves
them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.vae_latent_optimum import harness_vae_clips, optimise_latents
from core.model_loader import resolve_model
from core.pipeline import Engine
from training.data.toy_world import toy_clip
from training.data.toy_world.sampling import KINDS
from training.eval.harness_run import HarnessRun
from training.eval.harness_sections import run_vae

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def harness_run():
    engine = Engine(device="cpu")
    return HarnessRun(engine, resolve_model("kelp-small", engine.model_dirs), seed=3)


def test_clips_are_the_harness_sections_first_of_each_kind(harness_run):
    d = harness_run.defaults
    clips = harness_vae_clips(d, harness_seed=3, per_kind=2, kinds=KINDS)
    assert sorted(clip.truth.kind for _, _, clip in clips) == sorted(KINDS * 2)
    assert all(seed == harness_run.clip_seed("vae", index) for index, seed, _ in clips)
    section_kinds = [toy_clip(harness_run.clip_seed("vae", i), width=d.width, height=d.height,
                              num_frames=d.num_frames, fps=d.fps).truth.kind for i in range(clips[-1][0] + 1)]
    expected = [i for i, kind in enumerate(section_kinds) if section_kinds[:i].count(kind) < 2]
    assert [index for index, _, _ in clips] == expected


def test_fitted_latents_beat_the_encoder_by_small_steps(harness_run):
    index, _, clip = harness_vae_clips(harness_run.defaults, harness_seed=3, per_kind=1, kinds=("digit",))[0]
    harness = run_vae(harness_run, index + 1)["clips"][index]
    measured = optimise_latents(harness_run.model().vae, clip.frames, steps=3, lr=0.02)
    assert measured["psnr_encoder_db"] == pytest.approx(harness["psnr_db"], abs=1e-9)
    assert measured["psnr_optimum_db"] > measured["psnr_encoder_db"]
    assert 0 < measured["drift_std"] <= 3 * 0.02 * 1.01  # Adam moves each latent by about lr a step at most
    assert not any(p.grad is not None for p in harness_run.model().vae.parameters())  # the decoder stays fixed


def test_a_run_writes_one_clip_of_the_asked_kind(tmp_path):
    out = tmp_path / "optimum.json"
    done = subprocess.run([sys.executable, "-m", "bench.vae_latent_optimum", "--kind", "shape", "--steps", "1",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert [c["kind"] for c in result["clips"]] == ["shape"] and result["by_kind"]["shape"]["clips"] == 1
    assert "| shape |" in done.stdout


def test_bad_arguments_are_named():
    done = subprocess.run([sys.executable, "-m", "bench.vae_latent_optimum", "--per-kind", "0"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--per-kind must be at least 1, got 0" in done.stderr
