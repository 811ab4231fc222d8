"""Building blocks for scripts/bench/measure.py: ssh runs, ptys, /proc readings.

Every ssh command is an argv list as a path's `ssh -F … [-J …] destination` prints it;
options are inserted right after the program name, the remote command appended.
"""

import os
import select
import signal
import statistics
import subprocess
import tempfile
import time
import tty

# A log-like line: printable text, as a terminal would carry it (not NULs, which
# asciicast's JSON would inflate sixfold).
LINE = "2026-11-22T06:00:00.123Z INFO worker[4711]: job 1234567 done in 12 ms status=ok bytes=65536"
READY = b"42READY"
TICK = os.sysconf("SC_CLK_TCK")


def with_opts(argv, opts, remote=None):
    return argv[:1] + opts + argv[1:] + ([remote] if remote is not None else [])


def median(values):
    return statistics.median(values) if values else None


def percentile(sorted_values, q):
    """Nearest rank on sorted values (q in 0..1), or None when empty."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * q // 1))
    return sorted_values[min(len(sorted_values), int(rank)) - 1]


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _stat(pid):
    """Fields of /proc/PID/stat after the command name: [state, ppid, ...]."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(_stat(entry)[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cpu_seconds(pid, children):
    """CPU time of pid itself, or (children=True) of everything it forked: the children it
    reaped plus those still running (an sshd listener and its per-connection processes)."""
    f = _stat(pid)
    if not children:
        return (int(f[11]) + int(f[12])) / TICK
    total = int(f[13]) + int(f[14])
    for c in descendants(pid):
        try:
            g = _stat(c)
        except OSError:
            continue
        total += sum(int(x) for x in g[11:15])
    return total / TICK


def _kib(path, key):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_memory(pid, children):
    """RSS and PSS in KiB of pid (children=False) or of all its descendants."""
    pids = descendants(pid) if children else [pid]
    return {
        "processes": len(pids),
        "rss_kib": sum(_kib(f"/proc/{p}/status", "VmRSS") for p in pids),
        "pss_kib": sum(_kib(f"/proc/{p}/smaps_rollup", "Pss") for p in pids),
    }


def _fail(what, argv, err):
    raise SystemExit(f"bench: {what} failed: {' '.join(argv)}\n{err}")


def setup_time(argv):
    """Seconds for `ssh … true`, connect to exit."""
    cmd = argv + ["true"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=120)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        _fail("ssh true", cmd, r.stderr.decode(errors="replace"))
    return dt


def ssh_info(argv):
    """What ssh -v says about one connection: algorithms and authentication, per hop."""
    cmd = with_opts(argv, ["-v"], "true")
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    keep = ("kex: algorithm", "kex: server->client", "Server accepts key", "Authenticated to",
            "Offering public key", "Authentications that can continue")
    return [line for line in r.stderr.decode(errors="replace").splitlines()
            if any(k in line for k in keep)]


def bulk_run(argv, nbytes):
    """nbytes of text from the target, read and thrown away."""
    cmd = argv + [f"yes '{LINE}' | head -c {nbytes}"]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        fd, total, first = p.stdout.fileno(), 0, None
        while chunk := os.read(fd, 1 << 20):
            if first is None:
                first = time.perf_counter()
            total += len(chunk)
        last = time.perf_counter()
        p.stdout.close()
        rc = p.wait(timeout=120)
        wall = time.perf_counter() - t0
        err.seek(0)
        if rc != 0 or total != nbytes:
            _fail(f"bulk output ({total} of {nbytes} bytes, exit {rc})", cmd,
                  err.read().decode(errors="replace"))
    return {
        "bytes": total,
        "mb_per_s": total / (last - first) / 1e6,
        "first_byte_seconds": round(first - t0, 4),
        "wall_seconds": wall,
    }


class Session:
    """An interactive ssh -tt session with a shell, its input and output on pipes."""

    def __init__(self, argv):
        self.err = tempfile.TemporaryFile()
        self.argv = with_opts(argv, ["-tt"])
        self.p = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.err, start_new_session=True)
        os.set_blocking(self.p.stdout.fileno(), False)
        self.buf = b""
        # The shell prints 42READY; its echo of the line shows $((40+2))READY instead.
        self.p.stdin.write(b"echo $((40+2))READY\n")
        self.p.stdin.flush()

    def fileno(self):
        return self.p.stdout.fileno()

    def pump(self):
        """Reads what is there; False once the session ended."""
        try:
            chunk = os.read(self.fileno(), 65536)
        except BlockingIOError:
            return True
        self.buf = (self.buf + chunk)[-4096:]
        return bool(chunk)

    def ready(self):
        return READY in self.buf

    def error(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")

    def close(self):
        try:
            self.p.stdin.write(b"exit\n")
            self.p.stdin.close()
        except OSError:
            pass

    def kill(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except OSError:
                pass
        self.p.wait()
        self.p.stdout.close()
        self.err.close()


def _wait_ready(sessions, timeout):
    deadline = time.monotonic() + timeout
    waiting = [s for s in sessions if not s.ready()]
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            _fail(f"{len(waiting)} session(s) not ready in {timeout} s", waiting[0].argv,
                  waiting[0].error())
        # poll, not select: select stops at descriptor 1024, which 500 sessions pass.
        poller = select.poll()
        by_fd = {s.fileno(): s for s in waiting}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        readable = [by_fd[fd] for fd, _ in poller.poll(min(left, 1.0) * 1000)]
        for s in readable:
            if not s.pump():
                _fail("interactive session", s.argv, s.error())
        waiting = [s for s in waiting if not s.ready()]


def _close_all(sessions):
    for s in sessions:
        s.close()
    deadline = time.monotonic() + 20
    for s in sessions:
        try:
            s.p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        s.kill()


def idle_sessions(argv, n, measure, wave=10):
    """Memory of the server (measure()) before, part way through and after n idle
    interactive sessions."""
    warm = [Session(argv) for _ in range(3)]
    _wait_ready(warm, 120)
    _close_all(warm)
    time.sleep(1)
    before = measure()
    sessions, half = [], None
    t0 = time.perf_counter()
    try:
        while len(sessions) < n:
            batch = [Session(argv) for _ in range(min(wave, n - len(sessions)))]
            sessions += batch
            _wait_ready(batch, 120)
            # A reading part way: at 200 sessions (the figure issue 3 asks for) when the
            # run goes past it, else at half.
            if half is None and len(sessions) >= (200 if n > 200 else n // 2):
                time.sleep(1)
                half = (len(sessions), measure())
        opened = time.perf_counter() - t0
        time.sleep(2)
        after = measure()
    finally:
        _close_all(sessions)
    out = {"sessions": n, "open_seconds": round(opened, 2), "before": before,
           "half": {"sessions": half[0], **half[1]}, "after": after}
    for key in ("rss_kib", "pss_kib"):
        out[f"{key}_per_session"] = round((after[key] - before[key]) / n, 1)
        out[f"{key}_per_session_part_way"] = round((half[1][key] - before[key]) / half[0], 1)
        if n > half[0]:
            out[f"{key}_per_session_slope"] = round(
                (after[key] - half[1][key]) / (n - half[0]), 1)
    return out


class PtySession:
    """ssh -tt on a local pty, running `cat` on a raw remote pty: each byte comes back."""

    def __init__(self, argv):
        self.m, s = os.openpty()
        tty.setraw(s)
        remote = "stty raw -echo; echo RE''ADY; exec cat"
        self.argv = with_opts(argv, ["-tt"], remote)
        self.p = subprocess.Popen(self.argv, stdin=s, stdout=s, stderr=s,
                                  start_new_session=True)
        os.close(s)
        self.read_until(b"READY", 60)
        self.read_until(None, 0.3)

    def read_until(self, want, timeout):
        buf, deadline = b"", time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                if want is None:
                    return buf
                _fail(f"waiting for {want!r} (got {buf[-200:]!r})", self.argv, "")
            r, _, _ = select.select([self.m], [], [], left)
            if r:
                try:
                    chunk = os.read(self.m, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    _fail("pty session ended", self.argv, buf[-500:].decode(errors="replace"))
                buf += chunk
                if want is not None and want in buf:
                    return buf

    def round_trip(self, byte):
        t0 = time.perf_counter_ns()
        os.write(self.m, byte)
        self.read_until(byte, 10)
        return (time.perf_counter_ns() - t0) / 1000

    def close(self):
        try:
            os.killpg(self.p.pid, signal.SIGTERM)
        except OSError:
            pass
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait()
        os.close(self.m)


def keystrokes(paths, k, warmup=100, gap=0.002):
    """(d) one byte typed, time until its echo is back; alternating between the paths."""
    sessions = {}
    try:
        for name, argv in paths.items():
            sessions[name] = PtySession(argv)
        samples = {name: [] for name in paths}
        for i in range(warmup + k):
            byte = bytes([ord("a") + i % 26])
            order = list(sessions) if i % 2 == 0 else list(reversed(sessions))
            for name in order:
                dt = sessions[name].round_trip(byte)
                if i >= warmup:
                    samples[name].append(dt)
                time.sleep(gap)
    finally:
        for s in sessions.values():
            s.close()
    out = {}
    for name, v in samples.items():
        s = sorted(v)
        out[name] = {"unit": "µs", "n": len(s),
                     **{q: round(percentile(s, x), 1) for q, x in
                        (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999))},
                     "max": round(s[-1], 1),
                     # In the order taken: sample i of one path pairs with sample i of another.
                     "samples": [round(x, 1) for x in v]}
    return out
