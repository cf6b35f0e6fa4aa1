"""Caption sensitivity: swapped captions change exactly one word of the object, and the denoising loss responds to
the caption only through the model's text pathway."""

import re

import numpy as np
import pytest
import torch

from core.model_loader import load_model, resolve_model
from core.pipeline import Engine
from core.request import LoraSpec
from core.text.encoder import build_text_encoder
from training.data.toy_world import HELD_OUT_TRIPLES, sample_truth
from training.data.toy_world.captions import MOTION_PHRASES
from training.data.toy_world.vocabulary import BACKGROUNDS, COLOURS, SHAPES, SIZES
from training.eval.caption_sensitivity import (
    ATTRIBUTES, caption_variants, denoising_losses, sensitivity_summary, swapped_caption,
)
from training.eval.harness_run import HarnessRun
from training.eval.harness_sections import run_caption_sensitivity

TRUTHS = [sample_truth(seed, kind="shape", held_out=held_out, camera=False)
          for seed in range(40) for held_out in (False, True)]


def _object_words(caption: str) -> tuple[str, str, str]:
    """(size, colour, shape) of the one object phrase in a shape caption."""
    pattern = rf"\b({'|'.join(SIZES)}) ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})\b"
    (found,) = re.findall(pattern, caption)
    return found


@pytest.mark.parametrize("attribute", ["size", "colour", "shape"])
def test_a_swapped_word_names_another_value_and_nothing_else_changes(attribute):
    index = {"size": 0, "colour": 1, "shape": 2}[attribute]
    rng = np.random.default_rng(0)
    drawn = set()
    for truth in TRUTHS:
        new = swapped_caption(truth, attribute, rng)
        obj = truth.objects[0]
        before, after = _object_words(truth.caption), _object_words(new)
        assert after[index] != before[index]
        assert [w for i, w in enumerate(after) if i != index] == [w for i, w in enumerate(before) if i != index]
        assert BACKGROUNDS[truth.background].phrase in new  # "a dark blue background" keeps its blue
        assert new.replace(" ".join(after), " ".join(before)) == truth.caption
        drawn.add(after[index])
        assert before == (obj.size, obj.colour, obj.shape)
    assert len(drawn) == len({"size": SIZES, "colour": COLOURS, "shape": SHAPES}[attribute])  # every other value


def test_a_swapped_motion_replaces_the_motion_phrase_with_another_motions():
    rng = np.random.default_rng(0)
    motions = set()
    for truth in TRUTHS:
        obj = truth.objects[0]
        new = swapped_caption(truth, "motion", rng)
        own = max((p for p in MOTION_PHRASES[obj.motion] if p in truth.caption), key=len)
        head, tail = truth.caption.split(own, 1)
        assert new.startswith(head) and new.endswith(tail)
        replacement = new[len(head): len(new) - len(tail)]
        (motion,) = [m for m, phrases in MOTION_PHRASES.items() if replacement in phrases]
        assert motion != obj.motion
        motions.add(motion)
    assert len(motions) == len(MOTION_PHRASES)


def test_variants_and_bad_arguments():
    truth = TRUTHS[0]
    variants = caption_variants(truth, np.random.default_rng(1))
    assert list(variants) == ["correct", *ATTRIBUTES, "empty"]
    assert variants["correct"] == truth.caption and variants["empty"] == ""
    assert len(set(variants.values())) == len(variants)
    with pytest.raises(ValueError, match="`attribute` must be one of"):
        swapped_caption(truth, "background", np.random.default_rng(0))
    digits = sample_truth(3, kind="digit")
    with pytest.raises(ValueError, match="kind 'digit'"):
        swapped_caption(digits, "colour", np.random.default_rng(0))


@pytest.fixture(scope="module")
def tiny():
    loaded = load_model(resolve_model("random:tiny"))
    return loaded.transformer.eval(), build_text_encoder("minilm-l6-v2")


def test_the_loss_follows_the_caption_only_through_the_text_pathway(tiny):
    transformer, encoder = tiny
    captions = {"correct": "a small red circle moves left on a black background",
                "colour": "a small blue circle moves left on a black background"}
    assert encoder.count_tokens(captions["correct"]) == encoder.count_tokens(captions["colour"])
    latents = torch.randn(1, transformer.config.latent_channels, 3, 8, 8, generator=torch.Generator().manual_seed(0))

    def losses(model):
        return denoising_losses(model, encoder, latents, captions, torch.Generator().manual_seed(5))

    random_weights = losses(transformer)
    assert random_weights["colour"] != random_weights["correct"]  # a random text pathway still reads the word
    assert losses(transformer) == random_weights  # the same noise for the same generator seed
    deaf = type(transformer).from_config(transformer.config)
    deaf.load_state_dict(transformer.state_dict())
    last = deaf.text_embed[-1]
    torch.nn.init.zeros_(last.weight), torch.nn.init.zeros_(last.bias)  # every text token becomes the same vector
    deaf_losses = losses(deaf.eval())
    assert deaf_losses["colour"] == deaf_losses["correct"]


def test_bad_latents_are_refused(tiny):
    transformer, encoder = tiny
    with pytest.raises(ValueError, match="one clip"):
        denoising_losses(transformer, encoder, torch.zeros(2, 4, 3, 8, 8), {"correct": "x"}, torch.Generator())


def test_summary_is_the_mean_relative_rise_and_the_share_that_rose():
    clips = [{"losses": {"correct": 1.0, "colour": 1.5, "shape": 1.0, "motion": 0.9, "size": 2.0, "empty": 3.0}},
             {"losses": {"correct": 2.0, "colour": 2.0, "shape": 2.2, "motion": 2.2, "size": 2.0, "empty": 4.0}}]
    summary = sensitivity_summary(clips)
    assert summary["colour_loss_rise"] == pytest.approx(0.25) and summary["colour_worse_share"] == 0.5
    assert summary["shape_loss_rise"] == pytest.approx(0.05) and summary["shape_worse_share"] == 0.5
    assert summary["motion_loss_rise"] == pytest.approx(0.0) and summary["motion_worse_share"] == 0.5
    assert summary["size_loss_rise"] == pytest.approx(0.5) and summary["empty_loss_rise"] == pytest.approx(1.5)
    assert summary["empty_worse_share"] == 1.0


def test_the_section_scores_the_base_model_even_after_a_lora_generation(lora_file):
    def section(with_lora_first: bool) -> dict:
        engine = Engine(device="cpu")
        run = HarnessRun(engine, resolve_model("random:tiny"), seed=0, steps=1, loras=(LoraSpec(str(lora_file), 1.0),))
        if with_lora_first:
            run.generate(1, prompt="a cat", loras=run.loras)  # leaves the LoRA applied to the resident model
        return run_caption_sensitivity(run, 2)

    fresh, after_lora = section(False), section(True)
    assert [c["losses"] for c in after_lora["clips"]] == [c["losses"] for c in fresh["clips"]]
    assert [tuple(c["triple"]) for c in fresh["clips"]] == [HELD_OUT_TRIPLES[0], HELD_OUT_TRIPLES[25]]
    assert set(fresh["scores"]) == {f"{name}_{kind}" for name in (*ATTRIBUTES, "empty")
                                    for kind in ("loss_rise", "worse_share")}
