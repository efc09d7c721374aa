"""The contracts between openseg's parts, as checks that can fail.

Every part registered by openseg or a plugin declares what it implements with
:func:`implements` and a tiny example configuration; ``tests/test_models/test_contracts.py``
builds every registered part from its example and runs the checks of its contracts
(timm's registry-wide model tests are the pattern). A plugin's parts are covered as soon as
the plugin is installed; a part that declares nothing fails that test.

A contract is a named check ``check(part, **inputs)`` that calls the part with documented
shapes and raises :class:`ContractError` when an output has the wrong type or shape. The
generic contracts are below; each model family documents and defines its own in its folder
(``mask_classification/contracts.py``, ``detection/contracts.py``,
``language/contracts.py``).

Shapes: ``B`` images, ``Q`` queries, ``C`` channels, ``K`` classes in the vocabulary,
``N`` texts, ``L`` tokens, ``D`` embedding width, ``V`` token vocabulary.

Generic contracts:

``Backbone``
    ``forward(images (B, 3, H, W))`` -> tuple of maps ``(B, C_i, H / s_i, W / s_i)``, one per
    declared stride ``s_i`` (inputs: ``strides``, ``channels``).
``TextEncoder``
    ``forward(texts: list of N str)`` -> :class:`~openseg_core.models.text_encoders.
    TextEncoderOutput` (``token_feats (N, L, W)``, ``pooled (N, D)``, ``token_ids (N, L)``,
    ``mask (N, L)`` True on real tokens, from the texts' lengths); ``encode_vocabulary(names)``
    -> ``(K, D)`` unit rows; ``embed_dim`` = ``D``.
``Model``
    An :class:`~openseg_core.models.base.OpenSegModel`: ``loss(inputs, samples)`` -> dict of
    finite scalar tensors that back-propagate; ``predict(inputs, samples)`` -> the samples with
    the prediction fields of each task it declares (inputs: ``tasks`` among ``panoptic``,
    ``referring``, ``captioning``): ``pred_panoptic_seg`` / ``pred_sem_seg`` /
    ``pred_instances`` at the original size, ``pred_instances.masks (1, H, W)``,
    ``pred_caption`` and ``pred_image_embed (D,)``.
``DataPreprocessor``
    ``forward({'inputs': [uint8 (3, H_i, W_i)], 'data_samples': [...]}, training)`` -> a float
    batch ``(B, 3, H, W)`` padded to the divisor, with targets padded to it too.
``Loss``
    A loss part is called as its contract (e.g. ``losses.ImageTextContrastive``) says and
    returns a finite scalar.
"""
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch
from torch import Tensor

__all__ = ['Contract', 'ContractError', 'ContractSpec', 'CONTRACTS', 'contract', 'implements',
           'declared_specs', 'check_contract', 'expect', 'expect_shape']


class ContractError(AssertionError):
    """A part's output breaks its contract."""


@dataclass(frozen=True)
class Contract:
    """A named check: ``check(part, **inputs)`` raises :class:`ContractError` on a break."""
    name: str
    check: Callable[..., None]
    doc: str = ''


#: Every contract defined so far, by name (families add theirs when imported).
CONTRACTS: Dict[str, Contract] = {}


def contract(name: str) -> Callable:
    """Register the decorated ``check(part, **inputs)`` function as the contract ``name``."""
    def register(check: Callable) -> Callable:
        if name in CONTRACTS:
            raise KeyError(f'contract {name!r} is defined twice')
        CONTRACTS[name] = Contract(name, check, (check.__doc__ or '').strip())
        return check
    return register


@dataclass(frozen=True)
class ContractSpec:
    """What a class declares: the contracts it implements and how to build a tiny one.

    ``example`` is the constructor's keyword arguments, or a config name
    (``'<scope>::<path>'``) whose ``model`` is built; ``inputs`` are passed to the checks
    (sizes the example implies, e.g. ``channels``). ``covered_by`` names the model whose
    contract check exercises a part that only runs inside it; then nothing else is checked.
    """
    contracts: Tuple[str, ...]
    example: Union[dict, str, None] = None
    inputs: Dict[str, Any] = field(default_factory=dict)
    covered_by: Optional[str] = None


_SPECS_ATTR = '__openseg_contracts__'


def implements(*contracts: str, example: Union[dict, str, None] = None,
               inputs: Optional[dict] = None, covered_by: Optional[str] = None) -> Callable:
    """Class decorator: declare the contracts a part implements, with a tiny example.

    Stack it to declare several examples (e.g. softmax and sigmoid variants). Declarations
    are not inherited: a subclass declares its own.
    """
    if not contracts and covered_by is None:
        raise ValueError('implements() needs at least one contract name or covered_by')
    if example is None and covered_by is None:
        raise ValueError('implements() needs an example to build the part from')

    def declare(cls):
        specs = list(cls.__dict__.get(_SPECS_ATTR, ()))
        specs.append(ContractSpec(tuple(contracts), example, dict(inputs or {}), covered_by))
        setattr(cls, _SPECS_ATTR, tuple(specs))
        return cls
    return declare


def declared_specs(cls) -> Tuple[ContractSpec, ...]:
    """The declarations of ``cls`` itself (not of its bases)."""
    return tuple(cls.__dict__.get(_SPECS_ATTR, ()))


def build_example(cls, spec: ContractSpec):
    """A tiny instance of ``cls`` from its declaration."""
    if isinstance(spec.example, str):
        from mmengine.config import Config

        from openseg_core.plugins import resolve_config
        from openseg_core.registry import MODELS
        return MODELS.build(Config.fromfile(resolve_config(spec.example)).model)
    return cls(**spec.example)


def check_contract(part, name: str, **inputs) -> None:
    """Run the contract ``name`` on ``part`` (raises :class:`ContractError`)."""
    _import_family_contracts()
    if name not in CONTRACTS:
        raise ContractError(f'{type(part).__name__} declares unknown contract {name!r}; '
                            f'known: {sorted(CONTRACTS)}')
    CONTRACTS[name].check(part, **inputs)


def _import_family_contracts() -> None:
    for family in ('mask_classification', 'detection', 'language'):
        importlib.import_module(f'openseg_core.models.{family}.contracts')


# ----------------------------------------------------------------------- check helpers
def expect(condition: bool, message: str) -> None:
    """Raise :class:`ContractError` with ``message`` unless ``condition``."""
    if not condition:
        raise ContractError(message)


def expect_shape(value, shape: Tuple, what: str) -> None:
    """``value`` is a tensor of ``shape`` (``None`` entries match any size)."""
    expect(isinstance(value, Tensor), f'{what} must be a Tensor, got {type(value).__name__}')
    expect(value.dim() == len(shape) and all(s is None or s == v
                                             for s, v in zip(shape, value.shape)),
           f'{what} must have shape {shape}, got {tuple(value.shape)}')


def expect_finite(value: Tensor, what: str) -> None:
    expect(bool(torch.isfinite(value).all()), f'{what} has NaN or Inf values')


# ----------------------------------------------------------------------- generic contracts
@contract('Backbone')
def check_backbone(part, strides=(4, 8, 16, 32), channels=None, size=64) -> None:
    """``(B, 3, H, W)`` -> one ``(B, C_i, H / s_i, W / s_i)`` map per stride."""
    part.eval()
    with torch.no_grad():
        feats = part(torch.randn(2, 3, size, size))
    expect(isinstance(feats, (tuple, list)), 'a backbone returns a tuple of feature maps')
    expect(len(feats) == len(strides), f'{len(feats)} maps for strides {strides}')
    for i, (feat, stride) in enumerate(zip(feats, strides)):
        expect_shape(feat, (2, channels[i] if channels else None, size // stride,
                            size // stride), f'map {i} (stride {stride})')


@contract('TextEncoder')
def check_text_encoder(part) -> None:
    """Strings -> token features, pooled features and a mask from the texts' lengths;
    ``encode_vocabulary`` -> unit ``(K, D)``."""
    part.eval()
    texts = ['a red square', 'sky', 'a dog!?!']
    with torch.no_grad():
        out = part(texts)
        longest = int(out.mask.sum(1).max())
        expect(out.token_feats.shape[:2] == out.mask.shape == out.token_ids.shape,
               'token_feats, mask and token_ids must cover the same (N, L) tokens')
        expect(out.mask.shape[0] == 3 and out.mask.shape[1] == longest,
               f'(N, L) must be (3, longest text) = (3, {longest}), got '
               f'{tuple(out.mask.shape)}')
        expect(bool(out.mask[:, 0].all()), 'every text has at least its first token')
        expect(int(out.mask[1].sum()) < int(out.mask[0].sum()),
               'the mask must follow each text\'s length ("sky" is shorter)')
        expect_shape(out.pooled, (3, part.embed_dim), 'pooled')
        vocab = part.encode_vocabulary(['circle', 'square'])
        expect_shape(vocab, (2, part.embed_dim), 'encode_vocabulary')
        expect(torch.allclose(vocab.norm(dim=-1), torch.ones(2), atol=1e-4),
               'encode_vocabulary rows must be unit vectors')


@contract('Model')
def check_model(part, tasks=('panoptic',), size=64) -> None:
    """``loss`` gives finite scalars that back-propagate; ``predict`` fills each task's
    prediction fields."""
    from openseg_core.testing.synthetic import synthetic_batch
    part.train()
    if 'panoptic' in tasks:
        part.set_vocabulary(['circle', 'square'], ['sky'])
    for task in tasks:
        inputs, samples = synthetic_batch(task, batch=2, size=size)
        losses = part.loss(inputs, samples)
        expect(isinstance(losses, dict) and losses, f'{task}: loss() must return a dict')
        total = 0
        for key, value in losses.items():
            expect(isinstance(value, Tensor) and value.dim() == 0,
                   f'{task}: loss {key!r} must be a scalar tensor')
            expect_finite(value, f'{task}: loss {key!r}')
            if 'loss' in key:
                total = total + value
        expect(isinstance(total, Tensor) and total.requires_grad,
               f'{task}: no loss requires grad')
        total.backward()
    part.eval()
    for task in tasks:
        inputs, samples = synthetic_batch(task, batch=2, size=size)
        with torch.no_grad():
            out = part.predict(inputs, samples)
        for sample in out:
            height, width = sample.metainfo['ori_shape']
            if task == 'panoptic':
                for name in ('pred_panoptic_seg', 'pred_sem_seg'):
                    expect(name in sample, f'panoptic: predict() sets no {name}')
                    expect_shape(sample.get(name).sem_seg, (1, height, width), name)
                expect('pred_instances' in sample, 'panoptic: predict() sets no pred_instances')
            elif task == 'referring':
                expect_shape(sample.pred_instances.masks, (1, height, width),
                             'referring: pred_instances.masks')
            elif task == 'captioning':
                expect(isinstance(sample.get('pred_caption'), str),
                       'captioning: predict() sets no pred_caption (str)')
                expect_shape(sample.get('pred_image_embed'), (None,),
                             'captioning: pred_image_embed')
    part.train()


@contract('DataPreprocessor')
def check_data_preprocessor(part, pad_size_divisor=32) -> None:
    """uint8 images of different sizes -> one padded float batch; masks padded alike."""
    from openseg_core.testing.synthetic import raw_samples
    data = raw_samples(sizes=((40, 50), (64, 30)))
    out = part(data, True)
    inputs = out['inputs']
    expect(inputs.dtype.is_floating_point, 'inputs must be float')
    expect(inputs.shape[0] == 2 and all(s % pad_size_divisor == 0 for s in inputs.shape[-2:]),
           f'inputs must be (2, 3, H, W) padded to {pad_size_divisor}, got '
           f'{tuple(inputs.shape)}')
    for sample in out['data_samples']:
        if 'gt_instances' in sample and 'masks' in sample.gt_instances:
            expect(tuple(sample.gt_instances.masks.masks.shape[-2:])
                   == tuple(inputs.shape[-2:]), 'gt masks must be padded to the batch')
