"""The reference harness times pynenc with Python's cyclic garbage
collector held off, as `timeit` does, and gives it back afterwards: a
collection landing in one timed slice ran that slice at a tenth to a
third of the others' speed (`get_history`, `get_child_invocations`), which
no interleaving cancels."""

from __future__ import annotations

import gc
import sys

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

sys.path.insert(0, str(ROOT / "benches" / "reference"))
pynenc_bench = pytest.importorskip("pynenc_bench")
pynenc_target = pytest.importorskip("pynenc_target")


def test_timed_reads_run_without_the_collector_and_restore_it() -> None:
    seen: list[bool] = []
    read = (3, 3, lambda _sb, _i: seen.append(gc.isenabled()), lambda got: len(got) == 3)
    assert gc.isenabled()
    items, secs, ok = pynenc_bench.timed_read(None, read, 0.0)
    assert (items, ok) == (3, True)
    assert secs >= 0.0
    assert seen == [False, False, False]
    assert gc.isenabled()


def test_a_failing_body_still_restores_the_collector() -> None:
    def boom(_sb: object, _i: int) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        pynenc_bench.timed_read(None, (1, 1, boom, lambda _g: True), 0.0)
    assert gc.isenabled()


def test_a_collector_turned_off_by_the_caller_stays_off() -> None:
    gc.disable()
    try:
        with pynenc_bench.gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_target_times_its_write_passes_without_the_collector() -> None:
    target = pynenc_target.Target("pynenc-mem")
    target.hello({"n": 4})
    seen: list[bool] = []
    target.writes = {"set_result": (2, lambda _sb, _i: seen.append(gc.isenabled()))}
    target.store = (object(), None)
    reply = target.run({"op": "set_result", "min_time": 0.0})
    target.store = None
    assert reply["items"] == 2
    assert reply["error"] is None
    assert seen == [False, False]
    assert gc.isenabled()
