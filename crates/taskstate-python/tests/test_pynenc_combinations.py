"""pynenc 0.1.0's end-to-end combination suite with TaskstateStateBackend.

``pynenc_tests.integration.combinations.all_tests`` runs real tasks under
every runner pynenc has (ThreadRunner, MultiThreadRunner, ProcessRunner,
PersistentProcessRunner, ...). ``app_combination_instance``
(tests/conftest.py) keeps pynenc's components and puts taskstate in place of
the state backend. The only skip added here is the one pynenc itself makes
for Mem backends (see the fixture); pynenc's own in-test skips stay as they
are.
"""

from pynenc_tests.integration.combinations.all_tests import *  # noqa: F403
