import pytest
import torch

from openseg_core.models import OpenCLIPTextEncoder


def _tiny(**kwargs):
    return OpenCLIPTextEncoder(model_name='ViT-B-16', embed_dim=32,
                               text_cfg=dict(width=32, heads=2, layers=1), **kwargs)


def test_shapes_and_token_table():
    enc = _tiny()
    out = enc(['a red circle', 'sky'])
    assert out['token_feats'].shape == (2, 5, 32)  # the batch's longest text
    assert out['pooled'].shape == (2, 32)
    assert out['mask'].sum(1).tolist() == [5, 3]  # <start> words <end>
    assert enc.token_embedding_table.shape == (49408, 32)


def test_short_sequences_give_open_clips_full_context_features():
    """Running only the positions a batch uses is exact because the tower is causal."""
    enc = _tiny()
    texts = ['a red circle on the left', 'sky']
    out = enc(texts)
    pooled, tokens = enc.tower(enc.tokenize(texts))  # open_clip: all 77 positions
    torch.testing.assert_close(out['pooled'], pooled)
    torch.testing.assert_close(out['token_feats'], tokens[:, :out['token_feats'].shape[1]])
    prefix = enc.encode_ids(enc.tokenize(texts)[:, :3])['token_feats']
    torch.testing.assert_close(prefix, tokens[:, :3])


def test_vocabulary_is_encoded_once_while_frozen(monkeypatch):
    enc = _tiny(templates=('a photo of a {}.', 'a {} in a picture.'))
    calls = []
    original = enc._run_tower
    monkeypatch.setattr(enc, '_run_tower', lambda t: calls.append(len(t)) or original(t))
    first = enc.encode_vocabulary(['circle', 'square', 'sky'])
    again = enc.encode_vocabulary(['circle', 'square', 'sky'])
    assert calls == [6]  # 3 names x 2 templates, one pass
    assert first.shape == (3, 32) and torch.equal(first, again)
    assert torch.allclose(first.norm(dim=-1), torch.ones(3))


def test_empty_vocabulary_and_bad_template_are_errors():
    with pytest.raises(ValueError, match='empty'):
        _tiny().encode_vocabulary([])
    with pytest.raises(ValueError, match='slot'):
        _tiny(templates=('no slot',))


def test_loads_local_weights_and_rejects_foreign_ones(tmp_path):
    source = _tiny()
    full = {f'visual.dummy': torch.zeros(1), **source.tower.state_dict()}
    torch.save(full, tmp_path / 'clip.pth')
    loaded = _tiny(pretrained=str(tmp_path / 'clip.pth'))
    assert torch.equal(loaded.tower.token_embedding.weight, source.tower.token_embedding.weight)
    torch.save({'other': torch.zeros(1)}, tmp_path / 'bad.pth')
    with pytest.raises(ValueError, match='missing'):
        _tiny(pretrained=str(tmp_path / 'bad.pth'))
    with pytest.raises(FileNotFoundError, match='put the file there'):
        _tiny(pretrained=str(tmp_path / 'absent.pth'))
