"""The released PixelLLM modules start from flax's Dense initialisation; PyTorch's default
(a third of the variance per layer) left the tiny models' location losses at the mean box."""
import math

import torch

from openseg_pixelllm.models.flax_init import lecun_normal_
from openseg_pixelllm.models.prompt_feature_extractor import PromptFeatureExtractor
from openseg_pixelllm.models.trace_head import TraceHead


def _check_lecun(layer: torch.nn.Linear) -> None:
    std = 1 / math.sqrt(layer.in_features)
    weight = layer.weight.detach()
    assert abs(weight.std().item() / std - 1) < 0.05, (weight.std().item(), std)
    # truncated at two (uncorrected) standard deviations, as flax's truncated normal
    assert weight.abs().max().item() <= 2 * std / 0.87962566103423978 + 1e-6
    assert torch.count_nonzero(layer.bias) == 0


def test_lecun_normal_matches_flax_dense_statistics():
    torch.manual_seed(0)
    layer = torch.nn.Linear(512, 256)
    lecun_normal_(layer)
    _check_lecun(layer)


def test_trace_head_and_prompt_extractor_start_as_the_flax_modules():
    torch.manual_seed(0)
    head = TraceHead(in_channels=256, hidden_channels=256)
    for layer in head.mlp:
        if isinstance(layer, torch.nn.Linear):
            _check_lecun(layer)
    extractor = PromptFeatureExtractor(image_channels=384, prompt_channels=256,
                                       embed_dims=256, depth=1, num_heads=4, mlp_dims=512,
                                       num_tokens=2, token_channels=256, out_channels=128)
    for layer in (extractor.image_proj, extractor.token_projs[0],
                  extractor.transformer.layers[0].mlp.lin1):
        _check_lecun(layer)
    # the projection into the language model keeps its small normal start
    assert abs(extractor.out_proj.weight.std().item() - 0.02) < 0.002
