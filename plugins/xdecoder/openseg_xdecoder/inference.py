"""X-Decoder's inference tasks for ``tools/demo.py`` (the ``openseg_run_task`` hook)."""
from typing import Optional

import torch

from .models import XDecoder

TEXT_TASKS = ('referring', 'retrieval', 'region_retrieval', 'referring_captioning')


def _masks_at_image_size(model: XDecoder, logits, inputs, samples, indices=None) -> list:
    """Per image a ``(H, W)`` bool array, or ``None`` for images without a mask."""
    out = [None] * len(samples)
    indices = range(len(samples)) if indices is None else indices
    for logit, i in zip(logits, indices):
        out[i] = model.mask_to_image(logit, inputs.shape[-2:], samples[i].metainfo).cpu().numpy()
    return out


def run_task(task: str, model, inputs, data_samples, options: dict) -> Optional[dict]:
    if not isinstance(model, XDecoder):
        return None
    text, beam = options.get('text'), options.get('beam_size')
    if task in TEXT_TASKS and not (text and text.strip()):
        raise ValueError(f'task {task!r} needs a phrase: pass --text "..."')
    batch = len(data_samples)
    if task == 'captioning':
        feats = model.extract_feat(inputs)
        return dict(results=[dict(caption=c) for c in model.caption(feats, beam)])
    if task == 'referring':
        masks, scores = model.refer(model.extract_feat(inputs), [text] * batch)
        return dict(results=[dict(score=round(float(s), 4)) for s in scores],
                    masks=_masks_at_image_size(model, masks, inputs, data_samples))
    if task == 'retrieval':
        scores = (model.image_embeddings(model.extract_feat(inputs))
                  @ model.text_embeddings([text])[0])
        ranks = torch.argsort(torch.argsort(scores, descending=True))
        return dict(results=[dict(score=round(float(s), 4), rank=int(r) + 1)
                             for s, r in zip(scores, ranks)])
    if task == 'region_retrieval':
        out = model.region_retrieval(inputs, text, topk=options.get('topk', 1))
        kept = out['indices'].tolist()
        return dict(results=[dict(score=round(float(s), 4), retrieved=i in kept)
                             for i, s in enumerate(out['scores'])],
                    masks=_masks_at_image_size(model, out['masks'], inputs, data_samples,
                                               kept))
    if task == 'referring_captioning':
        out = model.referring_caption(inputs, [text] * batch, beam)
        return dict(results=[dict(caption=c) for c in out['captions']],
                    masks=_masks_at_image_size(model, out['masks'], inputs, data_samples))
    return None
