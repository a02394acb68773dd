#!/usr/bin/env python3
"""Drives the sandbox's OSS with the official OSS SDK for Python (alibabacloud-oss-v2), so the
sandbox's signature checks meet the real signer: PUT with and without x-oss-forbid-overwrite,
a wrong Content-MD5, HEAD, GET, a presigned GET fetched with urllib, and a wrong secret.

    python3 tests/oss_sdk_check.py --install            # make target/oss-venv, then exit
    python3 tests/oss_sdk_check.py ENDPOINT KEY_ID SECRET [TOKEN]

Run with any python3: it makes target/oss-venv from tests/oss-sdk-requirements.txt on first use
(again when that file changes) and runs itself there. Exit status: 0 every check passed, 1 a
check failed (the reason on stderr), 3 the SDK could not be installed (no venv or pip).
"""

import base64
import datetime
import hashlib
import os
import subprocess
import sys
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = os.path.join(ROOT, "tests", "oss-sdk-requirements.txt")
VENV = os.path.join(ROOT, "target", "oss-venv")
VENV_PY = os.path.join(VENV, "bin", "python")
MARKER = os.path.join(VENV, ".requirements")
CANNOT_INSTALL = 3

REGION = "cn-hangzhou"
BUCKET = "sdk-check"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"sandbox sdk check " * 64


def ensure_venv():
    """target/oss-venv with the pinned SDK; created once, reused while the pins are the same."""
    wanted = open(REQUIREMENTS).read()
    if os.path.exists(MARKER) and open(MARKER).read() == wanted:
        return
    print(f"installing the OSS SDK into {os.path.relpath(VENV, ROOT)} ...", file=sys.stderr)
    try:
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True, timeout=300)
        subprocess.run([VENV_PY, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "-r", REQUIREMENTS], check=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as error:
        print(f"cannot install the OSS SDK: {error}", file=sys.stderr)
        sys.exit(CANNOT_INSTALL)
    with open(MARKER, "w") as f:
        f.write(wanted)


def in_venv():
    return os.path.realpath(sys.prefix) == os.path.realpath(VENV)


def fail(message):
    print(f"oss_sdk_check: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def expect_service_error(call, status, code):
    import alibabacloud_oss_v2 as oss
    try:
        call()
    except oss.exceptions.OperationError as error:
        inner = error.unwrap()
        got = (getattr(inner, "status_code", None), getattr(inner, "code", None))
        if got != (status, code):
            fail(f"expected {status} {code}, got {got}: {inner}")
        return
    fail(f"expected {status} {code}, the call succeeded")


def checks(endpoint, key_id, secret, token):
    import alibabacloud_oss_v2 as oss

    def client(secret):
        cfg = oss.config.load_default()
        cfg.credentials_provider = oss.credentials.StaticCredentialsProvider(key_id, secret, token)
        cfg.region = REGION
        cfg.endpoint = endpoint
        cfg.use_path_style = True
        cfg.disable_ssl = True
        cfg.retry_max_attempts = 1
        return oss.Client(cfg)

    c = client(secret)
    md5 = base64.b64encode(hashlib.md5(JPEG).digest()).decode()
    etag = '"' + hashlib.md5(JPEG).hexdigest().upper() + '"'
    key = "photos/alice.jpg"

    put = c.put_object(oss.PutObjectRequest(bucket=BUCKET, key=key, body=JPEG,
                                            content_type="image/jpeg", content_md5=md5))
    if put.status_code != 200 or put.etag != etag:
        fail(f"put: {put.status_code} {put.etag}, expected 200 {etag}")

    expect_service_error(
        lambda: c.put_object(oss.PutObjectRequest(bucket=BUCKET, key=key, body=JPEG,
                                                  forbid_overwrite=True)),
        409, "FileAlreadyExists")
    fresh_key = f"photos/bob-{uuid.uuid4().hex[:12]}.jpg"
    fresh = c.put_object(oss.PutObjectRequest(bucket=BUCKET, key=fresh_key, body=JPEG,
                                              forbid_overwrite=True))
    if fresh.status_code != 200:
        fail(f"put with forbid-overwrite on a new key: {fresh.status_code}")
    wrong_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    expect_service_error(
        lambda: c.put_object(oss.PutObjectRequest(bucket=BUCKET, key="photos/carol.jpg",
                                                  body=JPEG, content_md5=wrong_md5)),
        400, "InvalidDigest")

    head = c.head_object(oss.HeadObjectRequest(bucket=BUCKET, key=key))
    if (head.content_length, head.etag, head.content_type) != (len(JPEG), etag, "image/jpeg"):
        fail(f"head: {head.content_length} {head.etag} {head.content_type}")

    got = c.get_object(oss.GetObjectRequest(bucket=BUCKET, key=key))
    body = got.body.read()
    if body != JPEG or got.etag != etag:
        fail(f"get: {len(body)} bytes, etag {got.etag}")

    presigned = c.presign(oss.GetObjectRequest(bucket=BUCKET, key=key),
                          expires=datetime.timedelta(seconds=60))
    if "x-oss-signature=" not in presigned.url:
        fail("the presigned link is not a V4 one")
    with urllib.request.urlopen(presigned.url, timeout=10) as response:
        if response.status != 200 or response.read() != JPEG:
            fail(f"presigned get: {response.status}")

    expect_service_error(
        lambda: client(secret + "-wrong").head_object(oss.HeadObjectRequest(bucket=BUCKET,
                                                                            key=key)),
        403, "SignatureDoesNotMatch")
    print("oss_sdk_check: 7 checks passed with alibabacloud-oss-v2 "
          f"{oss.__version__ if hasattr(oss, '__version__') else ''}".rstrip())


def main(argv):
    if argv[1:] == ["--install"]:
        ensure_venv()
        return 0
    if len(argv) not in (4, 5):
        print(__doc__, file=sys.stderr)
        return 2
    if not in_venv():
        ensure_venv()
        return subprocess.run([VENV_PY, os.path.abspath(__file__)] + argv[1:]).returncode
    endpoint, key_id, secret = argv[1:4]
    token = argv[4] if len(argv) == 5 else None
    checks(endpoint, key_id, secret, token)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
