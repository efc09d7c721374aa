import pytest
import torch

from openseg_core.models import OpenCLIPTextEncoder


def _tiny(**kwargs):
    return OpenCLIPTextEncoder(model_name='ViT-B-16', embed_dim=32,
                               text_cfg=dict(width=32, heads=2, layers=1), **kwargs)


def test_shapes_and_token_table():
    enc = _tiny()
    out = enc(['a red circle', 'sky'])
    assert out.token_feats.shape == (2, 5, 32)  # the batch's longest text
    assert out.pooled.shape == (2, 32)
    assert out.lengths.tolist() == [5, 3]  # <start> words <end>
    assert enc.token_embedding_table.shape == (49408, 32)


def test_padding_comes_from_lengths_not_from_token_id_zero():
    """CLIP's token 0 is "!" (in "!??" it is its own token): counting non-zero ids would drop
    it and, for the longest text, cut off the end token and the pooled feature with it."""
    enc = _tiny()
    texts = ['a dog!??', 'sky']
    ids = enc.tokenize(texts)
    assert ids[0, :6].tolist() == [enc.start_token_id, 320, 1929, 0, 2197, enc.end_token_id]
    out = enc(texts)
    assert out.lengths.tolist() == [6, 3]
    assert out.token_ids.shape == (2, 6) and bool(out.mask[0].all())
    assert out.token_ids[0, 5] == enc.end_token_id
    torch.testing.assert_close(out.pooled, enc.tower(ids)[0])  # the end token's feature


def test_truncated_texts_end_at_the_context_length():
    enc = _tiny()
    out = enc([' '.join(['word'] * 100), 'sky'])
    assert out.lengths.tolist() == [77, 3]
    assert out.token_ids[0, -1] == enc.end_token_id


def test_short_sequences_give_open_clips_full_context_features():
    """Running only the positions a batch uses is exact because the tower is causal."""
    enc = _tiny()
    texts = ['a red circle on the left', 'sky']
    out = enc(texts)
    pooled, tokens = enc.tower(enc.tokenize(texts))  # open_clip: all 77 positions
    torch.testing.assert_close(out.pooled, pooled)
    torch.testing.assert_close(out.token_feats, tokens[:, :out.token_feats.shape[1]])
    prefix = enc.encode_ids(enc.tokenize(texts)[:, :3])
    torch.testing.assert_close(prefix, tokens[:, :3])


def test_incremental_encoding_gives_the_features_of_the_whole_prefix():
    """``encode_next_ids`` (a key/value cache for generation): a prefix of several ids, then
    one id per call, gives each position's features of one pass over the whole sequence."""
    enc = OpenCLIPTextEncoder(model_name='ViT-B-16', embed_dim=32,
                              text_cfg=dict(width=32, heads=2, layers=2))
    torch.nn.init.normal_(enc.tower.token_embedding.weight)
    ids = torch.randint(0, 49408, (2, 7), generator=torch.Generator().manual_seed(0))
    whole = enc.encode_ids(ids)
    assert enc.supports_incremental
    feats, past = enc.encode_next_ids(ids[:, :3])
    torch.testing.assert_close(feats, whole[:, :3])
    for t in range(3, 7):
        feats, past = enc.encode_next_ids(ids[:, t:t + 1], past)
        torch.testing.assert_close(feats, whole[:, t:t + 1])
    assert past[0][0].shape == (2, 2, 7, 16)  # per block: keys (N, heads, t, width / heads)
    with pytest.raises(ValueError, match='exceed the context length'):
        enc.encode_next_ids(ids.new_zeros(2, 71), past)


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


@pytest.mark.parametrize('train_templates', ['all', 'sample'])
def test_a_trained_tower_encodes_one_drawn_template_per_name_when_asked(train_templates,
                                                                         monkeypatch):
    templates = ('a photo of a {}.', 'a {} in a picture.', 'art of the {}.')
    enc = _tiny(templates=templates, frozen=False, train_templates=train_templates).train()
    prompts = []
    original = enc._run_tower
    monkeypatch.setattr(enc, '_run_tower', lambda t: prompts.append(len(t)) or original(t))
    names = ['circle', 'square', 'sky', 'sand']
    torch.manual_seed(0)
    trained = enc.encode_vocabulary(names)
    assert trained.requires_grad and trained.shape == (4, 32)
    torch.manual_seed(0)
    assert torch.equal(trained, enc.encode_vocabulary(names))  # drawn by torch's generator
    with torch.no_grad():  # evaluation: every template, averaged
        evaluated = enc.encode_vocabulary(names)
    sequences = {'all': 4 * 3, 'sample': 4}[train_templates]
    assert prompts == [sequences, sequences, 4 * 3]
    if train_templates == 'sample':
        # Each name's embedding is one of its templates' own.
        for name, embed in zip(names, trained.detach()):
            singles = [_single(enc, t.format(name)) for t in templates]
            assert any(torch.allclose(embed, single, atol=1e-6) for single in singles)
    else:
        torch.testing.assert_close(trained.detach(), evaluated)
    with pytest.raises(ValueError, match='train_templates must be one of'):
        _tiny(train_templates='random')


def _single(enc, prompt):
    with torch.no_grad():
        return torch.nn.functional.normalize(enc([prompt]).pooled[0], dim=-1)


def test_loading_weights_clears_the_vocabulary_cache():
    enc = _tiny()
    before = enc.encode_vocabulary(['circle'])
    other = _tiny()
    torch.nn.init.normal_(other.tower.token_embedding.weight)
    enc.load_state_dict(other.state_dict())
    after = enc.encode_vocabulary(['circle'])
    torch.testing.assert_close(after, other.encode_vocabulary(['circle']))
    assert not torch.allclose(before, after)


def test_layer_norm_eps_reaches_every_norm():
    enc = _tiny(layer_norm_eps=1e-12)
    norms = [m for m in enc.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(m.eps == 1e-12 for m in norms)


def test_empty_vocabulary_and_bad_template_are_errors():
    with pytest.raises(ValueError, match='empty'):
        _tiny().encode_vocabulary([])
    with pytest.raises(ValueError, match='slot'):
        _tiny(templates=('no slot',))


def test_loads_local_weights_and_rejects_foreign_ones(tmp_path):
    source = _tiny()
    full = {'visual.dummy': torch.zeros(1), **source.tower.state_dict()}
    torch.save(full, tmp_path / 'clip.pth')
    loaded = _tiny(pretrained=str(tmp_path / 'clip.pth'))
    assert torch.equal(loaded.tower.token_embedding.weight, source.tower.token_embedding.weight)
    torch.save({'other': torch.zeros(1)}, tmp_path / 'bad.pth')
    with pytest.raises(ValueError, match='missing'):
        _tiny(pretrained=str(tmp_path / 'bad.pth'))
    with pytest.raises(FileNotFoundError, match='put the file there'):
        _tiny(pretrained=str(tmp_path / 'absent.pth'))
