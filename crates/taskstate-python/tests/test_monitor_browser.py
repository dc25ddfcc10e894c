"""`taskstate serve`, used as a person would: in headless Chromium.

The store is the pynenc 0.1.0 fixture plus two rounds of real pynenc tasks
(one on the drop-in, which upgrades the file, one on pynenc's own
``SQLiteStateBackend``, whose writes the file's triggers must follow), with
a hostile argument and a hostile runner id. ``taskstate serve`` serves it
read-only; Playwright drives Debian's Chromium through every page by its
links and forms, checks the rendered DOM against what pynenc itself reads
from the file, checks that hostile strings render as text, and saves a
screenshot of each page under ``target/screenshots/`` (not committed).

Needs ``chromium`` (``apt-get install chromium``; ``.ci/run`` installs it)
and the ``playwright`` package (``test.sh`` installs it; its own browser
download is never used). Without them the test is skipped with a visible
"skipped: ..." reason.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import uuid
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from test_interop import app_on, reader, workload

import interop_tasks as t
from pynenc.invocation.status import InvocationStatus, InvocationStatusRecord
from pynenc.state_backend.base_state_backend import InvocationHistory

ROOT = Path(__file__).resolve().parents[3]
FIXTURE = ROOT / "fixtures" / "pynenc-0.1.0" / "state.db"
SHOTS = ROOT / "target" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
EVIL_ARG = '<script>alert("pwned")</script><b>bold</b> \' OR 1=1; --'
EVIL_RUNNER = "<b>runner</b>&amp;\"quoted\""

try:
    from playwright.sync_api import Page, sync_playwright
except ImportError:  # pragma: no cover - reported as a skip below
    sync_playwright = None  # type: ignore[assignment]


def taskstate_bin() -> str:
    explicit = os.environ.get("TASKSTATE_BIN")
    if explicit:
        return explicit
    for profile in ("debug", "release"):
        p = ROOT / "target" / profile / "taskstate"
        if p.exists():
            return str(p)
    pytest.fail("no taskstate binary: run `cargo build -p taskstate` or set TASKSTATE_BIN")


def unavailable(reason: str) -> None:
    """Skips visibly, or fails where CI promised a browser."""
    if os.environ.get("TASKSTATE_REQUIRE_BROWSER"):
        pytest.fail(reason)
    pytest.skip(f"skipped: {reason}")


@pytest.fixture()
def served(tmp_path: Path) -> Any:
    if sync_playwright is None:
        unavailable("pip install playwright (test.sh does)")
    if not Path(CHROMIUM).exists():
        unavailable(f"install chromium (apt-get install chromium) or set CHROMIUM; {CHROMIUM} is missing")
    path = tmp_path / "state.db"
    shutil.copy(FIXTURE, path)
    app_id = f"monitor_{uuid.uuid4().hex[:8]}"
    # Round 1 on the drop-in (which upgrades the file), round 2 on pynenc's
    # own backend, whose inserts only the file's triggers can follow.
    ours = app_on(str(path), "TaskstateStateBackend", app_id)
    round1 = workload(ours)
    theirs = app_on(str(path), "SQLiteStateBackend", app_id + "_p")
    round2 = workload(theirs)
    def run_evil() -> str:
        inv = t.echo(EVIL_ARG)
        assert inv.result == EVIL_ARG
        return inv.invocation_id

    evil = t.run(theirs, run_evil)
    # A status change recorded by a runner with a hostile id.
    last = theirs.state_backend.get_history(evil)[-1].timestamp
    ts = last + timedelta(milliseconds=5)
    rec = InvocationHistory(
        invocation_id=evil,
        status_record=InvocationStatusRecord(status=InvocationStatus.RETRY, runner_id=EVIL_RUNNER, timestamp=ts),
        runner_context_id=EVIL_RUNNER,
    )
    rec._timestamp = ts
    theirs.state_backend._add_histories([evil], rec)
    before = path.read_bytes()

    proc = subprocess.Popen(
        [taskstate_bin(), "serve", f"sqlite://{path}", "--bind", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline() if proc.stderr else ""
        assert "serving" in line, f"taskstate serve did not start: {line!r}"
        base = line.rsplit(" on ", 1)[1].strip().rstrip("/")
        yield {
            "base": base,
            "path": path,
            "round1": round1,
            "round2": round2,
            "evil": evil,
            "pynenc": reader(str(path), "SQLiteStateBackend", app_id + "_r"),
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # Served read-only: pynenc's rows are as they were (SQLite may leave
    # its -wal/-shm beside the file; the database itself is unchanged).
    assert path.read_bytes() == before, "taskstate serve wrote to the store"


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def no_injected_markup(page: Page) -> None:
    """Stored strings never became elements: no script anywhere, and no
    <b> (the hostile strings carry one; the pages themselves use none)."""
    assert page.evaluate("document.querySelectorAll('script').length") == 0
    assert page.evaluate("document.querySelectorAll('main b').length") == 0


def sql(path: Path, query: str) -> Any:
    # A read-only URI connection: the check must not write either.
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as c:
        return c.execute(query).fetchone()[0]


def test_every_page_in_a_real_browser(served: dict[str, Any]) -> None:
    base, path, pyn = served["base"], served["path"], served["pynenc"]
    add_id, fail_id, fan_id = served["round2"][0], served["round2"][2], served["round2"][5]
    with sync_playwright() as p:  # type: ignore[misc]
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            chromium_sandbox=False,
            args=[
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        blocked: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(base) else blocked.append(r.url))

        # Overview: counts and latest statuses as the file holds them.
        page.goto(base + "/")
        n_inv = sql(path, "SELECT COUNT(*) FROM state_backend_invocations")
        shown = page.inner_text('#counts tr[data-kind="invocations"] td.num')
        assert int(shown) == n_inv
        n_hist = sql(path, "SELECT COUNT(*) FROM state_backend_history")
        assert int(page.inner_text('#counts tr[data-kind="history records"] td.num')) == n_hist
        keys = sql(path, "SELECT COUNT(DISTINCT invocation_id) FROM state_backend_history")
        status_total = sum(int(x) for x in page.locator("#statuses td.num").all_inner_texts())
        assert status_total == keys
        # The hostile retry is the newest change of all.
        first = page.locator("#recent tbody tr").first
        assert first.get_attribute("data-id") == served["evil"]
        assert first.locator("[data-status]").inner_text() == "retry"
        no_injected_markup(page)
        shot(page, "01-overview")

        # Invocations, filtered by the form: only failed ones, with pynenc's
        # failing task among them.
        page.click("nav >> text=Invocations")
        page.select_option('#filters select[name="status"]', "failed")
        page.click('#filters button[type="submit"]')
        assert "status=failed" in page.url
        statuses = page.locator("#invocations tbody [data-status]").all_inner_texts()
        assert statuses and set(statuses) == {"failed"}
        failed_ids = page.locator("#invocations tbody tr").evaluate_all("rs => rs.map(r => r.dataset.id)")
        assert fail_id in failed_ids
        shot(page, "02-invocations-failed")

        # Its detail page, reached by its link: the history pynenc reads.
        page.click(f'#invocations tr[data-id="{fail_id}"] a[href^="/invocations/"]')
        assert page.inner_text("#invocation-id") == fail_id
        want = [h.status_record.status.value for h in pyn.get_history(fail_id)]
        got = page.locator("#history tbody [data-status]").all_inner_texts()
        assert got == want
        assert "boom" in page.inner_text("#exception")
        assert page.locator("#chain.ok").count() == 1
        assert page.locator("#history-timeline rect").count() == len(want)
        shot(page, "03-invocation-failed")

        # A plain success: its result.
        page.goto(f"{base}/invocations/{quote(add_id, safe='')}")
        assert page.inner_text("#result").strip() == "3"

        # The fan-out workflow's tree: its root and its three children.
        page.goto(f"{base}/invocations/{quote(fan_id, safe='')}")
        page.click('#call a[href^="/workflows/"]')
        root = page.locator(f'#tree li[data-id="{fan_id}"]')
        assert root.get_attribute("data-depth") == "0"
        children = [c for c in pyn.get_child_invocations(fan_id)]
        assert len(children) == 3
        for c in children:
            node = page.locator(f'#tree li[data-id="{c}"]')
            assert node.get_attribute("data-depth") == "1"
            status = pyn.get_history(c)[-1].status_record.status.value
            assert node.locator("[data-status]").inner_text() == status
        shot(page, "04-workflow-tree")

        # Workflows by type, then one run's tree by its link.
        page.click("nav >> text=Workflows")
        page.click("#types a >> nth=0")
        assert page.locator("#runs tbody tr").count() >= 1
        shot(page, "05-workflows")

        # The hostile invocation: its argument shows as text, exactly.
        page.goto(f"{base}/invocations/{quote(served['evil'], safe='')}")
        # pynenc stores the argument JSON-serialized: shown exactly so.
        assert json.dumps(EVIL_ARG) in page.inner_text("#arguments")
        assert EVIL_RUNNER in page.inner_text("#history")
        no_injected_markup(page)
        shot(page, "06-hostile-invocation")

        # Timeline over both rounds: lanes per runner, the hostile one as text.
        hist = pyn.get_history(served["evil"])
        start = pyn.get_history(served["round1"][0])[0].timestamp - timedelta(seconds=1)
        end = hist[-1].timestamp + timedelta(seconds=1)
        page.goto(f"{base}/timeline?" + urlencode({"since": start.astimezone(UTC).isoformat(), "until": end.astimezone(UTC).isoformat()}))
        lanes = page.locator("svg#timeline g.lane").evaluate_all("gs => gs.map(g => g.dataset.runner)")
        assert EVIL_RUNNER in lanes
        assert len(lanes) >= 2
        assert page.locator("svg#timeline rect.seg").count() >= 10
        no_injected_markup(page)
        shot(page, "07-timeline")

        # Runners: a literal search.
        page.click("nav >> text=Runners")
        page.fill('#search input[name="q"]', "<b>")
        page.click('#search button[type="submit"]')
        assert page.locator("#runners tbody tr").count() == 0 or EVIL_RUNNER in page.inner_text("#runners")
        page.fill('#search input[name="q"]', "")
        page.click('#search button[type="submit"]')
        assert page.locator("#runners tbody tr").count() >= 1
        shot(page, "08-runners")

        # A bad parameter: a 400 page saying what is wrong.
        resp = page.goto(base + "/invocations?status=bogus")
        assert resp is not None and resp.status == 400
        assert "is not one of" in page.inner_text("#error")
        shot(page, "09-bad-request")

        assert blocked == [], f"the pages asked for something not served by taskstate: {blocked}"
        browser.close()
