#!/usr/bin/env python3
"""The summary of scripts/bench.sh: figures against the DESIGN.md budgets.

Reads the ssh measurements (measure.py's JSON) and the criterion benches' output, writes
results.json (every figure) and results.md (the table for README.md), prints the table.
A missed budget says "no"; a figure not measured says so. Standard library only.

Verdicts on ratios come with their uncertainty: runs on this kind of machine vary by 10% or
more, so a ratio near its budget lands on either side from one run to the next. Each
compared figure's 90% interval is bootstrapped from the rounds the paths were measured in
(round i of one path beside round i of the other, resampled together, so a slow moment of
the machine moves both): "yes" when all of the interval is within budget, "no" when none of
it is, "at the line" when it straddles the budget (not shown to hold).
"""

import argparse
import json
import random
import re
import subprocess
import sys
import time

from sshbench import median, percentile


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def ssh_version():
    r = subprocess.run(["ssh", "-V"], capture_output=True, text=True)
    return (r.stderr or r.stdout).strip()


def cargo_figures(path):
    """`name value` lines the benches print for scripts (e.g. certificates_per_second 1234),
    and criterion's `time: [low mid high]` lines (and `thrpt:` ones, where a bench sets a
    throughput) with the benchmark they belong to."""
    plain, times, failed, prev, name, fresh = {}, {}, [], "", "", False
    try:
        text = open(path).read()
    except OSError:
        return plain, times, failed
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        m = re.fullmatch(r"([a-z][a-z0-9_]*) (-?[0-9][0-9.]*)", s)
        m2 = re.fullmatch(r"bench_failed (\S+)", s)
        m3 = re.match(r"(\S+)\s+time:\s+\[(.*)\]", s)
        g = re.search(r"guardrail check,.* p99 ([0-9.]+)(ns|µs|us|ms|s)\b", s)
        if g:
            scale = {"ns": 1, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}[g.group(2)]
            plain["guardrail_p99_ns"] = float(g.group(1)) * scale
        if m:
            plain[m.group(1)] = float(m.group(2))
        elif m2:
            failed.append(m2.group(1))
        elif m3 and m3.group(1) != "change:":
            name, fresh = m3.group(1), True
            times[name] = m3.group(2)
            prev = s
            continue
        elif s.startswith("time:") and " " not in prev and not prev.endswith(":"):
            # A long benchmark name stands on its own line, its figures on the next.
            name, fresh = prev, True
            times[name] = s.split("[", 1)[-1].rstrip("]")
            prev = s
            continue
        elif s.startswith("thrpt:") and fresh:
            # The throughput right under a benchmark's time (not the one under "change:").
            times[f"{name} (throughput)"] = s.split("[", 1)[-1].rstrip("]")
        fresh = False
        prev = s
    return plain, times, failed


def fmt(v, digits=1):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    return f"{v:,.{digits}f}"


def yes_no(ok):
    if ok == LINE:
        return "at the line"
    return "—" if ok is None else ("yes" if ok else "**no**")


# The verdict of a budget whose 90% interval straddles it.
LINE = "line"
RESAMPLES = 2000
LEVEL = 0.90


def p99(s):
    return percentile(s, 0.99)


def resampled(a, b, stat=median):
    """(stat(a*), stat(b*)) for bootstrap resamples of the paired rounds a[i], b[i]; None
    with fewer than 5 rounds."""
    n = min(len(a), len(b))
    if n < 5:
        return None
    rng = random.Random(n)  # fixed: the same figures give the same interval
    out = []
    for _ in range(RESAMPLES if n <= 500 else RESAMPLES // 4):
        idx = [rng.randrange(n) for _ in range(n)]
        out.append((stat(sorted(a[i] for i in idx)), stat(sorted(b[i] for i in idx))))
    return out


def interval(pairs, op=lambda x, y: x / y):
    """The LEVEL interval of op over resampled pairs (None when there are none)."""
    if not pairs:
        return None
    out = sorted(op(x, y) for x, y in pairs)
    tail = (1 - LEVEL) / 2
    return out[int(len(out) * tail)], out[int(len(out) * (1 - tail)) - 1]


def ratio_interval(a, b, stat=median):
    """The LEVEL bootstrap interval of stat(a) / stat(b) over paired rounds."""
    return interval(resampled(a, b, stat))


def judge(point, iv, ok):
    """True, False or LINE for a figure and its interval (point alone when there is none)."""
    if iv is None:
        return ok(point)
    lo, hi = ok(iv[0]), ok(iv[1])
    return True if lo and hi else (False if not lo and not hi else LINE)


def runs_of(section, name):
    return [x["mb_per_s"] for x in section[name]["runs"]]


def recording_written(section, name):
    """Whether the runs of section[name] left a recording of (nearly) all their output."""
    if not section or name not in section:
        return False
    runs = section[name]["runs"]
    return all(x.get("recording", {}).get("file_bytes", 0) > 0 for x in runs)


def short_runs(section):
    """Runs whose recording is smaller than their output: part of it cannot be in the file
    (JSON escaping and line framing only ever add bytes)."""
    return sum(x.get("recording", {}).get("file_bytes", 0) < x["bytes"] for x in section["runs"])


def negotiated(ssh):
    """Per ssh command name: the key exchanges and the server->client ciphers its hops
    negotiated, as `ssh -v` reported them (every hop the client itself makes)."""
    info = ssh.get("ssh_info", {})
    kex = {name: sorted({line.split("kex: algorithm:")[1].strip() for line in lines
                         if "kex: algorithm:" in line}) for name, lines in info.items()}
    ciphers = {name: sorted({line.split("server->client cipher:")[1].split()[0]
                             for line in lines if "server->client cipher:" in line})
               for name, lines in info.items()}
    return kex, ciphers


def algs(d, name):
    return ", ".join(d.get(name) or ["?"])


def deciding(verdicts, ratios, worst):
    """The view that decides a budget judged in several: the worst verdict, and among equal
    verdicts the less favourable ratio (worst picks it: max or min)."""
    rank = {False: 0, LINE: 1, True: 2}
    low = min(rank[v] for v in verdicts.values())
    return worst((kv for kv in ratios if rank[verdicts[kv[0]]] == low),
                 key=lambda kv: kv[1])[0]


def rows(ssh, plain, failed):
    out = []

    def row(what, j, o, ratio, budget, ok, unit="", iv=None):
        out.append({"what": what, "jitgate": j, "openssh": o, "ratio": ratio,
                    "interval": list(iv) if iv else None,
                    "budget": budget, "within": ok, "unit": unit})

    kex, ciphers = negotiated(ssh)
    s = ssh.get("setup")
    if s:
        comps = [("defaults", "jitgate", "openssh",
                  f"each side's defaults (kex jitgate {algs(kex, 'jitgate')}; OpenSSH "
                  f"{algs(kex, 'openssh')})")]
        if "jitgate-kex" in s:
            comps.append(("same kex", "jitgate-kex", "openssh-kex",
                          f"same kex (jitgate {algs(kex, 'jitgate-kex')}; OpenSSH "
                          f"{algs(kex, 'openssh-kex')})"))
        ratios = [(c[0], s[c[1]]["median"] / s[c[2]]["median"]) for c in comps]
        ivs = {c[0]: ratio_interval(s[c[1]].get("samples", []), s[c[2]].get("samples", []))
               for c in comps}
        # Setup must be quick enough in both views: the worse one decides.
        oks = {label: judge(r, ivs[label], lambda x: x <= 0.8) for label, r in ratios}
        which = deciding(oks, ratios, max)
        for label, jn, on, text in comps:
            j, o = s[jn]["median"], s[on]["median"]
            row(f"session setup, `ssh -J … true`, {text}, median (ms)", j, o, j / o,
                "≤ 0.8×" + (" ← decides" if label == which else ""), oks[label],
                iv=ivs[label])
        for label, jn, on, _ in comps:
            jp, op = s[jn]["p90"], s[on]["p90"]
            row(f"session setup, {label}, p90 (ms)", jp, op, jp / op, "", None)
    b = ssh.get("bulk")
    r = ssh.get("recording")
    recorded = recording_written(b, "jitgate") and recording_written(r, "recorded")
    if b:
        j = b["jitgate"]["median"]
        mib = b["jitgate"]["bytes"] / 2**20
        head = (f"bulk output {mib:.0f} MiB, recorded (default 64 MiB exec cap)"
                if recording_written(b, "jitgate") else
                f"bulk output {mib:.0f} MiB (NO recording was written)")
        comps = [("openssh", f"vs OpenSSH defaults (jitgate {algs(ciphers, 'jitgate')}; "
                             f"OpenSSH {algs(ciphers, 'openssh')})")]
        if "openssh-gcm" in b:
            comps.append(("openssh-gcm", f"vs OpenSSH same cipher (jitgate "
                                         f"{algs(ciphers, 'jitgate')}; OpenSSH "
                                         f"{algs(ciphers, 'openssh-gcm')} on both hops)"))
        ratios = [(on, j / b[on]["median"]) for on, _ in comps]
        ivs = {on: ratio_interval(runs_of(b, "jitgate"), runs_of(b, on)) for on, _ in comps}
        # Throughput must hold against both: the worse one decides.
        oks = {on: judge(r, ivs[on], lambda x: x >= 0.9) for on, r in ratios}
        which = deciding(oks, ratios, min)
        for on, text in comps:
            o = b[on]["median"]
            row(f"{head}, {text}, median MB/s", j, o, j / o,
                "≥ 0.9×" + (" ← decides" if on == which else ""), oks[on], iv=ivs[on])
        # The faster OpenSSH figure, for the rows below: the less favourable comparison.
        best = max((on for on, _ in comps), key=lambda on: b[on]["median"])
        best_text = "OpenSSH defaults" if best == "openssh" else "OpenSSH same cipher"
        if r and recording_written(r, "recorded"):
            j, o = r["recorded"]["median"], b[best]["median"]
            short = short_runs(r["recorded"])
            iv = ratio_interval(runs_of(r, "recorded"), runs_of(b, best))
            row(f"bulk output, recorded in full (cap raised), vs {best_text} (the faster), "
                "median MB/s"
                + (f" — but {short} recording(s) smaller than the output: NOT all recorded"
                   if short else ""), j, o, j / o, "≥ 0.9×",
                False if short else judge(j / o, iv, lambda x: x >= 0.9), iv=iv)
        if r:
            j, o = r["unrecorded"]["median"], b[best]["median"]
            row(f"bulk output, unrecorded (cap 0), vs {best_text} (the faster), median MB/s",
                j, o, j / o, "", None, iv=ratio_interval(runs_of(r, "unrecorded"), runs_of(b, best)))
        for on, text in comps:
            jc = b["jitgate"]["server_cpu_seconds_per_gib"]
            oc = b[on]["server_cpu_seconds_per_gib"]
            row(f"server CPU seconds per GiB of bulk output, {text.split(' (')[0]} (jitgate "
                "process; OpenSSH: jump sshd and its per-connection processes)", jc, oc,
                jc / oc if oc else None, "", None)
    if r and b and "jitgate" in b:
        # As shipped: the default 64 MiB exec cap records the first part of the stream.
        shipped, unrec = b["jitgate"]["median"], r["unrecorded"]["median"]
        iv = ratio_interval(runs_of(b, "jitgate"), runs_of(r, "unrecorded"))
        row("recording overhead as shipped: recorded (64 MiB exec cap) vs unrecorded (cap 0), "
            "MB/s", f"{shipped:,.1f} vs {unrec:,.1f}", None, shipped / unrec, "≥ 0.9×",
            judge(shipped / unrec, iv, lambda x: x >= 0.9), iv=iv)
    if r and recorded:
        rec, unrec = r["recorded"]["median"], r["unrecorded"]["median"]
        short = short_runs(r["recorded"])
        iv = ratio_interval(runs_of(r, "recorded"), runs_of(r, "unrecorded"))
        row("recording overhead: recorded in full vs unrecorded (cap 0), MB/s"
            + (" — NOT all recorded" if short else ""),
            f"{rec:,.1f} vs {unrec:,.1f}", None, rec / unrec, "≥ 0.9×",
            False if short else judge(rec / unrec, iv, lambda x: x >= 0.9), iv=iv)
    elif r:
        row("recording overhead: recorded vs unrecorded", "not measured: no recording was "
            "written", None, None, "≥ 0.9×", None)
    m = ssh.get("memory")
    if m:
        j = m["jitgate"]["rss_kib_per_session"]
        o = m["openssh"]["pss_kib_per_session"]
        n = m["jitgate"]["sessions"]
        row(f"memory per idle interactive session at {n} (KiB; OpenSSH: PSS of the jump "
            "sshd's processes)", j, o, j / o if o else None, "< 512 KiB", j < 512)
        jh, oh = m["jitgate"].get("half"), m["openssh"].get("half")
        if jh and jh["sessions"] != n and "rss_kib_per_session_part_way" in m["jitgate"]:
            j2 = m["jitgate"]["rss_kib_per_session_part_way"]
            o2 = m["openssh"]["pss_kib_per_session_part_way"]
            row(f"memory per idle interactive session at {jh['sessions']} (KiB, the same run "
                "part way)", j2, o2, j2 / o2 if o2 else None, "", None)
    k = ssh.get("keystroke")
    if k:
        j, o = k["jitgate"]["p50"] / 1000, k["openssh"]["p50"] / 1000
        row("keystroke round trip p50 (ms)", j, o, j / o, "", None)
        j, o = k["jitgate"]["p99"] / 1000, k["openssh"]["p99"] / 1000
        pairs = resampled(k["jitgate"].get("samples", []), k["openssh"].get("samples", []),
                          p99)
        iv = interval(pairs)
        row("keystroke round trip p99 (ms)", j, o, j / o, "≤ 1.2×",
            judge(j / o, iv, lambda x: x <= 1.2), iv=iv)
        iv = interval(pairs, lambda x, y: (x - y) / 1000)
        row("keystroke p99 added by the bastion (ms)", j - o, None, None, "≤ 1 ms",
            judge(j - o, iv, lambda x: x <= 1), iv=iv)
    cps = plain.get("certificates_per_second")
    if cps is not None:
        row("certificates through the API, SQLite (per second)", cps, None, None, "≥ 1,000",
            cps >= 1000)
    elif "certificates" in failed:
        row("certificates through the API, SQLite (per second)", "bench failed", None, None,
            "≥ 1,000", False)
    else:
        row("certificates through the API, SQLite (per second)", "not measured", None, None,
            "≥ 1,000", None)
    for name in ("guardrail_p99_ns", "guardrail_p99_us"):
        if name in plain:
            us = plain[name] / (1000 if name.endswith("ns") else 1)
            row("guardrail check, 200 chars, 1,000 rules, p99 (µs)", us, None, None, "< 20 µs",
                us < 20)
    return out


def table(rs):
    head = "| what | jitgate | OpenSSH | ratio (90% interval) | budget | within budget |\n"
    head += "| --- | ---: | ---: | ---: | --- | --- |\n"
    lines = []
    for r in rs:
        nums = [abs(v) for v in (r["jitgate"], r["openssh"]) if isinstance(v, (int, float))]
        digits = 0 if nums and max(nums) >= 100 else 2
        ratio = f"{fmt(r['ratio'], 2)}×" if r["ratio"] is not None else "—"
        iv = r.get("interval")
        if iv:
            unit = "×" if r["ratio"] is not None else ""
            dash = " to " if iv[0] < 0 else "–"
            iv_text = f"{iv[0]:.2f}{dash}{iv[1]:.2f}{unit}"
            ratio = f"{ratio} ({iv_text})" if r["ratio"] is not None else f"— ({iv_text})"
        lines.append(f"| {r['what']} | {fmt(r['jitgate'], digits)} | {fmt(r['openssh'], digits)} | "
                     f"{ratio} | {r['budget'] or '—'} | {yes_no(r['within'])} |")
    return head + "\n".join(lines) + "\n"


def notes(ssh, seconds):
    load = ssh.get("load", {})
    n = []
    if ssh.get("quick"):
        n.append("BENCH_QUICK=1: small sizes, figures for trying the script only.")
    n.append(f"Machine: {ssh.get('nproc')} CPUs; load average (1, 5, 15 min) at start "
             f"{load.get('start')}, at end {load.get('end')}. Run took {seconds // 60} min "
             f"{seconds % 60} s.")
    n.append(f"jitgate's rule carries the guardrail set: {ssh.get('guardrails', '?')} "
             "(BENCH_GUARDRAILS=0 for none).")
    b, r = ssh.get("bulk"), ssh.get("recording")
    if b:
        cpu = {k: fmt(v["server_cpu_seconds_per_gib"], 2) for k, v in {**b, **(r or {})}.items()}
        n.append(f"Bulk: {b['jitgate']['bytes']} bytes of text (`yes` lines) per run, "
                 f"{b['jitgate']['n']} runs per path, the paths interleaved. Server CPU seconds "
                 "per GiB (jitgate: the serve process; OpenSSH: the jump sshd listener and "
                 "every per-connection process it forked, counted once they are reaped): "
                 + ", ".join(f"{k} {v}" for k, v in cpu.items()) + ".")
    kex, ciphers = negotiated(ssh)
    if kex:
        n.append("Negotiated, as `ssh -v` reports every hop the client makes (kex / "
                 "server->client cipher): "
                 + "; ".join(f"{name}: {algs(kex, name)} / {algs(ciphers, name)}"
                             for name in kex)
                 + ". The bastion's own hop to the target is not visible to the client; the "
                 "bastion asks targets for AES-GCM first. Setup and throughput are judged in "
                 "both comparisons; the worse verdict (\"← decides\") stands for the budget.")
    n.append(f"Verdicts: each compared figure's {LEVEL:.0%} interval (in brackets) is "
             f"bootstrapped from the interleaved rounds ({RESAMPLES:,} resamples, a round of "
             "both paths kept together): \"yes\" when all of the interval is within budget, "
             "\"no\" when none of it is, \"at the line\" when it straddles the budget.")
    if b and not recording_written(b, "jitgate"):
        n.append("**No recording (.cast file) was written for the bulk runs through jitgate: "
                 "the bastion did not record, so no figure here includes recording.**")
    if r and recording_written(r, "recorded"):
        short = short_runs(r["recorded"])
        files = [x["recording"]["file_bytes"] for x in r["recorded"]["runs"]]
        n.append(f"Full recording: cast files of {', '.join(str(f) for f in files)} bytes for "
                 f"{r['recorded']['runs'][0]['bytes']} bytes of output each."
                 + (f" **{short} recording(s) smaller than the output: part was not recorded, "
                    "so the recorded figure flatters jitgate.**" if short else ""))
    m = ssh.get("memory")
    if m:
        j, o = m["jitgate"], m["openssh"]
        n.append(f"Memory: jitgate RSS {j['before']['rss_kib']} KiB before, "
                 f"{j['after']['rss_kib']} KiB with {j['sessions']} sessions (slope from "
                 f"{j['half']['sessions']} to {j['sessions']} sessions "
                 f"{j.get('rss_kib_per_session_slope')} KiB/session); OpenSSH jump "
                 f"sshd processes: RSS {o['rss_kib_per_session']} KiB, PSS "
                 f"{o['pss_kib_per_session']} KiB per session.")
    k = ssh.get("keystroke")
    if k:
        n.append(f"Keystrokes: {k['jitgate']['n']} samples per path after warm-up, a remote "
                 f"`cat` on a raw pty; p99.9 jitgate {k['jitgate']['p999'] / 1000:.2f} ms, "
                 f"OpenSSH {k['openssh']['p999'] / 1000:.2f} ms.")
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ssh", required=True)
    ap.add_argument("--cargo", required=True)
    ap.add_argument("--seconds", type=int, default=0)
    ap.add_argument("--json", required=True)
    ap.add_argument("--markdown", required=True)
    a = ap.parse_args()
    ssh = json.load(open(a.ssh))
    plain, times, failed = cargo_figures(a.cargo)
    rs = rows(ssh, plain, failed)
    ns = notes(ssh, a.seconds)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    result = {"date": stamp, "commit": git_commit(), "openssh": ssh_version(),
              "seconds": a.seconds, "summary": rs, "notes": ns, "ssh": ssh,
              "cargo_bench": {"figures": plain, "criterion_times": times, "failed": failed}}
    with open(a.json, "w") as f:
        json.dump(result, f, indent=2, ensure_ascii=False)
    md = (f"Benchmarks ({stamp}, commit {result['commit']}, {result['openssh']}, "
          f"`scripts/bench.sh`):\n\n" + table(rs) + "\n" + "\n".join(f"- {x}" for x in ns) + "\n")
    if times:
        md += "\nCriterion (time per iteration, [low mid high]):\n\n"
        md += "\n".join(f"- `{k}`: {v}" for k, v in times.items()) + "\n"
    with open(a.markdown, "w") as f:
        f.write(md)
    print(md)
    print(f"figures: {a.json}\ntable:   {a.markdown}")
    missed = [r["what"] for r in rs if r["within"] is False]
    if missed:
        print("budgets missed:\n" + "\n".join(f"  - {w}" for w in missed), file=sys.stderr)
    line = [r["what"] for r in rs if r["within"] == LINE]
    if line:
        print("budgets at the line (not shown to hold):\n"
              + "\n".join(f"  - {w}" for w in line), file=sys.stderr)


if __name__ == "__main__":
    main()
