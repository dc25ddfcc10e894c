"""Exceptions raised by the taskstate engines.

Each is a pynenc ``StateBackendError`` and also the builtin a caller already
catches for that situation, so code written against pynenc's own backends
keeps working: a missing result or exception is a ``KeyError`` (as in
pynenc's ``SQLiteStateBackend``), bad input a ``ValueError``, a lost server a
``ConnectionError``.
"""

from pynenc.exceptions import StateBackendError


class TaskstateError(StateBackendError):
    """Base class of every error the taskstate engines raise."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def _to_json_dict(self) -> dict:
        return {"message": self.message}


class NotFoundError(TaskstateError, KeyError):
    """The invocation, result, exception or app info is not stored."""


class InvalidInputError(TaskstateError, ValueError):
    """The call's input breaks a rule of the contract (nothing was stored)."""


class CorruptDataError(TaskstateError):
    """A stored row cannot be decoded; the message names table and key."""


class UnavailableError(TaskstateError, ConnectionError):
    """The store cannot be reached now (retrying may succeed)."""


class UnsupportedError(TaskstateError, NotImplementedError):
    """The engine cannot do this."""


class IncompatibleStoreError(TaskstateError):
    """The store was written by a newer taskstate, or is not a store."""


class StorageError(TaskstateError, OSError):
    """The storage layer failed (disk, file, SQL error)."""


__all__ = [
    "TaskstateError",
    "NotFoundError",
    "InvalidInputError",
    "CorruptDataError",
    "UnavailableError",
    "UnsupportedError",
    "IncompatibleStoreError",
    "StorageError",
]
