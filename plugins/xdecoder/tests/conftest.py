# The core's session fixtures (plugin loading, the generated shapes dataset) and helpers.
from tests.conftest import openseg_scope, run_tool, shapes_root  # noqa: F401
