"""Retention on a file pynenc writes and reads (SPEC §10): taskstate prunes a
SQLite file a real pynenc app wrote while running tasks, and pynenc 0.1.0's
own ``SQLiteStateBackend`` then opens it, reads everything left exactly as
before the prune, and keeps running tasks on it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_interop import _record, app_on, integrity_ok, reader, view, workload

import interop_tasks as t
from pynenc.invocation.status import InvocationStatus


def parents_present(v: dict[str, Any]) -> None:
    """Nothing left links to an invocation that is gone."""
    ids = set(v["ids"])
    for inv_id, item in v["invocations"].items():
        parent = item["invocation"][5]
        assert parent is None or parent in ids, f"{inv_id} lost its parent {parent}"
        assert set(item["children"]) <= ids


def test_pynenc_reads_a_pruned_file_as_before(tmp_path: Any) -> None:
    path = str(tmp_path / "state.db")
    app_id = f"prune_{uuid.uuid4().hex[:8]}"
    app = app_on(path, "SQLiteStateBackend", app_id)
    old = workload(app)
    # `old[0]` is retried after the round ended: live again, so it stays.
    last = app.state_backend.get_history(old[0])[-1].timestamp
    app.state_backend._add_histories([old[0]], _record(old[0], InvocationStatus.RETRY, last + timedelta(microseconds=1)))
    cutoff = max(datetime.now(UTC), last + timedelta(microseconds=2))
    new = workload(app)

    before = view(reader(path, "SQLiteStateBackend", app_id + "_r1"))
    ours = reader(path, "TaskstateStateBackend", app_id + "_r2")
    would = ours.prune(before=cutoff, dry_run=True)
    assert view(reader(path, "SQLiteStateBackend", app_id + "_r3")) == before, "a dry run changed the file"
    did = ours.prune(before=cutoff)
    assert did == would
    after = view(reader(path, "SQLiteStateBackend", app_id + "_r4"))

    gone = set(before["ids"]) - set(after["ids"])
    assert set(after["ids"]) <= set(before["ids"])
    assert did["invocations"] == len(gone) > 0
    # The first round went (with the workflow's children), but for the
    # retried task; the second round is untouched.
    assert set(old[1:]) <= gone and old[0] not in gone
    assert not set(new) & gone
    # Everything left reads exactly as before, through pynenc's own backend.
    for inv_id in after["ids"]:
        assert after["invocations"][inv_id] == before["invocations"][inv_id], inv_id
    assert after["range_history"] == [h for h in before["range_history"] if h[0] not in gone]
    assert after["range_ids"] == [i for i in before["range_ids"] if i not in gone]
    assert set(after["workflow_runs"]) <= set(before["workflow_runs"])
    assert all(w[0] not in gone for w in after["workflow_runs"])
    assert did["history"] == sum(len(before["invocations"][i]["history"]) for i in gone)
    parents_present(after)
    integrity_ok(path)
    # A pynenc app keeps running tasks on the pruned file.
    again = app_on(path, "SQLiteStateBackend", app_id + "_again")
    assert t.run(again, lambda: t.add(20, 22).result) == 42


def test_prune_arguments_are_checked(tmp_path: Any) -> None:
    sb = reader(str(tmp_path / "s.db"), "TaskstateStateBackend", f"args_{uuid.uuid4().hex[:8]}")
    with pytest.raises(ValueError, match="exactly one"):
        sb.prune()
    with pytest.raises(ValueError, match="exactly one"):
        sb.prune(timedelta(days=1), before=datetime.now(UTC))
    with pytest.raises(Exception, match="in the future"):
        sb.prune(before=datetime.now(UTC) + timedelta(days=1))
    assert sb.prune(timedelta(days=30)) == {
        "trees": 0,
        "invocations": 0,
        "history": 0,
        "results": 0,
        "exceptions": 0,
        "workflow_runs": 0,
        "sub_invocations": 0,
        "workflow_data": 0,
    }
