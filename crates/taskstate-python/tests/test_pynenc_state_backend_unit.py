"""pynenc 0.1.0's unit state-backend suite, run against TaskstateStateBackend.

``pynenc_tests.unit.state_backend.all_tests`` is the set pynenc exports for
state-backend plugins; ``app_instance`` (tests/conftest.py) runs every test
on memory://, sqlite:// and postgres://. Nothing is deselected.
"""

from pynenc_tests.unit.state_backend.all_tests import *  # noqa: F403
