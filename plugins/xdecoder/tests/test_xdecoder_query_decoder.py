"""X-Decoder's query decoder at inference: masks at the memories' sizes only."""
import copy

import pytest
import torch

from openseg_core.models.mask_classification.query_decoder import TINY_DECODER
from openseg_core.registry import MODELS


@pytest.fixture(scope='module')
def decoder():
    torch.manual_seed(0)
    layers = copy.deepcopy(TINY_DECODER)
    layers['num_layers'] = 4  # every memory level, and the first one again
    module = MODELS.build(dict(
        type='xdecoder.XDecoderQueryDecoder', num_queries=6, text_dims=16, embed_dims=16,
        memory_channels=16, transformer_decoder=layers, global_query='reweighted',
        referring='grounding_copies', attn_mask_interpolation='bicubic_antialias'))
    module.init_weights()
    return module.eval()


def _inputs():
    gen = torch.Generator().manual_seed(1)
    mask_features = torch.randn(2, 16, 32, 24, generator=gen)
    memories = [torch.randn(2, 16, s, s * 3 // 4, generator=gen) for s in (4, 8, 16)]
    return mask_features, memories


@pytest.mark.parametrize('task', ['generic', 'referring', 'retrieval'])
def test_last_prediction_equals_the_one_with_every_mask(decoder, task):
    mask_features, memories = _inputs()
    text = dict(text_queries=torch.randn(2, 3, 16)) if task == 'referring' else {}
    with torch.no_grad():
        every = decoder(mask_features, memories, task=task, **text)
        last = decoder(mask_features, memories, task=task, intermediate_masks=False, **text)
    assert all(m is None for m in last.mask_logits[:-1])
    assert last.mask_logits[-1].shape == (2, 5, 32, 24)  # m - 1 object queries
    # The attention masks block part of the image, so a wrong one would change the outputs.
    blocked = decoder.blocked_pixels(every.mask_logits[0], memories[0].shape[-2:])
    assert 0 < blocked.float().mean() < 1
    pairs = [(every.query_embeds[-1], last.query_embeds[-1]),
             (every.mask_logits[-1], last.mask_logits[-1]),
             (every.global_embeds[-1], last.global_embeds[-1]),
             (every.global_mask_logits[-1], last.global_mask_logits[-1])]
    if task == 'referring':
        pairs.append((every.copy_mask_logits[-1], last.copy_mask_logits[-1]))
    for expected, got in pairs:
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
