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
import time

from sshbench import (
    TICK,
    _stat,
    bulk_run,
    descendants,
    idle_sessions,
    keystrokes,
    loadavg,
    percentile,
    median,
    setup_time,
    ssh_info,
    tree_memory,
)


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
    # The samples in the order taken: round i of one path pairs with round i of another.
    return {name: {**summary(v), "unit": "ms", "samples": [round(x, 2) for x in v]}
            for name, v in times.items()}


def tree_cpu(pid):
    """CPU seconds of a process and of everything it forked: its own utime+stime, the
    cutime+cstime of children it reaped (each of which holds its own reaped children), and
    the own and reaped time of descendants still running. Exact only while no descendant
    is being reaped between the reads, so read it when the tree is quiet (see settle)."""
    f = _stat(pid)
    total = sum(int(x) for x in f[11:15])
    for c in descendants(pid):
        try:
            total += sum(int(x) for x in _stat(c)[11:15])
        except (OSError, IndexError):
            continue
    return total / TICK


def settle(pid, before, timeout=10.0):
    """Waits until pid's descendants are those it had before a run: the per-connection
    sshd processes have exited and the listener has reaped them, so their CPU time sits in
    the listener's cutime+cstime (while they are zombies it shows in neither place)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if set(descendants(pid)) <= before:
            return True
        time.sleep(0.05)
    return False


def server_cpu(pid, tree):
    """A reading of server CPU seconds: pid alone (jitgate, one process) or its tree (an
    sshd listener whose per-connection children do the work)."""
    if not tree:
        f = _stat(pid)
        return (int(f[11]) + int(f[12])) / TICK
    return tree_cpu(pid)


def measure_bulk(paths, pids, nbytes, runs, recordings=None):
    """(b), (e): nbytes of text output read to nothing; MB/s from first to last byte, and
    the server's CPU seconds for the run."""
    out = {name: [] for name in paths}
    for i in range(runs):
        order = list(paths) if i % 2 == 0 else list(reversed(paths))
        for name in order:
            pid, tree = pids[name]
            before = set(descendants(pid)) if tree else set()
            # The full recording leaves ~540 MB of dirty pages behind; flushed here, they are
            # not written back on the next path's time.
            os.sync()
            cpu0 = server_cpu(pid, tree)
            r = bulk_run(paths[name], nbytes)
            if tree and not settle(pid, before):
                log(f"bulk {name}: the server's per-connection processes did not exit; "
                    "its CPU figure may be short")
            r["cpu_seconds"] = round(server_cpu(pid, tree) - cpu0, 3)
            if recordings and name in recordings:
                r["recording"] = recordings[name]()
            log(f"bulk {name} run {i + 1}: {r['mb_per_s']:.1f} MB/s, "
                f"server CPU {r['cpu_seconds']:.2f} s")
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
    returns its size and removes it."""

    def check():
        casts = []
        for d, _, files in os.walk(root):
            casts += [os.path.join(d, f) for f in files if f.endswith(".cast")]
        if not casts:
            return {"file_bytes": 0}
        path = max(casts, key=os.path.getmtime)
        size, stable_since = -1, time.monotonic()
        while time.monotonic() - stable_since < 1.0:
            now = os.path.getsize(path)
            if now != size:
                size, stable_since = now, time.monotonic()
            time.sleep(0.2)
        for c in casts:
            os.remove(c)
        return {"file_bytes": size}

    return check


def main():
    ap = argparse.ArgumentParser()
    for name in ("jitgate", "jitgate-full", "jitgate-off"):
        ap.add_argument(f"--{name}", required=True)
        ap.add_argument(f"--{name}-pid", type=int, required=True)
    ap.add_argument("--jitgate-recordings", required=True)
    ap.add_argument("--jitgate-full-recordings", required=True)
    ap.add_argument("--jitgate-kex", required=True)
    ap.add_argument("--openssh", required=True)
    ap.add_argument("--openssh-kex", required=True)
    ap.add_argument("--openssh-gcm", required=True)
    ap.add_argument("--jump-pid", type=int, required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    jg = shlex.split(a.jitgate)
    os_ = shlex.split(a.openssh)
    pair = {"jitgate": jg, "openssh": os_}
    # Every ssh command the run uses, by the name its figures go under: each side's
    # defaults, both with curve25519-sha256 (setup), OpenSSH with AES-GCM (bulk).
    variants = {**pair, "jitgate-kex": shlex.split(a.jitgate_kex),
                "openssh-kex": shlex.split(a.openssh_kex),
                "openssh-gcm": shlex.split(a.openssh_gcm)}
    res = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": os.environ.get("BENCH_QUICK", "0") == "1",
        "nproc": os.cpu_count(),
        "commands": {"jitgate": a.jitgate, "openssh": a.openssh, "jitgate-kex": a.jitgate_kex,
                     "openssh-kex": a.openssh_kex, "openssh-gcm": a.openssh_gcm},
        "guardrails": "none" if os.environ.get("BENCH_GUARDRAILS", "1") == "0" else "destructive",
        "ssh_info": {name: ssh_info(argv) for name, argv in variants.items()},
        "load": {"start": loadavg()},
    }

    n_sessions = env_int("BENCH_SESSIONS", 500)
    log(f"(c) memory: {n_sessions} idle interactive sessions through each path")
    res["memory"] = {
        "jitgate": idle_sessions(jg, n_sessions, lambda: tree_memory(a.jitgate_pid, False)),
        "openssh": idle_sessions(os_, n_sessions, lambda: tree_memory(a.jump_pid, True)),
    }
    res["load"]["after_memory"] = loadavg()

    n = env_int("BENCH_SETUP_N", 50)
    log(f"(a) session setup: ssh … true, {n} times through each path, with each side's "
        "defaults and with curve25519-sha256 on both")
    setup_paths = {k: variants[k] for k in ("jitgate", "openssh", "jitgate-kex", "openssh-kex")}
    res["setup"] = measure_setup(setup_paths, n)
    res["load"]["after_setup"] = loadavg()

    k = env_int("BENCH_KEYS", 5000)
    log(f"(d) keystroke round trip: {k} samples through each path")
    res["keystroke"] = keystrokes(pair, k)
    res["load"]["after_keystroke"] = loadavg()

    nbytes = env_int("BENCH_BULK_BYTES", 512 << 20)
    runs = env_int("BENCH_BULK_RUNS", 25)
    log(f"(b), (e) bulk output: {nbytes} bytes, {runs} runs through each path: jitgate "
        "recording as configured, in full and not at all; OpenSSH with its defaults and "
        "with AES-GCM")
    # One loop over all five, so that (b) and (e) see the same load.
    paths = {**pair, "openssh-gcm": variants["openssh-gcm"],
             "recorded": shlex.split(a.jitgate_full),
             "unrecorded": shlex.split(a.jitgate_off)}
    all_pids = {"jitgate": (a.jitgate_pid, False), "openssh": (a.jump_pid, True),
                "openssh-gcm": (a.jump_pid, True),
                "recorded": (a.jitgate_full_pid, False),
                "unrecorded": (a.jitgate_off_pid, False)}
    bulk = measure_bulk(paths, all_pids, nbytes, runs, {
        "jitgate": newest_cast(a.jitgate_recordings),
        "recorded": newest_cast(a.jitgate_full_recordings),
    })
    res["bulk"] = {k: bulk[k] for k in ("jitgate", "openssh", "openssh-gcm")}
    res["recording"] = {k: bulk[k] for k in ("recorded", "unrecorded")}
    res["load"]["end"] = loadavg()
    res["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)
    log(f"wrote {a.out}")


if __name__ == "__main__":
    main()
