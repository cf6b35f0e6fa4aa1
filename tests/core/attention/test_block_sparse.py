"""Block-sparse kernels: exact against dense SDPA with the pattern as a token mask, padding-neutral, and
the gather and FlexAttention paths in agreement."""

import pytest
import torch
import torch.nn.functional as F

from core.attention.block_sparse import (
    block_coverage,
    block_sparse_attention,
    flex_block_attention,
    flex_block_mask,
    flex_can_run,
    gather_block_attention,
    num_blocks,
    pad_to_blocks,
)
from core.models.shot_layout import attention_mask, build_layout

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")

B, H, D, BLOCK = 2, 3, 16, 32


def qkv(length: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, length, D, generator=generator) for _ in range(3)]


def random_pattern(length: int, keep: float, seed: int = 0) -> torch.Tensor:
    blocks = num_blocks(length, BLOCK)
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(B, H, blocks, blocks, generator=generator) < keep) | torch.eye(blocks, dtype=torch.bool)


def token_mask(pattern: torch.Tensor, length: int) -> torch.Tensor:
    return pattern.repeat_interleave(BLOCK, 2).repeat_interleave(BLOCK, 3)[:, :, :length, :length]


def shot_causal_mask(text_tokens: int = 10) -> torch.Tensor:
    """Two shots of 2 frames of 6x7 patches and 5 caption tokens each, the last caption token padding."""
    layout = build_layout([2, 2], 6, 7, [text_tokens // 2] * 2)
    text_mask = torch.ones(B, text_tokens, dtype=torch.bool)
    text_mask[:, -1] = False
    return attention_mask(layout, text_mask)  # (B, 1, L, L), L = 10 + 168 = 178


MASKS = {
    "no mask": lambda length: None,
    "shot-causal": lambda length: shot_causal_mask(),
    "key padding": lambda length: torch.arange(length)[None, None, None, :] < length - 5,  # (1, 1, 1, L)
}
LENGTH = 178  # not a multiple of the block size: the last block is padded


@pytest.mark.parametrize("kernel", ["gather", "flex"])
@pytest.mark.parametrize("mask_name", list(MASKS))
def test_full_pattern_equals_dense(kernel, mask_name):
    if kernel == "flex" and not flex_can_run(torch.empty(0), eager_on_cpu=True):
        pytest.skip("FlexAttention is not available in this torch build")
    q, k, v = qkv(LENGTH)
    mask = MASKS[mask_name](LENGTH)
    every_block = torch.ones(B, H, num_blocks(LENGTH, BLOCK), num_blocks(LENGTH, BLOCK), dtype=torch.bool)
    out = block_sparse_attention(q, k, v, every_block, BLOCK, mask, kernel=kernel)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-5, rtol=0)


@pytest.mark.parametrize("mask_name", list(MASKS))
def test_sparse_pattern_equals_dense_with_pattern_as_token_mask(mask_name):
    q, k, v = qkv(LENGTH, seed=1)
    mask = MASKS[mask_name](LENGTH)
    pattern = random_pattern(LENGTH, keep=0.4)
    allowed = token_mask(pattern, LENGTH) if mask is None else token_mask(pattern, LENGTH) & mask
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    torch.testing.assert_close(gather_block_attention(q, k, v, pattern, BLOCK, mask), expected, atol=1e-5, rtol=0)


def test_padding_changes_nothing():
    """The first 178 tokens attend the same whether 14 tokens follow in the last block or not, once the
    extra keys are masked out."""
    q, k, v = qkv(192, seed=2)
    pattern = random_pattern(192, keep=0.5)  # 6 blocks either way
    short = gather_block_attention(q[:, :, :LENGTH], k[:, :, :LENGTH], v[:, :, :LENGTH], pattern, BLOCK)
    keys_valid = torch.arange(192)[None, None, None, :] < LENGTH
    full = gather_block_attention(q, k, v, pattern, BLOCK, keys_valid)
    torch.testing.assert_close(short, full[:, :, :LENGTH], atol=1e-6, rtol=0)


def test_broadcast_pattern_and_rows_keeping_nothing():
    q, k, v = qkv(96)
    pattern = torch.zeros(1, 1, 3, 3, dtype=torch.bool)
    pattern[..., 0, :] = True  # only the first query block attends
    out = gather_block_attention(q, k, v, pattern, BLOCK)
    torch.testing.assert_close(out[:, :, :BLOCK], F.scaled_dot_product_attention(q, k, v)[:, :, :BLOCK])
    assert (out[:, :, BLOCK:] == 0).all()


def test_gather_and_flex_agree_on_a_sparse_pattern():
    if not flex_can_run(torch.empty(0), eager_on_cpu=True):
        pytest.skip("FlexAttention is not available in this torch build")
    q, k, v = qkv(LENGTH, seed=3)
    pattern, mask = random_pattern(LENGTH, keep=0.3, seed=4), shot_causal_mask()
    gathered = gather_block_attention(q, k, v, pattern, BLOCK, mask)
    torch.testing.assert_close(flex_block_attention(q, k, v, pattern, BLOCK, mask), gathered, atol=1e-5, rtol=0)


def test_bad_pattern_and_kernel_are_named():
    q, k, v = qkv(64)
    with pytest.raises(ValueError, match="`pattern` must have shape"):
        gather_block_attention(q, k, v, torch.ones(B, H, 3, 3, dtype=torch.bool), BLOCK)
    with pytest.raises(ValueError, match="`kernel`"):
        block_sparse_attention(q, k, v, torch.ones(1, 1, 2, 2, dtype=torch.bool), BLOCK, kernel="fast")
    with pytest.raises(ValueError, match="`mask` must be a bool"):
        gather_block_attention(q, k, v, torch.ones(1, 1, 2, 2, dtype=torch.bool), BLOCK, torch.zeros(64, 64))


@pytest.mark.gpu
@pytest.mark.parametrize("block", [128, 64])  # FlexAttention's native tile, and a block its tile must shrink to
def test_compiled_flex_matches_gather_on_cuda(block):
    q, k, v = (t.cuda() for t in qkv(1000, seed=5))
    blocks = num_blocks(1000, block)
    pattern = (torch.rand(B, H, blocks, blocks) < 0.3) | torch.eye(blocks, dtype=torch.bool)
    pattern, mask = pattern.cuda(), torch.arange(1000, device="cuda")[None, None, None, :] < 990
    flex = flex_block_attention(q, k, v, pattern, block, mask)
    torch.testing.assert_close(flex, gather_block_attention(q, k, v, pattern, block, mask), atol=2e-4, rtol=0)


def test_compiled_flex_allows_many_clip_sizes():
    """Each sequence length compiles FlexAttention anew; past dynamo's limit it would run eagerly (L x L scores)."""
    import torch._dynamo

    from core.attention import block_sparse

    # Set and restored by hand: monkeypatch's undo deletes the attribute on torch's config module, which hides it.
    name = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
    before = getattr(torch._dynamo.config, name)
    setattr(torch._dynamo.config, name, 8)
    block_sparse._compiled_flex_attention.cache_clear()
    try:
        block_sparse._compiled_flex_attention()
        assert getattr(torch._dynamo.config, name) >= block_sparse.FLEX_RECOMPILE_LIMIT
    finally:
        setattr(torch._dynamo.config, name, before)
        block_sparse._compiled_flex_attention.cache_clear()


def random_token_mask(length: int, seed: int = 0) -> torch.Tensor:
    """(B, 1, L, L) with whole blocks allowed, whole blocks forbidden and mixed blocks, rows never all forbidden."""
    generator = torch.Generator().manual_seed(seed)
    blocks = num_blocks(length, BLOCK)
    kind = torch.randint(0, 3, (B, 1, blocks, blocks), generator=generator)  # 0 forbidden, 1 allowed, 2 mixed
    mixed = torch.rand(B, 1, length, length, generator=generator) < 0.5
    expand = lambda t: t.repeat_interleave(BLOCK, 2).repeat_interleave(BLOCK, 3)[:, :, :length, :length]
    mask = torch.where(expand(kind == 2), mixed, expand(kind == 1))
    return mask | torch.eye(length, dtype=torch.bool)


@pytest.mark.parametrize("mask_name", [*MASKS, "random blocks"])
def test_block_coverage_is_any_and_all_of_each_blocks_real_tokens(mask_name):
    mask = random_token_mask(LENGTH) if mask_name == "random blocks" else MASKS[mask_name](LENGTH)
    if mask is None:
        return
    any_allowed, all_allowed = block_coverage(mask, LENGTH, BLOCK)
    full = mask.expand(B, H, LENGTH, LENGTH)
    blocks = num_blocks(LENGTH, BLOCK)
    for qb in range(blocks):
        for kb in range(blocks):
            tokens = full[:, :, qb * BLOCK:(qb + 1) * BLOCK, kb * BLOCK:(kb + 1) * BLOCK]
            padded_keys = (kb + 1) * BLOCK > LENGTH
            got_any = any_allowed.expand(B, H, blocks, blocks)[:, :, qb, kb]
            got_all = all_allowed.expand(B, H, blocks, blocks)[:, :, qb, kb]
            assert torch.equal(got_any, tokens.flatten(2).any(-1))
            assert torch.equal(got_all, tokens.flatten(2).all(-1) & (not padded_keys))


def block_sets(block_mask, full: bool) -> torch.Tensor:
    """(B, H, n, n) bool: the blocks a BlockMask marks full (or partial, i.e. evaluated token by token)."""
    counts = block_mask.full_kv_num_blocks if full else block_mask.kv_num_blocks
    indices = block_mask.full_kv_indices if full else block_mask.kv_indices
    out = torch.zeros(indices.shape, dtype=torch.bool)
    keep = torch.arange(indices.shape[-1]) < counts[..., None]
    return out.scatter(-1, indices.long(), keep)


def test_flex_block_mask_marks_allowed_blocks_full_and_drops_forbidden_ones():
    """A kept block the mask fully allows skips the token rule in the compiled kernel; one it fully forbids is
    not visited at all; only mixed blocks and the padded last key block evaluate the rule per token."""
    mask = random_token_mask(LENGTH, seed=2)
    pattern = random_pattern(LENGTH, 0.7, seed=2)
    block_mask = flex_block_mask(pattern, mask, LENGTH, BLOCK)
    any_allowed, all_allowed = block_coverage(mask, LENGTH, BLOCK)
    full, partial = block_sets(block_mask, True), block_sets(block_mask, False)
    assert torch.equal(full, pattern & all_allowed)
    assert torch.equal(partial, pattern & any_allowed & ~all_allowed)
    assert full.any() and partial.any() and (pattern & ~any_allowed).any()  # all three kinds occur


def test_flex_block_mask_without_a_mask_evaluates_only_the_padded_key_block():
    pattern = random_pattern(LENGTH, 0.5)
    block_mask = flex_block_mask(pattern, None, LENGTH, BLOCK)
    partial = block_sets(block_mask, False)
    assert torch.equal(partial[..., :-1], torch.zeros_like(partial[..., :-1]))
    assert torch.equal(partial[..., -1], pattern[..., -1])
    assert torch.equal(block_sets(block_mask, True) | partial, pattern)


@pytest.mark.slow
def test_compiled_flex_on_cpu_matches_gather_with_full_partial_and_dropped_blocks():
    """The compiled kernel (unlike eager FlexAttention) trusts the BlockMask's full blocks: a block wrongly
    marked full would attend to masked tokens, one wrongly dropped would lose allowed ones."""
    if not flex_can_run(torch.empty(0), eager_on_cpu=True):
        pytest.skip("FlexAttention is not installed")
    from core.attention.block_sparse import _compiled_flex_attention

    q, k, v = qkv(LENGTH, seed=4)
    mask, pattern = random_token_mask(LENGTH, seed=4), random_pattern(LENGTH, 0.6, seed=4)
    block_mask = flex_block_mask(pattern, mask, LENGTH, BLOCK)
    padded = [pad_to_blocks(t, BLOCK) for t in (q, k, v)]
    compiled = _compiled_flex_attention()(*padded, block_mask=block_mask)[:, :, :LENGTH]
    torch.testing.assert_close(compiled, gather_block_attention(q, k, v, pattern, BLOCK, mask), atol=1e-5, rtol=0)
