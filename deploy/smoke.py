#!/usr/bin/env python3
"""Run the Lambda zip the way Lambda runs it, on this machine: unpack it, start `bootstrap`
with a clean Lambda-like environment against a stand-in Runtime API (this script) and an
S3 + DynamoDB emulator (moto), feed it API Gateway HTTP API (v2) events with JWT-authorizer
claims, and check the answers and the CloudWatch EMF lines the template's alarms read. Prints one JSON summary (cold start, per-event latency).

    ~/.cache/imgsvc/moto-5.2.5/bin/python deploy/smoke.py \
        [--zip target/lambda/dist/imgsvc-lambda-x86_64.zip] [--endpoint http://127.0.0.1:5055]

Without --endpoint it starts moto from scripts/test's venv on a free port. Needs boto3 (in
that venv). CI runs it on a zip of the test build (scripts/test-deploy); a release zip comes
from deploy/package.sh. An arm64 zip runs
under qemu (apt qemu-user) with --runner "qemu-aarch64 -L /usr/aarch64-linux-gnu": the
runner starts `imgsvc serve` itself, as `bootstrap` would.
"""

from __future__ import annotations

import argparse
import base64
import http.server
import json
import os
import pathlib
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
PHOTO = ROOT.parent / "shared" / "corpus" / "mate_RainDrops.jpg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def event(method, path, query="", sub=None, body=None, content_type=None):
    headers = {"host": "abc.execute-api.eu-west-1.amazonaws.com"}
    if content_type:
        headers["content-type"] = content_type
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc",
            "authorizer": {"jwt": {"claims": {"sub": sub}, "scopes": None}} if sub else None,
            "domainName": "abc.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "abc",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "smoke"},
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": "23/Nov/2026:12:00:00 +0000",
            "timeEpoch": int(time.time() * 1000),
        },
        "body": base64.b64encode(body).decode() if body is not None else None,
        "isBase64Encoded": body is not None,
    }


class RuntimeApi(http.server.ThreadingHTTPServer):
    """The Lambda Runtime API, one invocation at a time."""

    def __init__(self, port):
        super().__init__(("127.0.0.1", port), RuntimeHandler)
        self.pending: queue.Queue = queue.Queue()
        self.results: queue.Queue = queue.Queue()
        self.init_error = None


class RuntimeHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path != "/2018-06-01/runtime/invocation/next":
            self.send_error(404)
            return
        request_id, payload = self.server.pending.get()
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 29_000))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:eu-west-1:123456789012:function:imgsvc-smoke-api")
        self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = self.path.split("/")
        if self.path == "/2018-06-01/runtime/init/error":
            self.server.init_error = body.decode(errors="replace")
            self.server.results.put(("init_error", None, body))
        elif len(parts) == 6 and parts[3] == "invocation":
            self.server.results.put((parts[5], parts[4], body))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zip", default=str(ROOT / "target/lambda/dist/imgsvc-lambda-x86_64.zip"))
    parser.add_argument("--endpoint", help="S3 + DynamoDB emulator (default: start moto)")
    parser.add_argument("--runner", help="command prefix for a foreign architecture, e.g. qemu-aarch64 -L /usr/aarch64-linux-gnu")
    args = parser.parse_args()

    import boto3  # moto's venv has it

    work = pathlib.Path(tempfile.mkdtemp(prefix="imgsvc-smoke-"))
    moto = None
    process = None
    try:
        task = work / "task"
        with zipfile.ZipFile(args.zip) as z:
            names = sorted(z.namelist())
            assert names == ["bootstrap", "imgsvc"], names
            for info in z.infolist():
                z.extract(info, task)
                mode = (info.external_attr >> 16) & 0o777
                assert mode & 0o111, f"{info.filename} is not executable in the zip ({oct(mode)})"
                os.chmod(task / info.filename, mode)

        endpoint = args.endpoint
        if not endpoint:
            moto_port = free_port()
            moto_bin = pathlib.Path(sys.executable).parent / "moto_server"
            moto = subprocess.Popen([str(moto_bin), "-H", "127.0.0.1", "-p", str(moto_port)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            endpoint = f"http://127.0.0.1:{moto_port}"
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", moto_port), 0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)

        creds = dict(aws_access_key_id="smoke", aws_secret_access_key="smoke", region_name="eu-west-1")
        bucket, table = f"imgsvc-smoke-{uuid.uuid4().hex[:8]}", f"imgsvc-smoke-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=endpoint, **creds).create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        s = "S"
        boto3.client("dynamodb", endpoint_url=endpoint, **creds).create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": s} for n in ("PK", "SK", "GSI1PK", "GSI1SK", "GSI2PK", "GSI2SK")],
            KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
            GlobalSecondaryIndexes=[
                {"IndexName": i, "KeySchema": [{"AttributeName": f"{i}PK", "KeyType": "HASH"}, {"AttributeName": f"{i}SK", "KeyType": "RANGE"}],
                 "Projection": {"ProjectionType": "ALL"}} for i in ("GSI1", "GSI2")])

        api_port = free_port()
        api = RuntimeApi(api_port)
        threading.Thread(target=api.serve_forever, daemon=True).start()

        env = {  # what Lambda sets, plus the template's variables
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LAMBDA_TASK_ROOT": str(task),
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{api_port}",
            "AWS_LAMBDA_FUNCTION_NAME": "imgsvc-smoke-api",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/imgsvc-smoke-api",
            "AWS_LAMBDA_LOG_STREAM_NAME": "smoke",
            "AWS_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "smoke",
            "AWS_SECRET_ACCESS_KEY": "smoke",
            "AWS_ENDPOINT_URL": endpoint,
            "IMGSVC_S3_BUCKET": bucket,
            "IMGSVC_DYNAMODB_TABLE": table,
            "IMGSVC_S3_FORCE_PATH_STYLE": "true",  # the emulator; real S3 doesn't need it
            "IMGSVC_CDN_URL": "https://cdn.example.invalid",
            "IMGSVC_JWT_SECRET": "s" * 64,
            "IMGSVC_TRUST_AUTHORIZER": "true",
            "IMGSVC_DATA_DIR": str(work / "data"),
            "IMGSVC_LOG_FORMAT": "json",
        }
        log = open(work / "function.log", "wb")
        started = time.monotonic()
        command = [str(task / "bootstrap")]
        if args.runner:
            command = args.runner.split() + [str(task / "imgsvc"), "serve"]
        process = subprocess.Popen(command, cwd=task, env=env, stdout=log, stderr=subprocess.STDOUT)

        photo = PHOTO.read_bytes()
        boundary = "smokeBoundary"
        multipart = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nsmoke\r\n"
                     f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.jpg\"\r\n"
                     "Content-Type: image/jpeg\r\n\r\n").encode() + photo + f"\r\n--{boundary}--\r\n".encode()
        steps = [
            ("GET /health", event("GET", "/health"), 200),
            ("GET /openapi.json", event("GET", "/openapi.json"), 200),
            ("GET /images (no claims)", event("GET", "/images"), 401),
            ("POST /images", event("POST", "/images", sub="smoke", body=multipart,
                                   content_type=f"multipart/form-data; boundary={boundary}"), 201),
            ("GET /images", event("GET", "/images", "limit=5", sub="smoke"), 200),
        ]
        report = {"zip": args.zip, "zipBytes": os.path.getsize(args.zip), "runner": args.runner, "steps": []}
        image_id = None
        for i, (name, payload, expected) in enumerate(steps):
            request_id = f"req-{i}"
            t0 = time.monotonic()
            api.pending.put((request_id, payload))
            try:
                kind, rid, body = api.results.get(timeout=60)
            except queue.Empty:
                raise SystemExit(f"{name}: no answer in 60 s; log:\n{(work / 'function.log').read_text()}")
            elapsed = time.monotonic() - t0
            if kind != "response" or rid != request_id:
                raise SystemExit(f"{name}: {kind} {rid}: {body[:500]!r}; log:\n{(work / 'function.log').read_text()}")
            answer = json.loads(body)
            status = answer.get("statusCode")
            if status != expected:
                raise SystemExit(f"{name}: status {status}, expected {expected}: {str(answer)[:500]}")
            if name == "POST /images":
                text = base64.b64decode(answer["body"]) if answer.get("isBase64Encoded") else answer["body"].encode()
                record = json.loads(text)
                image_id = record["id"]
                assert record["imageUrl"].startswith("https://cdn.example.invalid/"), record["imageUrl"]
            if i == 0:
                report["coldStartToFirstAnswerMs"] = round((time.monotonic() - started) * 1000, 1)
            report["steps"].append({"step": name, "status": status, "ms": round(elapsed * 1000, 1)})
        if image_id:
            listed = [s for s in report["steps"] if s["step"] == "GET /images"]
            assert listed, "list step missing"
        rss = None
        try:
            for line in open(f"/proc/{process.pid}/status"):
                if line.startswith("VmHWM:"):
                    rss = int(line.split()[1]) // 1024
        except OSError:
            pass
        report["peakRssMiB"] = rss
        # The EMF lines the template's alarms read (names and dimension sets: its header).
        time.sleep(0.2)
        emf = {}
        for line in (work / "function.log").read_text(errors="replace").splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if not isinstance(doc, dict) or "_aws" not in doc:
                continue
            for directive in doc["_aws"]["CloudWatchMetrics"]:
                assert directive["Namespace"] == "imgsvc", directive
                for metric in directive["Metrics"]:
                    for dims in directive["Dimensions"]:
                        emf.setdefault(metric["Name"], set()).add(
                            tuple(f"{d}={doc[d]}" for d in dims))
        for name in ("Requests", "Errors", "RequestLatency"):
            seen = emf.get(name, set())
            for operation in ("GET /health", "POST /images", "GET /images"):
                assert (f"Operation={operation}",) in seen, (name, operation, sorted(seen))
        # Time in the image pipeline per upload, in total and per stage (no dimensions).
        for name in ("ProcessingLatency", "ProcessingDecodeLatency", "ProcessingDisplayLatency",
                     "ProcessingThumbnailLatency", "ProcessingEncodeDisplayLatency",
                     "ProcessingEncodeThumbnailLatency"):
            assert () in emf.get(name, set()), (name, sorted(emf))
        report["emfMetrics"] = sorted(emf)
        print(json.dumps(report))
        return 0
    finally:
        if process:
            process.kill()
            process.wait()
        if moto:
            moto.kill()
            moto.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
