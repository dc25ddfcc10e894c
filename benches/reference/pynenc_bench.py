#!/usr/bin/env python3
"""The SPEC §7 reference workload on pynenc 0.1.0's own SQLiteStateBackend.

Builds the same workload `taskstate bench` builds (N invocations in
workflows of 50, four JSON arguments, three history records and a result
each), times the same operations one call per item through pynenc's backend
methods, checks the outputs, and prints ops/s per operation -- so the
figures of `taskstate bench` can be compared with the Python reference
measured on the same machine.

    python -m venv /tmp/pynenc-venv && /tmp/pynenc-venv/bin/pip install pynenc==0.1.0
    /tmp/pynenc-venv/bin/python benches/reference/pynenc_bench.py --n 2000 [--json out.json]
"""
import argparse
import json
import os
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--json")
    a = ap.parse_args()
    d = tempfile.mkdtemp()
    app = Pynenc(
        config_values={
            "app_id": "pynenc_bench",
            "state_backend_cls": "SQLiteStateBackend",
            "sqlite_db_path": os.path.join(d, "state.db"),
            "disable_client_data_store": True,
        }
    )
    sb = app.state_backend
    ids, pairs, histories, results, children, t0, t_end = build(a.n)
    n = a.n
    out = []

    def timed(op, count, body, check):
        start = time.perf_counter()
        got = [body(i) for i in range(count)]
        secs = time.perf_counter() - start
        ok = check(got)
        out.append({"engine": "pynenc-sqlite", "op": op, "n": count, "threads": 1, "seconds": secs,
                    "ops_per_s": count / secs, "validation": "ok" if ok else "FAILED"})

    timed("upsert_invocations", n, lambda i: sb._upsert_invocations([pairs[i]]), lambda g: True)
    timed("add_histories", 3 * n, lambda r: sb._add_histories([histories[r].invocation_id], histories[r]), lambda g: True)
    timed("set_result", n, lambda i: sb._set_result(ids[i], results[i]), lambda g: True)
    timed("get_invocation", n, lambda i: sb._get_invocation(ids[i]),
          lambda g: all(p[0].invocation_id == pairs[i][0].invocation_id and p[1].serialized_arguments == pairs[i][1].serialized_arguments for i, p in enumerate(g)))
    timed("get_history", n, lambda i: sb._get_history(ids[i]),
          lambda g: all([h.status_record.status for h in hs] == [InvocationStatus.REGISTERED, InvocationStatus.PENDING, InvocationStatus.RUNNING] for hs in g))
    timed("get_result", n, lambda i: sb._get_result(ids[i]), lambda g: g == results)
    timed("get_child_invocations", n, lambda i: sorted(sb.get_child_invocations(ids[i])), lambda g: g == [sorted(c) for c in children])
    timed("iter_invocations_in_timerange", 1, lambda _: [x for b in sb.iter_invocations_in_timerange(t0, t_end, 100) for x in b],
          lambda g: sorted(g[0]) == sorted(ids))
    timed("iter_history_in_timerange", 1, lambda _: [x for b in sb.iter_history_in_timerange(t0, t_end, 100) for x in b],
          lambda g: len(g[0]) == 3 * n)
    for r in out:
        if r["op"] == "iter_invocations_in_timerange":
            r["n"], r["ops_per_s"] = n, n / r["seconds"]
        if r["op"] == "iter_history_in_timerange":
            r["n"], r["ops_per_s"] = 3 * n, 3 * n / r["seconds"]
    print(f"pynenc 0.1.0 SQLiteStateBackend, N={n}")
    for r in out:
        print(f"{r['op']:<32}{r['n']:>8}{r['ops_per_s']:>14,.0f} op/s  {r['validation']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"results": out}, f, indent=2)


if __name__ == "__main__":
    main()
