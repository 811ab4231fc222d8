#!/usr/bin/env python3
"""Measurements for scripts/bench.sh: jitgate and an OpenSSH jump host side by side.

Each measurement alternates between the paths so that load on the machine falls on both
alike. Figures go to a JSON file; scripts/bench/report.py turns them into the table.
Standard library only.
"""

import argparse
import json
import os
import shlex
import sys
import re
import time

from sshbench import (
    bulk_run,
    cpu_seconds,
    idle_sessions,
    keystrokes,
    loadavg,
    percentile,
    median,
    setup_time,
    ssh_info,
    tree_memory,
)


DROPPED = re.compile(rb"jitgate: (\d+) bytes of this session were not recorded")


def env_int(name, default):
    return int(os.environ.get(name, default))


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def summary(values):
    s = sorted(values)
    return {
        "n": len(s),
        "median": median(s),
        "p90": percentile(s, 0.90),
        "min": s[0],
        "max": s[-1],
    }


def measure_setup(paths, n):
    """(a) `ssh … true`, n times through each path, after two warm-up runs each."""
    times = {name: [] for name in paths}
    for i in range(n + 2):
        order = list(paths) if i % 2 == 0 else list(reversed(paths))
        for name in order:
            dt = setup_time(paths[name])
            if i >= 2:
                times[name].append(dt * 1000)
    return {name: {**summary(v), "unit": "ms"} for name, v in times.items()}


def measure_bulk(paths, pids, nbytes, runs, recordings=None):
    """(b), (e): nbytes of text output read to nothing; MB/s from first to last byte."""
    out = {name: [] for name in paths}
    for i in range(runs):
        order = list(paths) if i % 2 == 0 else list(reversed(paths))
        for name in order:
            pid, children = pids[name]
            cpu0 = cpu_seconds(pid, children)
            r = bulk_run(paths[name], nbytes)
            r["cpu_seconds"] = round(cpu_seconds(pid, children) - cpu0, 3)
            if recordings and name in recordings:
                r["recording"] = recordings[name]()
            log(f"bulk {name} run {i + 1}: {r['mb_per_s']:.1f} MB/s")
            out[name].append(r)
    result = {}
    for name, rs in out.items():
        rates = [r["mb_per_s"] for r in rs]
        result[name] = {
            "unit": "MB/s (10^6 bytes a second, first byte to last)",
            "bytes": nbytes,
            **summary(rates),
            "wall_seconds": [round(r["wall_seconds"], 3) for r in rs],
            "server_cpu_seconds_per_gib": median(
                [r["cpu_seconds"] / (nbytes / 2**30) for r in rs]
            ),
            "runs": rs,
        }
    return result


def newest_cast(root):
    """A callable: waits for the newest recording under root to stop growing, then
    returns its size and the bytes it says were not recorded, and removes it."""

    def check():
        casts = []
        for d, _, files in os.walk(root):
            casts += [os.path.join(d, f) for f in files if f.endswith(".cast")]
        if not casts:
            return {"file_bytes": 0, "dropped_bytes": 0}
        path = max(casts, key=os.path.getmtime)
        size, stable_since = -1, time.monotonic()
        while time.monotonic() - stable_since < 1.0:
            now = os.path.getsize(path)
            if now != size:
                size, stable_since = now, time.monotonic()
            time.sleep(0.2)
        dropped = 0
        with open(path, "rb") as f:
            for line in f:
                m = DROPPED.search(line)
                if m:
                    dropped += int(m.group(1))
        for c in casts:
            os.remove(c)
        return {"file_bytes": size, "dropped_bytes": dropped}

    return check


def main():
    ap = argparse.ArgumentParser()
    for name in ("jitgate", "jitgate-full", "jitgate-off"):
        ap.add_argument(f"--{name}", required=True)
        ap.add_argument(f"--{name}-pid", type=int, required=True)
    ap.add_argument("--jitgate-recordings", required=True)
    ap.add_argument("--jitgate-full-recordings", required=True)
    ap.add_argument("--openssh", required=True)
    ap.add_argument("--jump-pid", type=int, required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    jg = shlex.split(a.jitgate)
    os_ = shlex.split(a.openssh)
    pair = {"jitgate": jg, "openssh": os_}
    pids = {"jitgate": (a.jitgate_pid, False), "openssh": (a.jump_pid, True)}
    res = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": os.environ.get("BENCH_QUICK", "0") == "1",
        "nproc": os.cpu_count(),
        "commands": {"jitgate": a.jitgate, "openssh": a.openssh},
        "guardrails": "none" if os.environ.get("BENCH_GUARDRAILS", "1") == "0" else "destructive",
        "ssh_info": {name: ssh_info(argv) for name, argv in pair.items()},
        "load": {"start": loadavg()},
    }

    n_sessions = env_int("BENCH_SESSIONS", 200)
    log(f"(c) memory: {n_sessions} idle interactive sessions through each path")
    res["memory"] = {
        "jitgate": idle_sessions(jg, n_sessions, lambda: tree_memory(a.jitgate_pid, False)),
        "openssh": idle_sessions(os_, n_sessions, lambda: tree_memory(a.jump_pid, True)),
    }
    res["load"]["after_memory"] = loadavg()

    n = env_int("BENCH_SETUP_N", 30)
    log(f"(a) session setup: ssh … true, {n} times through each path")
    res["setup"] = measure_setup(pair, n)
    res["load"]["after_setup"] = loadavg()

    k = env_int("BENCH_KEYS", 2000)
    log(f"(d) keystroke round trip: {k} samples through each path")
    res["keystroke"] = keystrokes(pair, k)
    res["load"]["after_keystroke"] = loadavg()

    nbytes = env_int("BENCH_BULK_BYTES", 512 << 20)
    runs = env_int("BENCH_BULK_RUNS", 5)
    log(f"(b), (e) bulk output: {nbytes} bytes, {runs} runs through each path, and through "
        "jitgate recording everything and nothing")
    # One loop over all four, so that (b) and (e) see the same load.
    paths = {**pair, "recorded": shlex.split(a.jitgate_full),
             "unrecorded": shlex.split(a.jitgate_off)}
    all_pids = {**pids, "recorded": (a.jitgate_full_pid, False),
                "unrecorded": (a.jitgate_off_pid, False)}
    bulk = measure_bulk(paths, all_pids, nbytes, runs, {
        "jitgate": newest_cast(a.jitgate_recordings),
        "recorded": newest_cast(a.jitgate_full_recordings),
    })
    res["bulk"] = {k: bulk[k] for k in ("jitgate", "openssh")}
    res["recording"] = {k: bulk[k] for k in ("recorded", "unrecorded")}
    res["load"]["end"] = loadavg()
    res["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)
    log(f"wrote {a.out}")


if __name__ == "__main__":
    main()
