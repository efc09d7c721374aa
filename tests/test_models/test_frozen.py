"""openseg's frozen-part convention, on the CLIP text tower."""
import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.runner.checkpoint import get_state_dict, load_checkpoint, save_checkpoint
from torch import nn

from openseg_core.models import SOURCE_KEY, OpenCLIPTextEncoder
from openseg_core.utils.checkpoint import CheckpointError, load_model_weights


def _tower(pretrained=None, frozen=True, seed=0):
    torch.manual_seed(seed)
    return OpenCLIPTextEncoder(model_name='ViT-B-16', embed_dim=16, pretrained=pretrained,
                               frozen=frozen, text_cfg=dict(width=16, heads=2, layers=1))


class Segmenter(nn.Module):
    """A trainable part in front of and behind a frozen text tower."""

    def __init__(self, pretrained=None):
        super().__init__()
        self.prompt = nn.Parameter(torch.randn(4, 16) * 0.02)  # learned context tokens
        self.text_encoder = _tower(pretrained)
        self.head = nn.Linear(16, 2)

    def forward(self, ids):
        tower = self.text_encoder.tower
        x = tower.token_embedding(ids)
        x = torch.cat([x[:, :1], x[:, 1:] + self.prompt[:ids.shape[1] - 1]], dim=1)
        x = tower.ln_final(tower.transformer(x + tower.positional_embedding[:ids.shape[1]],
                                             attn_mask=tower.attn_mask[:ids.shape[1],
                                                                       :ids.shape[1]]))
        return self.head(x[:, -1])


@pytest.fixture()
def clip_file(tmp_path):
    path = tmp_path / 'clip.pth'
    torch.save(_tower(frozen=False, seed=1).tower.state_dict(), path)
    return path


def test_frozen_tower_stays_in_eval_and_passes_gradients_through(clip_file):
    model = Segmenter(str(clip_file)).train()
    assert not model.text_encoder.tower.training and model.head.training
    ids = model.text_encoder.tokenize(['a red square'])[:, :5]
    model(ids).sum().backward()
    assert all(p.grad is None for p in model.text_encoder.parameters())
    assert model.prompt.grad is not None and model.prompt.grad.abs().sum() > 0


def test_frozen_parameters_stay_out_of_the_optimizer(clip_file):
    model = Segmenter(str(clip_file))
    for paramwise in (None, dict(custom_keys=dict(head=dict(lr_mult=0.1)))):
        cfg = dict(constructor='FrozenAwareOptimWrapperConstructor',
                   optimizer=dict(type='AdamW', lr=1e-3), paramwise_cfg=paramwise)
        wrapper = build_optim_wrapper(model, {k: v for k, v in cfg.items() if v is not None})
        optimized = {id(p) for g in wrapper.optimizer.param_groups for p in g['params']}
        assert optimized == {id(model.prompt), id(model.head.weight), id(model.head.bias)}


def test_pretrained_frozen_weights_stay_out_of_checkpoints(clip_file, tmp_path):
    model = Segmenter(str(clip_file))
    state = get_state_dict(model)  # what mmengine's runner saves
    assert not any(k.startswith('text_encoder.tower.') and not k.endswith(SOURCE_KEY)
                   for k in state)
    assert state[f'text_encoder.tower.{SOURCE_KEY}'].dtype == torch.uint8
    save_checkpoint(dict(state_dict=state), str(tmp_path / 'small.pth'))
    random_tower = Segmenter()  # frozen but random: saved as before
    save_checkpoint(dict(state_dict=get_state_dict(random_tower)), str(tmp_path / 'full.pth'))
    small, full = (tmp_path / 'small.pth').stat().st_size, (tmp_path / 'full.pth').stat().st_size
    assert small < full / 10  # the 49408-token embedding table dominates the tower

    with torch.no_grad():
        model.head.weight.add_(1.0)
    save_checkpoint(dict(state_dict=get_state_dict(model)), str(tmp_path / 'trained.pth'))
    reloaded = Segmenter(str(clip_file))
    load_checkpoint(reloaded, str(tmp_path / 'trained.pth'), strict=True)
    torch.testing.assert_close(reloaded.head.weight, model.head.weight)
    torch.testing.assert_close(reloaded.text_encoder.tower.token_embedding.weight,
                               model.text_encoder.tower.token_embedding.weight)
    # torch's own loader too, strict: nothing missing, nothing unexpected.
    fresh = Segmenter(str(clip_file))
    fresh.load_state_dict(get_state_dict(model), strict=True)


def test_a_different_pretrained_file_is_refused(clip_file, tmp_path):
    state = get_state_dict(Segmenter(str(clip_file)))
    other = tmp_path / 'other.pth'
    torch.save(_tower(frozen=False, seed=2).tower.state_dict(), other)
    with pytest.raises(ValueError, match='text_encoder.tower was trained frozen on a different'):
        Segmenter(str(other)).load_state_dict(state)
    with pytest.raises(ValueError, match='set its `pretrained` path'):
        Segmenter().load_state_dict(state)


def test_a_checkpoint_with_the_weights_loads_them(clip_file):
    """A checkpoint that carries the tower (saved unfrozen, or before freezing) wins."""
    source = Segmenter()
    model = Segmenter(str(clip_file))
    model.load_state_dict(get_state_dict(source), strict=True)
    torch.testing.assert_close(model.text_encoder.tower.token_embedding.weight,
                               source.text_encoder.tower.token_embedding.weight)


def test_openseg_loader_expects_no_frozen_weights_in_a_checkpoint(clip_file):
    """openseg's strict loader (tools, Segmenter): the tower's weights are absent from the
    checkpoint on purpose, which is not a mismatch; a trainable weight absent is."""
    trained = Segmenter(str(clip_file))
    state = get_state_dict(trained)
    model = Segmenter(str(clip_file))
    assert load_model_weights(model, dict(state_dict=state)) == dict(missing=[], unexpected=[],
                                                                    shapes=[])
    torch.testing.assert_close(model.prompt, trained.prompt)
    del state['head.bias']
    with pytest.raises(CheckpointError, match=r'1 model weights missing from it \(head.bias\)'):
        load_model_weights(Segmenter(str(clip_file)), dict(state_dict=state))


def test_paramwise_cfg_takes_a_weight_tied_across_modules_once():
    """T5 ties its input embeddings across the encoder and decoder; with ``paramwise_cfg``
    mmengine put the tied weight in one group per module and the optimizer refused."""
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Embedding(5, 3)
            self.decoder = nn.Embedding(5, 3)
            self.decoder.weight = self.encoder.weight
            self.head = nn.Linear(3, 2)

    model = Tied()
    wrapper = build_optim_wrapper(model, dict(
        type='OptimWrapper', constructor='FrozenAwareOptimWrapperConstructor',
        optimizer=dict(type='SGD', lr=1.0),
        paramwise_cfg=dict(custom_keys={'head': dict(lr_mult=0.1)})))
    groups = wrapper.optimizer.param_groups
    assert sum(p is model.encoder.weight for g in groups for p in g['params']) == 1
    assert [g['lr'] for g in groups if g['params'][0] is model.head.weight] == [pytest.approx(0.1)]
