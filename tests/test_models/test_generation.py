"""Greedy and beam search shared by the language models (``openseg_core.models.language``)."""
import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput

from openseg_core.models.language import StepOutput, generate

V, EOS, MAX_NEW = 50, 1, 8


# Small tensors: one intra-op thread is faster, and much faster on busy shared CPUs.
pytestmark = pytest.mark.usefixtures('single_thread')


def _cut(rows, end):
    """Hugging Face's output rows -> generated ids cut before ``end``."""
    return [row[:row.index(end)] if end in row else row for row in rows.tolist()]


class Task:
    """A tiny model, three fixed inputs, and how to decode them with either search."""

    def end_met_by_some(self):
        """An end token that the first sequence greedily generates after its first token and
        another never does: some sequences end early, others run to ``MAX_NEW``."""
        rows = self.hf_generate(max_new_tokens=MAX_NEW)[:, self.prefix.shape[1]:].tolist()
        return next(t for t in rows[0][1:]
                    if t != rows[0][0] and any(t not in row for row in rows[1:]))


class T5Task(Task):
    """The tiny T5 decoding three fixed random sources; the decoder starts from token 0."""

    def __init__(self, model):
        self.model = model
        self.src = torch.randint(2, V, (3, 5), generator=torch.Generator().manual_seed(1))
        self.memory = model.get_encoder()(input_ids=self.src).last_hidden_state
        self.prefix = torch.zeros(3, 1, dtype=torch.long)
        self.end = self.end_met_by_some()

    def step(self, beam_size=1, use_cache=True):
        memory = BaseModelOutput(last_hidden_state=self.memory.repeat_interleave(beam_size, 0))

        def step(ids, cache):
            out = self.model(encoder_outputs=memory, decoder_input_ids=ids, cache=cache,
                             use_cache=use_cache, output_hidden_states=True)
            return StepOutput(out.logits[:, -1], out.cache if use_cache else None,
                              out.decoder_hidden_states[-1][:, -1])
        return step

    def hf_generate(self, **kwargs):
        return self.model.generate(input_ids=self.src, do_sample=False, **kwargs)

    def hidden(self, i, ids):
        """``(t, D)`` decoder last hidden states of sequence ``i`` teacher-forced on ``ids``."""
        memory = BaseModelOutput(last_hidden_state=self.memory[i:i + 1])
        out = self.model(encoder_outputs=memory, decoder_input_ids=ids[None], use_cache=False,
                         output_hidden_states=True)
        return out.decoder_hidden_states[-1][0]


class GPT2Task(Task):
    """The tiny GPT-2 continuing three fixed random 4-token prompts."""

    def __init__(self, model):
        self.model = model
        self.prefix = torch.randint(2, V, (3, 4), generator=torch.Generator().manual_seed(1))
        self.end = self.end_met_by_some()

    def step(self, beam_size=1, use_cache=True):
        # Nothing per sequence to repeat for the beams: the prompt is the prefix.
        def step(ids, cache):
            out = self.model(input_ids=ids, cache=cache, use_cache=use_cache,
                             output_hidden_states=True)
            return StepOutput(out.logits[:, -1], out.cache if use_cache else None,
                              out.hidden_states[-1][:, -1])
        return step

    def hf_generate(self, **kwargs):
        return self.model.generate(input_ids=self.prefix, attention_mask=torch.ones_like(
            self.prefix), do_sample=False, **kwargs)

    def hidden(self, i, ids):
        return self.model(input_ids=ids[None], use_cache=False,
                          output_hidden_states=True).hidden_states[-1][0]


@pytest.fixture(scope='module')
def t5():
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(
        vocab_size=V, d_model=16, d_ff=32, num_layers=2, num_heads=2, d_kv=8,
        decoder_start_token_id=0, eos_token_id=EOS, pad_token_id=0, dropout_rate=0.0)).eval()
    # Hugging Face's initialisation makes a T5 this small repeat one token forever; wider
    # weights give the searches different paths to choose between.
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, 0.2)
    return T5Task(model)


@pytest.fixture(scope='module')
def gpt2():
    torch.manual_seed(1)
    return GPT2Task(GPT2LMHeadModel(GPT2Config(
        vocab_size=V, n_positions=32, n_embd=16, n_layer=2, n_head=2, bos_token_id=0,
        eos_token_id=EOS, pad_token_id=0, initializer_range=0.2, resid_pdrop=0.0,
        embd_pdrop=0.0, attn_pdrop=0.0)).eval())


@pytest.mark.parametrize('name', ['t5', 'gpt2'])
@pytest.mark.parametrize('no_repeat', [0, 2])
def test_greedy_with_and_without_cache_matches_transformers(name, no_repeat, request):
    task = request.getfixturevalue(name)
    cached = generate(task.step(), task.prefix, task.end, MAX_NEW,
                      no_repeat_ngram_size=no_repeat)
    uncached = generate(task.step(use_cache=False), task.prefix, task.end, MAX_NEW,
                        no_repeat_ngram_size=no_repeat)
    hf = task.hf_generate(max_new_tokens=MAX_NEW, eos_token_id=task.end,
                          no_repeat_ngram_size=no_repeat)
    assert cached.sequences == uncached.sequences == _cut(hf[:, task.prefix.shape[1]:],
                                                           task.end)
    torch.testing.assert_close(cached.scores, uncached.scores)
    lengths = [len(s) for s in cached.sequences]
    assert min(lengths) < MAX_NEW == max(lengths)


@pytest.mark.parametrize('name', ['t5', 'gpt2'])
def test_beam_search_with_and_without_cache_agree(name, request):
    task = request.getfixturevalue(name)
    cached = generate(task.step(3), task.prefix, task.end, MAX_NEW, beam_size=3)
    uncached = generate(task.step(3, use_cache=False), task.prefix, task.end, MAX_NEW,
                        beam_size=3)
    assert cached.sequences == uncached.sequences
    torch.testing.assert_close(cached.scores, uncached.scores)
    # The beams took a path greedy decoding did not, so their cache rows were reordered.
    assert cached.sequences != generate(task.step(), task.prefix, task.end, MAX_NEW).sequences


@pytest.mark.parametrize('name', ['t5', 'gpt2'])
@pytest.mark.parametrize('length_penalty, no_repeat', [(1.0, 0), (0.5, 2)])
def test_beam_search_matches_transformers_while_no_hypothesis_ends(name, length_penalty,
                                                                   no_repeat, request):
    """The searches differ once a hypothesis ends early (module docstring); with an end token
    the model never ranks high they must agree on sequences and scores."""
    task = request.getfixturevalue(name)

    def never_end(module, args, logits):
        return logits.index_fill(-1, torch.tensor([EOS]), -1e4)

    handle = task.model.lm_head.register_forward_hook(never_end)
    try:
        ours = generate(task.step(3), task.prefix, EOS, MAX_NEW, beam_size=3,
                        length_penalty=length_penalty, no_repeat_ngram_size=no_repeat)
        hf = task.hf_generate(max_new_tokens=MAX_NEW, num_beams=3,
                              length_penalty=length_penalty, no_repeat_ngram_size=no_repeat,
                              output_scores=True, return_dict_in_generate=True)
    finally:
        handle.remove()
    assert ours.sequences == hf.sequences[:, task.prefix.shape[1]:].tolist()
    torch.testing.assert_close(ours.scores, hf.sequences_scores)


@pytest.mark.parametrize('name', ['t5', 'gpt2'])
@pytest.mark.parametrize('beam_size', [1, 3])
def test_hidden_states_are_those_of_a_teacher_forced_pass(name, beam_size, request):
    """Row ``j`` of a sequence's hidden states is the state that predicted its token ``j``;
    a sequence that ended has one more row, the state that predicted the end token."""
    task = request.getfixturevalue(name)
    out = generate(task.step(beam_size), task.prefix, task.end, MAX_NEW, beam_size=beam_size,
                   collect_hidden=True)
    assert any(len(s) < MAX_NEW for s in out.sequences)
    start = task.prefix.shape[1] - 1  # the position predicting the first generated token
    for i, (seq, hidden) in enumerate(zip(out.sequences, out.hidden_states)):
        assert len(hidden) == len(seq) + (len(seq) < MAX_NEW)
        forced = task.hidden(i, torch.cat([task.prefix[i], torch.tensor(seq, dtype=torch.long)]))
        torch.testing.assert_close(hidden, forced[start:start + len(hidden)])


START, END, A, B, C, D = range(6)


def table_step(table):
    """A model whose next-token probabilities over the 6 tokens depend on the last token only:
    ``table[last token]``, uniform if absent."""
    def step(ids, cache):
        rows = [table.get(int(t), [1 / 6] * 6) for t in ids[:, -1]]
        return StepOutput(torch.tensor(rows).clamp(min=1e-9).log())
    return step


def test_beam_search_finds_the_sequence_greedy_misses():
    # A (0.6) looks best first, but nothing is likely after it; B (0.4) surely ends:
    # P(A A ...) <= .6 * .35 < P(B END) = .4.
    step = table_step({START: [0, 0, .6, .4, 0, 0], A: [0, .33, .35, .32, 0, 0],
                       B: [0, 1, 0, 0, 0, 0]})
    prefix = torch.full((2, 1), START)
    greedy = generate(step, prefix, END, 2, length_penalty=0.0)
    assert greedy.sequences == [[A, A]] * 2
    torch.testing.assert_close(greedy.scores, torch.tensor([math.log(.6 * .35)] * 2))
    beam = generate(step, prefix, END, 5, beam_size=3, length_penalty=0.0)
    assert beam.sequences == [[B]] * 2
    torch.testing.assert_close(beam.scores, torch.tensor([math.log(.4)] * 2))


def test_length_penalty_divides_by_the_length_including_the_end_token():
    # "A END": log .55 over 2 tokens; "B C END": log .45 over 3 tokens (higher per token).
    step = table_step({START: [0, 0, .55, .45, 0, 0], A: [0, 1, 0, 0, 0, 0],
                       B: [0, 0, 0, 0, 1, 0], C: [0, 1, 0, 0, 0, 0]})
    prefix = torch.full((1, 1), START)
    plain = generate(step, prefix, END, 4, beam_size=2, length_penalty=0.0)
    assert plain.sequences == [[A]]
    torch.testing.assert_close(plain.scores, torch.tensor([math.log(.55)]))
    per_token = generate(step, prefix, END, 4, beam_size=2, length_penalty=1.0)
    assert per_token.sequences == [[B, C]]
    torch.testing.assert_close(per_token.scores, torch.tensor([math.log(.45) / 3]))


@pytest.mark.parametrize('beam_size', [1, 3])
def test_no_repeat_ngram_size_blocks_repeated_ngrams(beam_size):
    # A and B call each other; C and D are the next best choices; the end is unlikely.
    step = table_step({START: [0, 0, .7, .1, .1, .1], A: [0, 0, .02, .7, .18, .1],
                       B: [0, 0, .7, .02, .1, .18], C: [0, 0, .3, .3, .2, .2],
                       D: [0, 0, .3, .3, .2, .2]})
    prefix = torch.full((1, 1), START)
    free = generate(step, prefix, END, 6, beam_size=beam_size).sequences[0]
    assert free == [A, B, A, B, A, B]
    for n in (1, 2, 3):
        seq = generate(step, prefix, END, 6, beam_size=beam_size,
                       no_repeat_ngram_size=n).sequences[0]
        # n = 1: A, B, C and D once each, then only the end token is left.
        assert len(seq) == (4 if n == 1 else 6)
        grams = [tuple(([START] + seq)[i:i + n]) for i in range(len(seq) + 2 - n)]
        assert len(set(grams)) == len(grams), (n, seq)


@pytest.mark.parametrize('beam_size', [1, 2])
def test_end_token_stops_a_sequence_and_finished_rows_never_leak(beam_size):
    # After the end token the model would say C or D: a finished row must neither continue
    # with them nor be scored for them. A starts "B END" (.9) or "C END" (.1); D repeats.
    table = {A: [0, 0, 0, .9, .1, 0], B: [0, 1, 0, 0, 0, 0], C: [0, 1, 0, 0, 0, 0],
             END: [0, 0, 0, 0, .6, .4], D: [0, 0, .05, .05, 0, .9]}
    calls = []

    def step(ids, cache):
        calls.append(ids.shape[1])
        return table_step(table)(ids, cache)

    out = generate(step, torch.tensor([[A], [D]]), END, 5, beam_size=beam_size)
    assert out.sequences == [[B], [D] * 5]
    torch.testing.assert_close(out.scores, torch.tensor([math.log(.9) / 2, math.log(.9)]))
    calls.clear()
    out = generate(step, torch.tensor([[A], [A]]), END, 5, beam_size=beam_size)
    assert out.sequences == [[B], [B]]
    assert calls == [1, 2]  # stops once every sequence has ended


def test_plain_tensor_caches_follow_the_beams():
    """A model with its own nested cache: a recurrent state over the whole history."""
    logits = torch.randn(7, 6, generator=torch.Generator().manual_seed(0)) * 3

    def step(ids, cache, use_cache=True):
        state = torch.zeros(len(ids), dtype=torch.long) if cache is None else cache['layers'][0][0]
        for token in ids.T:
            state = (3 * state + token) % 7
        return StepOutput(logits[state], dict(layers=[(state,)]) if use_cache else None)

    prefix = torch.tensor([[2], [3]])
    cached = generate(step, prefix, END, 6, beam_size=3)
    uncached = generate(lambda ids, cache: step(ids, cache, False), prefix, END, 6, beam_size=3)
    assert cached.sequences == uncached.sequences
    torch.testing.assert_close(cached.scores, uncached.scores)
