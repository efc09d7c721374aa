"""The language models behind PixelLLM: a KV cache changes nothing, decoder-only models work
the same way, LoRA goes where the official code puts it, missing weights fail in one line."""
import pytest
import torch

from openseg_core.models.language import StepOutput, generate
from openseg_pixelllm.models import CausalLanguageModel, T5LanguageModel

pytestmark = pytest.mark.usefixtures('single_thread')

T5_TINY = dict(vocab_size=40, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_decoder_layers=2,
               num_heads=4, dropout_rate=0.0, decoder_start_token_id=0, eos_token_id=1,
               pad_token_id=0)
GPT2_TINY = dict(model_type='gpt2', vocab_size=40, n_embd=16, n_layer=2, n_head=2,
                 n_positions=64, bos_token_id=1, eos_token_id=1)


def _state(lm, batch=2):
    torch.manual_seed(1)
    prefix = torch.randn(batch, 5, lm.d_model)
    context = torch.tensor([[7, 8, 9, 1], [7, 1, 0, 0]])[:batch]
    return lm.encode(prefix, context, context > 0)


@pytest.mark.parametrize('lm', [T5LanguageModel(config=T5_TINY),
                                CausalLanguageModel(config=GPT2_TINY)],
                         ids=['t5', 'gpt2'])
def test_decoding_with_a_kv_cache_matches_the_full_pass(lm):
    torch.manual_seed(0)
    lm.eval()
    state = _state(lm)
    ids = torch.tensor([[lm.start_id, 5, 6, 7], [lm.start_id, 9, 3, 2]])
    with torch.no_grad():
        full_logits, full_hidden, _ = lm.decode(state, ids)
        cache, steps = None, []
        for t in range(ids.shape[1]):
            logits, hidden, cache = lm.decode(state, ids[:, t:t + 1] if cache is not None
                                              else ids[:, :1], cache, use_cache=True)
            steps.append((logits[:, -1], hidden[:, -1]))
    for t, (logits, hidden) in enumerate(steps):
        torch.testing.assert_close(logits, full_logits[:, t], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(hidden, full_hidden[:, t], atol=1e-5, rtol=1e-4)

    # beam search through the core's generate: the same hypotheses with and without cache
    def stepper(use_cache):
        beam_state = lm.repeat(state, 3)

        def step(ids, cache):
            logits, hidden, cache = lm.decode(beam_state, ids, cache, use_cache=use_cache)
            return StepOutput(logits[:, -1], cache, hidden[:, -1])
        return step

    start = torch.full((2, 1), lm.start_id)
    cached = generate(stepper(True), start, lm.end_id, 6, beam_size=3, collect_hidden=True)
    plain = generate(stepper(False), start, lm.end_id, 6, beam_size=3, collect_hidden=True)
    assert cached.sequences == plain.sequences
    for a, b in zip(cached.hidden_states, plain.hidden_states):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_decoder_only_prompt_is_left_padded_and_positions_count_real_tokens():
    lm = CausalLanguageModel(config=GPT2_TINY).eval()
    prefix = torch.randn(2, 3, 16)
    context = torch.tensor([[7, 8, 1], [7, 1, 0]])
    prompt, mask = lm.encode(prefix, context, context > 0)
    assert mask.tolist() == [[True] * 6, [False] + [True] * 5]
    # the second row alone (no padding) gives the same next-token logits
    alone, alone_mask = lm.encode(prefix[1:], context[1:, :2], context[1:, :2] > 0)
    ids = torch.tensor([[lm.start_id, 4]])
    with torch.no_grad():
        both, _, _ = lm.decode((prompt, mask), ids.repeat(2, 1))
        single, _, _ = lm.decode((alone, alone_mask), ids)
    torch.testing.assert_close(both[1], single[0], atol=1e-5, rtol=1e-4)


def test_lora_sits_on_q_and_v_of_every_t5_attention():
    lm = T5LanguageModel(config=T5_TINY, frozen=True,
                         lora=dict(r=2, lora_alpha=4, target_modules=['q', 'v']))
    from openseg_pixelllm.models.language_models import lora_target_names
    names = lora_target_names(lm.model)
    kinds = {n.split('.layer.')[1].split('.', 1)[1] for n in names}
    assert kinds == {'SelfAttention.q', 'SelfAttention.v', 'EncDecAttention.q',
                     'EncDecAttention.v'}
    assert len([n for n in names if n.startswith('encoder.')]) == 2 * 2  # self-attention only
    assert len([n for n in names if n.startswith('decoder.')]) == 2 * 4  # self + cross
    trainable = [n for n, p in lm.named_parameters() if p.requires_grad]
    assert trainable and all('.lora_' in n for n in trainable)
    # B starts at zero: the adapted model equals the base one
    base = T5LanguageModel(config=T5_TINY)
    base.load_state_dict({k.replace('.base_layer', ''): v for k, v in lm.state_dict().items()
                          if '.lora_' not in k})
    state = _state(base)
    ids = torch.tensor([[0, 5, 6], [0, 2, 3]])
    with torch.no_grad():
        torch.testing.assert_close(lm.decode(_state(lm), ids)[0], base.decode(state, ids)[0])
    with pytest.raises(ValueError, match='frozen=True'):
        T5LanguageModel(config=T5_TINY, lora=dict(r=2, target_modules=['q']))


def test_missing_language_model_files_fail_in_one_line(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        T5LanguageModel(pretrained=str(tmp_path / 'flan-t5-xl'))
    message = str(err.value)
    assert '\n' not in message and 'config.json' in message and 'model.safetensors' in message
