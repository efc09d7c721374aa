"""PixelLLM on the tiny shapes model: traces never change captions, which tokens the losses
count, the referring box from the end-token state, LoRA training touches only what it should."""
import pytest
import torch
from mmengine.optim import build_optim_wrapper

from pixelllm_helpers import build, sample, tiny_cfg  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures('single_thread')


def _inputs(batch=2, size=64, seed=0):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_captions_are_identical_with_and_without_the_trace_head(tiny_cfg):
    model = build(tiny_cfg).eval()
    inputs = _inputs()
    feats = model.extract_feat(inputs)
    boxes = torch.tensor([[0., 0., 64., 64.], [8., 8., 40., 60.]])
    index = torch.arange(2)
    for beam in (1, 3):
        traced = model.caption(feats, (64, 64), boxes, index, ['narrative'] * 2, trace=True,
                               beam_size=beam, max_new_tokens=12)
        plain = model.caption(feats, (64, 64), boxes, index, ['narrative'] * 2, trace=False,
                              beam_size=beam, max_new_tokens=12)
        assert traced['ids'] == plain['ids']
        torch.testing.assert_close(traced['scores'], plain['scores'])
        # one (2 corners) point pair per generated token
        assert [p.shape for p in traced['points']] == [(len(i), 2, 2) for i in traced['ids']]
        # ... and the same captions without the KV cache
        uncached = model.caption(feats, (64, 64), boxes, index, ['narrative'] * 2,
                                 trace=True, beam_size=beam, max_new_tokens=12,
                                 use_cache=False)
        assert uncached['ids'] == traced['ids']
        for a, b in zip(uncached['points'], traced['points']):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_trace_comes_from_the_same_states_as_a_teacher_forced_pass(tiny_cfg):
    """Reading traces from the decoding pass (openseg) equals the released second pass."""
    model = build(tiny_cfg).eval()
    feats = model.extract_feat(_inputs(1))
    box, index = torch.tensor([[0., 0., 64., 64.]]), torch.zeros(1, dtype=torch.long)
    out = model.caption(feats, (64, 64), box, index, ['narrative'], max_new_tokens=10)
    lm = model.language_model
    state, _ = model.encode_prompts(feats, index, box, (64, 64), ['narrative'], [None])
    ids = torch.tensor([[lm.start_id] + out['ids'][0]])
    with torch.no_grad():
        _, hidden, _ = lm.decode(state, ids)
        second = model.trace_head(hidden[0, 1:])  # states that read each word
    torch.testing.assert_close(out['points'][0], second, atol=1e-5, rtol=1e-4)


def test_point_loss_counts_only_word_tokens_with_a_trace(tiny_cfg):
    model = build(tiny_cfg)
    words = ['a', 'red', 'square']
    # "red" has no trace; "a" and "square" point at the box (0.25..0.5, 0.25..0.75)
    boxes = torch.tensor([[0.25, 0.25, 0.5, 0.75], [float('nan')] * 4, [0.25, 0.25, 0.5, 0.75]])
    s = sample('narrative', 'a red square', gt_words=words, gt_word_boxes=boxes)
    rows = model._training_rows([s], 'cpu')
    dec_in, targets, lengths = rows['decoder']
    ids = model.tokenizer('a red square', add_special_tokens=False)['input_ids']
    assert dec_in[0].tolist() == [0] + ids and targets[0].tolist() == ids + [1]
    targets_px = rows['point_targets'][0]
    # position 0 reads the start token, 1..3 read the words (official: the state that reads a
    # word carries its points): start, "red" (no trace) and nothing after are ignored
    valid = ~torch.isnan(targets_px).any(-1)
    assert valid.tolist() == [False, True, False, True]
    torch.testing.assert_close(targets_px[1], torch.tensor([16., 16., 32., 48.]))  # 64 px
    # a loss that only sees those tokens
    points = torch.zeros(1, 4, 2, 2, requires_grad=True)
    from openseg_pixelllm.models import point_l1
    loss = point_l1(points, rows['point_targets'])
    loss.backward()
    assert loss.item() == pytest.approx((16 + 16 + 32 + 48) / 4)
    assert points.grad[0, [0, 2]].abs().sum() == 0 and points.grad[0, [1, 3]].abs().sum() > 0


def test_caption_loss_ignores_padding_and_counts_the_end_token(tiny_cfg):
    model = build(tiny_cfg)
    samples = [sample('captioning', captions=['a red square']),
               sample('captioning', captions=['sky'])]
    rows = model._training_rows(samples, 'cpu')
    dec_in, targets, lengths = rows['decoder']
    assert lengths.tolist() == [4, 2]  # words + the end token
    assert targets[1, 1].item() == model.language_model.end_id
    logits = torch.zeros(2, dec_in.shape[1], len(model.tokenizer))
    logits[1, 2:] = 100 * torch.randn(dec_in.shape[1] - 2, len(model.tokenizer))  # padding
    mask = torch.arange(dec_in.shape[1])[None] < lengths[:, None]
    base = model.criterion(logits, targets, mask)
    torch.testing.assert_close(base, model.criterion(torch.zeros_like(logits), targets, mask))


def test_referring_trains_points_only_on_the_end_predicting_state(tiny_cfg):
    model = build(tiny_cfg)
    s = sample('referring', 'the red square', box=(8.0, 16.0, 40.0, 48.0))
    rows = model._training_rows([s], 'cpu')
    _, _, lengths = rows['decoder']
    valid = ~torch.isnan(rows['point_targets'][0]).any(-1)
    n = lengths[0].item() - 1  # position n reads the last word and predicts the end token
    assert valid.tolist() == [i == n for i in range(len(valid))]
    torch.testing.assert_close(rows['point_targets'][0, n], torch.tensor([8., 16., 40., 48.]))
    losses = model.loss(_inputs(1), [s])
    assert set(losses) == {'loss_point', 'loss_mask_focal', 'loss_mask_dice', 'loss_mask_iou'}


def test_referring_box_is_read_from_the_end_predicting_state(tiny_cfg):
    """A hand-made case: a trace head that returns the state's own first four numbers
    shows which state the box comes from and that the box is the points' min / max."""
    model = build(tiny_cfg).eval()

    class Echo(torch.nn.Module):
        def forward(self, hidden):
            return hidden[..., :4].reshape(*hidden.shape[:-1], 2, 2)

    model.trace_head = Echo()
    feats = model.extract_feat(_inputs(2))
    texts = ['the red square', 'the large blue circle on the left']
    boxes = torch.tensor([[0., 0., 64., 64.]]).repeat(2, 1)
    rel, _, lengths, states = model.locate(feats, (64, 64), texts, torch.arange(2), boxes)
    for k, text in enumerate(texts):
        n = len(model.tokenizer(text, add_special_tokens=False)['input_ids'])
        assert lengths[k].item() == n + 1
        last = states[k][n][:4].view(2, 2)  # the state that read the last word
        expected = torch.cat([last.amin(0), last.amax(0)])
        torch.testing.assert_close(rel[k], expected)
    # predict() scales the relative box to original pixels
    s = [sample('referring', texts[0], size=64)]
    model.mask_head = None
    model.predict(_inputs(1), s)
    torch.testing.assert_close(s[0].pred_instances.bboxes[0], rel[0] * 64, rtol=1e-4, atol=1e-4)


def test_a_lora_step_changes_only_lora_prompt_extractor_and_heads(tiny_cfg):
    lm = dict(tiny_cfg.language_model, frozen=True,
              lora=dict(r=4, lora_alpha=8, target_modules=['q', 'v']))
    model = build(tiny_cfg, language_model=lm, mask_head=None)
    # LoRA in q and v of encoder self-attention, decoder self- and cross-attention
    from openseg_pixelllm.models.language_models import lora_target_names
    names = lora_target_names(model.language_model.model)
    assert len(names) == 2 * (2 + 2 * 2)
    assert any('EncDecAttention.q' in n for n in names)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    wrapper = build_optim_wrapper(model, dict(
        constructor='FrozenAwareOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.0)))
    model.train()
    words = ['the', 'red', 'square']
    s = [sample('narrative', 'the red square', gt_words=words,
                gt_word_boxes=torch.tensor([[0.1, 0.1, 0.5, 0.5]] * 3)),
         sample('referring', 'the red square')]
    losses = model.loss(_inputs(2), s)
    wrapper.update_params(sum(losses.values()))
    changed = {k for k, v in model.state_dict().items()
               if k in before and not torch.equal(v, before[k])}
    assert changed, 'nothing trained'
    allowed = ('.lora_', 'prompt_extractor.', 'trace_head.')
    assert all(any(a in k for a in allowed) for k in changed), sorted(changed)[:5]
    assert any('.lora_B' in k for k in changed) and any('prompt_extractor.' in k
                                                         for k in changed)
    # the checkpoint keeps the adapters (the random base is saved too: it has no file)
    assert any('lora_A' in k for k in model.state_dict())


def test_a_box_prompt_reads_its_own_cells_of_a_wide_image(tiny_cfg):
    """``box_attention``: the box in input pixels (here 256 wide, 128 high) becomes fractions of
    the grid with x by the width and y by the height."""
    model = build(tiny_cfg, prompt_extractor=dict(tiny_cfg['prompt_extractor'], token_window=None,
                                                  box_attention=True)).eval()
    grid = torch.randn(1, model.prompt_extractor.image_channels, 16, 16)
    box = torch.tensor([[0.0, 0.0, 64.0, 64.0]])  # columns 0-3, rows 0-7 of the grid
    index = torch.zeros(1, dtype=torch.long)

    def prefix(feats):
        with torch.no_grad():
            return model.prefixes({'all': feats}, index, box, (128, 256))

    reference = prefix(grid)
    swapped_cell, own_cell = grid.clone(), grid.clone()
    swapped_cell[..., 2, 6] += 5  # inside the box only if width and height were swapped
    own_cell[..., 5, 1] += 5
    torch.testing.assert_close(prefix(swapped_cell), reference)
    assert not torch.allclose(prefix(own_cell), reference)
