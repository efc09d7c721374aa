"""PromptFeatureExtractor's options for a frozen stand-in image encoder."""
import pytest
import torch

from openseg_core.engine.cli import load_config
from openseg_core.registry import MODELS
from openseg_pixelllm.models.prompt_feature_extractor import PromptFeatureExtractor

pytestmark = pytest.mark.usefixtures('single_thread')


def test_anchored_tokens_start_on_an_even_lattice_in_reading_order():
    extractor = PromptFeatureExtractor(image_channels=4, prompt_channels=2, embed_dims=2,
                                       depth=1, num_heads=1, mlp_dims=4, num_tokens=8,
                                       token_channels=4, out_channels=4, anchor_tokens=True)
    h, w = 6, 10
    # a positional encoding that is the cell centre's (x, y) as fractions of the grid
    xs = (torch.arange(w) + 0.5) / w
    ys = (torch.arange(h) + 0.5) / h
    pe = torch.stack([xs.expand(h, w), ys[:, None].expand(h, w)])
    points = extractor._anchor_pe(pe)
    # 8 tokens: 2 rows x 4 columns, row by row
    expected = torch.tensor([[(c + 0.5) / 4, (r + 0.5) / 2] for r in range(2) for c in range(4)])
    torch.testing.assert_close(points, expected)


def test_the_referring_model_loads_every_extractor_weight_of_the_trace_model():
    trace = MODELS.build(load_config('pixelllm::pixelllm_tiny_shapes_trace.py').model)
    referring = MODELS.build(load_config('pixelllm::pixelllm_tiny_shapes_referring.py').model)
    shapes = {k: v.shape for k, v in trace.prompt_extractor.state_dict().items()}
    assert shapes == {k: v.shape for k, v in referring.prompt_extractor.state_dict().items()}
    assert trace.prompt_extractor.anchor_tokens and trace.prompt_extractor.pe_in_values
    assert isinstance(trace.prompt_extractor.image_proj, torch.nn.Sequential)
