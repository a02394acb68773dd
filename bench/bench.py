#!/usr/bin/env python3
"""face-enroll benchmarks: print figures, pass or fail nothing.

Usage: python3 bench/bench.py [--quick] [--only NAME ...]
Builds nothing: run `cargo build --release` first (bench/run does both).

Every scenario runs the release binary against the standalone sandbox on 127.0.0.1 and measures
the tool's own process (CPU user+sys and peak RSS via wait4), and reads the sandbox's state
afterwards (duplicates, missing images, throttled answers).
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "face-enroll")
KEY_ID, SECRET = "sandbox-key-id", "sandbox-key-secret"


def write_manifest(path, persons, per_person, category="bench"):
    with open(path, "w") as f:
        f.write("category_id,person_id,person_name,image_url\n")
        for p in range(persons):
            for i in range(per_person):
                f.write(f"{category},person-{p:07d},Person {p},https://img.example.com/{category}/{p:07d}/{i:02d}.jpg\n")
    return persons * per_person


def write_done_ledger(path, persons, per_person, category="bench"):
    """A ledger as a finished import leaves it: a pending and a registered line per image."""
    ts = "2026-11-22T00:00:00.000Z"
    with open(path, "w") as f:
        for p in range(persons):
            for i in range(per_person):
                url = f"https://img.example.com/{category}/{p:07d}/{i:02d}.jpg"
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


def measure(args, env=None):
    """Runs the tool; returns (exit code, wall s, cpu s, peak RSS MiB)."""
    started = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    if proc.returncode not in (0, 1):
        print(err[-2000:], file=sys.stderr)
    return proc.returncode, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def tool_env():
    env = dict(os.environ)
    env.update({"ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET,
                "HOME": tempfile.gettempdir()})
    return env


def audit(state):
    copies = {}
    for c in state["mts"]["categories"]:
        for p in c["persons"]:
            for f in p["faces"]:
                copies[f["image_url"]] = copies.get(f["image_url"], 0) + 1
    return copies


def run_import(work, name, images_shape, sandbox_flags, tool_flags):
    persons, per_person = images_shape
    manifest = os.path.join(work, f"{name}.csv")
    total = write_manifest(manifest, persons, per_person)
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
    copies = audit(state)
    requests = sum(state["stats"]["by_action"].values()) + state["stats"]["throttled"]
    return {
        "scenario": name, "images": total, "exit": code,
        "registrations_per_s": round(summary["rate_per_s"], 1),
        "elapsed_s": round(summary["elapsed_s"], 2),
        "throttled": summary["throttled"], "requests": requests,
        "throttled_pct": round(100.0 * summary["throttled"] / max(requests, 1), 3),
        "duplicates": sum(n - 1 for n in copies.values() if n > 1),
        "missing": total - len(copies),
        "cpu_ms_per_registration": round(1000.0 * cpu / max(total, 1), 4),
        "peak_rss_mib": round(rss, 1),
    }


def scenario_paced(work, quick):
    shape = (120, 5) if quick else (600, 5)
    return run_import(work, "paced-100qps-50ms", shape,
                      ["--mts-qps", "100", "--latency-ms", "50"], [])


def scenario_unlimited(work, quick):
    shape = (1000, 5) if quick else (6000, 5)
    return run_import(work, "unpaced-qps0", shape,
                      ["--mts-qps", "0", "--latency-ms", "0"], ["--qps", "0", "--concurrency", "64"])


def scenario_scale(work, quick):
    rows = []
    sizes = [(20_000, 5)] if quick else [(20_000, 5), (200_000, 5)]
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
        write_done_ledger(ledger, persons, per_person)
        sandbox = Sandbox("--mts-qps", "0")
        try:
            code, wall, cpu, rss = measure(
                [BIN, "run", manifest, "--ledger", ledger, "--endpoint", sandbox.url, "--progress", "off", "-q"],
                env=tool_env())
            sent = sandbox.state()["stats"]["requests"]
        finally:
            sandbox.close()
        rows.append({"scenario": f"re-run, all {n:,} registered", "exit": code, "wall_s": round(wall, 2),
                     "cpu_s": round(cpu, 2), "peak_rss_mib": round(rss, 1), "requests_sent": sent})
        os.remove(ledger)
    return rows


SCENARIOS = {"paced": scenario_paced, "unlimited": scenario_unlimited, "scale": scenario_scale}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="run only these")
    args = parser.parse_args()
    if not os.path.exists(BIN):
        raise SystemExit("build first: cargo build --release")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    work = tempfile.mkdtemp(prefix="face-enroll-bench-")
    try:
        for name in args.only or ["paced", "unlimited", "scale"]:
            result = SCENARIOS[name](work, args.quick)
            for row in result if isinstance(result, list) else [result]:
                print(json.dumps(row, ensure_ascii=False))
                sys.stdout.flush()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
