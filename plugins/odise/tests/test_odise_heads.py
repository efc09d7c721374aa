"""ODISE's classifiers, mask embedding, synonyms and the seen / unseen CLIP ensemble."""
import torch
import torch.nn.functional as F

from openseg_core.models import Vocabulary
from openseg_odise.models import (CategoryHead, ObjectnessHead, PooledMaskEmbed,
                                  SynonymRegionEnsemble, WordHead)
from openseg_odise.models.heads import hard_mask_pool, merge_synonyms, split_synonyms


def test_synonyms_split_and_merge_by_maximum():
    names, counts = split_synonyms(['dog, puppy', 'cat', ' sky '])
    assert names == ['dog', 'puppy', 'cat', 'sky'] and counts == [2, 1, 1]
    logits = torch.tensor([[1.0, 3.0, 2.0, -1.0]])
    torch.testing.assert_close(merge_synonyms(logits, counts), torch.tensor([[3.0, 2.0, -1.0]]))


def test_category_head_scores_names_and_the_null_embedding():
    torch.manual_seed(0)
    head = CategoryHead(embed_dim=4, text_dim=3)
    masks, texts = torch.randn(1, 2, 4), torch.randn(3, 3)
    logits = head(masks, texts, counts=[2, 1])
    assert logits.shape == (1, 2, 3)
    projected = F.normalize(head.text_proj(torch.cat([texts, head.null_embed])), dim=-1)
    full = torch.exp(torch.tensor(1 / 0.07).log()) * F.normalize(masks, dim=-1) @ projected.t()
    torch.testing.assert_close(logits[..., 0], full[..., :2].amax(-1))
    torch.testing.assert_close(logits[..., 1:], full[..., 2:])
    with torch.no_grad():
        head.logit_scale.fill_(10.0)
    assert head.scale.item() == 100.0  # clamped


def test_word_head_has_no_null_column():
    head = WordHead(embed_dim=4, text_dim=3)
    assert head(torch.randn(2, 5, 4), torch.randn(6, 3), counts=[3, 3]).shape == (2, 5, 2)


def test_objectness_head_repeats_the_object_logit():
    head = ObjectnessHead(in_channels=4)
    queries = torch.randn(1, 3, 4)
    two = head(queries)
    assert two.shape == (1, 3, 2)
    many = head(queries, torch.randn(5, 8))
    torch.testing.assert_close(many[..., :5], two[..., :1].expand(-1, -1, 5))
    torch.testing.assert_close(many[..., 5], two[..., 1])


def test_hard_mask_pool_averages_inside_each_mask():
    features = torch.arange(8.0).view(1, 2, 2, 2)            # channel 0: 0..3, 1: 4..7
    logits = torch.tensor([[[[5.0, 5.0], [-5.0, -5.0]],         # top row
                            [[-5.0, -5.0], [-5.0, -5.0]]]])     # empty
    pooled = hard_mask_pool(features, logits.requires_grad_())
    torch.testing.assert_close(pooled, torch.tensor([[[0.5, 4.5], [0.0, 0.0]]]))
    embed = PooledMaskEmbed(mask_dim=2, hidden_dim=2, embed_dim=3)
    out = embed(torch.randn(1, 2, 2), features, logits)
    assert out.shape == (1, 2, 3)
    out.sum().backward()
    assert logits.grad is None  # masks are detached, as the official pooling


def test_ensemble_weighs_clip_by_seen_and_unseen_classes():
    ensemble = SynonymRegionEnsemble(seen_classes=('puppy', 'sky'), alpha_seen=0.3,
                                     alpha_unseen=0.7)
    vocabulary = Vocabulary(('dog, puppy', 'cat'), ('sky',))
    torch.testing.assert_close(ensemble.alphas(vocabulary), torch.tensor([0.3, 0.7, 0.3]))
    learned = torch.tensor([[[2.0, 0.5, -1.0, 0.3]]])           # 3 classes + no object
    clip = torch.tensor([[[0.1, 3.0, 0.2]]])
    out = ensemble.combine(learned, clip, torch.ones(1, 1, dtype=torch.bool), vocabulary).exp()
    p_diff, p_clip = learned[..., :3].softmax(-1), clip.softmax(-1)
    a = torch.tensor([0.3, 0.7, 0.3])
    geometric = p_diff ** (1 - a) * p_clip ** a
    no_object = learned.softmax(-1)[..., 3]
    expected = geometric / geometric.sum(-1, keepdim=True) * (1 - no_object)
    torch.testing.assert_close(out[..., :3], expected)
    torch.testing.assert_close(out[..., 3], no_object)
