"""What pynenc's suites miss: errors as Python exceptions, hostile and large
values, configuration, threads -- on every engine URL."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from conftest import taskstate_app
from pynenc.identifiers.call_id import CallId
from pynenc.identifiers.task_id import TaskId
from pynenc.invocation.status import InvocationStatus, InvocationStatusRecord
from pynenc.models.call_dto import CallDTO
from pynenc.models.invocation_dto import InvocationDTO
from pynenc.runner.runner_context import RunnerContext
from pynenc.state_backend.base_state_backend import InvocationHistory
from pynenc.workflow import WorkflowIdentity
from pynenc_taskstate import (
    CorruptDataError,
    InvalidInputError,
    NotFoundError,
    Store,
    TaskstateError,
    TaskstateStateBackend,
    UnavailableError,
)
from pynenc_taskstate.state_backend import resolve_url
from pynenc_taskstate.conf import ConfigStateBackendTaskstate

ENGINES = pytest.mark.parametrize("taskstate_url", ["memory", "sqlite", "postgres"], indirect=True)

HOSTILE = [
    "",
    "plain",
    "héllo wörld ✓ 🌍 \U0001f9ea",
    "\"double\" 'single' \\back\\slash",
    "'; DROP TABLE state_backend_results; --",
    "%_\\ LIKE wildcards",
    "\x01\x02\x1f control \t\n\r",
    "<script>alert(1)</script>",
    "\ud7ff\ue000\uffff",
]


def backend(url: str) -> TaskstateStateBackend:
    sb = taskstate_app(url).state_backend
    assert isinstance(sb, TaskstateStateBackend)
    return sb


def pair(inv_id: str, args: dict[str, str], parent: str | None = None) -> tuple[InvocationDTO, CallDTO]:
    task = TaskId("tests.módulo", "fünc")
    call_id = CallId(task_id=task, args_id=f"args-{inv_id}")
    inv = InvocationDTO(
        invocation_id=inv_id,
        call_id=call_id,
        workflow=WorkflowIdentity(workflow_id=inv_id, workflow_type=task),
        parent_invocation_id=parent,
    )
    return inv, CallDTO(call_id=call_id, serialized_arguments=args)


def record(inv_id: str, status: InvocationStatus, ts: datetime) -> InvocationHistory:
    h = InvocationHistory(
        invocation_id=inv_id,
        status_record=InvocationStatusRecord(status=status, runner_id="r-1", timestamp=ts),
        runner_context_id="r-1",
    )
    h._timestamp = ts
    return h


@ENGINES
def test_missing_things_raise_what_pynenc_raises(taskstate_url: str) -> None:
    sb = backend(taskstate_url)
    with pytest.raises(KeyError) as e:
        sb._get_result("nope")
    assert isinstance(e.value, NotFoundError) and isinstance(e.value, TaskstateError)
    assert "nope" in str(e.value)
    with pytest.raises(KeyError):
        sb._get_exception("nope")
    assert sb._get_invocation("nope") is None
    assert sb.get_history("nope") == []
    assert sb.get_runner_context("nope") is None
    assert sb.get_workflow_data(WorkflowIdentity("w", TaskId("m", "f")), "k", "dflt") == "dflt"
    assert list(sb.get_child_invocations("nope")) == []


@ENGINES
def test_bad_input_is_a_value_error_and_stores_nothing(taskstate_url: str) -> None:
    sb = backend(taskstate_url)
    good, bad = pair("good", {}), pair("", {})
    with pytest.raises(ValueError) as e:
        sb._upsert_invocations([good, bad])
    assert isinstance(e.value, InvalidInputError)
    assert sb._get_invocation("good") is None, "a refused batch stores nothing"
    with pytest.raises(ValueError):
        sb._add_histories(["ok", ""], record("ok", InvocationStatus.RUNNING, datetime.now(UTC)))
    assert sb.get_history("ok") == []
    with pytest.raises(ValueError):
        sb._set_result("x" * 2000, "too long an id")
    with pytest.raises(ValueError):
        list(sb.iter_history_in_timerange(datetime.now(UTC), datetime.now(UTC), batch_size=0))


@ENGINES
def test_hostile_and_large_values_round_trip(taskstate_url: str) -> None:
    sb = backend(taskstate_url)
    megabyte = ("✓🌍 and some ascii " * 70_000)[: 1 << 20]
    values = [v for v in HOSTILE if v] + [megabyte]
    for i, v in enumerate(values):
        inv_id = f"inv-{i}-{v[:20]}"
        args = {"a": v, v[:50] or "k": "x", "b": megabyte if i == 0 else "1"}
        sb._upsert_invocations([pair(inv_id, args)])
        inv, call = sb._get_invocation(inv_id)
        assert inv.invocation_id == inv_id
        assert call.serialized_arguments == args
        assert list(call.serialized_arguments) == list(args), "argument order kept"
        sb._set_result(inv_id, v)
        assert sb._get_result(inv_id) == v
        sb._set_exception(inv_id, v)
        assert sb._get_exception(inv_id) == v
        wf = WorkflowIdentity(inv_id, TaskId("m", "f"))
        sb.set_workflow_data(wf, v[:100] or "empty-key", {"value": v})
        assert sb.get_workflow_data(wf, v[:100] or "empty-key") == {"value": v}
    for v in HOSTILE:
        if v:
            ctx = RunnerContext(runner_cls=v, runner_id=f"runner {v}", hostname=v, pid=1, thread_id=2)
            sb.store_runner_context(ctx)
            sb._runner_context_cache.clear()
            assert sb.get_runner_context(ctx.runner_id) == ctx
    # Substring search is literal: '%' and '_' are not wildcards.
    assert [c.runner_id for c in sb.get_matching_runner_contexts("%_\\")] == ["runner %_\\ LIKE wildcards"]


@ENGINES
def test_timestamps_keep_offset_and_microseconds(taskstate_url: str) -> None:
    sb = backend(taskstate_url)
    plus2 = timezone(timedelta(hours=2))
    stamps = [
        datetime(2025, 1, 15, 12, 0, 0, 0, tzinfo=UTC),
        datetime(2025, 1, 15, 14, 0, 0, 1, tzinfo=plus2),
        datetime(2025, 1, 15, 12, 0, 0, 999999, tzinfo=UTC),
        datetime(1970, 1, 1, 0, 0, 1),  # naive: read as UTC, as pynenc does
    ]
    for i, ts in enumerate(stamps):
        sb._add_histories(["t"], record("t", list(InvocationStatus)[i], ts))
    got = sb.get_history("t")
    want = sorted(stamps, key=lambda d: d if d.tzinfo else d.replace(tzinfo=UTC))
    assert [h.timestamp for h in got] == [d if d.tzinfo else d.replace(tzinfo=UTC) for d in want]
    assert [h.timestamp.utcoffset() for h in got] == [
        (d.utcoffset() if d.tzinfo else timedelta(0)) for d in want
    ]
    assert [h.to_json() for h in got][1:] != []


@ENGINES
def test_history_pages_walk_every_row_once(taskstate_url: str) -> None:
    sb = backend(taskstate_url)
    base = datetime(2025, 3, 1, tzinfo=UTC)
    for i in range(250):
        sb._add_histories([f"inv-{i % 17}"], record(f"inv-{i % 17}", InvocationStatus.RUNNING, base + timedelta(seconds=i)))
    end = base + timedelta(seconds=249)
    for size in (1, 7, 100, 1000):
        batches = list(sb.iter_history_in_timerange(base, end, batch_size=size))
        assert all(0 < len(b) <= size for b in batches)
        flat = [h.timestamp for b in batches for h in b]
        assert flat == [base + timedelta(seconds=i) for i in range(250)]
        ids = [i for b in sb.iter_invocations_in_timerange(base, end, batch_size=size) for i in b]
        assert ids == sorted(f"inv-{k}" for k in range(17))


@ENGINES
def test_threads_share_one_backend(taskstate_url: str) -> None:
    """pynenc writes histories from background threads; the engine is shared
    by all of them (the GIL is released during each call)."""
    sb = backend(taskstate_url)
    base = datetime(2025, 4, 1, tzinfo=UTC)
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        try:
            for i in range(100):
                ts = base + timedelta(microseconds=w * 1000 + i)
                sb._add_histories([f"w{w}"], record(f"w{w}", InvocationStatus.RUNNING, ts))
                sb._set_result(f"w{w}-{i}", str(i))
                assert sb._get_result(f"w{w}-{i}") == str(i)
        except BaseException as e:  # noqa: BLE001 -- reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    for w in range(8):
        assert len(sb.get_history(f"w{w}")) == 100


def test_corrupt_row_is_a_corrupt_data_error(tmp_path: Any) -> None:
    path = tmp_path / "state.db"
    sb = backend(f"sqlite://{path}")
    sb._add_histories(["bad"], record("bad", InvocationStatus.RUNNING, datetime.now(UTC)))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE state_backend_history SET history_json = '{not json'")
    with pytest.raises(CorruptDataError) as e:
        sb.get_history("bad")
    assert "state_backend_history" in str(e.value) and "bad" in str(e.value)


def test_bad_urls_and_missing_configuration() -> None:
    with pytest.raises(ValueError, match="scheme"):
        Store("redis://localhost")
    with pytest.raises(ValueError):
        Store("not a url")
    with pytest.raises(ValueError, match="taskstate_url"):
        resolve_url(ConfigStateBackendTaskstate(config_values={}))
    assert resolve_url(ConfigStateBackendTaskstate(config_values={"taskstate_url": "memory://"})) == "memory://"
    assert (
        resolve_url(ConfigStateBackendTaskstate(config_values={"sqlite_db_path": "/tmp/x.db"}))
        == "sqlite:///tmp/x.db"
    )


def test_unreachable_postgres_is_a_connection_error() -> None:
    # Port 9 (discard) on loopback: nothing listens, the connect is refused.
    with pytest.raises(ConnectionError) as e:
        Store("postgres://postgres@127.0.0.1:9/none?connect_timeout=2")
    assert isinstance(e.value, UnavailableError)


def test_url_from_the_environment(monkeypatch: Any, tmp_path: Any) -> None:
    """One setting plus the URL, as a pynenc user switches."""
    from pynenc import Pynenc

    monkeypatch.setenv("PYNENC__STATE_BACKEND_CLS", "TaskstateStateBackend")
    monkeypatch.setenv("PYNENC__TASKSTATE_URL", f"sqlite://{tmp_path / 'env.db'}")
    app = Pynenc(config_values={"app_id": "env_switch"})
    assert isinstance(app.state_backend, TaskstateStateBackend)
    assert app.state_backend.url == f"sqlite://{tmp_path / 'env.db'}"
    app.state_backend._set_result("x", "1")
    with sqlite3.connect(tmp_path / "env.db") as conn:
        assert conn.execute("SELECT result_data FROM state_backend_results").fetchall() == [("1",)]


def test_two_backends_of_one_app_share_its_memory_store() -> None:
    """pynenc builds ``app.state_backend`` lazily without a lock, so two
    threads can each build one; with memory:// they must still see one
    store (else one thread's invocations vanish for the other)."""
    app = taskstate_app("memory://")
    first, second = TaskstateStateBackend(app), TaskstateStateBackend(app)
    first._set_result("x", "1")
    assert second._get_result("x") == "1"
    other = taskstate_app("memory://").state_backend
    with pytest.raises(KeyError):
        other._get_result("x")


def test_url_from_a_config_file(tmp_path: Any) -> None:
    """The URL set in a pynenc YAML config file."""
    from pynenc import Pynenc

    db = tmp_path / "from_file.db"
    cfg = tmp_path / "pynenc.yaml"
    cfg.write_text(f"state_backend_cls: TaskstateStateBackend\ntaskstate_url: sqlite://{db}\n")
    app = Pynenc(config_values={"app_id": "file_switch"}, config_filepath=str(cfg))
    assert isinstance(app.state_backend, TaskstateStateBackend)
    assert app.state_backend.url == f"sqlite://{db}"
    assert db.exists()


def test_the_plugin_entry_point_is_declared() -> None:
    """pynenc imports every ``pynenc.plugins`` module in every process it
    starts: that is how process runners' children find the class by name."""
    import importlib.metadata

    eps = importlib.metadata.entry_points(group="pynenc.plugins")
    assert "pynenc_taskstate.state_backend" in {ep.value for ep in eps}


def test_every_abstract_method_is_implemented() -> None:
    from pynenc.state_backend.base_state_backend import BaseStateBackend

    abstract = BaseStateBackend.__abstractmethods__
    assert len(abstract) == 28
    assert TaskstateStateBackend.__abstractmethods__ == frozenset()
    for name in abstract:
        assert name in TaskstateStateBackend.__dict__, name


def test_a_pickled_backend_reopens_its_store(tmp_path: Any) -> None:
    """Process runners pickle the app; the backend reopens its store by URL
    in the child (a store is a live connection, not state to copy)."""
    import pickle

    sb = backend(f"sqlite://{tmp_path / 'p.db'}")
    sb._set_result("x", "1")
    clone = pickle.loads(pickle.dumps(sb))
    assert clone._store is not sb._store
    assert clone._get_result("x") == "1"
    clone._set_result("y", "2")
    assert sb._get_result("y") == "2"


def test_a_forked_child_keeps_writing_a_sqlite_store(tmp_path: Any) -> None:
    """pynenc's process runners may fork with the store already open: the
    child writes on, drops the store, and the parent reads everything back;
    the child's writes keep the WAL bounded (they checkpoint it)."""
    import gc
    import os

    url = f"sqlite://{tmp_path / 'state.db'}"
    store = Store(url)
    for i in range(300):  # the store is open and written before the fork
        store.set_result(f"parent-{i}", "p")
    pid = os.fork()
    if pid == 0:  # the child: any failure is its exit status
        code = 1
        try:
            for i in range(1000):
                store.set_result(f"child-{i}", "c")
            ok = all(store.get_result(f"child-{i}") == "c" for i in range(0, 1000, 97))
            del store
            gc.collect()
            code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    fresh = Store(url)
    assert all(fresh.get_result(f"child-{i}") == "c" for i in range(1000))
    assert all(fresh.get_result(f"parent-{i}") == "p" for i in range(300))
    # The child's checkpoints let the WAL start over: it holds about
    # SQLite's 1,000-page trigger (4.1 MB), not all 1,300 writes (11.7 MB,
    # as an engine whose checkpoints stayed behind in the parent left it).
    assert os.path.getsize(tmp_path / "state.db-wal") < 8 * 1024 * 1024
