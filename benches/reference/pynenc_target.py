#!/usr/bin/env python3
"""pynenc 0.1.0's own state backend as a target of `taskstate bench --against`.

`taskstate bench` runs this as a child process and drives it op by op, in
turn with the engines it measures: each timed read cut into slices that
alternate with the engines' (A B B A ...), each pass of writes beside
theirs. A slow spell of this shared machine then falls on both sides of a
ratio alike, where two programs run one after the other did not.

    /tmp/v/bin/python -m pip install pynenc==0.1.0
    target/release/taskstate bench --engine memory:// --n 2000 --repeat 10 \\
        --against '/tmp/v/bin/python benches/reference/pynenc_target.py pynenc-mem'

Every timed loop runs with Python's cyclic garbage collector held off,
as `timeit` does (`pynenc_bench.gc_paused`).

The argument names the backend (`pynenc-mem`: MemStateBackend, the
default; `pynenc-sqlite`: SQLiteStateBackend); the ops and their checks
are pynenc_bench.py's, on its own workload of the same size.

The protocol, one JSON object per line each way (requests on stdin,
replies on stdout; anything for a human goes to stderr):

    {"cmd": "hello", "n": N}              -> {"name": "pynenc-mem"}
    {"cmd": "open"}                       -> {}   a new empty store
    {"cmd": "run", "op": OP, "min_time": S}
        -> {"items": I, "seconds": T, "error": null or "what was wrong"}
           a write: one pass of its items on the open store;
           a read: looped over the workload until it has run S seconds
    {"cmd": "validate"}                   -> {"error": null or "..."}
           reads every write back (untimed)
    {"cmd": "close"}                      -> {}   drops the store

A request it cannot serve gets {"fatal": "why"}; end of input ends it.
"""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pynenc_bench  # noqa: E402  (sets TZ=UTC0 as pynenc's tests expect)


class Target:
    def __init__(self, backend):
        if backend not in ("pynenc-mem", "pynenc-sqlite"):
            raise SystemExit(f"pynenc_target.py: unknown backend {backend!r} (pynenc-mem or pynenc-sqlite)")
        self.backend = backend
        self.data = None
        self.store = None  # (state backend, its temp dir)
        self.opened = 0

    def hello(self, req):
        self.data = pynenc_bench.build(int(req["n"]))
        self.writes = {op: (count, body) for op, count, body in pynenc_bench.write_ops(self.data)}
        self.reads = pynenc_bench.read_ops(self.data)
        return {"name": self.backend}

    def open(self, _req):
        self.close(None)
        self.opened += 1
        self.store = pynenc_bench.new_store(self.backend, 0, self.opened)
        return {}

    def close(self, _req):
        if self.store is not None:
            sb, d = self.store
            self.store = None
            del sb
            shutil.rmtree(d, ignore_errors=True)
        return {}

    def _sb(self):
        if self.store is None:
            raise ValueError("no store is open")
        return self.store[0]

    def run(self, req):
        op, sb = req["op"], self._sb()
        if op in self.writes:
            count, body = self.writes[op]
            secs = pynenc_bench.timed_writes(sb, count, body)
            return {"items": count, "seconds": secs, "error": None}
        if op in self.reads:
            items, secs, ok = pynenc_bench.timed_read(sb, self.reads[op], float(req["min_time"]))
            return {"items": items, "seconds": secs,
                    "error": None if ok else f"{op}: what pynenc read back differs from the input"}
        raise ValueError(f"unknown op {op!r}")

    def validate(self, _req):
        sb = self._sb()
        for op in ("get_invocation", "get_history", "get_result"):
            calls, _items, body, check = self.reads[op]
            if not check([body(sb, i) for i in range(calls)]):
                return {"error": f"{op}: what pynenc read back differs from the input"}
        return {"error": None}


def main():
    target = Target(sys.argv[1] if len(sys.argv) > 1 else "pynenc-mem")
    handlers = {"hello": target.hello, "open": target.open, "run": target.run,
                "validate": target.validate, "close": target.close}
    for line in sys.stdin:
        try:
            req = json.loads(line)
            handler = handlers.get(req.get("cmd"))
            if handler is None:
                raise ValueError(f"unknown request {line.strip()!r}")
            if req["cmd"] != "hello" and target.data is None:
                raise ValueError("the first request must be hello")
            reply = handler(req)
        except Exception as e:  # reported to the bench, which stops with it
            reply = {"fatal": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    target.close(None)


if __name__ == "__main__":
    main()
