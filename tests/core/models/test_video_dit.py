"""The video DiT: shapes for every task, conditioning, multi-shot isolation, RoPE, save/load, LoRA."""

import pytest
import torch
from peft import LoraConfig

from core.models.shot_layout import attention_mask, build_layout
from core.models.video_dit import TRANSFORMER_PRESETS, KelpVideoTransformer, apply_rope, rope_cos_sin

C, T, H, W = 4, 4, 8, 8  # tiny latent: 4 channels, 4 latent frames, 8x8


@pytest.fixture(scope="module")
def model() -> KelpVideoTransformer:
    torch.manual_seed(0)
    net = TRANSFORMER_PRESETS["tiny"].build().eval()
    for param in net.parameters():  # untrained zero-init layers would hide every path behind them
        torch.nn.init.normal_(param, std=0.2)
    return net


def run(model, x, text, **kwargs):
    with torch.no_grad():
        return model(x, torch.full((x.shape[0],), 400.0), text, **kwargs).sample


def condition_for(task: str):
    cond, mask = torch.zeros(1, C, T, H, W), torch.zeros(1, 1, T, H, W)
    given = {"t2v": [], "i2v": [0], "first_last": [0, T - 1], "extend": [0, 1]}[task]
    for frame in given:
        cond[:, :, frame] = torch.randn(C, H, W)
        mask[:, :, frame] = 1
    return cond, mask


@pytest.mark.parametrize("task", ["t2v", "i2v", "first_last", "extend"])
def test_forward_shape_for_every_task(model, task):
    x, text = torch.randn(1, C, T, H, W), torch.randn(1, 6, 384)
    cond, mask = condition_for(task)
    out = run(model, x, text, condition_latents=cond, condition_mask=mask)
    assert out.shape == (1, C, T, H, W)
    assert torch.isfinite(out).all()
    if task != "t2v":  # the given frames must reach the prediction
        other = run(model, x, text, condition_latents=cond + mask * 1.0, condition_mask=mask)
        assert not torch.allclose(out, other)


def test_multishot_forward_shape(model):
    x, text = torch.randn(2, C, 5, H, W), torch.randn(2, 9, 384)
    out = run(model, x, text, shot_latent_frames=[2, 1, 2], text_lengths=[3, 3, 3])
    assert out.shape == (2, C, 5, H, W)


def test_multishot_isolation(model):
    """Shot 2's caption must not change shot 1, and must change shot 2."""
    torch.manual_seed(1)
    x, text = torch.randn(1, C, T, H, W), torch.randn(1, 10, 384)
    shots = dict(shot_latent_frames=[2, 2], text_lengths=[5, 5])
    before = run(model, x, text, **shots)
    changed = text.clone()
    changed[:, 5:] = torch.randn(1, 5, 384)
    after = run(model, x, changed, **shots)
    torch.testing.assert_close(after[:, :, :2], before[:, :, :2], rtol=0, atol=1e-6)
    assert (after[:, :, 2:] - before[:, :, 2:]).abs().max() > 1e-3


def test_later_shot_sees_earlier_video(model):
    """Shot-causal attention: shot 2 attends to shot 1's video (how a subject is kept across cuts)."""
    x, text = torch.randn(1, C, T, H, W), torch.randn(1, 10, 384)
    shots = dict(shot_latent_frames=[2, 2], text_lengths=[5, 5])
    before = run(model, x, text, **shots)
    x2 = x.clone()
    x2[:, :, :2] += torch.randn(1, C, 2, H, W)
    after = run(model, x2, text, **shots)
    assert (after[:, :, 2:] - before[:, :, 2:]).abs().max() > 1e-3


def test_padding_tokens_are_ignored(model):
    x, text = torch.randn(1, C, T, H, W), torch.randn(1, 8, 384)
    mask = torch.tensor([[True] * 5 + [False] * 3])
    before = run(model, x, text, encoder_attention_mask=mask)
    padded = text.clone()
    padded[:, 5:] = torch.randn(1, 3, 384) * 10
    after = run(model, x, padded, encoder_attention_mask=mask)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)


def test_shot_layout_mask_rules():
    layout = build_layout([1, 1], 1, 2, [2, 2])  # tokens: t0 t0 t1 t1 | v0 v0 v1 v1
    mask = attention_mask(layout, torch.tensor([[True, False, True, True]]))[0, 0]
    assert mask.shape == (8, 8)
    shot0_video, shot1_video = 4, 6
    assert mask[shot0_video, 0] and not mask[shot0_video, 1]  # own text, not its padding
    assert not mask[shot0_video, 2] and not mask[shot0_video, shot1_video]  # nothing of a later shot
    assert mask[shot1_video, 2] and mask[shot1_video, shot0_video] and not mask[shot1_video, 0]
    times = layout.positions[layout.num_text:, 0]
    assert times[2] - times[0] > 1  # a cut leaves a gap in time


def test_single_shot_without_padding_needs_no_mask():
    layout = build_layout([3], 2, 2, [4])
    assert attention_mask(layout, torch.ones(2, 4, dtype=torch.bool)) is None


def test_rope_scores_depend_only_on_relative_position():
    q, k = torch.randn(1, 1, 6, 16), torch.randn(1, 1, 6, 16)
    positions = torch.randint(0, 10, (6, 3)).float()
    scores = []
    for offset in (0.0, 7.0):
        cos, sin = rope_cos_sin(positions + offset, 16, 10000.0)
        scores.append(apply_rope(q, cos, sin) @ apply_rope(k, cos, sin).transpose(-1, -2))
    torch.testing.assert_close(scores[0], scores[1], rtol=1e-4, atol=1e-4)
    cos, sin = rope_cos_sin(positions, 16, 10000.0)
    assert not torch.allclose(apply_rope(q, cos, sin), q)


def test_save_and_load_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path, safe_serialization=True)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = KelpVideoTransformer.from_pretrained(tmp_path, use_safetensors=True).eval()
    x, text = torch.randn(1, C, T, H, W), torch.randn(1, 6, 384)
    torch.testing.assert_close(run(loaded, x, text), run(model, x, text), rtol=0, atol=0)


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    net = TRANSFORMER_PRESETS["tiny"].build()
    for param in net.parameters():
        torch.nn.init.normal_(param, std=0.1)
    x, text = torch.randn(1, C, 2, H, W), torch.randn(1, 4, 384)
    grads = []
    for checkpointing in (False, True):
        net.zero_grad()
        if checkpointing:
            net.enable_gradient_checkpointing()
        net(x, torch.tensor([300.0]), text).sample.square().mean().backward()
        grads.append(net.patch_embed.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_lora_adapter_attaches_to_attention_and_mlp():
    net = TRANSFORMER_PRESETS["tiny"].build()
    net.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out", "ff.net.2"]))
    lora = [n for n, _ in net.named_parameters() if "lora_" in n]
    assert any("dual_blocks.0.attn.to_q" in n for n in lora) and any("shared_blocks.0.ff.net.2" in n for n in lora)


def test_shot_lengths_must_cover_the_latent(model):
    with pytest.raises(ValueError, match="shot_latent_frames"):
        run(model, torch.randn(1, C, T, H, W), torch.randn(1, 6, 384), shot_latent_frames=[1, 1], text_lengths=[3, 3])


def test_presets_are_distinct_and_small_is_cpu_sized():
    assert {"tiny", "small", "base", "large"} <= set(TRANSFORMER_PRESETS)
    with torch.device("meta"):
        small = TRANSFORMER_PRESETS["small"].build()
    assert 5e6 < sum(p.numel() for p in small.parameters()) < 25e6
