"""Contracts of the language family: text decoders that generate (X-Decoder captioning,
PixelLLM), through the core's shared decoding (:mod:`.generation`).

Data flow and shapes::

    prefix (image / region features) + token ids (N, t)
    --step(ids, cache)--> StepOutput(logits (N, V), cache, hidden (N, D))
    --generation.generate(step, prefix_ids (B, t0), end_id, ...)-->
        GenerationOutput(sequences, scores (B,), hidden_states [(T_i, D)])
    --a per-token head (e.g. PixelLLM's trace head) on hidden states (B, T, D)-->
        points (B, T, P, 2)

``CausalTextEncoder``
    A text encoder whose token features are causal (position ``t`` depends on tokens
    ``<= t`` only) and whose token-embedding table scores next tokens:
    ``encode_ids(ids (N, t)) -> (N, t, W)``, ``token_embedding_table (V, W)``,
    ``start_token_id``, ``end_token_id``, ``tokenize(texts) -> (N, L)``, ``decode(ids) -> str``.
"""
import torch

from ..interfaces import contract, expect, expect_shape


@contract('language.CausalTextEncoder')
def check_causal_text_encoder(part) -> None:
    """Token features of a prefix do not change when tokens are appended; ids round-trip
    through ``decode``."""
    part.eval()
    table = part.token_embedding_table
    expect_shape(table, (None, None), 'token_embedding_table')
    ids = part.tokenize(['a red square'])
    length = int((ids[0] == part.end_token_id).nonzero()[0]) + 1
    expect(int(ids[0, 0]) == part.start_token_id, 'tokenize() starts with start_token_id')
    with torch.no_grad():
        full = part.encode_ids(ids[:, :length])
        prefix = part.encode_ids(ids[:, :length - 2])
    expect_shape(full, (1, length, table.shape[1]), 'encode_ids')
    expect(torch.allclose(full[:, :length - 2], prefix, atol=1e-5),
           'token features must be causal (a prefix encodes the same alone)')
    expect(part.decode(ids[0, 1:length - 1].tolist()) == 'a red square',
           'decode(tokenize(text)) must give the text back')
