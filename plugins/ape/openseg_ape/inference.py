"""APE's inference task for ``tools/demo.py`` (the ``openseg_run_task`` hook)."""
from typing import Optional

import numpy as np

from openseg_core.inference import draw_overlay

from .models import APE, split_prompts

#: Detections below this score are left out of the report (the best one per prompt stays).
REPORT_THR = 0.1


def run_task(task: str, model, inputs, data_samples, options: dict) -> Optional[dict]:
    if task != 'prompts' or not isinstance(model, APE):
        return None
    prompts = split_prompts(options.get('text') or '')
    if not prompts:
        raise ValueError("task 'prompts' needs prompts: pass --text \"word,a sentence,...\"")
    results, pictures = [], []
    for instances, picture in zip(model.detect(inputs, data_samples, prompts),
                                  options.get('images') or [None] * len(data_samples)):
        best = {}
        for k, label in enumerate(instances.labels.tolist()):
            best.setdefault(label, k)  # detections come best first
        kept = [k for k in range(len(instances))
                if instances.scores[k] >= REPORT_THR or best.get(int(instances.labels[k])) == k]
        results.append(dict(detections=[
            dict(prompt=prompts[int(instances.labels[k])],
                 score=round(float(instances.scores[k]), 4),
                 box=[round(float(v), 1) for v in instances.bboxes[k]]) for k in kept]))
        if picture is None:
            pictures.append(None)
            continue
        # Each prompt's best detection, the better one on top where two overlap.
        ids = np.zeros(picture.shape[:2], dtype=np.int32)
        segments = []
        for label, k in sorted(best.items(), key=lambda item: -item[1]):
            ids[instances.masks[k].cpu().numpy()] = len(segments) + 1
            segments.append(dict(id=len(segments) + 1, label=prompts[label]))
        segments = [s for s in segments if (ids == s['id']).any()]
        pictures.append(np.asarray(draw_overlay(picture, ids, segments)))
    return dict(results=results, images=pictures)
