# The core's session fixtures (plugin loading, the generated shapes dataset).
from tests.conftest import openseg_scope, shapes_root  # noqa: F401
