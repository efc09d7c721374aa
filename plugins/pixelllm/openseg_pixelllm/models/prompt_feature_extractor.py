"""PixelLLM's prompt feature extractor: learnable tokens read the image around a location
prompt through SAM's two-way transformer, then become the language model's prefix."""
from typing import Optional, Tuple

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn

from openseg_core.models.interfaces import contract, expect, expect_shape, implements

from ..registry import MODELS
from .flax_init import lecun_normal_


def two_way_transformer(embed_dims: int, depth: int, num_heads: int = 8, mlp_dims: int = 2048,
                        downsample_rate: int = 2, layer_norm_eps: float = 1e-5):
    """``transformers``' ``SamTwoWayTransformer`` (SAM's mask-decoder transformer)."""
    from transformers import SamMaskDecoderConfig
    from transformers.models.sam.modeling_sam import SamTwoWayTransformer
    return SamTwoWayTransformer(SamMaskDecoderConfig(
        hidden_size=embed_dims, num_hidden_layers=depth, num_attention_heads=num_heads,
        mlp_dim=mlp_dims, attention_downsample_rate=downsample_rate, hidden_act='relu',
        layer_norm_eps=layer_norm_eps, attn_implementation='eager'))  # as in sam_mask_decoder


@contract('pixelllm.PromptFeatureExtractor')
def check_prompt_feature_extractor(part) -> None:
    """Image ``(B, C_img, h, w)`` + PE + prompt tokens ``(B, N, K, C_prompt)`` -> a prefix
    ``(B, N, num_tokens, out_channels)`` per prompt; different prompts give different prefixes."""
    part.eval()
    image = torch.randn(2, part.image_channels, 4, 5)
    pe = torch.randn(part.prompt_channels, 4, 5)
    prompts = torch.randn(2, 3, 5, part.prompt_channels)
    dense = torch.randn(part.prompt_channels)
    with torch.no_grad():
        out = part(image, pe, prompts, dense)
    expect_shape(out, (2, 3, part.num_tokens, part.out_channels), 'prefix')
    expect(not torch.allclose(out[:, 0], out[:, 1]), 'the prefix ignores the prompt')


@implements('pixelllm.PromptFeatureExtractor',
            example=dict(image_channels=12, prompt_channels=8, embed_dims=16, depth=1,
                         num_heads=2, mlp_dims=32, num_tokens=4, token_channels=24,
                         out_channels=20, image_hidden=10, pe_in_values=True,
                         anchor_tokens=True, token_window=1.0))
@MODELS.register_module()
class PromptFeatureExtractor(BaseModule):
    """``num_tokens`` learnable tokens and the prompt tokens are the queries of a two-way
    transformer whose keys and values are the projected image features (plus SAM's dense
    positional encoding); each output token goes through its own linear layer, then a shared
    linear layer and LayerNorm map them into the language model's input space.

    This is the official ``PromptAdaptor`` with ``prompt_fuse_fn='sparse'`` and the
    ``LinearProjectLayers`` after it (released configs: depth 6, width 512, 32 tokens of 1024
    channels, then ``d_model``; the paper says 2 layers). Its dense output branch, computed
    and discarded with the sparse fusion, is not built.

    Args:
        image_channels: channels of the (concatenated) image features.
        prompt_channels: width of the prompt tokens and positional encoding (SAM's 256).
        embed_dims: width of the two-way transformer.
        depth: its number of layers.
        num_tokens: learnable output tokens (the prefix length).
        token_channels: width of each output token's own projection.
        out_channels: the language model's input width ``d_model``.
        image_hidden: width of a hidden GELU layer in the image projection; ``None`` (the
            official single linear layer) leaves it out. The official ViT is trained with
            the extractor; a frozen stand-in's features are not linearly separable by colour
            and place, and this layer is what the tokens then need (docs: Figures).
        pe_in_values: also add the positional encoding to the image features the tokens
            read (SAM adds it to the keys only). A ViT's features carry their position, so
            the official model needs no such term; a frozen convolutional stand-in's barely
            do (docs: Figures).
        anchor_tokens: add to each learnable token the positional encoding of its own point
            on an even lattice over the image, so that token ``i`` starts by reading its
            part of the image. Not in the official code (docs: Fidelity).
        box_attention: the queries' attention to the image reads only the cells a box prompt
            overlaps (a whole-image prompt reads them all). The official model must learn
            from the prompt tokens where the box is; with a frozen stand-in encoder it does
            not learn to isolate the boxed object (docs: Figures). Not in the official code.
        token_window: with ``anchor_tokens``, each learnable token reads only the cells within
            a window around its lattice point, ``token_window`` lattice cells wide and high
            (the prompt tokens read the whole image); ``None`` reads everywhere. Not in the
            official code (docs: Fidelity).
    """

    def __init__(self, image_channels: int, prompt_channels: int = 256, embed_dims: int = 512,
                 depth: int = 6, num_heads: int = 8, mlp_dims: int = 2048,
                 num_tokens: int = 32, token_channels: int = 1024, out_channels: int = 2048,
                 image_hidden: Optional[int] = None, pe_in_values: bool = False,
                 anchor_tokens: bool = False, box_attention: bool = False,
                 token_window: Optional[float] = None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.image_channels = image_channels
        self.prompt_channels = prompt_channels
        self.num_tokens = num_tokens
        self.out_channels = out_channels
        self.pe_in_values = pe_in_values
        self.anchor_tokens = anchor_tokens
        self.box_attention = box_attention
        if token_window is not None and (not anchor_tokens or box_attention):
            raise ValueError('token_window needs anchor_tokens=True (the windows sit on their '
                             'lattice) and box_attention=False (a window outside the box '
                             'would read nothing)')
        self.token_window = token_window
        if anchor_tokens:
            self.register_buffer('anchor_grid', self._lattice(num_tokens), persistent=False)
        self.output_tokens = nn.Parameter(torch.randn(num_tokens, embed_dims))
        self.image_proj = (nn.Linear(image_channels, embed_dims) if image_hidden is None else
                           nn.Sequential(nn.Linear(image_channels, image_hidden), nn.GELU(),
                                         nn.Linear(image_hidden, embed_dims)))
        # The official code projects prompts and the PE only when their widths differ.
        self.prompt_proj = (nn.Linear(prompt_channels, embed_dims)
                            if prompt_channels != embed_dims else nn.Identity())
        self.pe_proj = (nn.Linear(prompt_channels, embed_dims)
                        if prompt_channels != embed_dims else nn.Identity())
        self.transformer = two_way_transformer(embed_dims, depth, num_heads, mlp_dims)
        self.token_projs = nn.ModuleList(nn.Linear(embed_dims, token_channels)
                                         for _ in range(num_tokens))
        self.out_proj = nn.Linear(token_channels, out_channels)
        lecun_normal_(self, skip=(self.out_proj,))
        nn.init.normal_(self.out_proj.weight, std=0.02)
        nn.init.zeros_(self.out_proj.bias)
        self.out_norm = nn.LayerNorm(out_channels, eps=1e-5)

    @staticmethod
    def _lattice(num_tokens: int) -> Tensor:
        """``(rows, cols, 2)`` ``grid_sample`` coordinates of the centres of a ``rows x cols``
        lattice over the image (``rows * cols = num_tokens``, as square as divides)."""
        rows = max(r for r in range(1, int(num_tokens ** 0.5) + 1) if num_tokens % r == 0)
        cols = num_tokens // rows
        ys = (torch.arange(rows) + 0.5) / rows * 2 - 1
        xs = (torch.arange(cols) + 0.5) / cols * 2 - 1
        return torch.stack(torch.meshgrid(xs, ys, indexing='xy'), -1)

    def _anchor_pe(self, pe: Tensor) -> Tensor:
        """``(E, h, w)`` -> ``(num_tokens, E)``: the encoding at each token's lattice point,
        in reading order."""
        points = torch.nn.functional.grid_sample(pe[None], self.anchor_grid[None].to(pe.dtype),
                                                 align_corners=False)
        return points[0].flatten(1).t()

    @staticmethod
    def box_bias(boxes: Tensor, size: Tuple[int, int]) -> Tensor:
        """``(M, 4)`` boxes ``x1, y1, x2, y2`` as fractions of the grid -> ``(M, h * w)``
        attention bias: 0 on the cells a box overlaps and on the cell of its centre (so a box
        thinner than a cell still reads one), ``-inf`` elsewhere."""
        height, width = size
        edges_y = torch.arange(height + 1, device=boxes.device, dtype=boxes.dtype) / height
        edges_x = torch.arange(width + 1, device=boxes.device, dtype=boxes.dtype) / width
        x1, y1, x2, y2 = boxes[:, :, None].unbind(1)
        rows = (edges_y[None, :-1] < y2) & (edges_y[None, 1:] > y1)  # (M, h)
        cols = (edges_x[None, :-1] < x2) & (edges_x[None, 1:] > x1)  # (M, w)
        centre_row = (((y1 + y2) / 2).clamp(0, 1 - 1e-6) * height).long()
        centre_col = (((x1 + x2) / 2).clamp(0, 1 - 1e-6) * width).long()
        rows = rows | (torch.arange(height, device=boxes.device)[None] == centre_row)
        cols = cols | (torch.arange(width, device=boxes.device)[None] == centre_col)
        inside = (rows[:, :, None] & cols[:, None, :]).flatten(1)
        return torch.zeros(inside.shape, dtype=boxes.dtype, device=boxes.device).masked_fill(
            ~inside, float('-inf'))

    def _window_bias(self, size: Tuple[int, int]) -> Tensor:
        """``(num_tokens, h * w)`` :meth:`box_bias` of each token's window."""
        rows, cols = self.anchor_grid.shape[:2]
        centres = (self.anchor_grid.reshape(-1, 2) + 1) / 2  # reading order, fractions
        half = self.token_window / 2 * centres.new_tensor([1 / cols, 1 / rows])
        windows = torch.cat([centres - half, centres + half], dim=1).clamp(0, 1)
        return self.box_bias(windows, size)

    def _read(self, tokens: Tensor, src: Tensor, pe: Tensor, bias: Optional[Tensor]) -> Tensor:
        """``transformers``' ``SamTwoWayTransformer.forward``, with the attention bias also
        given to the last token-to-image attention (transformers gives it to the layers
        only). ``tokens (M, T, E)``, ``src``/``pe`` ``(M, E, h, w)``, ``bias`` ``(M, T, h *
        w)`` or ``(M, 1, h * w)`` for every token alike -> ``(M, T, E)``."""
        queries = point_embeddings = tokens[:, None]
        keys = src.flatten(2).transpose(1, 2)[:, None]
        key_pe = pe.flatten(2).transpose(1, 2)[:, None]
        if bias is not None:
            bias = bias[:, None]  # (M, heads, queries, cells)
        for layer in self.transformer.layers:
            queries, keys, _ = layer(queries=queries, keys=keys,
                                     query_point_embedding=point_embeddings,
                                     key_point_embedding=key_pe, attention_similarity=bias)
        attn_out, _ = self.transformer.final_attn_token_to_image(
            query=queries + point_embeddings, key=keys + key_pe, value=keys,
            attention_similarity=bias)
        return self.transformer.layer_norm_final_attn(queries + attn_out)[:, 0]

    def forward(self, image: Tensor, image_pe: Tensor, prompts: Tensor,
                dense_prompt: Tensor, boxes: Optional[Tensor] = None) -> Tensor:
        """Read the image once per prompt.

        Args:
            image: ``(B, C_img, h, w)`` image features.
            image_pe: ``(C_prompt, h, w)`` positional encoding of the grid.
            prompts: ``(B, N, K, C_prompt)`` sparse prompt tokens of ``N`` prompts per image.
            dense_prompt: ``(C_prompt,)`` the dense prompt embedding added to every position
                (SAM's "no mask").
            boxes: ``(B, N, 4)`` the prompts' boxes as fractions of the grid, read with
                ``box_attention``; ``None`` reads the whole image.

        Returns:
            ``(B, N, num_tokens, out_channels)``: one prefix per prompt.
        """
        batch, num_prompts = prompts.shape[:2]
        src = self.image_proj(image.permute(0, 2, 3, 1)) + self.prompt_proj(dense_prompt)
        src = src.permute(0, 3, 1, 2).repeat_interleave(num_prompts, 0)  # (B N, E, h, w)
        pe = self.pe_proj(image_pe.permute(1, 2, 0)).permute(2, 0, 1)
        pe = pe[None].expand(src.shape[0], -1, -1, -1)
        if self.pe_in_values:
            src = src + pe
        output_tokens = self.output_tokens
        if self.anchor_tokens:
            output_tokens = output_tokens + self._anchor_pe(pe[0])
        tokens = torch.cat([output_tokens.expand(batch * num_prompts, -1, -1),
                            self.prompt_proj(prompts.flatten(0, 1))], dim=1)
        bias = None
        if self.box_attention and boxes is not None:
            bias = self.box_bias(boxes.flatten(0, 1), src.shape[-2:])[:, None]
        elif self.token_window is not None:
            windows = self._window_bias(src.shape[-2:])
            bias = torch.cat([windows, windows.new_zeros(tokens.shape[1] - len(windows),
                                                         windows.shape[1])])
            bias = bias[None].expand(len(tokens), -1, -1)
        queries = self._read(tokens, src, pe, bias)[:, :self.num_tokens]
        per_token = torch.stack([proj(queries[:, i]) for i, proj in
                                 enumerate(self.token_projs)], dim=1)
        prefix = self.out_norm(self.out_proj(per_token))
        return prefix.view(batch, num_prompts, self.num_tokens, -1)
