#!/usr/bin/env python3
"""taskstate's memory engine against pynenc 0.1.0's MemStateBackend, in one run.

Each round runs `taskstate bench --engine memory://` (the Rust engine
through the StateBackend trait; the second of two rounds in its process, so
both sides measure a warm process) and pynenc's MemStateBackend through
the backend methods pynenc calls (the `pynenc-mem` backend of
pynenc_bench.py), on the same workload size, the order alternating between
rounds so a noisy moment of the machine hits both. Per op it reports each
side's median ops/s with min-max, and the ratio taskstate/pynenc as the
median of the per-round ratios with their range.

    /tmp/v/bin/python benches/reference/memory_vs_pynenc.py \\
        --taskstate target/release/taskstate --n 2000 --repeat 20 [--json out.json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pynenc_bench  # noqa: E402  (sets TZ=UTC0 as pynenc_bench does)


def rust_round(binary, n, min_time_ms):
    """One measured round of the Rust engine in a warm process, as the
    Python side is: the binary runs two rounds and the second is kept (the
    first pays the fresh process's page faults on every first allocation)."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "bench.json")
        subprocess.run(
            [binary, "bench", "--engine", "memory://", "--n", str(n), "--repeat", "2",
             "--min-time-ms", str(min_time_ms), "--json", out],
            check=True, stdout=subprocess.DEVNULL,
        )
        with open(out) as f:
            doc = json.load(f)
    return {s["op"]: (s["ops_per_s"], s["validation"] == "ok")
            for s in doc["samples"] if s["threads"] == 1 and s["round"] == 1}


def python_round(data, round_no, min_time):
    got = pynenc_bench.run_once("pynenc-mem", data, round_no, min_time)
    return {op: (ops, ok) for op, (ops, _n, ok) in got.items()}


def spread(values):
    return statistics.median(values), min(values), max(values)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--taskstate", required=True, help="path of a release `taskstate` binary")
    ap.add_argument("--n", type=int, default=2000)
    # Twenty rounds (about five minutes): pynenc's side moves by up to 2x
    # between rounds, and with six the medians of two runs moved up to 20 %.
    ap.add_argument("--repeat", type=int, default=20,
                    help="rounds, even: each side runs first in half of them")
    ap.add_argument("--min-time", type=float, default=0.2, help="seconds each timed op runs at least (reads loop, writes repeat on new stores)")
    ap.add_argument("--json")
    a = ap.parse_args()
    if a.repeat < 2 or a.repeat % 2:
        # Whichever side runs second in a round runs after the other's
        # burst of work (pynenc's upsert is ~50 % slower then): an odd count
        # lets one order decide the median.
        ap.error("--repeat must be even and at least 2, so each side runs first in half the rounds")
    data = pynenc_bench.build(a.n)
    rounds = []
    for r in range(a.repeat):
        sides = [("taskstate", lambda: rust_round(a.taskstate, a.n, int(a.min_time * 1000))),
                 ("pynenc", lambda: python_round(data, r, a.min_time))]
        if r % 2:
            sides.reverse()
        rounds.append({name: run() for name, run in sides})
    ops = list(rounds[0]["pynenc"].keys())
    print(f"taskstate memory:// vs pynenc MemStateBackend, N={a.n}, {a.repeat} rounds alternating; "
          "median op/s [min-max], ratio = median of per-round ratios [range]")
    print(f"{'operation':<31}{'taskstate':>28}{'pynenc':>28}{'ratio':>20}")
    table, failed = [], False
    for op in ops:
        ours = [rd["taskstate"][op][0] for rd in rounds]
        theirs = [rd["pynenc"][op][0] for rd in rounds]
        ratio = [o / t for o, t in zip(ours, theirs)]
        failed |= not all(rd["taskstate"][op][1] and rd["pynenc"][op][1] for rd in rounds)
        (om, ol, oh), (tm, tl, th), (rm, rl, rh) = spread(ours), spread(theirs), spread(ratio)
        table.append({"op": op, "taskstate": ours, "pynenc": theirs, "ratio": ratio,
                      "ratio_median": rm, "ratio_min": rl, "ratio_max": rh})
        print(f"{op:<31}{om:>14,.0f} [{ol/1e6:.2f}M-{oh/1e6:.2f}M]{tm:>14,.0f} [{tl/1e6:.2f}M-{th/1e6:.2f}M]"
              f"{rm:>10.2f} [{rl:.2f}-{rh:.2f}]")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"n": a.n, "repeat": a.repeat, "ops": table}, f, indent=2)
    if failed:
        print("VALIDATION FAILED on one side (see the samples)")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
