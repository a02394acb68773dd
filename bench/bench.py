#!/usr/bin/env python3
"""face-enroll benchmarks: print figures, pass or fail nothing.

Usage: python3 bench/bench.py [--quick] [--only NAME ...] [--no-perf]
Builds nothing: run `cargo build --release` first (bench/run does both).

Every scenario runs the release binary against the standalone sandbox on 127.0.0.1 and measures
the tool's own process (CPU user+sys and peak RSS via wait4), and reads the sandbox's state
afterwards (duplicates, missing images, throttled answers).

Scenarios:
  baseline   the official Python SDK from a thread pool, then face-enroll, on the same manifest,
             each against a fresh sandbox (100/s, 50 ms, 2 % errors before and after applying)
  paced      face-enroll alone at the default --qps 100
  unlimited  --qps 0 against an unlimited sandbox: the tool's ceiling, and a perf profile of it
  scale      check at 100k, 1M and 10M rows, an all-done re-run (and one with --rejects) at
             100k and 1M, and a 100k re-run against 1x and 5x ledger history (memory must not
             grow with history)
  oss        the paced scenario with oss://BUCKET/KEY rows, each sent as a V4 link signed for its
             attempt, beside the same rows as public links: rate and CPU with and without signing
  reconcile  a new ledger against a library that already holds every row: reads, and no create
  stream     verify, export and status --failed of 1M registered faces (one library of
             200,000 persons x 5, registered into the sandbox by a --qps 0 run first): peak
             memory of each
  report     the HTML report of 100,000 registered rows: without thumbnails (5,000 cards, the
             default, and every card), and with them embedded (the default cap of 2,000, and
             20,000) from a loopback web server

The SDK is installed into target/bench-venv (created on first use) from bench/requirements.txt.
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# FACE_ENROLL_BENCH_BIN measures another build (e.g. the one before a change) the same way.
BIN = os.environ.get("FACE_ENROLL_BENCH_BIN") or os.path.join(ROOT, "target", "release", "face-enroll")
VENV = os.path.join(ROOT, "target", "bench-venv")
VENV_PY = os.path.join(VENV, "bin", "python")
SDK_DRIVER = os.path.join(ROOT, "bench", "sdk_baseline.py")
REQUIREMENTS = os.path.join(ROOT, "bench", "requirements.txt")
# The standalone sandbox both sides of the baseline comparison run against.
BASELINE_SANDBOX = ["--mts-qps", "100", "--latency-ms", "50", "--error-before", "0.02", "--error-after", "0.02"]
KEY_ID, SECRET = "sandbox-key-id", "sandbox-key-secret"


def write_manifest(path, persons, per_person, category="bench", oss=False, base=None):
    where = "oss://bench-faces" if oss else (base or "https://img.example.com")
    with open(path, "w") as f:
        f.write("category_id,person_id,person_name,image_url\n")
        for p in range(persons):
            for i in range(per_person):
                f.write(f"{category},person-{p:07d},Person {p},{where}/{category}/{p:07d}/{i:02d}.jpg\n")
    return persons * per_person


def write_done_ledger(path, persons, per_person, category="bench", history=1, where=None):
    """A ledger as a finished import leaves it: a pending and a registered line per image,
    repeated `history` times (as if earlier runs had re-registered everything)."""
    ts = "2026-11-22T00:00:00.000Z"
    with open(path, "w") as f:
        for _ in range(history):
            for p in range(persons):
                for i in range(per_person):
                    url = f"{where or 'https://img.example.com'}/{category}/{p:07d}/{i:02d}.jpg"
                    base = f'{{"v":1,"kind":"image","ts":"{ts}","run":"bench","status":"%s","category_id":"{category}","person_id":"person-{p:07d}","image_url":"{url}"'
                    f.write(base % "pending" + "}\n")
                    f.write(base % "registered" + f',"face_id":"f{p}-{i}"}}\n')
    os.chmod(path, 0o600)


class Sandbox:
    def __init__(self, *flags):
        self.proc = subprocess.Popen(
            [BIN, "sandbox", "--listen", "127.0.0.1:0", *flags],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            raise SystemExit(f"the sandbox did not start: {self.url!r}")

    def state(self):
        with urllib.request.urlopen(self.url + "__sandbox/state", timeout=30) as r:
            return json.load(r)

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


LAST_USAGE = {}
# GNU time reports the peak RSS of the process it forks itself. wait4's own ru_maxrss is not
# enough here: Linux carries the high-water mark of the memory a process had before exec into
# it, and a child spawned from this (vfork'd) Python process starts with Python's peak, so
# small figures come out as this script's size.
TIME_BIN = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def measure(args, env=None):
    """Runs a command; returns (exit code, wall s, cpu s, peak RSS MiB). The user/sys split of
    the last call is left in LAST_USAGE. What earlier scenarios left to write back (a million
    faces' exports and ledgers) is written out first, so its writeback does not stall this one."""
    os.sync()
    started = time.monotonic()
    with tempfile.TemporaryFile() as errfile, tempfile.NamedTemporaryFile("r") as rssfile:
        prefix = [TIME_BIN, "-f", "%M", "-o", rssfile.name] if TIME_BIN else []
        proc = subprocess.Popen(prefix + list(args), stdout=subprocess.DEVNULL, stderr=errfile, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        errfile.seek(0)
        err = errfile.read().decode(errors="replace")
        rss = usage.ru_maxrss / 1024
        if TIME_BIN:
            fields = rssfile.read().split()
            if fields and fields[-1].isdigit():
                rss = int(fields[-1]) / 1024
    if proc.returncode not in (0, 1):
        print(err[-2000:], file=sys.stderr)
    LAST_USAGE.update(user_s=usage.ru_utime, sys_s=usage.ru_stime,
                      rss_source="GNU time" if TIME_BIN else "wait4 (upper bound)")
    return proc.returncode, wall, usage.ru_utime + usage.ru_stime, rss


def tool_env():
    env = dict(os.environ)
    env.update({"ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET,
                "HOME": tempfile.gettempdir()})
    return env


def audit(state):
    # A signed link differs at every attempt: an image is its URL without the query.
    copies = {}
    for c in state["mts"]["categories"]:
        for p in c["persons"]:
            for f in p["faces"]:
                url = f["image_url"].split("?")[0]
                copies[url] = copies.get(url, 0) + 1
    for lib in state["ice"]["libs"]:
        for e in lib["entities"]:
            for s in e["samples"]:
                url = (s.get("image_url") or "").split("?")[0]
                copies[url] = copies.get(url, 0) + 1
    return copies


def server_rate(stats):
    """Successful creates per second between the first and the last, as the server saw them."""
    for action in ("RegisterCustomFace", "CreateRecognitionSample"):
        w = stats.get("applied_by_action", {}).get(action)
        if w and w["count"] > 1 and w["last_ms"] > w["first_ms"]:
            return round((w["count"] - 1) * 1000.0 / (w["last_ms"] - w["first_ms"]), 2)
    return None


def audit_row(state, total):
    """Duplicates, missing images and throttled answers, from the sandbox's own state."""
    copies = audit(state)
    stats = state["stats"]
    return {
        "registered_distinct": len(copies),
        "duplicates": sum(n - 1 for n in copies.values() if n > 1),
        "missing": total - len(copies),
        "throttled": stats["throttled"],
        "requests": stats["requests"],
        "throttled_pct": round(100.0 * stats["throttled"] / max(stats["requests"], 1), 2),
        "server_rate_per_s": server_rate(stats),
        "by_action": stats.get("by_action"),
    }


def run_import(work, name, images_shape, sandbox_flags, tool_flags, oss=False):
    persons, per_person = images_shape
    manifest = os.path.join(work, f"{name}.csv")
    total = write_manifest(manifest, persons, per_person, oss=oss)
    if oss:
        # Links point at a loopback port nothing serves: the sandbox does not fetch them (its
        # own OSS would), so this measures the signing alone.
        tool_flags = [*tool_flags, "--oss-endpoint", "http://127.0.0.1:9", "--no-preflight"]
    sandbox = Sandbox(*sandbox_flags)
    summary_path = os.path.join(work, f"{name}.summary.json")
    try:
        code, wall, cpu, rss = measure(
            [BIN, "run", manifest, "--endpoint", sandbox.url, "--progress", "off", "-q",
             "--summary", summary_path, *tool_flags], env=tool_env())
        state = sandbox.state()
    finally:
        sandbox.close()
    summary = json.load(open(summary_path))
    row = {"scenario": name, "images": total, "exit": code}
    row.update(audit_row(state, total))
    row.update({
        "registrations_per_s": round(row["registered_distinct"] / wall, 1),
        "tool_rate_per_s": round(summary["rate_per_s"], 1),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "cpu_s_per_1000": round(1000.0 * cpu / max(row["registered_distinct"], 1), 3),
        "user_s": round(LAST_USAGE["user_s"], 2), "sys_s": round(LAST_USAGE["sys_s"], 2),
        "peak_rss_mib": round(rss, 1),
    })
    return row


def ensure_venv():
    """target/bench-venv with the pinned SDK; created once, reused after."""
    marker = os.path.join(VENV, ".requirements")
    wanted = open(REQUIREMENTS).read()
    if os.path.exists(marker) and open(marker).read() == wanted:
        return
    print(f"installing the SDK baseline into {os.path.relpath(VENV, ROOT)} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    subprocess.run([VENV_PY, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "-r", REQUIREMENTS], check=True)
    with open(marker, "w") as f:
        f.write(wanted)


def sdk_versions():
    out = subprocess.run([VENV_PY, "-m", "pip", "freeze", "--disable-pip-version-check"],
                         capture_output=True, text=True).stdout
    keep = ("alibabacloud-mts20140618", "alibabacloud-tea-openapi", "darabonba-core")
    return ", ".join(l for l in out.split() if l.lower().startswith(keep))


def run_sdk(work, name, images_shape, sandbox_flags, threads, retries, sleep):
    persons, per_person = images_shape
    manifest = os.path.join(work, f"{name}.csv")
    total = write_manifest(manifest, persons, per_person)
    stats_path = os.path.join(work, f"{name}.sdk.json")
    sandbox = Sandbox(*sandbox_flags)
    try:
        code, wall, cpu, rss = measure(
            [VENV_PY, SDK_DRIVER, manifest, sandbox.url, stats_path, "--threads", str(threads),
             "--retries", str(retries), "--sleep", str(sleep)], env=tool_env())
        state = sandbox.state()
    finally:
        sandbox.close()
    sdk = json.load(open(stats_path)) if os.path.exists(stats_path) else {}
    row = {"scenario": name, "images": total, "exit": code}
    row.update(audit_row(state, total))
    row.update({
        "registrations_per_s": round(row["registered_distinct"] / wall, 1),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "cpu_s_per_1000": round(1000.0 * cpu / max(row["registered_distinct"], 1), 3),
        "user_s": round(LAST_USAGE["user_s"], 2), "sys_s": round(LAST_USAGE["sys_s"], 2),
        "peak_rss_mib": round(rss, 1),
        "sdk_gave_up": sdk.get("gave_up"), "sdk_exceptions": sdk.get("exceptions"),
        "sdk_first_error": sdk.get("first_error"),
    })
    return row


def scenario_baseline(work, quick):
    """The same manifest, the same sandbox settings, a fresh sandbox each: SDK, then face-enroll."""
    ensure_venv()
    shape = (100, 5) if quick else (600, 5)
    print(f"# baseline: {sdk_versions()}; sandbox {' '.join(BASELINE_SANDBOX)}", flush=True)
    rows = [run_sdk(work, f"sdk-threadpool-{threads}-retry-3", shape, BASELINE_SANDBOX,
                    threads=threads, retries=3, sleep=1.0) for threads in (16, 32)]
    rows.append(run_import(work, "face-enroll-qps-100", shape, BASELINE_SANDBOX, []))
    return rows


def scenario_paced(work, quick):
    """Issue 14's figures: the create rate as the server sees it, at the default settings."""
    shape = (120, 5) if quick else (600, 5)
    return [
        run_import(work, "paced-100qps-50ms", shape,
                   ["--mts-qps", "100", "--latency-ms", "50"], []),
        run_import(work, "paced-100qps-50ms-2pct-before-2pct-after", shape,
                   ["--mts-qps", "100", "--latency-ms", "50", "--error-before", "0.02",
                    "--error-after", "0.02"], []),
        run_import(work, "ice-samples-50qps-50ms", shape,
                   ["--ice-qps", "50", "--latency-ms", "50"], ["--target", "ice"]),
    ]


def scenario_oss(work, quick):
    """Issue 22's figure: oss:// rows signed per attempt keep the paced rate; CPU per
    registration with and without signing, in one run."""
    shape = (120, 5) if quick else (600, 5)
    sandbox = ["--mts-qps", "100", "--latency-ms", "50"]
    return [
        run_import(work, "public-links-100qps-50ms", shape, sandbox, []),
        run_import(work, "oss-signed-per-attempt-100qps-50ms", shape, sandbox, [], oss=True),
    ]


def scenario_reconcile(work, quick):
    """Issue 11: what reading the server first costs when the ledger is new, for a library
    that is empty and for one that already holds every image (requests, seconds)."""
    persons, per_person = (2_000, 5) if quick else (20_000, 5)
    manifest = os.path.join(work, "reconcile.csv")
    n = write_manifest(manifest, persons, per_person)
    rows = []
    sandbox = Sandbox("--mts-qps", "0")
    try:
        for case in ("empty library", "full library"):
            ledger = os.path.join(work, f"reconcile-{case.split()[0]}.ledger.jsonl")
            before = sandbox.state()["stats"]["by_action"]
            code, wall, cpu, rss = measure(
                [BIN, "run", manifest, "--ledger", ledger, "--endpoint", sandbox.url,
                 "--progress", "off", "-q", "--qps", "0", "--concurrency", "64"], env=tool_env())
            after = sandbox.state()["stats"]["by_action"]
            sent = {k: after.get(k, 0) - before.get(k, 0) for k in after}
            rows.append({"scenario": f"new ledger, {n:,} rows, {case}", "exit": code,
                         "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                         "peak_rss_mib": round(rss, 1), "requests": sent})
    finally:
        sandbox.close()
    return rows


PERF_TOP = 12


def perf_profile(work, manifest, flags):
    """perf record of one --qps 0 run; returns the top symbols by self time, or why not."""
    if not shutil.which("perf"):
        return {"perf": "perf is not installed"}
    data = os.path.join(work, "perf.data")
    sandbox = Sandbox("--mts-qps", "0", "--latency-ms", "0")
    ledger = os.path.join(work, "perf.ledger.jsonl")
    try:
        rec = subprocess.run(
            ["perf", "record", "-F", "1999", "-g", "-o", data, "--", BIN, "run", manifest,
             "--ledger", ledger, "--endpoint", sandbox.url, "--progress", "off", "-q", *flags],
            env=tool_env(), capture_output=True, text=True)
    finally:
        sandbox.close()
    if rec.returncode not in (0, 1):
        return {"perf": f"perf record failed: {rec.stderr.strip()[-300:]}"}
    rep = subprocess.run(
        ["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,symbol",
         "-g", "none", "--percent-limit", "0.5"], capture_output=True, text=True)
    top = []
    for line in rep.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)$", line)
        if m and len(top) < PERF_TOP:
            top.append(f"{m.group(1)}% {m.group(2)} {re.sub(r'( -)+$', '', ' '.join(m.group(3).split()))[:90]}")
    dso = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso",
                          "-g", "none"], capture_output=True, text=True)
    by_dso = {}
    for line in dso.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)", line)
        if m and float(m.group(1)) >= 0.5:
            by_dso[m.group(2)] = float(m.group(1))
    return {"perf_top_self": top, "perf_by_dso_pct": by_dso}


def scenario_unlimited(work, quick, perf=True):
    shape = (1000, 5) if quick else (6000, 5)
    row = run_import(work, "unpaced-qps0", shape,
                     ["--mts-qps", "0", "--latency-ms", "0"], ["--qps", "0", "--concurrency", "64"])
    if perf:
        row.update(perf_profile(work, os.path.join(work, "unpaced-qps0.csv"),
                                ["--qps", "0", "--concurrency", "64"]))
    return row


def rerun_done(manifest, ledger, extra=()):
    """An all-done re-run against a sandbox; returns (exit, wall, cpu, rss, requests sent)."""
    sandbox = Sandbox("--mts-qps", "0")
    try:
        code, wall, cpu, rss = measure(
            [BIN, "run", manifest, "--ledger", ledger, "--endpoint", sandbox.url, "--progress", "off", "-q",
             *extra], env=tool_env())
        sent = sandbox.state()["stats"]["requests"]
    finally:
        sandbox.close()
    return code, wall, cpu, rss, sent


def scenario_scale(work, quick):
    rows = []
    # 10,000,000 rows (an 800 MB manifest) for `check` alone: its memory must follow persons.
    sizes = [(20_000, 5)] if quick else [(20_000, 5), (200_000, 5), (2_000_000, 5)]
    for persons, per_person in sizes:
        n = persons * per_person
        manifest = os.path.join(work, f"scale-{n}.csv")
        write_manifest(manifest, persons, per_person)
        ledger = os.path.join(work, f"scale-{n}.ledger.jsonl")
        if os.path.exists(ledger):
            os.remove(ledger)
        code, wall, cpu, rss = measure([BIN, "check", manifest, "--ledger", ledger])
        rows.append({"scenario": f"check {n:,} rows (empty ledger)", "exit": code,
                     "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_rss_mib": round(rss, 1)})
        histories = {100_000: [1, 5], 1_000_000: [1]}.get(n, [])
        for history in histories:
            write_done_ledger(ledger, persons, per_person, history=history)
            lines = 2 * n * history
            code, wall, cpu, rss, sent = rerun_done(manifest, ledger)
            rows.append({"scenario": f"re-run, all {n:,} registered, ledger {history}x history ({lines:,} lines)",
                         "exit": code, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                         "peak_rss_mib": round(rss, 1), "requests_sent": sent})
            if history == 1:
                # The rejects file adds the earlier runs' refusals: a read of the whole ledger.
                rejects = os.path.join(work, "scale.rejects.csv")
                code, wall, cpu, rss, sent = rerun_done(manifest, ledger, ["--rejects", rejects])
                rows.append({"scenario": f"re-run --rejects, all {n:,} registered ({lines:,} lines)",
                             "exit": code, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                             "peak_rss_mib": round(rss, 1), "requests_sent": sent})
                os.remove(rejects)
            os.remove(ledger)
        os.remove(manifest)
    return rows


def scenario_stream(work, quick):
    """Issue 10: verify and export read everything back; memory should follow what they must
    keep, not the size of every string of the ledger, the manifest and the server's listing."""
    persons, per_person = (20_000, 5) if quick else (200_000, 5)
    manifest = os.path.join(work, "stream.csv")
    n = write_manifest(manifest, persons, per_person)
    ledger = os.path.join(work, "stream.ledger.jsonl")
    rows = []
    sandbox = Sandbox("--mts-qps", "0")
    try:
        code, wall, cpu, rss = measure(
            [BIN, "run", manifest, "--ledger", ledger, "--endpoint", sandbox.url, "--progress", "off",
             "-q", "--qps", "0", "--read-qps", "0", "--concurrency", "64"], env=tool_env())
        rows.append({"scenario": f"register {n:,} faces (setup)", "exit": code, "wall_s": round(wall, 2),
                     "peak_rss_mib": round(rss, 1)})
        # The sandbox takes seconds to write a million faces as one answer: a longer timeout,
        # so the figure is the comparison's and not a timed-out read's.
        read = ["--endpoint", sandbox.url, "--read-qps", "0", "--timeout", "300"]
        commands = [
            ("verify", [BIN, "verify", manifest, "--ledger", ledger, *read]),
            ("verify --json", [BIN, "verify", manifest, "--ledger", ledger, *read, "--json"]),
            ("export (CSV)", [BIN, "export", "--ledger", ledger]),
            ("export --format jsonl", [BIN, "export", "--ledger", ledger, "--format", "jsonl"]),
            ("status --failed", [BIN, "status", "--failed", "--ledger", ledger]),
            ("status MANIFEST --failed", [BIN, "status", manifest, "--failed", "--ledger", ledger]),
        ]
        for name, args in commands:
            code, wall, cpu, rss = measure(args, env=tool_env())
            rows.append({"scenario": f"{name}, {n:,} faces", "exit": code, "wall_s": round(wall, 2),
                         "cpu_s": round(cpu, 2), "peak_rss_mib": round(rss, 1)})
    finally:
        sandbox.close()
    return rows


def png(width, height):
    """A PNG of one colour, made with the standard library."""
    import struct
    import zlib

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    row = b"\x00" + bytes([90, 140, 200]) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))


def photo_server():
    """A threaded web server on 127.0.0.1:0 answering every GET with the same 640x480 PNG."""
    import http.server
    import threading
    body = png(640, 480)

    class Photo(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Photo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def scenario_report(work, quick):
    """Issue 25: the HTML report of a large import, without and with embedded thumbnails."""
    persons, per_person = (2_000, 5) if quick else (20_000, 5)
    server, base = photo_server()
    manifest = os.path.join(work, "report.csv")
    n = write_manifest(manifest, persons, per_person, base=base)
    ledger = os.path.join(work, "report.ledger.jsonl")
    write_done_ledger(ledger, persons, per_person, where=base)
    out = os.path.join(work, "report.html")
    rows = []
    try:
        for name, flags in [("none", ["--thumbnails", "none"]),
                            ("none, every card drawn", ["--thumbnails", "none", "--max-cards", "0"]),
                            ("embed, 2,000 thumbnails", []),
                            ("embed, 20,000 thumbnails", ["--max-thumbnails", "20000"])]:
            code, wall, cpu, rss = measure(
                [BIN, "report", manifest, "--ledger", ledger, "-o", out, *flags], env=tool_env())
            rows.append({"scenario": f"report {n:,} rows, thumbnails {name}", "exit": code,
                         "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_rss_mib": round(rss, 1),
                         "html_mib": round(os.path.getsize(out) / 2**20, 1)})
    finally:
        server.shutdown()
        for path in (manifest, ledger, out):
            if os.path.exists(path):
                os.remove(path)
    return rows


def jpeg_of(size):
    """A JPEG of about `size` bytes that pre-flight (on by default for local photos) passes: a
    400x400 frame header, random bytes in comment segments, the end marker. No pixels."""
    def segment(marker, payload):
        return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload
    out = b"\xff\xd8" + segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0")
    left = max(size - 40, 0)
    while left > 0:
        piece = min(left, 65000)
        out += segment(0xFE, os.urandom(piece))
        left -= piece + 4
    sof = bytes([8]) + (400).to_bytes(2, "big") * 2 + bytes([3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1])
    return out + segment(0xC0, sof) + b"\xff\xd9"


def scenario_upload(work, quick):
    """Issue 23: a folder of local photos (about 200 KB each) uploaded by content into the
    sandbox's OSS (kept on disk) and registered; then the same folder again, nothing changed."""
    import shutil
    persons, per_person = (200, 5) if quick else (2_000, 5)
    size = 200 * 1024
    root = os.path.join(work, "upload-photos")
    oss_root = os.path.join(work, "upload-oss")
    for p in range(persons):
        folder = os.path.join(root, "staff", f"p{p:05}")
        os.makedirs(folder, exist_ok=True)
        for i in range(per_person):
            with open(os.path.join(folder, f"{i}.jpg"), "wb") as f:
                f.write(jpeg_of(size))
    total = persons * per_person
    os.makedirs(oss_root, exist_ok=True)
    sandbox = Sandbox("--mts-qps", "100", "--latency-ms", "50", "--oss-root", oss_root)
    ledger = os.path.join(work, "upload.ledger.jsonl")
    flags = ["--endpoint", sandbox.url, "--oss-endpoint", sandbox.url.rstrip("/"),
             "--upload-to", "oss://bench/photos/", "--ledger", ledger, "--progress", "off", "-q"]
    rows = []
    try:
        summary_path = os.path.join(work, "upload.summary.json")
        started_ms = time.time() * 1000
        code, wall, cpu, rss = measure([BIN, "run", root, *flags, "--summary", summary_path],
                                       env=tool_env())
        state = sandbox.state()
        applied = state["stats"].get("applied_by_action", {}).get("RegisterCustomFace") or {}
        first_create_s = (applied.get("first_ms", started_ms) - started_ms) / 1000
        with open(summary_path) as f:
            uploads = json.load(f).get("uploads") or {}
        os.remove(summary_path)
        naming_s, uploading_s = uploads.get("naming_s", 0.0), uploads.get("uploading_s", 0.0)
        row = {"scenario": f"upload {total:,} local photos of {size // 1024} KB, then register",
               "images": total, "exit": code}
        row.update(audit_row(state, total))
        row.update({
            "objects_stored": len(state["oss"]["objects"]),
            "puts": state["oss"]["requests"]["put"],
            "time_to_first_create_s": round(first_create_s, 2),
            # Naming (read + SHA-256) comes before planning; the uploads then run alongside
            # registration, so their throughput is the stage's own.
            "naming_s": round(naming_s, 2),
            "naming_files_per_s": round(total / max(naming_s, 1e-3), 1),
            "upload_stage_s": round(uploading_s, 2),
            "upload_files_per_s": round(total / max(uploading_s, 1e-3), 1),
            "upload_mb_per_s": round(total * size / 2**20 / max(uploading_s, 1e-3), 1),
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_rss_mib": round(rss, 1),
        })
        rows.append(row)
        puts = state["oss"]["requests"]["put"]
        code, wall, cpu, rss = measure([BIN, "run", root, *flags], env=tool_env())
        state = sandbox.state()
        rows.append({"scenario": f"the same {total:,} photos again, nothing changed", "exit": code,
                     "puts": state["oss"]["requests"]["put"] - puts,
                     "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_rss_mib": round(rss, 1)})
    finally:
        sandbox.close()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(oss_root, ignore_errors=True)
        for path in (ledger, ledger + ".lock"):
            if os.path.exists(path):
                os.remove(path)
    return rows


def scenario_preflight(work, quick):
    """Issue 24: 10,000 oss:// objects of about 200 KB in the sandbox's OSS, pre-flighted (on by
    default for oss:// rows; here unpaced, to show what it can read) and then registered at 100/s:
    images and bytes read per second, the time to the first create, the registration rate, and
    the peak memory of the whole run."""
    import shutil
    persons, per_person = (200, 5) if quick else (2_000, 5)
    size = 200 * 1024
    oss_root = os.path.join(work, "preflight-oss")
    manifest = os.path.join(work, "preflight.csv")
    with open(manifest, "w") as m:
        m.write("category_id,person_id,image_url\n")
        for p in range(persons):
            folder = os.path.join(oss_root, "bench", "photos", f"p{p:05}")
            os.makedirs(folder, exist_ok=True)
            for i in range(per_person):
                with open(os.path.join(folder, f"{i}.jpg"), "wb") as f:
                    f.write(jpeg_of(size))
                m.write(f"staff,p{p:05},oss://bench/photos/p{p:05}/{i}.jpg\n")
    total = persons * per_person
    sandbox = Sandbox("--mts-qps", "100", "--latency-ms", "50", "--oss-root", oss_root)
    ledger = os.path.join(work, "preflight.ledger.jsonl")
    summary_path = os.path.join(work, "preflight.summary.json")
    flags = ["--endpoint", sandbox.url, "--oss-endpoint", sandbox.url.rstrip("/"),
             "--preflight-qps", "0", "--ledger", ledger, "--progress", "off", "-q",
             "--summary", summary_path]
    try:
        started_ms = time.time() * 1000
        code, wall, cpu, rss = measure([BIN, "run", manifest, *flags], env=tool_env())
        state = sandbox.state()
        applied = state["stats"].get("applied_by_action", {}).get("RegisterCustomFace") or {}
        first_create_s = (applied.get("first_ms", started_ms) - started_ms) / 1000
        with open(summary_path) as f:
            pre = json.load(f).get("preflight") or {}
        seconds = max(pre.get("seconds", 0.0), 1e-3)
        row = {"scenario": f"pre-flight {total:,} oss:// objects of {size // 1024} KB, then register",
               "images": total, "exit": code}
        row.update(audit_row(state, total))
        row.update({
            "preflight_checked": pre.get("checked"), "preflight_refused": pre.get("refused"),
            "preflight_s": round(seconds, 2),
            "preflight_images_per_s": round(pre.get("checked", 0) / seconds, 1),
            "preflight_mb_per_s": round(pre.get("bytes_read", 0) / 2**20 / seconds, 1),
            "oss_gets": state["oss"]["requests"]["get"],
            "time_to_first_create_s": round(first_create_s, 2),
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_rss_mib": round(rss, 1),
        })
        return [row]
    finally:
        sandbox.close()
        shutil.rmtree(oss_root, ignore_errors=True)
        for path in (manifest, ledger, ledger + ".lock", summary_path):
            if os.path.exists(path):
                os.remove(path)


SCENARIOS = {"baseline": scenario_baseline, "upload": scenario_upload, "preflight": scenario_preflight, "report": scenario_report, "stream": scenario_stream, "paced": scenario_paced,
             "unlimited": scenario_unlimited, "scale": scenario_scale,
             "reconcile": scenario_reconcile, "oss": scenario_oss}
ORDER = ["baseline", "unlimited", "scale", "reconcile", "stream", "paced", "oss", "report", "upload",
         "preflight"]


def machine():
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(open("/proc/meminfo").readline().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    load = ", load %.2f %.2f %.2f" % os.getloadavg()
    return f"{platform.machine()}, {os.cpu_count()} cores ({model}){mem}, {platform.platform()}{load}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="run only these")
    parser.add_argument("--no-perf", action="store_true", help="skip the perf profile")
    args = parser.parse_args()
    if not os.path.exists(BIN):
        raise SystemExit("build first: cargo build --release")
    print(f"machine: {machine()}")
    print(f"command: bench/run {' '.join(sys.argv[1:])}".rstrip())
    print(f"peak RSS from: {'GNU time (%M)' if TIME_BIN else 'wait4 ru_maxrss (an upper bound: install GNU time)'}")
    sys.stdout.flush()
    work = tempfile.mkdtemp(prefix="face-enroll-bench-")
    try:
        for name in args.only or ORDER:
            if name == "unlimited":
                result = scenario_unlimited(work, args.quick, perf=not args.no_perf)
            else:
                result = SCENARIOS[name](work, args.quick)
            for row in result if isinstance(result, list) else [result]:
                print(json.dumps(row, ensure_ascii=False))
                sys.stdout.flush()
        print(f"# load after: %.2f %.2f %.2f" % os.getloadavg())
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
