#!/usr/bin/env python3
"""The baseline users write today: the official MTS Python SDK from a thread pool.

Usage: sdk_baseline.py MANIFEST ENDPOINT_URL STATS_JSON [--threads 16] [--retries 3] [--sleep 1.0]

Reads the manifest (category_id, person_id, person_name, image_url), calls RegisterCustomFace
for every row from a ThreadPoolExecutor, and on any exception retries the call up to --retries
times after sleeping --sleep seconds, the way a typical script does. Nothing is paced and
nothing is reconciled: a retry after an error whose call was applied registers the image again.
Credentials come from ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET.

The SDK runs with its default settings: it signs with ACS3-HMAC-SHA256 (V3), which the sandbox
verifies as it does RPC v1.
"""

import argparse
import csv
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from alibabacloud_mts20140618 import models
from alibabacloud_mts20140618.client import Client
from alibabacloud_tea_openapi.models import Config


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("manifest")
    parser.add_argument("endpoint_url")
    parser.add_argument("stats")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--retries", type=int, default=3)
    parser.add_argument("--sleep", type=float, default=1.0)
    args = parser.parse_args()

    host = args.endpoint_url.split("://", 1)[1].rstrip("/")
    local = threading.local()

    def client():
        if not hasattr(local, "client"):
            local.client = Client(Config(
                access_key_id=os.environ["ALIBABA_CLOUD_ACCESS_KEY_ID"],
                access_key_secret=os.environ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"],
                endpoint=host, protocol="http", region_id="cn-shanghai"))
        return local.client

    lock = threading.Lock()
    stats = {"rows": 0, "ok": 0, "gave_up": 0, "attempts": 0, "exceptions": 0,
             "throttled_exceptions": 0, "first_error": None}

    def register(row):
        request = models.RegisterCustomFaceRequest(
            category_id=row["category_id"], person_id=row["person_id"],
            person_name=row.get("person_name") or None, image_url=row["image_url"])
        for attempt in range(args.retries + 1):
            with lock:
                stats["attempts"] += 1
            try:
                client().register_custom_face(request)
                with lock:
                    stats["ok"] += 1
                return
            except Exception as error:  # what a typical script catches
                with lock:
                    stats["exceptions"] += 1
                    if "Throttling" in str(getattr(error, "code", "")):
                        stats["throttled_exceptions"] += 1
                    if stats["first_error"] is None:
                        stats["first_error"] = f"{type(error).__name__}: {str(error)[:200]}"
                if attempt < args.retries:
                    time.sleep(args.sleep)
        with lock:
            stats["gave_up"] += 1

    with open(args.manifest, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    stats["rows"] = len(rows)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        for _ in pool.map(register, rows):
            pass
    stats["elapsed_s"] = time.monotonic() - started
    with open(args.stats, "w") as f:
        json.dump(stats, f)


if __name__ == "__main__":
    main()
