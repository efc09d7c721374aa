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


def _small_extractor(**options):
    torch.manual_seed(0)
    return PromptFeatureExtractor(image_channels=6, prompt_channels=4, embed_dims=8, depth=2,
                                  num_heads=2, mlp_dims=16, num_tokens=4, token_channels=8,
                                  out_channels=8, **options).eval()


def test_box_bias_opens_the_cells_a_box_overlaps_and_a_thin_boxs_centre_cell():
    bias = PromptFeatureExtractor.box_bias(torch.tensor([
        [0.3, 0.0, 0.55, 0.2],  # columns 1-2 of row 0
        [0.6, 0.6, 0.6, 0.6],  # a point: its own cell
        [1.0, 1.0, 1.0, 1.0],  # a point on the far edge: the last cell
    ]), (4, 4)).view(3, 4, 4)
    open_cells = [sorted(map(tuple, (b == 0).nonzero().tolist())) for b in bias]
    assert open_cells == [[(0, 1), (0, 2)], [(2, 2)], [(3, 3)]]
    assert torch.isinf(bias[0, 1:]).all()


def test_with_box_attention_the_prefix_reads_only_the_boxed_cells():
    image, pe = torch.randn(1, 6, 4, 4), torch.randn(4, 4, 4)
    prompts, dense = torch.randn(1, 1, 5, 4), torch.randn(4)
    box = torch.tensor([[[0.0, 0.0, 0.5, 0.5]]])  # the top-left 2 x 2 cells
    outside, inside = image.clone(), image.clone()
    outside[..., 3, 3] += 5
    inside[..., 0, 0] += 5
    boxed, whole = _small_extractor(box_attention=True), _small_extractor()
    with torch.no_grad():
        ref = boxed(image, pe, prompts, dense, box)
        torch.testing.assert_close(boxed(outside, pe, prompts, dense, box), ref)
        assert not torch.allclose(boxed(inside, pe, prompts, dense, box), ref)
        # without the option (or without a box) the whole image is read
        assert not torch.allclose(whole(outside, pe, prompts, dense, box),
                                  whole(image, pe, prompts, dense, box))
        assert not torch.allclose(boxed(outside, pe, prompts, dense),
                                  boxed(image, pe, prompts, dense))


def test_reading_without_a_bias_is_transformers_two_way_transformer():
    extractor = _small_extractor()
    tokens, src, pe = torch.randn(3, 9, 8), torch.randn(3, 8, 4, 5), torch.randn(3, 8, 4, 5)
    with torch.no_grad():
        expected, _ = extractor.transformer(point_embeddings=tokens[:, None],
                                            image_embeddings=src,
                                            image_positional_embeddings=pe,
                                            attention_similarity=None)
        torch.testing.assert_close(extractor._read(tokens, src, pe, None), expected[:, 0])


def test_token_windows_of_one_lattice_cell_tile_the_grid():
    extractor = _small_extractor(anchor_tokens=True, token_window=1.0)  # a 2 x 2 lattice
    opened = (extractor._window_bias((4, 6)) == 0).view(4, 4, 6)
    for token, (row, col) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        expected = torch.zeros(4, 6, dtype=torch.bool)
        expected[2 * row:2 * row + 2, 3 * col:3 * col + 3] = True
        assert torch.equal(opened[token], expected), token
    with torch.no_grad():
        prefix = extractor(torch.randn(2, 6, 4, 6), torch.randn(4, 4, 6),
                           torch.randn(2, 3, 5, 4), torch.randn(4))
    assert prefix.shape == (2, 3, 4, 8) and prefix.isfinite().all()
    with pytest.raises(ValueError, match='anchor_tokens'):
        _small_extractor(token_window=2.0)
