"""AdaSpa-style search: exact block masses, planted patterns found, recall met, patterns cached between
search steps, and the DiT unchanged by sparse attention at full recall."""

import pytest
import torch
import torch.nn.functional as F

from core.attention.adaptive_sparsity import (
    DEVICE_THRESHOLDS,
    SparsityController,
    SparsitySettings,
    always_kept_blocks,
    attention_with_block_mass,
    block_attention_mass,
    device_thresholds,
    select_blocks,
)
from core.attention.block_sparse import block_sparse_attention
from core.attention.dispatch import attention
from core.models.video_dit import TRANSFORMER_PRESETS

B, H, D, BLOCK = 2, 2, 16, 16


def dense_mass(q, k, mask, block):
    """The reference: the full softmax matrix summed over blocks."""
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = scores.softmax(-1)
    length = q.shape[2]
    padded = -length % block
    probs = F.pad(probs, (0, padded, 0, padded))
    return probs.unflatten(-1, (-1, block)).sum(-1).unflatten(2, (-1, block)).sum(3)


def test_block_mass_is_exact_and_chunked(monkeypatch):
    monkeypatch.setattr("core.attention.adaptive_sparsity.SCORE_CHUNK_ELEMENTS", 1)  # one block per chunk
    generator = torch.Generator().manual_seed(0)
    q, k = (torch.randn(B, H, 75, D, generator=generator) for _ in range(2))
    mask = torch.rand(B, 1, 75, 75, generator=generator) < 0.6
    mask |= torch.eye(75, dtype=torch.bool)
    for m in (None, mask):
        mass = block_attention_mass(q, k, BLOCK, m)
        torch.testing.assert_close(mass, dense_mass(q, k, m, BLOCK), atol=1e-5, rtol=1e-5)
    assert torch.allclose(mass.sum(-1)[..., :-1], torch.tensor(float(BLOCK)))  # each query's row sums to 1
    v = torch.randn(B, H, 75, 8, generator=generator)
    out, same_mass = attention_with_block_mass(q, k, v, BLOCK, mask)  # a search step's output is exact
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-5, rtol=0)
    torch.testing.assert_close(same_mass, mass)


def planted(blocks: int, seed: int = 0):
    """q, k whose query block i attends almost only to key block target[b, h, i]."""
    generator = torch.Generator().manual_seed(seed)
    keys_dir = torch.linalg.qr(torch.randn(D, D, generator=generator))[0][:blocks]  # orthonormal, one per key block
    target = torch.randint(0, blocks, (B, H, blocks), generator=generator)
    k = keys_dir.repeat_interleave(BLOCK, 0).expand(B, H, -1, -1) * 3.0
    q = keys_dir[target].repeat_interleave(BLOCK, 2) * 6.0  # (B, H, L, D)
    noise = lambda: 0.05 * torch.randn(B, H, blocks * BLOCK, D, generator=generator)  # noqa: E731
    return q + noise(), k + noise(), target


def test_search_finds_a_planted_pattern():
    blocks = 6
    q, k, target = planted(blocks)
    mass = block_attention_mass(q, k, BLOCK)
    forced = always_kept_blocks(blocks, BLOCK, leading_tokens=0)
    pattern = select_blocks(mass, forced, target_recall=0.9)
    expected = torch.eye(blocks, dtype=torch.bool).expand(B, H, -1, -1).clone()
    expected.scatter_(-1, target[..., None], True)
    assert torch.equal(pattern, expected)


def test_leading_tokens_and_diagonal_always_kept():
    kept = always_kept_blocks(5, 16, leading_tokens=20)
    assert kept[:, :2].all() and kept.diagonal().all() and kept.sum() == 5 * 2 + 3


@pytest.mark.parametrize("target", [0.5, 0.8, 0.95])
def test_target_recall_is_met_with_few_blocks(target):
    generator = torch.Generator().manual_seed(1)
    q, k = (torch.randn(B, H, 160, D, generator=generator) * 2 for _ in range(2))
    mass = block_attention_mass(q, k, BLOCK)
    pattern = select_blocks(mass, always_kept_blocks(10, BLOCK, 0), target_recall=target)
    recall = (mass * pattern).sum(-1) / mass.sum(-1)
    assert (recall >= target - 1e-6).all()
    # fewest blocks: dropping the lightest kept non-diagonal block of a row falls below the target
    lightest = mass.masked_fill(~pattern | torch.eye(10, dtype=torch.bool), float("inf")).min(-1).values
    droppable = torch.isfinite(lightest)
    assert ((recall - lightest / mass.sum(-1))[droppable] < target).all()


def test_fixed_sparsity_keeps_the_budget():
    generator = torch.Generator().manual_seed(2)
    mass = torch.rand(B, H, 20, 20, generator=generator)
    pattern = select_blocks(mass, always_kept_blocks(20, BLOCK, 0), sparsity=0.85)
    assert (pattern.sum(-1) == 3).all()  # ceil(0.15 * 20)
    assert pattern.diagonal(dim1=-2, dim2=-1).all()


def run_steps(controller, steps, q, k, v, mask=None, layers=2):
    outputs = []
    for step in range(steps):
        controller.set_step(step)
        outputs.append([attention(q, k, v, mask, backend="sparse", context=controller.for_layer(layer, 8))
                        for layer in range(layers)])
    return outputs


def test_pattern_is_cached_between_search_steps():
    settings = SparsitySettings(target_recall=0.9, block_size=BLOCK, warmup_steps=2, search_steps=(2, 10),
                                min_tokens=0, min_sparsity=0.0)
    controller = SparsityController(settings)
    generator = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(B, H, 100, D, generator=generator) for _ in range(3))
    modes = []
    for step in range(14):
        controller.set_step(step)
        modes.append(controller.mode(0, B, H, 100))
        attention(q, k, v, backend="sparse", context=controller.for_layer(0, 8))
        attention(q, k, v, backend="sparse", context=controller.for_layer(0, 8))  # e.g. Heun: twice a step
    assert modes == ["dense"] * 2 + ["search"] + ["reuse"] * 7 + ["search"] + ["reuse"] * 3
    assert controller.searches == 2 and controller.stats[0].searched_at == 10
    cached = controller.patterns[0]
    assert cached.shape == (B, H, 7, 7) and 0 < controller.stats[0].sparsity.mean() < 1
    assert (controller.stats[0].recall >= 0.9).all()
    controller.set_step(11)  # a reuse step runs the block-sparse kernel on the cached pattern
    expected = block_sparse_attention(q, k, v, cached, BLOCK)
    torch.testing.assert_close(controller.for_layer(0, 8)(q, k, v, None), expected)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_block_mask_is_built_once_per_search_and_reused():
    """Building a BlockMask costs a few kernels per call: the controller builds one per layer after each search."""
    settings = SparsitySettings(target_recall=0.9, block_size=BLOCK, warmup_steps=0, search_steps=(0, 5),
                                min_tokens=0, min_sparsity=0.0, kernel="flex")
    controller = SparsityController(settings)
    generator = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(B, H, 100, D, generator=generator) for _ in range(3))
    mask = torch.arange(100)[None, None, None, :] < 95  # padded text, as in a guided batch
    for step in range(8):
        controller.set_step(step)
        for layer in range(2):
            out = controller.for_layer(layer, 8)(q, k, v, mask)
            if controller.mode(layer, B, H, 100) == "reuse":
                torch.testing.assert_close(out, block_sparse_attention(q, k, v, controller.patterns[layer], BLOCK,
                                                                       mask, kernel="gather"), atol=1e-5, rtol=0)
    assert controller.searches == 4 and controller.block_masks_built == 4  # 2 layers x (after step 0, after step 5)


def test_a_pattern_too_dense_to_pay_runs_dense_until_the_next_search():
    """Random q/k spread attention evenly: at recall 0.9 the pattern keeps most blocks, where the block kernel
    would be slower than dense SDPA; the layer then attends densely (exactly SDPA) on reuse steps."""
    settings = SparsitySettings(target_recall=0.9, block_size=BLOCK, warmup_steps=0, search_steps=(0,),
                                min_tokens=0, min_sparsity=0.6)
    controller = SparsityController(settings)
    generator = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(B, H, 100, D, generator=generator) for _ in range(3))
    controller.set_step(0)
    controller.for_layer(0)(q, k, v, None)
    assert controller.stats[0].sparsity.mean() < 0.6 and controller.stats[0].runs_dense
    controller.set_step(1)
    assert controller.mode(0, B, H, 100) == "dense"
    assert torch.equal(controller.for_layer(0)(q, k, v, None), F.scaled_dot_product_attention(q, k, v))


def test_new_sequence_shape_searches_again_and_short_sequences_stay_dense():
    controller = SparsityController(SparsitySettings(block_size=BLOCK, warmup_steps=0, search_steps=(0,),
                                                     min_tokens=64))
    controller.set_step(3)
    assert controller.mode(0, B, H, 100) == "search"
    assert controller.mode(0, B, H, 50) == "dense"
    with pytest.raises(ValueError, match="`step`"):
        SparsityController().mode(0, B, H, 5000)


def test_thresholds_left_to_the_device_follow_where_the_kernel_pays():
    """The block kernel pays from 4K tokens on a CPU but, measured on an H200, only from 32K on CUDA."""
    controller = SparsityController(SparsitySettings(block_size=BLOCK, warmup_steps=0, search_steps=(0,)))
    controller.set_step(0)
    assert controller.mode(0, B, H, 20000, "cpu") == "search"
    assert controller.mode(0, B, H, 20000, "cuda") == "dense"
    assert controller.mode(0, B, H, 40000, "cuda") == "search"
    assert (controller.min_sparsity("cpu"), controller.min_sparsity("cuda")) == (0.5, 0.75)
    given = SparsityController(SparsitySettings(min_tokens=100, min_sparsity=0.2))
    assert (given.min_tokens("cuda"), given.min_sparsity("cuda")) == (100, 0.2)
    assert device_thresholds("mps") == DEVICE_THRESHOLDS["cpu"]


def test_sparse_backend_needs_a_context():
    q = torch.randn(1, 1, 8, 4)
    with pytest.raises(ValueError, match="`context`"):
        attention(q, q, q, backend="sparse")


@pytest.mark.parametrize("kwargs, name", [
    (dict(target_recall=0.9, sparsity=0.8), "target_recall"),
    (dict(target_recall=1.5), "target_recall"),
    (dict(sparsity=1.0), "sparsity"),
    (dict(block_size=20), "block_size"),
    (dict(warmup_steps=3, search_steps=(2,)), "search_steps"),
    (dict(kernel="fast"), "kernel"),
    (dict(min_sparsity=1.0), "min_sparsity"),
])
def test_settings_name_the_bad_argument(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        SparsitySettings(**kwargs)


@pytest.mark.parametrize("shots", [None, dict(shot_latent_frames=[2, 2], text_lengths=[3, 3])])
def test_dit_with_sparse_attention_at_full_recall_matches_dense(shots):
    torch.manual_seed(0)
    model = TRANSFORMER_PRESETS["tiny"].build().eval()
    for param in model.parameters():
        torch.nn.init.normal_(param, std=0.2)
    x, text, t = torch.randn(2, 4, 4, 8, 8), torch.randn(2, 6, 384), torch.full((2,), 400.0)
    kwargs = shots or {}
    with torch.no_grad():
        dense = model(x, t, text, **kwargs).sample
        controller = SparsityController(SparsitySettings(target_recall=1.0, block_size=16, warmup_steps=1,
                                                         search_steps=(1,), min_tokens=0, min_sparsity=0.0))
        model.attention_backend, model.attention_state = "sparse", controller
        outputs = []
        for step in range(3):  # dense warm-up, search, reuse through the gather kernel
            controller.set_step(step)
            outputs.append(model(x, t, text, **kwargs).sample)
    assert controller.searches == 2  # once per layer (tiny: one dual and one shared block)
    assert sorted(controller.patterns) == [0, 1]
    for out in outputs:
        torch.testing.assert_close(out, dense, atol=1e-5, rtol=0)


def test_half_precision_scores_keep_the_masses_and_the_pattern():
    """On CUDA a search scores in the inputs' bfloat16 (float32 sums): masses within 1% of a block's queries
    of the float32 ones, a pattern that still holds the target recall, and SDPA's exact output."""
    generator = torch.Generator().manual_seed(4)
    q, k, v = (2 * torch.randn(1, 2, 700, 64, generator=generator) for _ in range(3))
    mask = torch.arange(700)[None, None, None, :] < 690
    out, mass = attention_with_block_mass(q, k, v, 64, mask)
    half_out, half_mass = attention_with_block_mass(q.bfloat16(), k.bfloat16(), v.bfloat16(), 64, mask,
                                                    score_dtype=torch.bfloat16)
    assert half_mass.dtype == torch.float32 and (half_mass - mass).abs().max() < 0.01 * 64
    forced = always_kept_blocks(11, 64, 0)
    pattern = select_blocks(half_mass, forced, target_recall=0.9)
    exact_recall = (mass * pattern).sum(-1) / mass.sum(-1)
    assert exact_recall.min() > 0.89 and not pattern.all()
    expected = F.scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), attn_mask=mask)
    assert torch.equal(half_out, expected)


@pytest.mark.gpu
def test_search_on_cuda_matches_the_cpu():
    """The GPU search takes far larger chunks of scores at once; the masses and output are the CPU's."""
    generator = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 4, 3000, 64, generator=generator) for _ in range(3))
    out, mass = attention_with_block_mass(q, k, v, 128)
    cuda_out, cuda_mass = attention_with_block_mass(q.cuda(), k.cuda(), v.cuda(), 128)
    torch.testing.assert_close(cuda_mass.cpu(), mass, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(cuda_out.cpu(), out, atol=1e-3, rtol=1e-3)
    # In bfloat16 (as models run on GPUs) the scores are bfloat16 and the output SDPA's.
    half_out, half_mass = attention_with_block_mass(q.cuda().bfloat16(), k.cuda().bfloat16(), v.cuda().bfloat16(), 128)
    assert half_mass.dtype == torch.float32 and (half_mass.cpu() - mass).abs().max() < 0.01 * 128
    torch.testing.assert_close(half_out.float().cpu(), out, atol=3e-2, rtol=3e-2)
