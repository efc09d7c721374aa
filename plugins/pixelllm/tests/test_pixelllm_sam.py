"""SAM's parts from a local checkpoint directory: the image encoder at another input size
(positions resized as the official code does), the prompt encoder, the mask decoder."""
import pytest
import torch

from openseg_pixelllm.models import LocationPromptEncoder, SamMaskHead, SamViTEncoder
from openseg_pixelllm.models.image_encoders import bicubic_resize

pytestmark = pytest.mark.usefixtures('single_thread')

VISION = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, output_channels=8,
              global_attn_indexes=[1], window_size=2, image_size=64, patch_size=16,
              num_pos_feats=4)


@pytest.fixture(scope='module')
def sam_dir(tmp_path_factory):
    from transformers import SamConfig, SamModel
    torch.manual_seed(0)
    config = SamConfig(vision_config=VISION,
                       prompt_encoder_config=dict(hidden_size=8, image_size=64, patch_size=16),
                       mask_decoder_config=dict(hidden_size=8, num_attention_heads=2,
                                                mlp_dim=16, iou_head_hidden_dim=8))
    model = SamModel(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    path = tmp_path_factory.mktemp('sam')
    model.save_pretrained(path)
    return path, model


def test_image_encoder_at_another_size_resizes_its_positions(sam_dir):
    path, sam = sam_dir
    encoder = SamViTEncoder(vision_config=VISION, img_size=32, pretrained=str(path))
    mine = encoder.sam
    assert mine.pos_embed.shape == (1, 2, 2, 16)  # 64 px -> 4 x 4 patches; 32 px -> 2 x 2
    expected = bicubic_resize(sam.vision_encoder.pos_embed.permute(0, 3, 1, 2),
                              (2, 2)).permute(0, 2, 3, 1)
    torch.testing.assert_close(mine.pos_embed, expected)
    glob = mine.layers[1].attn.rel_pos_h
    assert glob.shape == (3, 8) and sam.vision_encoder.layers[1].attn.rel_pos_h.shape == (7, 8)
    # windowed attention keeps its size
    torch.testing.assert_close(mine.layers[0].attn.rel_pos_h,
                               sam.vision_encoder.layers[0].attn.rel_pos_h)
    with torch.no_grad():
        out, = encoder(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 8, 2, 2)
    assert not any(p.requires_grad for p in encoder.parameters())


def test_prompt_encoder_and_mask_decoder_load(sam_dir):
    path, sam = sam_dir
    prompt = LocationPromptEncoder(embed_dims=8, pretrained=str(path))
    torch.testing.assert_close(prompt.sam.shared_embedding.positional_embedding,
                               sam.shared_image_embedding.positional_embedding)
    torch.testing.assert_close(prompt.sam.no_mask_embed.weight,
                               sam.prompt_encoder.no_mask_embed.weight)
    head = SamMaskHead(embed_dims=8, pretrained=str(path),
                       decoder=dict(num_heads=2, mlp_dims=16, iou_hidden_dims=8))
    torch.testing.assert_close(head.decoder.iou_token.weight, sam.mask_decoder.iou_token.weight)
    assert not any(p.requires_grad for p in head.decoder.parameters())  # frozen when loaded
    with pytest.raises(ValueError, match='another size'):
        SamMaskHead(embed_dims=8, pretrained=str(path), decoder=dict(num_heads=2))
