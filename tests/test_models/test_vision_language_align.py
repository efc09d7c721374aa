import math

import torch
import torch.nn.functional as F

from openseg_core.models.detection import VisionLanguageAlign


def test_logits_follow_glip_alignment_by_hand():
    torch.manual_seed(0)
    head = VisionLanguageAlign(embed_dims=4, prompt_dims=3)
    with torch.no_grad():
        head.log_scale.fill_(math.log(2.0))
        head.bias_lang.copy_(torch.tensor([1.0, 0.0, -1.0]))
    queries, prompts = torch.randn(1, 2, 4), torch.randn(5, 3)
    unit = F.normalize(prompts, dim=-1)
    keys = head.dot_product_projection_text(unit / 2)
    expected = queries @ keys.t() / 2.0 + (unit @ head.bias_lang + head.bias0)[None, None]
    torch.testing.assert_close(head(queries, prompts), expected)


def test_scale_of_a_prompt_does_not_matter_and_prior_is_one_percent():
    head = VisionLanguageAlign(embed_dims=8, prompt_dims=6)
    queries, prompts = torch.randn(2, 3, 8), torch.randn(4, 6)
    torch.testing.assert_close(head(queries, prompts), head(queries, 7.0 * prompts))
    # bias_lang starts at zero: a zero query scores every prompt at the focal prior.
    probs = head(torch.zeros(1, 1, 8), prompts).sigmoid()
    torch.testing.assert_close(probs, torch.full_like(probs, 0.01))


def test_per_image_prompts_equal_shared_ones_image_by_image():
    head = VisionLanguageAlign(embed_dims=8, prompt_dims=6)
    queries, prompts = torch.randn(2, 3, 8), torch.randn(2, 4, 6)
    both = head(queries, prompts)
    for i in range(2):
        torch.testing.assert_close(both[i], head(queries[i:i + 1], prompts[i])[0])
