"""``TaskstateStateBackend``: pynenc 0.1.0's state backend on taskstate.

Switch a pynenc app to it with one setting and a URL::

    PYNENC__STATE_BACKEND_CLS=TaskstateStateBackend
    PYNENC__TASKSTATE_URL=sqlite:///var/lib/app/state.db

Every method forwards to the Rust engine (``pynenc_taskstate._native``),
which converts pynenc's objects directly and releases the GIL while the
engine works. The SQLite engine reads and writes the very file format of
pynenc's own ``SQLiteStateBackend``, so both can share one file.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from pynenc.app_info import AppInfo
from pynenc.state_backend.base_state_backend import BaseStateBackend, InvocationHistory
from pynenc.types import Params, Result

from pynenc_taskstate._native import Store
from pynenc_taskstate.conf import ConfigStateBackendTaskstate
from pynenc_taskstate.errors import NotFoundError

if TYPE_CHECKING:
    from pynenc.app import Pynenc
    from pynenc.identifiers.invocation_id import InvocationId
    from pynenc.identifiers.task_id import TaskId
    from pynenc.invocation.dist_invocation import InvocationDTO
    from pynenc.models.call_dto import CallDTO
    from pynenc.runner.runner_context import RunnerContext
    from pynenc.workflow import WorkflowIdentity

# memory:// stores of this process, one per app id. pynenc keeps one app per
# app id per process, but builds its state backend lazily without a lock:
# two threads touching ``app.state_backend`` first can build two backends.
# With a durable store both see the same state; with memory they must share
# the store too, or one thread's writes vanish for the other (seen in
# pynenc's combination suite: "The invocation wasn't stored").
_MEMORY_STORES: weakref.WeakValueDictionary[str, Store] = weakref.WeakValueDictionary()
_MEMORY_LOCK = threading.Lock()


def open_store(url: str, app_id: str) -> Store:
    """The store at ``url``; for ``memory://`` this process's store of
    ``app_id`` (made on first use)."""
    if not url.startswith("memory:"):
        return Store(url)
    with _MEMORY_LOCK:
        store = _MEMORY_STORES.get(app_id)
        if store is None:
            store = Store(url)
            _MEMORY_STORES[app_id] = store
        return store


def resolve_url(conf: ConfigStateBackendTaskstate) -> str:
    """The store URL a configuration names.

    ``taskstate_url`` when set; else ``sqlite://`` at pynenc's
    ``sqlite_db_path`` when that is set (so an app configured for pynenc's
    SQLite backend switches with the class name alone).

    :raises ValueError: when neither is set: there is no safe default for
        a store shared by workers.
    """
    if conf.taskstate_url:
        return conf.taskstate_url
    if conf.sqlite_db_path:
        return f"sqlite://{conf.sqlite_db_path}"
    raise ValueError(
        "TaskstateStateBackend needs a store URL: set taskstate_url "
        "(PYNENC__TASKSTATE_URL), e.g. sqlite:///var/lib/app/state.db, "
        "postgres://user@host/db or memory://"
    )


def _pages(fetch: Any, start: datetime, end: datetime, batch_size: int) -> Iterator[list[Any]]:
    """Every non-empty page of a keyset-paged native query, following its
    cursor until there is none."""
    cursor = None
    while True:
        items, cursor = fetch(start, end, cursor, batch_size)
        if items:
            yield items
        if cursor is None:
            return


class TaskstateStateBackend(BaseStateBackend[Params, Result]):
    """
    A pynenc state backend stored by taskstate's Rust engines.

    ``memory://`` keeps the state in this process, one store per app id
    (like ``MemStateBackend``);
    ``sqlite://PATH`` in pynenc's own SQLite file format, safe across threads
    and processes; ``postgres://…`` on a PostgreSQL server for workers on
    many hosts.
    """

    def __init__(self, app: Pynenc) -> None:
        super().__init__(app)
        self.url = resolve_url(self.conf)
        self._open()

    # The hot paths skip a Python frame: the native methods already take and
    # return pynenc's own objects and raise the exceptions pynenc expects.
    _FAST_PATHS = (
        "get_history",
        "get_result",
        "get_exception",
        "set_result",
        "set_exception",
        "add_histories",
        "upsert_invocations",
    )

    def _open(self) -> None:
        """Opens the store at ``self.url`` and binds the fast paths to it."""
        self._store = open_store(self.url, self.app.app_id)
        for name in self._FAST_PATHS:
            setattr(self, "_" + name, getattr(self._store, name))

    @cached_property
    def conf(self) -> ConfigStateBackendTaskstate:  # type: ignore[override]
        return ConfigStateBackendTaskstate(
            config_values=self.app.config_values,
            config_filepath=self.app.config_filepath,
        )

    def __getstate__(self) -> dict[str, Any]:
        # A store is a live connection: process runners pickle the app and
        # reopen the store by URL in the child.
        state = self.__dict__.copy()
        for name in ("_store", *("_" + n for n in self._FAST_PATHS)):
            state.pop(name, None)
        state["invocation_threads"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        from collections import defaultdict

        self.__dict__.update(state)
        self.invocation_threads = defaultdict(list)
        self._open()

    # ---- maintenance -------------------------------------------------------

    def purge(self) -> None:
        """Deletes everything the store holds (app infos and runner contexts
        included); the backend stays usable."""
        self._store.purge()
        self._runner_context_cache.clear()

    def prune(
        self,
        older_than: timedelta | None = None,
        *,
        before: datetime | None = None,
        dry_run: bool = False,
        chunk: int = 50,
    ) -> dict[str, int]:
        """Deletes finished, old state while workers keep writing (taskstate's
        retention; pynenc itself only offers ``purge``): every workflow tree
        whose invocations all reached a final status at or before the cutoff
        (``before``, or now minus ``older_than``), with its history, results,
        exceptions, workflow runs, sub-invocation links and workflow data, and
        orphan rows as old. App infos and runner contexts stay. Works in
        transactions of ``chunk`` trees; ``dry_run`` only counts.

        Returns the counts of what was (or would be) deleted, by kind::

            backend.prune(timedelta(days=30))
            # {'trees': 812, 'invocations': 1290, 'history': 5160, ...}
        """
        if (older_than is None) == (before is None):
            raise ValueError("give exactly one of older_than and before")
        cutoff = before if before is not None else datetime.now(UTC) - older_than  # type: ignore[operator]
        return dict(self._store.prune(cutoff, dry_run, chunk))

    # ---- invocations -------------------------------------------------------

    def _upsert_invocations(self, entries: list[tuple[InvocationDTO, CallDTO]]) -> None:
        self._store.upsert_invocations(entries)

    def _get_invocation(self, invocation_id: InvocationId) -> tuple[InvocationDTO, CallDTO] | None:
        return self._store.get_invocation(invocation_id)

    def get_child_invocations(self, parent_invocation_id: InvocationId) -> Iterator[InvocationId]:
        return iter(self._store.get_child_invocations(parent_invocation_id))

    def get_invocation_ids_by_workflow(
        self,
        workflow_id: str | None = None,
        workflow_type_key: str | None = None,
    ) -> Iterator[InvocationId]:
        return iter(self._store.get_invocation_ids_by_workflow(workflow_id, workflow_type_key))

    # ---- history -----------------------------------------------------------

    def _add_histories(self, invocation_ids: list[InvocationId], invocation_history: InvocationHistory) -> None:
        # ONE record under EVERY id, as pynenc's own backends store it.
        self._store.add_histories(list(invocation_ids), invocation_history)

    def _get_history(self, invocation_id: InvocationId) -> list[InvocationHistory]:
        return self._store.get_history(invocation_id)

    def iter_invocations_in_timerange(
        self,
        start_time: datetime,
        end_time: datetime,
        batch_size: int = 100,
    ) -> Iterator[list[InvocationId]]:
        return _pages(self._store.invocation_ids_page, start_time, end_time, batch_size)

    def iter_history_in_timerange(
        self,
        start_time: datetime,
        end_time: datetime,
        batch_size: int = 100,
    ) -> Iterator[list[InvocationHistory]]:
        return _pages(self._store.history_page, start_time, end_time, batch_size)

    # ---- results and exceptions ------------------------------------------

    def _get_result(self, invocation_id: InvocationId) -> str:
        return self._store.get_result(invocation_id)

    def _set_result(self, invocation_id: InvocationId, serialized_result: str) -> None:
        self._store.set_result(invocation_id, serialized_result)

    def _get_exception(self, invocation_id: InvocationId) -> str:
        return self._store.get_exception(invocation_id)

    def _set_exception(self, invocation_id: InvocationId, serialized_exception: str) -> None:
        self._store.set_exception(invocation_id, serialized_exception)

    # ---- workflows ---------------------------------------------------------

    def set_workflow_data(self, workflow_identity: WorkflowIdentity, key: str, value: Any) -> None:
        serialized = self.app.client_data_store.serialize(value)
        self._store.set_workflow_data(workflow_identity.workflow_id, key, serialized)

    def get_workflow_data(self, workflow_identity: WorkflowIdentity, key: str, default: Any = None) -> Any:
        stored = self._store.get_workflow_data(workflow_identity.workflow_id, key)
        if stored is None:
            return default
        return self.app.client_data_store.deserialize(stored)

    def store_workflow_run(self, workflow_identity: WorkflowIdentity) -> None:
        self._store.store_workflow_run(workflow_identity)

    def get_all_workflow_types(self) -> Iterator[TaskId]:
        return iter(self._store.get_all_workflow_types())

    def get_all_workflow_runs(self) -> Iterator[WorkflowIdentity]:
        return iter(self._store.get_all_workflow_runs())

    def get_workflow_runs(self, workflow_type: TaskId) -> Iterator[WorkflowIdentity]:
        return iter(self._store.get_workflow_runs(workflow_type))

    def store_workflow_sub_invocation(self, parent_workflow_id: InvocationId, sub_invocation_id: InvocationId) -> None:
        self._store.store_workflow_sub_invocation(parent_workflow_id, sub_invocation_id)

    def get_workflow_sub_invocations(self, workflow_id: InvocationId) -> Iterator[InvocationId]:
        return iter(self._store.get_workflow_sub_invocations(workflow_id))

    # ---- apps ----------------------------------------------------------------

    def store_app_info(self, app_info: AppInfo) -> None:
        self._store.store_app_info(app_info.to_json())

    def get_app_info(self) -> AppInfo:
        """This app's info; ``KeyError`` (``NotFoundError``) if not stored."""
        return AppInfo.from_json(self._store.get_app_info(self.app.app_id))

    @staticmethod
    def discover_app_infos() -> dict[str, AppInfo]:
        """Every app registered in the store the default configuration names
        (the environment and config file), or, for ``memory://``, in every
        live memory store of this process."""
        url = resolve_url(ConfigStateBackendTaskstate())
        stores = list(_MEMORY_STORES.values()) if url.startswith("memory:") else [Store(url)]
        apps: dict[str, AppInfo] = {}
        for store in stores:
            for app_id, info_json in store.discover_app_infos():
                apps[app_id] = AppInfo.from_json(info_json)
        return apps

    # ---- runner contexts -----------------------------------------------------

    def _store_runner_context(self, runner_context: RunnerContext) -> None:
        self._store.store_runner_context(runner_context)

    def _get_runner_context(self, runner_id: str) -> RunnerContext | None:
        return self._store.get_runner_context(runner_id)

    def _get_runner_contexts(self, runner_ids: list[str]) -> list[RunnerContext]:
        return self._store.get_runner_contexts(list(runner_ids))

    def get_matching_runner_contexts(self, partial_id: str) -> Iterator[RunnerContext]:
        return iter(self._store.get_matching_runner_contexts(partial_id))


__all__ = ["TaskstateStateBackend", "NotFoundError", "resolve_url"]
