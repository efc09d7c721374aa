"""openseg's model layer: a generic layer (:mod:`.base`, :mod:`.interfaces`, text encoders,
losses, matching) and one folder per model family (:mod:`.mask_classification`,
:mod:`.detection`, :mod:`.language`). Backbones and pixel decoders are mmdet's, used by
name."""
from .backbones import *  # noqa: F401,F403
from .base import *  # noqa: F401,F403
from .clip import MODEL_CONFIG_DIR  # noqa: F401  (registers openseg's CLIP architectures)
from .data_preprocessors import *  # noqa: F401,F403
from .detection import *  # noqa: F401,F403
from .language import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .mask_classification import *  # noqa: F401,F403
from .task_modules import *  # noqa: F401,F403
from .text_encoders import *  # noqa: F401,F403
