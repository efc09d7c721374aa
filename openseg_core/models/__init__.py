"""openseg's generic model parts. Backbones and pixel decoders are mmdet's, used by name."""
from .data_preprocessors import *  # noqa: F401,F403
from .heads import *  # noqa: F401,F403
from .layers import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .matchers import *  # noqa: F401,F403
from .query_decoders import *  # noqa: F401,F403
from .segmentors import *  # noqa: F401,F403
from .text_encoders import *  # noqa: F401,F403
