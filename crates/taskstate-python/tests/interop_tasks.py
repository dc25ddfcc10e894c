"""Tasks the interop tests run for real (a ThreadRunner executes them).

They are bound to each test's app with ``bind(app)``, as pynenc's own
combination tests rebind their task modules.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from pynenc import Pynenc

placeholder = Pynenc(config_values={"app_id": "interop_tasks_placeholder"})

UNICODE = "héllo wörld ✓ 🌍 \"quotes\" 'single' \\ back <tag> ; DROP TABLE x; --"


@placeholder.task
def add(x: int, y: int) -> int:
    return x + y


@placeholder.task
def fail(message: str) -> int:
    raise ValueError(message)


@placeholder.task
def echo(text: str) -> str:
    return text


@placeholder.task
def big(size: int) -> str:
    return (UNICODE * (size // len(UNICODE) + 1))[:size]


@placeholder.task
def fan_out(n: int) -> int:
    """A workflow root: runs ``add`` n times as sub-invocations, keeps a
    workflow data value."""
    fan_out.wf.set_data("started", n)
    return sum(add(i, i).result for i in range(n))


@placeholder.task
def sleep_for(seconds: float) -> bool:
    time.sleep(seconds)
    return True


TASKS = [add, fail, echo, big, fan_out, sleep_for]


def bind(app: Pynenc) -> None:
    """Points every task of this module at ``app``."""
    for task in TASKS:
        task.app = app
        task._conf = None


def run(app: Pynenc, body: Any, timeout: float = 60.0) -> Any:
    """Runs ``body()`` (which calls tasks and waits for their results) while
    a runner of ``app`` executes them in a thread; stops the runner after."""
    bind(app)
    runner = threading.Thread(target=app.runner.run, daemon=True)
    runner.start()
    try:
        return body()
    finally:
        app.runner.stop_runner_loop()
        app.runner.wait_until_stopped(timeout=timeout)
        runner.join(timeout=timeout)
