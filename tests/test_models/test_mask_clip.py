"""MaskCLIP: each region token equals a separate pass of the class token through the tower
restricted to the region's patches."""
import torch
import torch.nn.functional as F

from openseg_core.models.backbones import MaskCLIP
from openseg_core.models.backbones.mask_clip import TINY_VIT


def _one_region(tower, images, mask_logits):
    """Reference: for one region, run [class copy, class, patches] with the copy restricted
    to its patches (max-pooled probability > 0.5) and unseen by the others."""
    visual = tower.visual
    images = F.interpolate(images, size=tower.image_size, mode='bilinear', align_corners=False)
    tokens = visual._embeds(images)
    x = torch.cat([tokens[:, :1], tokens], 1)
    masks = F.interpolate(mask_logits[:, None], size=tower.image_size, mode='bilinear',
                          align_corners=False)
    inside = F.max_pool2d(masks.sigmoid(), tower.patch_size).flatten(1) > 0.5
    n = x.shape[1]
    bias = torch.zeros(len(images), n, n)
    bias[:, :, 0] = float('-inf')
    bias[:, 0, 2:] = torch.where(inside, 0.0, float('-inf'))
    heads = visual.transformer.resblocks[0].attn.num_heads
    out = visual.ln_post(visual.transformer(x, attn_mask=bias.repeat_interleave(heads, 0)))
    return out[:, 0] @ visual.proj


def test_region_tokens_equal_separate_passes():
    torch.manual_seed(0)
    tower = MaskCLIP(**TINY_VIT).eval()
    images = torch.randn(2, 3, 48, 40)
    masks = torch.randn(2, 3, 12, 10) * 3
    with torch.no_grad():
        embeds, image_embeds = tower.embed_masks(images, masks, return_image_embeds=True)
        for q in range(3):
            torch.testing.assert_close(embeds[:, q], _one_region(tower, images, masks[:, q]),
                                       atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(image_embeds, tower(images), atol=1e-5, rtol=1e-4)


def test_an_empty_region_sees_only_the_class_token():
    torch.manual_seed(0)
    tower = MaskCLIP(**TINY_VIT).eval()
    images = torch.randn(1, 3, 32, 32)
    empty = torch.full((1, 1, 8, 8), -10.0)
    with torch.no_grad():
        a = tower.embed_masks(images, empty)
        b = tower.embed_masks(images + torch.randn_like(images), empty)
    assert not torch.allclose(a, b)  # the class token still reads the image
    assert torch.isfinite(a).all()
