"""Language models from ``transformers`` that read a visual prefix: an encoder-decoder (T5,
PixelLLM's default) and any decoder-only model, frozen or tuned with LoRA (``peft``).

Both expose the same three operations, which :class:`~.pixel_llm.PixelLLM` uses for training,
generation (through the core's :func:`~openseg_core.models.language.generate`, with a KV
cache) and traces::

    encode(prefix (B, P, D), context_ids (B, L), context_mask (B, L)) -> state
    decode(state, ids (B, T), cache=None, use_cache=False)
        -> logits (B, T, V), hidden (B, T, D), cache
    repeat(state, k) -> the state of each sequence repeated k times (beams)

``hidden`` is the state the language-model head reads (after the final norm), the input of
PixelLLM's trace head. Token conventions are T5's: ``start_id`` begins every decoded sequence
(T5's decoder start, id 0), ``end_id`` ends it.
"""
import inspect
import os
from typing import Optional, Sequence, Tuple

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn

from openseg_core.models.base import FrozenPartsMixin
from openseg_core.models.interfaces import contract, expect, expect_shape, implements

from ..registry import MODELS

#: Files of a local ``transformers`` model directory: the config and one weights format.
CONFIG_FILE = 'config.json'
WEIGHT_FILES = ('model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin',
                'pytorch_model.bin.index.json')


def check_model_dir(path: str, what: str) -> None:
    """Raise one ``FileNotFoundError`` line naming every file a local model directory lacks."""
    missing = []
    if not os.path.isfile(os.path.join(path, CONFIG_FILE)):
        missing.append(os.path.join(path, CONFIG_FILE))
    if not any(os.path.isfile(os.path.join(path, f)) for f in WEIGHT_FILES):
        missing.append(os.path.join(path, '{' + ','.join(WEIGHT_FILES) + '}'))
    if missing:
        raise FileNotFoundError(
            f'{what}: missing {" and ".join(missing)}; put the model saved with '
            f"save_pretrained() (e.g. the Hugging Face repository's files) in {path}")


@contract('pixelllm.PrefixLanguageModel')
def check_prefix_language_model(part) -> None:
    """``encode(prefix, context)`` then ``decode(state, ids)`` -> ``(B, T, V)`` logits and
    ``(B, T, D)`` states; decoding token by token with the KV cache gives the same."""
    part.eval()
    prefix = torch.randn(2, 3, part.d_model)
    context = torch.tensor([[4, 5, part.end_id], [4, part.end_id, part.pad_id]])
    ids = torch.tensor([[part.start_id, 6, 7], [part.start_id, 8, 9]])
    with torch.no_grad():
        state = part.encode(prefix, context, torch.tensor([[1, 1, 1], [1, 1, 0]]).bool())
        logits, hidden, _ = part.decode(state, ids)
        _, _, cache = part.decode(state, ids[:, :2], use_cache=True)
        step, step_hidden, _ = part.decode(state, ids[:, 2:], cache, use_cache=True)
    expect_shape(logits, (2, 3, part.vocab_size), 'logits')
    expect_shape(hidden, (2, 3, part.d_model), 'hidden')
    expect(torch.allclose(step[:, 0], logits[:, 2], atol=1e-4)
           and torch.allclose(step_hidden[:, 0], hidden[:, 2], atol=1e-4),
           'decoding with the KV cache must give the full pass\'s logits and states')


def _cache_argument(forward) -> str:
    """transformers renamed ``past_key_values`` to ``cache`` (5.2x); use the name this
    version takes."""
    return 'cache' if 'cache' in inspect.signature(forward).parameters else 'past_key_values'


def _returned_cache(out):
    cache = getattr(out, 'cache', None)
    return cache if cache is not None else getattr(out, 'past_key_values', None)


def _lora_config(lora: dict):
    from peft import LoraConfig
    cfg = dict(lora)
    cfg.setdefault('lora_dropout', 0.0)
    cfg.setdefault('bias', 'none')
    return LoraConfig(**cfg)


class _PrefixLanguageModel(FrozenPartsMixin, BaseModule):
    """What both kinds share: building from a config or a local directory, freezing, LoRA."""

    #: ``transformers`` auto class of the wrapped model.
    auto_class = None

    def __init__(self, config: Optional[dict], pretrained: Optional[str], frozen: bool,
                 lora: Optional[dict], init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if (config is None) == (pretrained is None):
            raise ValueError('give the language model either a config (a random model) or '
                             'pretrained (a local directory), not both')
        self.model = self._build(config, pretrained)
        self.pretrained = pretrained
        self.d_model = self.model.get_input_embeddings().weight.shape[1]
        self.vocab_size = self.model.get_input_embeddings().weight.shape[0]
        trainable = ()
        if lora:
            from peft import inject_adapter_in_model
            inject_adapter_in_model(_lora_config(lora), self.model)
            trainable = (r'\.lora_(A|B|embedding_A|embedding_B)\.',)
        if frozen:
            self.freeze('model', source=pretrained, trainable=trainable)
        elif lora:
            raise ValueError('LoRA adapts a frozen language model: set frozen=True with lora')

    def _build(self, config: Optional[dict], pretrained: Optional[str]):
        import transformers
        if pretrained is not None:
            check_model_dir(pretrained, f'{type(self).__name__} pretrained')
            cls = getattr(transformers, self.auto_class)
            return cls.from_pretrained(pretrained, local_files_only=True)
        return self._from_config(config)

    def _from_config(self, config: dict):
        raise NotImplementedError

    @property
    def lora_parameters(self):
        return [p for n, p in self.model.named_parameters() if '.lora_' in n]


@implements('pixelllm.PrefixLanguageModel', example=dict(config=dict(
    vocab_size=12, d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2, dropout_rate=0.0)))
@MODELS.register_module()
class T5LanguageModel(_PrefixLanguageModel):
    """A T5-family encoder-decoder (``T5ForConditionalGeneration``) with the visual prefix
    and a short text context as its encoder input, as PixelLLM's released models do.

    Args:
        config: ``T5Config`` keyword arguments for a randomly initialised model (tests, the
            tiny configs).
        pretrained: a local directory saved with ``save_pretrained`` (e.g. Flan-T5-XL).
        frozen: freeze the model (the frozen-part convention); with ``lora``, only the
            adapters train.
        lora: ``peft.LoraConfig`` keyword arguments; PixelLLM's: ``r=32, lora_alpha=64,
            target_modules=['q', 'v']`` (q and v of encoder self-attention and decoder self-
            and cross-attention).
    """

    auto_class = 'T5ForConditionalGeneration'
    start_id = 0
    end_id = 1
    pad_id = 0

    def __init__(self, config: Optional[dict] = None, pretrained: Optional[str] = None,
                 frozen: bool = False, lora: Optional[dict] = None, init_cfg=None):
        super().__init__(config, pretrained, frozen, lora, init_cfg=init_cfg)
        config = self.model.config
        self.start_id = getattr(config, 'decoder_start_token_id', None) or 0
        self.end_id = getattr(config, 'eos_token_id', None)
        self.end_id = 1 if self.end_id is None else self.end_id
        # PixelLLM's traces read the decoder state after the final norm and before dropout,
        # which transformers applies inside the stack: keep the norm's output.
        self._normed = None
        self.model.decoder.final_layer_norm.register_forward_hook(self._keep_normed)

    def _keep_normed(self, module, args, output) -> None:
        self._normed = output

    def _from_config(self, config: dict):
        from transformers import T5Config, T5ForConditionalGeneration
        return T5ForConditionalGeneration(T5Config(**config))

    def encode(self, prefix: Tensor, context_ids: Tensor, context_mask: Tensor) -> tuple:
        """``(B, P, D)`` prefix + ``(B, L)`` context tokens -> ``(encoded (B, P + L, D),
        mask (B, P + L))``."""
        embeds = torch.cat([prefix, self.model.shared(context_ids)], dim=1)
        mask = torch.cat([torch.ones(prefix.shape[:2], dtype=torch.bool,
                                     device=prefix.device), context_mask.bool()], dim=1)
        encoded = self.model.encoder(inputs_embeds=embeds, attention_mask=mask.long())
        return encoded.last_hidden_state, mask

    def repeat(self, state: tuple, k: int) -> tuple:
        return tuple(s.repeat_interleave(k, 0) for s in state)

    def decode(self, state: tuple, ids: Tensor, cache=None,
               use_cache: bool = False) -> Tuple[Tensor, Tensor, object]:
        encoded, mask = state
        out = self.model.decoder(input_ids=ids, encoder_hidden_states=encoded,
                                 encoder_attention_mask=mask.long(), use_cache=use_cache,
                                 **{_cache_argument(self.model.decoder.forward): cache})
        hidden = out.last_hidden_state
        config = self.model.config
        if getattr(config, 'scale_decoder_outputs', getattr(config, 'tie_word_embeddings',
                                                            False)):
            hidden = hidden * (config.d_model ** -0.5)
        logits = self.model.lm_head(hidden)
        return logits, self._normed, (_returned_cache(out) if use_cache else None)


@implements('pixelllm.PrefixLanguageModel', example=dict(config=dict(
    model_type='gpt2', vocab_size=12, n_embd=8, n_layer=1, n_head=2, n_positions=32,
    bos_token_id=1, eos_token_id=1)))
@MODELS.register_module()
class CausalLanguageModel(_PrefixLanguageModel):
    """A decoder-only language model (``AutoModelForCausalLM``: GPT-2, LLaMA, ...) reading
    ``[prefix, context, start token, text]`` as one sequence.

    The prefix and context of each sample are left-padded together so that every text starts
    at the same position; position ids count real tokens only. The start token is the
    tokenizer's end token (GPT-2's ``<|endoftext|>`` convention) unless ``start_id`` says.

    Args:
        config: ``{'model_type': 'gpt2', ...}`` for a random model (``AutoConfig.for_model``).
        pretrained, frozen, lora: as :class:`T5LanguageModel` (LoRA ``target_modules`` name
            the model's own projections, e.g. ``['c_attn']`` for GPT-2).
        start_id, end_id: token ids; default the model config's BOS / EOS.
    """

    auto_class = 'AutoModelForCausalLM'
    pad_id = 0

    def __init__(self, config: Optional[dict] = None, pretrained: Optional[str] = None,
                 frozen: bool = False, lora: Optional[dict] = None,
                 start_id: Optional[int] = None, end_id: Optional[int] = None, init_cfg=None):
        super().__init__(config, pretrained, frozen, lora, init_cfg=init_cfg)
        cfg = self.model.config
        self.end_id = end_id if end_id is not None else getattr(cfg, 'eos_token_id', None)
        if self.end_id is None:
            raise ValueError('CausalLanguageModel: the model config has no eos_token_id; give '
                             'end_id')
        bos = getattr(cfg, 'bos_token_id', None)
        self.start_id = start_id if start_id is not None else (
            bos if bos is not None else self.end_id)

    def _from_config(self, config: dict):
        from transformers import AutoConfig, AutoModelForCausalLM
        config = dict(config)
        return AutoModelForCausalLM.from_config(AutoConfig.for_model(config.pop('model_type'),
                                                                     **config))

    def encode(self, prefix: Tensor, context_ids: Tensor, context_mask: Tensor) -> tuple:
        """-> ``(prompt (B, S, D), mask (B, S))``, left-padded."""
        embeds = torch.cat([prefix, self.model.get_input_embeddings()(context_ids)], dim=1)
        mask = torch.cat([torch.ones(prefix.shape[:2], dtype=torch.bool,
                                     device=prefix.device), context_mask.bool()], dim=1)
        # Move each row's padding to its left end (stable: real tokens keep their order).
        order = torch.argsort(mask.long(), dim=1, stable=True)
        embeds = torch.gather(embeds, 1, order[..., None].expand_as(embeds))
        return embeds, torch.gather(mask, 1, order)

    def repeat(self, state: tuple, k: int) -> tuple:
        return tuple(s.repeat_interleave(k, 0) for s in state)

    def decode(self, state: tuple, ids: Tensor, cache=None,
               use_cache: bool = False) -> Tuple[Tensor, Tensor, object]:
        prompt, prompt_mask = state
        rows, steps = ids.shape
        past = 0 if cache is None else cache.get_seq_length()
        if cache is None:
            embeds = torch.cat([prompt, self.model.get_input_embeddings()(ids)], dim=1)
            new = prompt.shape[1] + steps
        else:
            embeds = self.model.get_input_embeddings()(ids)
            new = steps
        mask = torch.cat([prompt_mask.long(), torch.ones(rows, past + new - prompt.shape[1],
                                                         dtype=torch.long,
                                                         device=ids.device)], dim=1)
        positions = (mask.cumsum(1) - 1).clamp(min=0)[:, -new:]
        backbone = self.model.base_model
        out = backbone(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                       use_cache=use_cache, **{_cache_argument(backbone.forward): cache})
        hidden = out.last_hidden_state[:, -steps:]
        logits = self.model.get_output_embeddings()(hidden)
        return logits, hidden, (_returned_cache(out) if use_cache else None)


def lora_target_names(model: nn.Module) -> Sequence[str]:
    """Names of the modules holding LoRA adapters (for reports and tests)."""
    return sorted({n.rsplit('.lora_', 1)[0] for n, _ in model.named_parameters()
                   if '.lora_' in n})
