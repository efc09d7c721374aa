"""The base of every openseg model, whatever its family."""
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmdet.models.detectors import BaseDetector
from mmdet.structures import SampleList
from mmengine.dist import all_gather_object, get_world_size
from mmengine.structures import InstanceData

from .vocabulary import NoVocabularyError, Vocabulary


class OpenSegModel(BaseDetector):
    """mmdet's ``BaseDetector`` conventions plus a vocabulary chosen at run time.

    Subclasses implement mmdet's four methods: ``extract_feat(inputs)``,
    ``loss(inputs, data_samples) -> dict of losses``, ``predict(inputs, data_samples) ->
    data_samples`` (with ``pred_*`` fields of :class:`~openseg_core.structures.OpenSegDataSample`)
    and ``_forward(inputs, data_samples=None)`` (the raw network outputs, ``mode='tensor'``).
    ``forward(inputs, data_samples, mode)`` dispatches to them, as in mmdet.

    The classes are data, not architecture: :meth:`set_vocabulary` (called by
    ``VocabularyHook`` from each dataset's ``thing_classes`` / ``stuff_classes``, by
    ``Segmenter`` or by the user) chooses them; labels index ``things + stuff``. Models that
    classify nothing (captioning only) never call :meth:`require_vocabulary`.

    A model's loss module is its ``criterion`` (config key and attribute), so tools find it
    under one name.

    Args:
        thing_classes, stuff_classes: the initial vocabulary (optional).
        data_preprocessor: e.g. mmdet ``DetDataPreprocessor``.
    """

    def __init__(self, thing_classes: Sequence[str] = (), stuff_classes: Sequence[str] = (),
                 data_preprocessor: Optional[dict] = None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self._vocabulary: Optional[Vocabulary] = None
        if thing_classes or stuff_classes:
            self.set_vocabulary(thing_classes, stuff_classes)

    @property
    def vocabulary(self) -> Optional[Vocabulary]:
        """The current :class:`Vocabulary`, or ``None`` before one is set."""
        return self._vocabulary

    def set_vocabulary(self, things: Union[Vocabulary, Sequence[str]],
                       stuff: Sequence[str] = ()) -> None:
        """Classify into these names from now on (a :class:`Vocabulary`, or things + stuff).

        Raises:
            ValueError: an empty vocabulary, an empty or repeated name, or a name the model
                reserves (see :meth:`validate_vocabulary`).
        """
        vocabulary = things if isinstance(things, Vocabulary) else Vocabulary(
            tuple(things), tuple(stuff))
        self.validate_vocabulary(vocabulary)
        self._vocabulary = vocabulary

    def validate_vocabulary(self, vocabulary: Vocabulary) -> None:
        """Override to refuse names the model reserves (X-Decoder's "background")."""

    def require_vocabulary(self) -> Vocabulary:
        """The vocabulary, or a :class:`NoVocabularyError` that says how to set one."""
        if self._vocabulary is None:
            raise NoVocabularyError(
                f'{type(self).__name__} has no vocabulary: call set_vocabulary(things, stuff), '
                'give thing_classes/stuff_classes in the model config, or evaluate on a dataset '
                'whose metainfo names its classes (VocabularyHook)')
        return self._vocabulary

    def parse_losses(self, losses: Dict[str, torch.Tensor]
                     ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """mmengine's, with the logged values averaged over the processes of a distributed
        run, so that the log shows the global batch's losses (the loss to back-propagate stays
        this process's: the gradients are averaged by the model wrapper)."""
        loss, log_vars = super().parse_losses(losses)
        if get_world_size() > 1:
            # Objects, not a tensor all-reduce: processes may log different keys (a batch of
            # other tasks); each key is averaged over the processes that have it.
            gathered = all_gather_object({k: float(v) for k, v in log_vars.items()})
            log_vars = OrderedDict(
                (key, torch.tensor(sum(g[key] for g in gathered if key in g)
                                   / sum(key in g for g in gathered)))
                for key in dict.fromkeys(k for g in gathered for k in g))
        return loss, log_vars

    def add_pred_to_datasample(self, data_samples: SampleList,
                               results_list: List[Union[InstanceData, Dict]]) -> SampleList:
        """Store per-image results: an ``InstanceData`` becomes ``pred_instances`` (mmdet's
        behaviour); a dict sets each of its ``pred_*`` fields on the sample."""
        for sample, results in zip(data_samples, results_list):
            if isinstance(results, InstanceData):
                sample.pred_instances = results
                continue
            for field, value in results.items():
                setattr(sample, field, value)
        return data_samples
