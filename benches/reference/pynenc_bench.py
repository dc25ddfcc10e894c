#!/usr/bin/env python3
"""The SPEC §7 reference workload through pynenc 0.1.0's state-backend methods.

Builds the same workload `taskstate bench` builds (N invocations in
workflows of 50, four JSON arguments, three history records and a result
each), times the same operations one call per item through the backend
methods pynenc itself calls (`_upsert_invocations`, `_add_histories`,
`_get_invocation`, ...), checks every output, and reports ops/s per
operation for each backend:

* `pynenc-sqlite`  pynenc's own SQLiteStateBackend
* `pynenc-mem`     pynenc's own MemStateBackend
* `taskstate-sqlite`, `taskstate-memory`  TaskstateStateBackend (the
  pynenc-taskstate package) at sqlite:// and memory:// -- when installed.

Backends run interleaved, round after round (`--repeat`), each round on a
fresh store, so a noisy moment of this shared machine hits all of them;
every op repeats until it has run `--min-time` seconds (reads over the
workload, the writes as whole passes on new empty stores), timed with
Python's cyclic garbage collector held off, as `timeit` does (`gc_paused`).
The report gives each op's median ops/s with its min-max, and the ratios
taskstate/pynenc (median of the per-round ratios, with their range).

    python -m venv /tmp/v && /tmp/v/bin/pip install pynenc==0.1.0 maturin
    (cd crates/taskstate-python && /tmp/v/bin/maturin develop --release)
    /tmp/v/bin/python benches/reference/pynenc_bench.py --n 2000 --repeat 3 [--json out.json]
"""
import argparse
import contextlib
import gc
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone

os.environ["TZ"] = "UTC0"
time.tzset()

from pynenc import Pynenc  # noqa: E402
from pynenc.call import compute_args_id  # noqa: E402
from pynenc.identifiers.call_id import CallId  # noqa: E402
from pynenc.identifiers.invocation_id import InvocationId  # noqa: E402
from pynenc.identifiers.task_id import TaskId  # noqa: E402
from pynenc.invocation.dist_invocation import InvocationDTO  # noqa: E402
from pynenc.invocation.status import InvocationStatus, InvocationStatusRecord  # noqa: E402
from pynenc.models.call_dto import CallDTO  # noqa: E402
from pynenc.state_backend.base_state_backend import InvocationHistory  # noqa: E402
from pynenc.workflow.workflow_identity import WorkflowIdentity  # noqa: E402

TASKS = [
    TaskId("pynenc_bench.tasks", "process_order"),
    TaskId("pynenc_bench.tasks", "charge_card"),
    TaskId("pynenc_bench.tasks.shipping", "book_courier"),
    TaskId("pynenc_bench.tasks", "send_email"),
]
RUNNER = "bench-runner-0001"


def build(n):
    ids = [str(uuid.uuid4()) for _ in range(n)]
    t0 = datetime.now(timezone.utc) - timedelta(hours=1)
    pairs, histories, results, children = [], [], [], [[] for _ in range(n)]
    for i in range(n):
        root, j = i - i % 50, i % 50
        task, parent = (TASKS[0], None) if j == 0 else (TASKS[1 + i % 3], root + (j - 1) // 4)
        items = ", ".join(
            '{"sku": "SKU-%04d", "qty": %d}' % ((7 * i + k) % 1000, 1 + (i + k) % 5) for k in range(3)
        )
        args = {
            "order_id": str(100000 + i),
            "customer": '"customer-%04d"' % (i % 97),
            "items": "[%s]" % items,
            "priority": '"high"' if i % 10 == 0 else '"normal"',
        }
        call_id = CallId(task_id=task, args_id=compute_args_id(args))
        wf = WorkflowIdentity(InvocationId(ids[root]), TASKS[0])
        pairs.append(
            (
                InvocationDTO(
                    invocation_id=InvocationId(ids[i]),
                    call_id=call_id,
                    workflow=wf,
                    parent_invocation_id=InvocationId(ids[parent]) if parent is not None else None,
                ),
                CallDTO(call_id=call_id, serialized_arguments=args),
            )
        )
        if parent is not None:
            children[parent].append(ids[i])
        for k, status in enumerate([InvocationStatus.REGISTERED, InvocationStatus.PENDING, InvocationStatus.RUNNING]):
            ts = t0 + timedelta(microseconds=10 * (3 * i + k))
            rec = InvocationStatusRecord(status=status, runner_id=None if k == 0 else RUNNER, timestamp=ts)
            h = InvocationHistory(
                invocation_id=ids[i],
                status_record=rec,
                runner_context_id=RUNNER,
                registered_by_inv_id=ids[parent] if (k == 0 and parent is not None) else None,
            )
            h._timestamp = ts
            histories.append(h)
        results.append(json.dumps({"order_id": 100000 + i, "total_cents": 1999 + i, "status": "charged"}))
    return ids, pairs, histories, results, children, t0, t0 + timedelta(microseconds=10 * 3 * n)


BACKENDS = {
    "pynenc-sqlite": lambda d: {"state_backend_cls": "SQLiteStateBackend", "sqlite_db_path": os.path.join(d, "state.db")},
    "pynenc-mem": lambda d: {"state_backend_cls": "MemStateBackend"},
    "taskstate-sqlite": lambda d: {
        "state_backend_cls": "TaskstateStateBackend",
        "taskstate_url": "sqlite://" + os.path.join(d, "state.db"),
    },
    "taskstate-memory": lambda d: {"state_backend_cls": "TaskstateStateBackend", "taskstate_url": "memory://"},
}

# taskstate op/s divided by pynenc's, per pair of backends.
PAIRS = [("taskstate-sqlite", "pynenc-sqlite"), ("taskstate-memory", "pynenc-mem")]


def available_backends():
    names = ["pynenc-sqlite", "pynenc-mem"]
    try:
        import pynenc_taskstate  # noqa: F401
    except ImportError:
        print("(pynenc-taskstate is not installed: only pynenc's own backends run)")
        return names
    return names + ["taskstate-sqlite", "taskstate-memory"]


def new_store(name, round_no, pass_no):
    """A fresh, empty store of backend `name` in a temp dir of its own;
    returns the state backend and the dir."""
    d = tempfile.mkdtemp()
    app = Pynenc(
        config_values={
            "app_id": f"pynenc_bench_{name}_{round_no}_{pass_no}_{uuid.uuid4().hex[:6]}",
            "disable_client_data_store": True,
            **BACKENDS[name](d),
        }
    )
    return app.state_backend, d


def write_ops(data):
    """The writes, in order: [(op, items per pass, body(sb, item))]."""
    ids, pairs, histories, results, _children, _t0, _t_end = data
    n = len(ids)
    return [
        ("upsert_invocations", n, lambda sb, i: sb._upsert_invocations([pairs[i]])),
        ("add_histories", 3 * n, lambda sb, r: sb._add_histories([histories[r].invocation_id], histories[r])),
        ("set_result", n, lambda sb, i: sb._set_result(ids[i], results[i])),
    ]


def read_ops(data):
    """The reads, in order: {op: (calls per pass, items per pass,
    body(sb, i), check(outputs of one pass))}."""
    ids, pairs, histories, results, children, t0, t_end = data
    n = len(ids)
    statuses = [InvocationStatus.REGISTERED, InvocationStatus.PENDING, InvocationStatus.RUNNING]
    return {
        "get_invocation": (n, n, lambda sb, i: sb._get_invocation(ids[i]),
                           lambda g: all(p[0].invocation_id == pairs[i][0].invocation_id and p[0].workflow == pairs[i][0].workflow
                                         and p[1].serialized_arguments == pairs[i][1].serialized_arguments for i, p in enumerate(g))),
        "get_history": (n, n, lambda sb, i: sb._get_history(ids[i]),
                        lambda g: all([h.status_record.status for h in hs] == statuses
                                      and hs[0].timestamp == histories[3 * i].timestamp for i, hs in enumerate(g))),
        "get_result": (n, n, lambda sb, i: sb._get_result(ids[i]), lambda g: g == results),
        "get_child_invocations": (n, n, lambda sb, i: sorted(sb.get_child_invocations(ids[i])),
                                  lambda g: g == [sorted(c) for c in children]),
        "iter_invocations_in_timerange": (1, n, lambda sb, _: [x for b in sb.iter_invocations_in_timerange(t0, t_end, 100) for x in b],
                                          lambda g: sorted(g[0]) == sorted(ids)),
        "iter_history_in_timerange": (1, 3 * n, lambda sb, _: [x for b in sb.iter_history_in_timerange(t0, t_end, 100) for x in b],
                                      lambda g: len(g[0]) == 3 * n),
    }


@contextlib.contextmanager
def gc_paused():
    """Python's cyclic garbage collector held off while a loop is timed,
    as `timeit` does, and given back as it was found.

    With it on, a collection (a full one walks every object the store and
    the workload hold) landing in one 50 ms slice ran that slice at a tenth
    to a third of the others' speed (`get_history`, `get_child_invocations`:
    20 slices, minimum 0.09-0.30 of the median with it, 0.88-0.92 without),
    and interleaving with the engines cancels none of that. Reference
    counting still frees everything the loops drop. The ops that allocate
    ran faster without it (`bench --against`, two runs each: upserts
    440k/430k -> 552k/593k op/s, `get_child_invocations` 393k/339k ->
    476k/484k); the others moved within their own noise."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def timed_read(sb, read, min_time):
    """One read op looped over the workload until it has run `min_time`
    seconds (without the cyclic collector: see `gc_paused`), its outputs
    checked after the timing stops; returns (items, seconds, valid)."""
    calls, items, body, check = read
    passes, got = 0, None
    with gc_paused():
        start = time.perf_counter()
        while True:
            got = [body(sb, i) for i in range(calls)]
            passes += 1
            secs = time.perf_counter() - start
            if secs >= min_time:
                break
    return items * passes, secs, bool(check(got))


def timed_writes(sb, count, body):
    """`body(sb, i)` for every item, timed without the cyclic collector;
    returns the seconds."""
    with gc_paused():
        start = time.perf_counter()
        for i in range(count):
            body(sb, i)
        return time.perf_counter() - start


def run_once(name, data, round_no, min_time):
    """One round of every op; returns {op: (ops_per_s, n, valid)}.

    The writes run on empty stores and a pass of them can be short, so
    they repeat as the reads do: the whole sequence of writes, each pass
    on a new empty store, until every write has run `min_time`; each
    write's figure sums those passes. The reads run on the last pass's
    store, read loops repeating over the workload until they last
    `min_time`."""
    out = {}
    writes = write_ops(data)
    spent = {op: [0.0, 0] for op, _, _ in writes}
    pass_no = 0
    while True:
        pass_no += 1
        sb, d = new_store(name, round_no, pass_no)
        for op, count, body in writes:
            spent[op][0] += timed_writes(sb, count, body)
            spent[op][1] += count
        if all(secs >= min_time for secs, _ in spent.values()):
            break
        del sb
        shutil.rmtree(d, ignore_errors=True)
    for op, (secs, items) in spent.items():
        out[op] = (items / secs, items, True)
    for op, read in read_ops(data).items():
        items, secs, ok = timed_read(sb, read, min_time)
        out[op] = (items / secs, items, ok)
    del sb
    shutil.rmtree(d, ignore_errors=True)
    return out


def spread(values):
    return statistics.median(values), min(values), max(values)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3, help="rounds; backends interleaved in each")
    ap.add_argument("--min-time", type=float, default=0.2, help="seconds each timed op runs at least (reads loop over the workload, writes repeat on new empty stores)")
    ap.add_argument("--backends", help="comma-separated subset of: " + ", ".join(BACKENDS))
    ap.add_argument("--json")
    a = ap.parse_args()
    if a.n < 50 or a.repeat < 1:
        ap.error("--n must be at least 50 and --repeat at least 1")
    names = a.backends.split(",") if a.backends else available_backends()
    data = build(a.n)
    samples = []  # one entry per (round, backend, op)
    for r in range(a.repeat):
        # Rotate the order each round so no backend always runs first.
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            for op, (ops_s, n, ok) in run_once(name, data, r, a.min_time).items():
                samples.append({"round": r, "engine": name, "op": op, "n": n, "ops_per_s": ops_s,
                                "validation": "ok" if ok else "FAILED"})
    ops = list(dict.fromkeys(s["op"] for s in samples))
    by = {(s["round"], s["engine"], s["op"]): s for s in samples}
    print(f"pynenc 0.1.0 state-backend methods, N={a.n}, {a.repeat} rounds, backends interleaved; "
          f"median op/s (min-max)")
    header = f"{'operation':<31}" + "".join(f"{n:>30}" for n in names)
    print(header)
    for op in ops:
        cells = []
        for name in names:
            med, lo, hi = spread([by[(r, name, op)]["ops_per_s"] for r in range(a.repeat)])
            bad = any(by[(r, name, op)]["validation"] != "ok" for r in range(a.repeat))
            cells.append(f"{med:>12,.0f} ({lo:,.0f}-{hi:,.0f})" + ("!" if bad else " "))
        print(f"{op:<31}" + "".join(f"{c:>30}" for c in cells))
    ratios = []
    for ours, theirs in PAIRS:
        if ours not in names or theirs not in names:
            continue
        print(f"\nratio {ours} / {theirs}: median of per-round ratios (min-max)")
        for op in ops:
            per_round = [by[(r, ours, op)]["ops_per_s"] / by[(r, theirs, op)]["ops_per_s"] for r in range(a.repeat)]
            med, lo, hi = spread(per_round)
            ratios.append({"pair": f"{ours}/{theirs}", "op": op, "median": med, "min": lo, "max": hi})
            print(f"  {op:<31}{med:>8.2f}  ({lo:.2f}-{hi:.2f})")
    failed = [s for s in samples if s["validation"] != "ok"]
    if failed:
        print(f"\nVALIDATION FAILED for {len(failed)} samples (marked !)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"n": a.n, "repeat": a.repeat, "samples": samples, "ratios": ratios}, f, indent=2)
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
