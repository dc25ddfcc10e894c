"""`taskstate bench --against`, with pynenc 0.1.0's own backends served by
`benches/reference/pynenc_target.py`: the harness behind the README's
memory-vs-pynenc table runs end to end, every op of both sides validated,
and the ratios are those of the samples."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_monitor_browser import ROOT, taskstate_bin

TARGET = ROOT / "benches" / "reference" / "pynenc_target.py"
OPS = [
    "upsert_invocations", "add_histories", "set_result", "get_invocation", "get_history",
    "get_result", "get_child_invocations", "iter_invocations_in_timerange", "iter_history_in_timerange",
]


def bench_against(tmp_path: Path, engine: str, backend: str) -> dict[str, Any]:
    out = tmp_path / "bench.json"
    against = f"{shlex.quote(sys.executable)} {shlex.quote(str(TARGET))} {backend}"
    run = subprocess.run(
        [taskstate_bin(), "bench", "--engine", engine, "--n", "100", "--repeat", "2",
         "--min-time-ms", "8", "--seed", "3", "--against", against, "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr
    assert f"/{backend}" in run.stdout, run.stdout
    return json.loads(out.read_text())


@pytest.mark.parametrize(("engine", "backend"), [("memory://", "pynenc-mem"), ("sqlite", "pynenc-sqlite")])
def test_bench_against_pynenc(tmp_path: Path, engine: str, backend: str) -> None:
    if engine == "sqlite":
        engine = f"sqlite://{tmp_path / 'ours.db'}"
    doc = bench_against(tmp_path, engine, backend)
    samples = doc["samples"]
    assert {s["engine"] for s in samples} == {"memory" if engine == "memory://" else "sqlite", backend}
    for s in samples:
        assert s["validation"] == "ok", s
        assert s["ops_per_s"] > 0, s
    theirs = [s for s in samples if s["engine"] == backend]
    assert sorted({s["op"] for s in theirs}) == sorted(OPS)
    # Both rounds, every op; reads at least the 8 ms asked for.
    assert len(theirs) == 2 * len(OPS)
    for s in theirs:
        assert s["seconds"] >= 0.008, s
        # A write's items are whole passes of the workload (100 invocations,
        # 300 history records).
        per_pass = {"upsert_invocations": 100, "add_histories": 300, "set_result": 100}.get(s["op"])
        if per_pass:
            assert s["n"] % per_pass == 0, s
    ratios = {r["op"]: r for r in doc["ratios"]}
    assert sorted(ratios) == sorted(OPS)
    for op, r in ratios.items():
        assert r["baseline"] == backend
        ours = {s["round"]: s["ops_per_s"] for s in samples if s["op"] == op and s["engine"] == r["engine"]}
        base = {s["round"]: s["ops_per_s"] for s in theirs if s["op"] == op}
        assert r["per_round"] == pytest.approx([ours[k] / base[k] for k in (0, 1)])
