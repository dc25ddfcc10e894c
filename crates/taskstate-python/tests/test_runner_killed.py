"""A runner killed mid-task (SIGKILL) leaves a file both backends read.

A child process runs a pynenc app (SQLite broker and orchestrator, a
ThreadRunner, TaskstateStateBackend on the same file) and a task that
announces it is running, then sleeps. The parent waits for that line, kills
the child with SIGKILL, and checks: the file passes SQLite's integrity
check, every status the child had written is there (registered, pending,
running) and reads the same through pynenc's own SQLiteStateBackend, and a
new app on the file runs tasks.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from typing import Any

import interop_tasks as t
from pynenc import Pynenc
from pynenc_taskstate import Store

# The child's app and task live in a module (pynenc refuses tasks defined
# in __main__); the child script imports it and runs the runner.
CHILD_TASKS = textwrap.dedent(
    """
    import os, time
    from test_runner_killed import app_for

    path, app_id = os.environ["KILL_TEST_DB"], os.environ["KILL_TEST_APP"]
    app = app_for(path, app_id, "TaskstateStateBackend")

    @app.task
    def sleepy(seconds: float) -> bool:
        inv_id = sleepy.invocation.invocation_id
        # Status writes run in background threads: wait for them, so every
        # status the parent expects was acknowledged before it kills us.
        app.state_backend.wait_for_invocation_async_operations(inv_id)
        print("RUNNING", inv_id, flush=True)
        time.sleep(seconds)
        return True
    """
)

CHILD = textwrap.dedent(
    """
    import kill_child_tasks as k

    inv = k.sleepy(120)
    print("REGISTERED", inv.invocation_id, flush=True)
    k.app.runner.run()
    """
)


def app_for(path: str, app_id: str, backend: str) -> Pynenc:
    return Pynenc(
        config_values={
            "app_id": app_id,
            "orchestrator_cls": "SQLiteOrchestrator",
            "broker_cls": "SQLiteBroker",
            "client_data_store_cls": "SQLiteClientDataStore",
            "trigger_cls": "SQLiteTrigger",
            "runner_cls": "ThreadRunner",
            "state_backend_cls": backend,
            "sqlite_db_path": path,
            "taskstate_url": f"sqlite://{path}",
        }
    )


def test_runner_killed_mid_task(tmp_path: Any) -> None:
    path = str(tmp_path / "state.db")
    app_id = f"killed_{uuid.uuid4().hex[:8]}"
    (tmp_path / "kill_child_tasks.py").write_text(CHILD_TASKS)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "KILL_TEST_DB": path, "KILL_TEST_APP": app_id}
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), tests_dir, env.get("PYTHONPATH")]))
    child = subprocess.Popen(
        [sys.executable, str(script)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None
        registered = child.stdout.readline().split()
        running = child.stdout.readline().split()
        assert registered[0] == "REGISTERED", registered
        assert running == ["RUNNING", registered[1]], running
        inv_id = running[1]
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=60)

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    store = Store(f"sqlite://{path}")
    statuses = [h.status_record.status.value for h in store.get_history(inv_id)]
    assert statuses[:3] == ["registered", "pending", "running"], statuses
    assert statuses[-1] == "running"
    pair = store.get_invocation(inv_id)
    assert pair is not None and pair[0].invocation_id == inv_id

    theirs = app_for(path, app_id + "_reader", "SQLiteStateBackend").state_backend
    assert [
        (h.status_record.status, h.timestamp, h.runner_context_id) for h in theirs.get_history(inv_id)
    ] == [(h.status_record.status, h.timestamp, h.runner_context_id) for h in store.get_history(inv_id)]
    assert theirs._get_invocation(inv_id)[1].serialized_arguments == pair[1].serialized_arguments

    # The file keeps working: a new app runs a task on it.
    app = app_for(path, app_id + "_after", "TaskstateStateBackend")
    assert t.run(app, lambda: t.add(20, 22).result) == 42
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
