"""One SQLite file, two backends: taskstate and pynenc 0.1.0's own.

A pynenc app that runs real tasks on ``TaskstateStateBackend`` at
``sqlite://F`` writes a file pynenc's ``SQLiteStateBackend`` reads with the
same invocations, histories, results, exceptions, workflows, runner contexts
and app info -- and the reverse: taskstate reads what pynenc's backend wrote
while running tasks. "The same" is checked by reading everything through
both backends' methods and comparing the two views value by value.
"""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import interop_tasks as t
from pynenc import Pynenc
from pynenc.invocation.status import InvocationStatus, InvocationStatusRecord
from pynenc.state_backend.base_state_backend import InvocationHistory
from pynenc.state_backend.sqlite_state_backend import SQLiteStateBackend
from pynenc_taskstate import TaskstateStateBackend

WIDE = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def app_on(path: str, state_backend: str, app_id: str) -> Pynenc:
    """An app with in-memory broker/orchestrator and the given state backend
    on ``path``; a ThreadRunner runs its tasks in this process."""
    return Pynenc(
        config_values={
            "app_id": app_id,
            "orchestrator_cls": "MemOrchestrator",
            "broker_cls": "MemBroker",
            "client_data_store_cls": "MemClientDataStore",
            "trigger_cls": "MemTrigger",
            "runner_cls": "ThreadRunner",
            "state_backend_cls": state_backend,
            "sqlite_db_path": path,
            "taskstate_url": f"sqlite://{path}",
            "disable_client_data_store": True,
        }
    )


def workload(app: Pynenc) -> list[str]:
    """Runs a mixed workload on ``app``: plain results, an exception, unicode
    and a 1 MiB result, a workflow with sub-invocations and workflow data.
    Returns the invocation ids it made."""

    def body() -> list[str]:
        invs = [
            t.add(1, 2),
            t.add(x=3, y=4),
            t.fail("boom ✗"),
            t.echo(t.UNICODE),
            t.big(1 << 20),
            t.fan_out(3),
        ]
        assert invs[0].result == 3
        assert invs[1].result == 7
        with pytest.raises(ValueError, match="boom ✗"):
            invs[2].result  # noqa: B018
        assert invs[3].result == t.UNICODE
        assert len(invs[4].result) == 1 << 20
        assert invs[5].result == 0 + 2 + 4
        return [i.invocation_id for i in invs]

    return t.run(app, body)


def history_view(h: InvocationHistory) -> tuple:
    return (
        h.invocation_id,
        h.timestamp.isoformat(),
        h.status_record.status.value,
        h.status_record.runner_id,
        h.status_record.timestamp.isoformat(),
        h.runner_context_id,
        h.registered_by_inv_id,
    )


def ctx_view(c: Any) -> tuple | None:
    if c is None:
        return None
    return (c.runner_cls, c.runner_id, c.pid, c.hostname, c.thread_id, ctx_view(c.parent_ctx))


def raw(get: Any, inv_id: str) -> str | None:
    try:
        return get(inv_id)
    except KeyError:
        return None


def view(sb: Any) -> dict[str, Any]:
    """Everything a pynenc reader sees through the backend's methods."""
    ids = sorted(sb.get_invocation_ids_by_workflow())
    out: dict[str, Any] = {"ids": ids, "invocations": {}}
    runner_ids: set[str] = set()
    for inv_id in ids:
        inv, call = sb._get_invocation(inv_id)
        history = [history_view(h) for h in sb.get_history(inv_id)]
        # pynenc's SQLite orders ties of one instant by status (its primary
        # key); taskstate by insertion (SPEC §4 rule 2). Compare ties alike.
        history.sort(key=lambda h: (h[1], h[2]))
        runner_ids.update(h[5] for h in history)
        out["invocations"][inv_id] = {
            "invocation": (
                inv.invocation_id,
                inv.call_id.key,
                inv.workflow.workflow_id,
                inv.workflow.workflow_type.key,
                inv.workflow.parent_workflow_id,
                inv.parent_invocation_id,
            ),
            "call": (call.call_id.key, dict(call.serialized_arguments)),
            "history": history,
            "result": raw(sb._get_result, inv_id),
            "exception": raw(sb._get_exception, inv_id),
            "children": sorted(sb.get_child_invocations(inv_id)),
        }
    out["workflow_types"] = sorted(x.key for x in sb.get_all_workflow_types())
    runs = sorted(sb.get_all_workflow_runs(), key=lambda w: w.workflow_id)
    out["workflow_runs"] = [(w.workflow_id, w.workflow_type.key, w.parent_workflow_id) for w in runs]
    out["sub_invocations"] = {w.workflow_id: sorted(sb.get_workflow_sub_invocations(w.workflow_id)) for w in runs}
    out["runner_contexts"] = sorted(
        (ctx_view(c) for c in sb._get_runner_contexts(sorted(runner_ids))), key=lambda c: c[1]
    )
    out["range_ids"] = sorted(i for batch in sb.iter_invocations_in_timerange(*WIDE) for i in batch)
    out["range_history"] = sorted(
        history_view(h) for batch in sb.iter_history_in_timerange(*WIDE) for h in batch
    )
    return out


def apps_view(cls: type, path: str, monkeypatch: Any) -> dict[str, str]:
    """Every app info in the file, through the backend's static discovery
    (which reads the default configuration: the environment)."""
    monkeypatch.setenv("PYNENC__SQLITE_DB_PATH", path)
    monkeypatch.setenv("PYNENC__TASKSTATE_URL", f"sqlite://{path}")
    return {k: v.to_json() for k, v in cls.discover_app_infos().items()}


def reader(path: str, cls: str, app_id: str) -> Any:
    return app_on(path, cls, app_id).state_backend


def integrity_ok(path: str) -> None:
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_pynenc_reads_what_taskstate_wrote_while_running_tasks(tmp_path: Any, monkeypatch: Any) -> None:
    path = str(tmp_path / "state.db")
    app_id = f"interop_ts_{uuid.uuid4().hex[:8]}"
    app = app_on(path, "TaskstateStateBackend", app_id)
    assert isinstance(app.state_backend, TaskstateStateBackend)
    ids = workload(app)
    ours = view(app.state_backend)
    # The reader registers its own app (another id) and leaves ours alone.
    theirs = view(reader(path, "SQLiteStateBackend", app_id + "_reader"))
    assert theirs == ours
    apps = apps_view(SQLiteStateBackend, path, monkeypatch)
    assert apps == apps_view(TaskstateStateBackend, path, monkeypatch)
    assert apps[app_id] == app.state_backend.get_app_info().to_json()
    # The workload really is in the file.
    assert set(ids) <= set(ours["ids"])
    assert ours["invocations"][ids[0]]["history"][-1][2] == "success"
    assert ours["invocations"][ids[2]]["exception"] is not None
    assert "boom" in ours["invocations"][ids[2]]["exception"]
    assert ours["workflow_runs"], "the workflow run is stored"
    assert sum(len(v) for v in ours["sub_invocations"].values()) >= 3
    # Workflow data written by the task reads back through pynenc's backend.
    wf = app.state_backend.get_invocation(ids[5]).workflow
    assert reader(path, "SQLiteStateBackend", app_id + "_2").get_workflow_data(wf, "started") == 3
    integrity_ok(path)


def test_taskstate_reads_what_pynenc_wrote_while_running_tasks(tmp_path: Any, monkeypatch: Any) -> None:
    path = str(tmp_path / "state.db")
    app_id = f"interop_py_{uuid.uuid4().hex[:8]}"
    app = app_on(path, "SQLiteStateBackend", app_id)
    assert isinstance(app.state_backend, SQLiteStateBackend)
    ids = workload(app)
    theirs = view(app.state_backend)
    ours_backend = reader(path, "TaskstateStateBackend", app_id + "_reader")
    ours = view(ours_backend)
    assert ours == theirs
    apps = apps_view(TaskstateStateBackend, path, monkeypatch)
    assert apps == apps_view(SQLiteStateBackend, path, monkeypatch)
    assert apps[app_id] == app.state_backend.get_app_info().to_json()
    assert set(ids) <= set(ours["ids"])
    wf = ours_backend.get_invocation(ids[5]).workflow
    assert ours_backend.get_workflow_data(wf, "started") == 3
    # The exception pynenc stored deserializes through taskstate.
    exc = ours_backend.get_exception(ids[2])
    assert isinstance(exc, ValueError) and str(exc) == "boom ✗"
    integrity_ok(path)


def _record(inv_id: str, status: InvocationStatus, ts: datetime) -> InvocationHistory:
    h = InvocationHistory(
        invocation_id=inv_id,
        status_record=InvocationStatusRecord(status=status, runner_id="runner-1", timestamp=ts),
        runner_context_id="runner-1",
    )
    h._timestamp = ts
    return h


@pytest.mark.parametrize("writer", ["SQLiteStateBackend", "TaskstateStateBackend"])
def test_one_record_under_several_ids_reads_alike(tmp_path: Any, writer: str) -> None:
    """pynenc's ``_add_histories([a, b, c], record)`` stores ONE record under
    EVERY id, its JSON keeping the first id (SPEC §3). Written by either
    backend, both read it under every id, with the JSON's own id."""
    path = str(tmp_path / "state.db")
    app_id = f"keys_{uuid.uuid4().hex[:8]}"
    w = reader(path, writer, app_id)
    ts = datetime(2025, 1, 15, 12, 0, 0, 123456, tzinfo=UTC)
    w._add_histories(["a", "b", "c"], _record("a", InvocationStatus.PENDING, ts))
    w._add_histories(["b"], _record("b", InvocationStatus.RUNNING, ts + timedelta(seconds=1)))
    for cls in ["SQLiteStateBackend", "TaskstateStateBackend"]:
        sb = reader(path, cls, app_id)
        for key in ["a", "b", "c"]:
            hist = sb.get_history(key)
            assert hist[0].invocation_id == "a", (cls, key)
            assert hist[0].status_record.status == InvocationStatus.PENDING
            assert hist[0].timestamp == ts
        assert [h.status_record.status for h in sb.get_history("b")] == [
            InvocationStatus.PENDING,
            InvocationStatus.RUNNING,
        ]
        ids = sorted(i for batch in sb.iter_invocations_in_timerange(*WIDE) for i in batch)
        assert ids == ["a", "b", "c"], cls
        rows = [h.invocation_id for batch in sb.iter_history_in_timerange(*WIDE) for h in batch]
        assert rows == ["a", "a", "a", "b"], cls
    with sqlite3.connect(path) as conn:
        stored = conn.execute(
            "SELECT invocation_id, history_json FROM state_backend_history ORDER BY rowid"
        ).fetchall()
    assert [k for k, _ in stored] == ["a", "b", "c", "b"]
    # One JSON text, byte for byte, under every key of the batch.
    assert stored[0][1] == stored[1][1] == stored[2][1]
    assert stored[0][1] == _record("a", InvocationStatus.PENDING, ts).to_json()


def test_same_process_sharing_keeps_the_file_intact(tmp_path: Any) -> None:
    """pynenc's own SQLite components (Python's sqlite3) and taskstate write
    one file from one process. Two copies of SQLite in a process would not
    see each other's POSIX locks and corrupt it ('database disk image is
    malformed'); the extension links the SQLite Python uses, so this holds."""
    path = str(tmp_path / "state.db")
    app_id = f"shared_{uuid.uuid4().hex[:8]}"
    ours = reader(path, "TaskstateStateBackend", app_id)
    theirs = reader(path, "SQLiteStateBackend", app_id)
    base = datetime(2025, 1, 15, tzinfo=UTC)
    for i in range(300):
        ts = base + timedelta(microseconds=i)
        ours._add_histories([f"ours-{i % 7}"], _record(f"ours-{i % 7}", InvocationStatus.RUNNING, ts))
        theirs._add_histories([f"theirs-{i % 7}"], _record(f"theirs-{i % 7}", InvocationStatus.RUNNING, ts))
        ours._set_result(f"r{i}", str(i))
        assert theirs._get_result(f"r{i}") == str(i)
        theirs._set_result(f"p{i}", str(i))
        assert ours._get_result(f"p{i}") == str(i)
    for key in [f"ours-{k}" for k in range(7)] + [f"theirs-{k}" for k in range(7)]:
        assert len(ours.get_history(key)) == len(theirs.get_history(key)) > 40
    integrity_ok(path)


NAIVE_SCRIPT = """
import json, os, sqlite3, sys, time
os.environ["TZ"] = "Etc/GMT-2"  # two hours east of UTC
time.tzset()
from datetime import datetime, timezone
from pynenc import Pynenc
from pynenc.invocation.status import InvocationStatus, InvocationStatusRecord
from pynenc.state_backend.base_state_backend import InvocationHistory

def rec(status, ts):
    h = InvocationHistory(invocation_id="n", runner_context_id="r",
        status_record=InvocationStatusRecord(status=status, runner_id="r", timestamp=ts))
    h._timestamp = ts
    return h

out = {}
for cls in ["SQLiteStateBackend", "TaskstateStateBackend"]:
    path = os.path.join(sys.argv[1], cls + ".db")
    sb = Pynenc(config_values={"app_id": "naive_" + cls, "state_backend_cls": cls,
        "sqlite_db_path": path, "taskstate_url": "sqlite://" + path}).state_backend
    # Naive 12:00 is 10:00 UTC here; the aware record is at 10:30 UTC.
    sb._add_histories(["n", "m"], rec(InvocationStatus.PENDING, datetime(2025, 1, 15, 12, 0, 0, 123456)))
    sb._add_histories(["n"], rec(InvocationStatus.RUNNING, datetime(2025, 1, 15, 10, 30, tzinfo=timezone.utc)))
    with sqlite3.connect(path) as c:
        rows = c.execute("SELECT invocation_id, history_timestamp, history_status, history_json"
                         " FROM state_backend_history ORDER BY rowid").fetchall()
    lo, hi = datetime(2025, 1, 15, 11, 59), datetime(2025, 1, 15, 12, 1)  # naive bounds: local
    ranged = [h.status_record.status.value for b in sb.iter_history_in_timerange(lo, hi) for h in b]
    out[cls] = {"rows": rows, "order": [h.status_record.status.value for h in sb.get_history("n")],
                "ranged": ranged}
print(json.dumps(out))
"""


def test_naive_timestamps_are_stored_as_pynenc_stores_them(tmp_path: Any) -> None:
    """pynenc writes ``_timestamp.timestamp()``: for a naive timestamp, the
    writer's LOCAL time. Off UTC, taskstate writes the very same REAL (and
    JSON) pynenc does, so both order and range the history alike."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", NAIVE_SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    theirs, ours = out["SQLiteStateBackend"], out["TaskstateStateBackend"]
    # Keys, REALs and statuses are the same to the bit. The JSON reads back
    # the same through pynenc; its text differs only in that taskstate
    # writes a naive timestamp back with "+00:00" (SPEC §2: naive is UTC).
    assert [r[:3] for r in ours["rows"]] == [r[:3] for r in theirs["rows"]]
    assert [history_view(InvocationHistory.from_json(r[3])) for r in ours["rows"]] == [
        history_view(InvocationHistory.from_json(r[3])) for r in theirs["rows"]
    ]
    assert ours["rows"][2][3] == theirs["rows"][2][3], "aware timestamps: identical text"
    # 12:00 naive at UTC+2 is 10:00 UTC: before the 10:30 UTC record.
    assert theirs["order"] == ["pending", "running"] == ours["order"]
    assert ours["rows"][0][1] == datetime(2025, 1, 15, 10, 0, 0, 123456, tzinfo=UTC).timestamp()
    assert ours["ranged"] == theirs["ranged"] == ["pending", "pending"]
