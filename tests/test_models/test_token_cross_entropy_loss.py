"""Label smoothing that spreads over the other tokens only (GRiT, PixelLLM)."""
import torch

from openseg_core.models.losses import TokenCrossEntropyLoss


def test_smoothing_excluding_the_target_matches_its_definition():
    torch.manual_seed(0)
    logits, targets = torch.randn(2, 3, 7), torch.randint(0, 7, (2, 3))
    eps = 0.1
    dist = torch.full((2, 3, 7), eps / 6)
    dist.scatter_(-1, targets[..., None], 1 - eps)  # 1 - e on the target, e / (V - 1) else
    expected = -(dist * logits.log_softmax(-1)).sum(-1).mean()
    loss = TokenCrossEntropyLoss(label_smoothing=eps, smoothing_excludes_target=True)
    torch.testing.assert_close(loss(logits, targets), expected)
    # torch's own smoothing puts e / V on the target too: a different loss
    assert not torch.allclose(TokenCrossEntropyLoss(label_smoothing=eps)(logits, targets),
                              expected)
