"""pynenc-taskstate: taskstate's Rust engines as a pynenc 0.1.0 state backend.

Switch a pynenc app with one setting and a URL::

    PYNENC__STATE_BACKEND_CLS=TaskstateStateBackend
    PYNENC__TASKSTATE_URL=sqlite:///var/lib/app/state.db   # or memory://, postgres://...

or in code::

    Pynenc(config_values={
        "state_backend_cls": "TaskstateStateBackend",
        "taskstate_url": "sqlite:///var/lib/app/state.db",
    })
"""

from pynenc_taskstate._native import Store
from pynenc_taskstate.conf import ConfigStateBackendTaskstate
from pynenc_taskstate.errors import (
    CorruptDataError,
    IncompatibleStoreError,
    InvalidInputError,
    NotFoundError,
    StorageError,
    TaskstateError,
    UnavailableError,
    UnsupportedError,
)
from pynenc_taskstate.state_backend import TaskstateStateBackend

__all__ = [
    "Store",
    "TaskstateStateBackend",
    "ConfigStateBackendTaskstate",
    "TaskstateError",
    "NotFoundError",
    "InvalidInputError",
    "CorruptDataError",
    "UnavailableError",
    "UnsupportedError",
    "IncompatibleStoreError",
    "StorageError",
]
