"""pynenc 0.1.0's integration state-backend suite, run against
TaskstateStateBackend on memory://, sqlite:// and postgres:// (see
tests/conftest.py). Nothing is deselected.
"""

from pynenc_tests.integration.state_backend.all_tests import *  # noqa: F403
