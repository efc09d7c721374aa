"""Every part openseg and its installed plugins register honours the contracts it declares
(timm's registry-wide tests are the pattern): a plugin's parts are covered on install."""
import pytest
import torch
from torch import nn

from openseg_core.models.interfaces import (CONTRACTS, ContractError, build_example,
                                            check_contract, declared_specs, implements)
from openseg_core.plugins import load_plugins
from openseg_core.registry import CORE_REGISTRIES, SCOPE

#: Registries whose entries are model parts (datasets, metrics and hooks have their own tests).
PART_REGISTRIES = ('MODELS', 'TASK_UTILS')


def _registered_parts():
    load_plugins()
    parts = []
    for attr in PART_REGISTRIES:
        registry = CORE_REGISTRIES[attr]
        scopes = [(SCOPE, registry)] + sorted(registry._children.items())
        for scope, reg in scopes:
            for name, cls in sorted(reg._module_dict.items()):
                parts.append(pytest.param(cls, id=name if scope == SCOPE else f'{scope}.{name}'))
    return parts


PARTS = _registered_parts()


@pytest.mark.parametrize('cls', PARTS)
def test_part_honours_its_contracts(cls):
    specs = declared_specs(cls)
    assert specs, (f'{cls.__module__}.{cls.__name__} is registered but declares no contract: '
                   'decorate it with openseg_core.models.interfaces.implements(...)')
    for spec in specs:
        if spec.covered_by is not None:
            covering = [p.values[0] for p in PARTS if p.id == spec.covered_by]
            assert covering, f'{cls.__name__} is covered_by {spec.covered_by!r}, not registered'
            continue
        torch.manual_seed(0)
        part = build_example(cls, spec)
        if hasattr(part, 'init_weights'):
            part.init_weights()
        for name in spec.contracts:
            check_contract(part, name, **spec.inputs)


def test_the_contracts_are_documented():
    for name, contract in CONTRACTS.items():
        assert contract.doc, f'contract {name} has no docstring'


@implements('mask_classification.ClassificationHead', example=dict())
class ForgetsNoObject(nn.Module):
    """Says softmax but returns K columns: the criterion would train "no object" on a class."""
    classification = 'softmax'
    appends_no_object = True

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(16, 8)

    def forward(self, query_embeds, class_embeds):
        return self.proj(query_embeds) @ class_embeds.t()


class DropsALayer(nn.Module):
    """A query decoder whose output forgets the learned queries' own prediction."""

    def __init__(self):
        super().__init__()
        from openseg_core.models import MaskedAttentionQueryDecoder
        from openseg_core.models.mask_classification.query_decoder import TINY_DECODER
        self.inner = MaskedAttentionQueryDecoder(num_queries=5, embed_dims=16,
                                                 memory_channels=16,
                                                 transformer_decoder=TINY_DECODER)
        self.decoder, self.num_feature_levels = self.inner.decoder, 3

    def forward(self, mask_features, memories):
        out = self.inner(mask_features, memories)
        out.query_embeds, out.mask_logits = out.query_embeds[1:], out.mask_logits[1:]
        return out


def test_a_wrong_part_fails_its_contract():
    head = build_example(ForgetsNoObject, declared_specs(ForgetsNoObject)[0])
    with pytest.raises(ContractError, match=r'shape \(2, 5, 5\)'):
        check_contract(head, 'mask_classification.ClassificationHead', channels=16,
                       embed_dim=8)
    with pytest.raises(ContractError, match='3 predictions'):
        check_contract(DropsALayer(), 'mask_classification.QueryDecoder', channels=16)


def test_declarations_are_not_inherited():
    class Child(ForgetsNoObject):
        pass
    assert declared_specs(ForgetsNoObject) and not declared_specs(Child)
