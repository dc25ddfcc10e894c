"""Fixtures that run pynenc 0.1.0's own test suites against TaskstateStateBackend.

pynenc ships its tests inside its wheel (``pynenc_tests``). Its state-backend
suites are parametrized by the ``app_instance`` fixture and its end-to-end
combination suite by ``app_combination_instance``; both are overridden here
so that every app they build stores its state in taskstate:

* ``app_instance``: ``memory://``, ``sqlite://<temp file>`` and, when
  ``TASKSTATE_POSTGRES_URL`` is set, ``postgres://…?schema=<fresh schema>``
  (dropped after the test). Without the variable the PostgreSQL cases are
  skipped with the visible reason "skipped: set TASKSTATE_POSTGRES_URL".
* ``app_combination_instance``: pynenc's own component combinations (every
  runner, a serializer each), with the state backend replaced by
  ``TaskstateStateBackend``: ``memory://`` beside the Mem components and
  ``sqlite://`` on the very file pynenc's SQLite broker, orchestrator and
  client data store use.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Generator
from typing import TYPE_CHECKING

import pytest
from _pytest.monkeypatch import MonkeyPatch

from pynenc import Pynenc

# pynenc's shared fixtures (mocks, ids, temp_sqlite_db_path) and the
# combination suite's task fixtures: the tests imported from pynenc_tests
# need them, and pytest only loads a conftest of the tests' own folder.
from pynenc_tests.conftest import *  # noqa: F403
from pynenc_tests.integration.combinations.conftest import *  # noqa: F403
from pynenc_tests.integration.combinations.conftest import (
    AppComponents,
    build_test_combinations,
)
from pynenc_tests import util

if TYPE_CHECKING:
    from _pytest.fixtures import FixtureRequest

POSTGRES_ENV = "TASKSTATE_POSTGRES_URL"

MEM_COMPONENTS = {
    "orchestrator_cls": "MemOrchestrator",
    "broker_cls": "MemBroker",
    "client_data_store_cls": "MemClientDataStore",
    "trigger_cls": "MemTrigger",
}
SQLITE_COMPONENTS = {
    "orchestrator_cls": "SQLiteOrchestrator",
    "broker_cls": "SQLiteBroker",
    "client_data_store_cls": "SQLiteClientDataStore",
    "trigger_cls": "SQLiteTrigger",
}


# pynenc combination tests that fail the same way with pynenc's OWN
# SQLiteStateBackend on this machine kind (2 cores). They stay in the run,
# marked xfail, not strict: they are races in pynenc's test, so they pass
# some of the time with either backend.
#
# test_recover_running_invocations[SQLite Process Pickle] sleeps 1 s and
# then expects the ProcessRunner's recovery service to have marked a stuck
# invocation RUNNING_RECOVERY; on 2 cores the runner often has not got that
# far. Measured here, pynenc's own SQLiteStateBackend: failed in the full
# combination run, and 5 of 8 runs alone; TaskstateStateBackend: failed in
# the full run, 4 of 8 alone; always with the same assertion.
KNOWN_PYNENC_FAILURES = {
    "test_recover_running_invocations[Taskstate-SQLite Process Pickle]": (
        "a race in pynenc's test (sleep 1 s, then expect RUNNING_RECOVERY from "
        "a ProcessRunner on 2 cores); fails the same way with pynenc's own "
        "SQLiteStateBackend: AssertionError RUNNING_RECOVERY not in "
        "[REGISTERED, PENDING, RUNNING]"
    ),
}


# pynenc's end-to-end combination tests start real runners and check what
# they did after fixed sleeps; on 2 cores a few of them lose such a race now
# and then (in clean CI runs: test_runner_kills_and_reroutes_running_
# invocation_on_stop[SQLite PersistentProcess] once in eight full runs,
# test_recover_pending_invocations[SQLite MultiThread] once under load,
# test_recover_running_invocations[Taskstate-SQLite MultiThread JsonPickle]
# once, whose runner gets one fixed second to start and recover).
# Each combination test gets ONE rerun (pytest-rerunfailures), which the
# summary line counts as "rerun" and test.sh's `-rR` names ("RERUN ..."):
# a regression fails twice.
COMBINATION_RERUNS = 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        reason = KNOWN_PYNENC_FAILURES.get(item.name)
        if reason is not None:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=False, raises=AssertionError))
        elif item.module is not None and item.module.__name__.endswith("test_pynenc_combinations"):
            item.add_marker(pytest.mark.flaky(reruns=COMBINATION_RERUNS))


def postgres_base_url() -> str | None:
    """The PostgreSQL URL the tests use, or None (those cases are skipped)."""
    return os.environ.get(POSTGRES_ENV) or None


def with_schema(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}schema={schema}"


def drop_schema(base: str, schema: str) -> None:
    """Drops a test schema with psql (the server's own client)."""
    plain = base.split("?", 1)[0]
    subprocess.run(
        ["psql", plain, "-q", "-c", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'],
        check=False,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
def taskstate_url(request: FixtureRequest, temp_sqlite_db_path: str) -> Generator[str, None, None]:
    """A fresh, empty store URL for the engine named by ``request.param``."""
    engine = getattr(request, "param", "sqlite")
    if engine == "memory":
        yield "memory://"
    elif engine == "sqlite":
        yield f"sqlite://{temp_sqlite_db_path}"
    elif engine == "postgres":
        base = postgres_base_url()
        if base is None:
            pytest.skip(f"skipped: set {POSTGRES_ENV}")
        schema = f"pytest_{uuid.uuid4().hex[:16]}"
        try:
            yield with_schema(base, schema)
        finally:
            drop_schema(base, schema)
    else:
        raise ValueError(f"unknown engine {engine!r}")


def taskstate_app(url: str, app_id: str | None = None, **extra: object) -> Pynenc:
    """A pynenc app whose state backend is taskstate at ``url``."""
    # Other components on SQLite only where there is a file to share.
    on_file = url.startswith("sqlite://") or "sqlite_db_path" in extra
    components = SQLITE_COMPONENTS if on_file else MEM_COMPONENTS
    config: dict[str, object] = {
        "app_id": app_id or f"taskstate_test_{uuid.uuid4().hex[:12]}",
        **components,
        "state_backend_cls": "TaskstateStateBackend",
        "taskstate_url": url,
        **extra,
    }
    if url.startswith("sqlite://"):
        config["sqlite_db_path"] = url[len("sqlite://") :]
    return Pynenc(config_values=config)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def app_instance(request: FixtureRequest, temp_sqlite_db_path: str) -> Generator[Pynenc, None, None]:
    """pynenc's ``app_instance``, on TaskstateStateBackend, per engine URL."""
    engine = request.param
    if engine == "memory":
        yield taskstate_app("memory://")
    elif engine == "sqlite":
        yield taskstate_app(f"sqlite://{temp_sqlite_db_path}")
    else:
        base = postgres_base_url()
        if base is None:
            pytest.skip(f"skipped: set {POSTGRES_ENV}")
        schema = f"pytest_{uuid.uuid4().hex[:16]}"
        # Components other than the state backend stay on SQLite.
        app = taskstate_app(with_schema(base, schema), sqlite_db_path=temp_sqlite_db_path)
        try:
            yield app
        finally:
            drop_schema(base, schema)


# pynenc's combinations with TaskstateStateBackend in place of its own.
COMBINATIONS = build_test_combinations()


def combination_id(components: AppComponents) -> str:
    return "Taskstate-" + components.combination_id


@pytest.fixture(params=COMBINATIONS, ids=combination_id)
def app_combination_instance(
    request: FixtureRequest, monkeypatch: MonkeyPatch, temp_sqlite_db_path: str
) -> Pynenc:
    """pynenc's ``app_combination_instance`` (same components, configured
    through the environment exactly as pynenc's fixture does, so process
    runners' children build the same app) with the state backend replaced by
    TaskstateStateBackend."""
    components: AppComponents = request.param
    test_module, test_name = util.get_module_name(request)
    if components.backend_type == "Mem" and test_name.startswith("test_runner_reroutes_on_real_os_signal"):
        pytest.skip(
            "pynenc skips this test for Mem backends (it runs the runner in a "
            "subprocess; in-memory state is per process); it runs on every "
            "SQLite combination"
        )
    monkeypatch.setenv("PYNENC__APP_ID", f"{test_module}.{test_name}")
    monkeypatch.setenv("PYNENC__CLIENT_DATA_STORE_CLS", components.client_data_store.__name__)
    monkeypatch.setenv("PYNENC__ORCHESTRATOR_CLS", components.orchestrator.__name__)
    monkeypatch.setenv("PYNENC__BROKER_CLS", components.broker.__name__)
    monkeypatch.setenv("PYNENC__SERIALIZER_CLS", components.serializer.__name__)
    monkeypatch.setenv("PYNENC__STATE_BACKEND_CLS", "TaskstateStateBackend")
    monkeypatch.setenv("PYNENC__TRIGGER_CLS", components.trigger.__name__)
    monkeypatch.setenv("PYNENC__RUNNER_CLS", components.runner.__name__)
    monkeypatch.setenv("PYNENC__LOGGING_LEVEL", "debug")
    monkeypatch.setenv("PYNENC__PRINT_ARGUMENTS", "False")
    if components.backend_type == "SQLite":
        monkeypatch.setenv("PYNENC__SQLITE_DB_PATH", temp_sqlite_db_path)
        monkeypatch.setenv("PYNENC__TASKSTATE_URL", f"sqlite://{temp_sqlite_db_path}")
    else:
        monkeypatch.setenv("PYNENC__TASKSTATE_URL", "memory://")
    return Pynenc()
