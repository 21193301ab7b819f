#!/usr/bin/env python3
"""An operator's full rehearsal of the migration from the legacy gallery (PostgreSQL) to the
Image Service (S3 + DynamoDB on an emulator), run against the real `imgsvc` binary.

    python3 scripts/rehearse-migration.py --bin target/debug/imgsvc [--report out.md]

Needs: an AWS emulator (moto) at --aws-endpoint, PostgreSQL at --database-url (a fresh
database is created for the run), `psql` on PATH, the photo corpus at --corpus. Python 3
standard library only. Prints one line per step and a Markdown table; exits 1 if any step's
expectation failed, 2 if the rehearsal could not start. Not part of CI.

The `serve` process reaches DynamoDB through a TCP proxy in this script (AWS_ENDPOINT_URL is
the proxy; S3 stays direct through AWS_ENDPOINT_URL_S3, so the outage is DynamoDB's only);
the proxy can drop connections ("down") or accept and never answer ("hang"). The `migrate`
commands reach the emulator directly.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

HTTP_TIMEOUT = 60  # seconds, per HTTP call
COMMAND_TIMEOUT = 300  # seconds, per `imgsvc` command
PSQL_TIMEOUT = 30
USERS = [f"user-{i}" for i in range(10)]


def fnv1a_bucket(user):
    """The rollout bucket of a user, as docs/migration.md defines it."""
    h = 0xCBF29CE484222325
    for byte in user.encode():
        h ^= byte
        h = (h * 0x100000001B3) % (1 << 64)
    return h % 100


def percentile(values, p):
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def find_key(value, key):
    """The first value under `key` anywhere in a JSON document."""
    if isinstance(value, dict):
        if key in value:
            return value[key]
        for inner in value.values():
            found = find_key(inner, key)
            if found is not None:
                return found
    elif isinstance(value, list):
        for inner in value:
            found = find_key(inner, key)
            if found is not None:
                return found
    return None


def summarise_plan(lines):
    """`reconcile` output in one line: each change or conflict as action(id…), then the totals."""
    parts = []
    for line in lines:
        entry = line.get("plan") or line.get("change")
        if entry:
            parts.append(f"{entry.get('action')}({str(entry.get('id'))[-6:]} v{entry.get('writtenVersion')})")
        elif "conflict" in line:
            conflict = line["conflict"]
            fields = ",".join(f.get("field", "?") for f in conflict.get("fields") or [])
            parts.append(f"conflict({str(conflict.get('id'))[-6:]} v{conflict.get('version')}: {fields})")
        else:
            parts.append(json.dumps(line, separators=(",", ":")))
    return "; ".join(parts)


def json_lines(text):
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") or line.startswith("["):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    if not out and text.strip():
        try:
            out.append(json.loads(text))
        except ValueError:
            pass
    return out


# ---------------------------------------------------------------------------------------------
# The TCP proxy in front of the emulator (for `serve` only).


class Proxy:
    """127.0.0.1:port → target. Modes: "up" (forward), "down" (drop new connections, close
    open ones), "hang" (accept and never answer; open ones are closed so every request from
    now on opens a connection that is held)."""

    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(256)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.mode = "up"
        self.lock = threading.Lock()
        self.open = []  # sockets of forwarded connections
        self.held = []  # sockets accepted while hanging
        self.accepted = {"up": 0, "down": 0, "hang": 0}
        self.stopping = False
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                mode = self.mode
                self.accepted[mode] += 1
                if mode == "hang":
                    self.held.append(client)
                    continue
            if mode == "down":
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open.extend([client, server])
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            with self.lock:
                for s in (source, sink):
                    if s in self.open:
                        self.open.remove(s)
                        s.close()

    def _close_all(self, sockets):
        for s in list(sockets):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        sockets.clear()

    def set_mode(self, mode):
        with self.lock:
            self.mode = mode
            if mode != "up":
                self._close_all(self.open)
            if mode != "hang":
                self._close_all(self.held)

    def stop(self):
        self.stopping = True
        try:
            self.listener.close()
        except OSError:
            pass
        with self.lock:
            self._close_all(self.open)
            self._close_all(self.held)


# ---------------------------------------------------------------------------------------------
# HTTP


class Response:
    def __init__(self, status, headers, body, seconds):
        self.status = status
        self.headers = headers
        self.body = body
        self.seconds = seconds

    def json(self):
        try:
            return json.loads(self.body.decode() or "null")
        except ValueError:
            return None


def http(method, url, token=None, body=None, content_type=None, timeout=HTTP_TIMEOUT):
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        content_type = content_type or "application/json"
    if content_type:
        headers["Content-Type"] = content_type
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            data = answer.read()
            return Response(answer.status, dict(answer.headers), data, time.monotonic() - started)
    except urllib.error.HTTPError as error:
        data = error.read()
        return Response(error.code, dict(error.headers), data, time.monotonic() - started)
    except (urllib.error.URLError, OSError) as error:
        return Response(0, {}, str(error).encode(), time.monotonic() - started)


def multipart(fields, file_name, file_bytes):
    boundary = "rehearsal" + uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    parts.append(
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file_name}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + file_bytes
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


# ---------------------------------------------------------------------------------------------
# The rehearsal


class StepFailed(Exception):
    pass


class Rehearsal:
    def __init__(self, args):
        self.args = args
        self.bin = os.path.abspath(args.bin)
        self.work = tempfile.mkdtemp(prefix="imgsvc-rehearsal-")
        self.data_dir = os.path.join(self.work, "data")
        os.makedirs(self.data_dir)
        self.flags_path = os.path.join(self.work, "flags.env")
        self.name = "imgsvc-rehearsal-" + uuid.uuid4().hex[:12]
        self.db_name = "imgsvc_rehearsal_" + uuid.uuid4().hex[:12]
        base, _ = args.database_url.rsplit("/", 1)
        self.db = f"{base}/{self.db_name}"
        endpoint = args.aws_endpoint.rstrip("/")
        host, port = endpoint.split("//", 1)[1].split(":")
        self.endpoint = endpoint
        self.proxy = None
        self.serve = None
        self.serve_log = os.path.join(self.work, "serve.log")
        self.url = None
        self.tokens = {}
        self.images = {}  # id -> {"user", "version", "source"}
        self.results = []
        self.flag_values = {}
        self._target = (host, int(port))
        jpegs = sorted(
            (os.path.getsize(os.path.join(args.corpus, f)), f)
            for f in os.listdir(args.corpus)
            if f.lower().endswith((".jpg", ".jpeg"))
        )
        if not jpegs:
            raise StepFailed(f"no JPEGs in {args.corpus}")
        self.small = [os.path.join(args.corpus, f) for _, f in jpegs[:6]]
        # Varied sizes, but nothing past ~1.6 MB: 100 uploads on a shared machine.
        self.varied = [os.path.join(args.corpus, f) for size, f in jpegs if size <= 1_600_000]
        self.photo_cache = {}

    # -- plumbing -------------------------------------------------------------------------------

    def aws_env(self, endpoint):
        env = dict(os.environ)
        env.update(
            {
                "IMGSVC_LEGACY_DATABASE_URL": self.db,
                "IMGSVC_S3_BUCKET": self.name,
                "IMGSVC_DYNAMODB_TABLE": self.name,
                "IMGSVC_S3_FORCE_PATH_STYLE": "true",
                "IMGSVC_DATA_DIR": self.data_dir,
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test",
            }
        )
        env.pop("IMGSVC_FLAGS_FILE", None)
        env.pop("AWS_ENDPOINT_URL_S3", None)
        env.pop("AWS_ENDPOINT_URL_DYNAMODB", None)
        env.pop("AWS_PROFILE", None)
        return env

    def run(self, args, endpoint=None, timeout=COMMAND_TIMEOUT):
        started = time.monotonic()
        try:
            done = subprocess.run(
                [self.bin] + args,
                env=self.aws_env(endpoint or self.endpoint),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise StepFailed(f"`imgsvc {' '.join(args)}` did not finish within {timeout}s")
        return done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"), time.monotonic() - started

    def migrate(self, *args, timeout=COMMAND_TIMEOUT):
        return self.run(["migrate"] + list(args), timeout=timeout)

    def psql(self, sql, database=None):
        try:
            done = subprocess.run(
                ["psql", database or self.db, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
                capture_output=True,
                timeout=PSQL_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise StepFailed(f"psql did not finish within {PSQL_TIMEOUT}s: {sql[:60]}")
        if done.returncode != 0:
            raise StepFailed(f"psql failed: {done.stderr.decode().strip()} ({sql[:80]})")
        return done.stdout.decode().strip()

    def write_flags(self, drop=(), **flags):
        for key in drop:
            self.flag_values.pop(key, None)
        self.flag_values.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in flags.items()})
        text = "".join(f"{k}={v}\n" for k, v in self.flag_values.items()) + f"# {uuid.uuid4().hex}\n"
        with open(self.flags_path, "w") as f:
            f.write(text)
        # Re-read on change of mtime: make it distinct from every earlier write.
        self._mtime = max(getattr(self, "_mtime", 0) + 1_000_000_000, time.time_ns() + 1_000_000_000)
        os.utime(self.flags_path, ns=(self._mtime, self._mtime))
        # The server must see the new flags before the next request depends on them.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status = self.status()
            current = (status or {}).get("flags") or {}
            if all(self.flag_matches(current, k, v) for k, v in self.flag_values.items()):
                return
            time.sleep(0.1)
        raise StepFailed(f"the server did not pick up the flags {self.flag_values}: {current}")

    # How GET /dual-write/status spells each flag.
    STATUS_NAMES = {
        "ENABLE_DYNAMODB_DUAL_WRITE": "dualWrite",
        "USE_IMAGE_SERVICE": "useImageService",
        "ROLLOUT_PERCENTAGE": "rolloutPercentage",
        "SHADOW_READS": "shadowReads",
        "IMAGE_SERVICE_TIMEOUT_MS": "readTimeout",
        "CIRCUIT_BREAKER_FAILURES": "breakerFailures",
        "CIRCUIT_BREAKER_COOLDOWN_MS": "breakerCooldown",
    }

    @classmethod
    def flag_matches(cls, current, key, value):
        shown = current.get(cls.STATUS_NAMES[key])
        return shown is not None and str(shown).lower() == value.lower()

    def status(self):
        answer = http("GET", f"{self.url}/dual-write/status", timeout=10)
        return answer.json() if answer.status == 200 else None

    def token(self, user):
        if user not in self.tokens:
            code, out, err, _ = self.run(["token", "--user", user, "--data-dir", self.data_dir], timeout=30)
            if code != 0 or not out.strip():
                raise StepFailed(f"imgsvc token failed ({code}): {err.strip()[:200]}")
            self.tokens[user] = out.strip().splitlines()[-1].strip()
        return self.tokens[user]

    def photo(self, path):
        if path not in self.photo_cache:
            with open(path, "rb") as f:
                self.photo_cache[path] = f.read()
        return self.photo_cache[path]

    def upload(self, prefix, user, path, title=None):
        fields = {"title": title} if title else {}
        body, content_type = multipart(fields, os.path.basename(path), self.photo(path))
        return http("POST", f"{self.url}{prefix}/images", self.token(user), body, content_type)

    def uploads(self, count, photos, title, source, users=USERS):
        latencies, statuses = [], {}
        for i in range(count):
            user = users[i % len(users)]
            answer = self.upload("/gallery", user, photos[i % len(photos)], f"{title} {i}")
            latencies.append(answer.seconds)
            statuses[answer.status] = statuses.get(answer.status, 0) + 1
            if answer.status == 201:
                record = answer.json()
                self.images[record["id"]] = {"user": user, "version": record.get("version", 1), "source": source}
            elif len(statuses) == 1 and answer.status != 201:
                pass
        return latencies, statuses

    def counters(self):
        return ((self.status() or {}).get("counters") or {}).get("reads") or {}

    def verify(self, *extra):
        report = os.path.join(self.work, f"verify-{uuid.uuid4().hex[:6]}.json")
        code, out, err, seconds = self.migrate("verify", *extra, "--report", report)
        try:
            with open(report) as f:
                details = json.load(f)
        except (OSError, ValueError):
            details = {}
        summary = (json_lines(out) or [{}])[-1]
        total = find_key(details, "total") if find_key(details, "total") is not None else find_key(summary, "total")
        matched = find_key(details, "matched") if find_key(details, "matched") is not None else find_key(summary, "matched")
        return code, total, matched, details, out, err

    # -- steps ----------------------------------------------------------------------------------

    def step(self, number, what, expectation, function):
        started = time.monotonic()
        self.failures = []
        self.figures = []
        try:
            function()
        except StepFailed as error:
            self.failures.append(str(error))
        except Exception as error:  # a bug in a step must not skip the clean-up or the report
            self.failures.append(f"{type(error).__name__}: {error}")
        seconds = time.monotonic() - started
        ok = not self.failures
        self.figures.append(f"{seconds:.1f} s")
        result = {
            "step": f"{number}. {what}",
            "expectation": expectation,
            "ok": ok,
            "result": "PASS" if ok else "FAIL: " + "; ".join(self.failures),
            "figures": ", ".join(self.figures),
        }
        self.results.append(result)
        print(f"[{'PASS' if ok else 'FAIL'}] {number}. {what}: {result['figures']}" + ("" if ok else f" — {'; '.join(self.failures)}"), flush=True)

    def expect(self, condition, message):
        if not condition:
            self.failures.append(message)
        return condition

    def figure(self, text):
        self.figures.append(text)

    def step1_stores(self):
        self.psql(f"CREATE DATABASE {self.db_name}", database=self.args.database_url)
        code, out, err, seconds = self.run(["aws", "init", "--table", self.name, "--bucket", self.name, "--s3-force-path-style"])
        if not self.expect(code == 0, f"aws init exit {code}: {err.strip()[-300:]}"):
            raise StepFailed("aws init failed")
        again, _, _, _ = self.run(["aws", "init", "--table", self.name, "--bucket", self.name, "--s3-force-path-style"])
        self.expect(again == 0, f"aws init (again) exit {again}")
        self.proxy = Proxy(*self._target)
        self.figure(f"db {self.db_name}, table/bucket {self.name}, aws init {seconds:.1f} s (again: exit {again}), proxy :{self.proxy.port}")

    def step2_serve_and_legacy_uploads(self):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        self.url = f"http://127.0.0.1:{port}"
        with open(self.flags_path, "w") as f:
            f.write("ENABLE_DYNAMODB_DUAL_WRITE=false\n")
        self.flag_values = {"ENABLE_DYNAMODB_DUAL_WRITE": "false"}
        env = self.aws_env(self.proxy.url)
        # S3 stays direct: the outage rehearsed is DynamoDB's.
        env["AWS_ENDPOINT_URL_S3"] = self.endpoint
        env.update(
            {
                "IMGSVC_BIND": f"127.0.0.1:{port}",
                "IMGSVC_PUBLIC_URL": self.url,
                "IMGSVC_FLAGS_FILE": self.flags_path,
                "IMGSVC_CDN_URL": f"https://cdn.example/{self.name}",
            }
        )
        log = open(self.serve_log, "wb")
        self.serve = subprocess.Popen([self.bin, "serve"], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.serve.poll() is not None:
                raise StepFailed(f"serve exited {self.serve.returncode}; see {self.serve_log}")
            if http("GET", f"{self.url}/health", timeout=2).status == 200:
                break
            time.sleep(0.2)
        else:
            raise StepFailed("serve did not answer /health within 60 s")
        latencies, statuses = self.uploads(20, self.small, "legacy", "legacy")
        self.expect(statuses == {201: 20}, f"legacy uploads: {statuses}")
        rows = self.psql("SELECT count(*) FROM gallery_images")
        self.expect(rows == "20", f"{rows} rows in PostgreSQL, expected 20")
        status = self.status() or {}
        self.expect(status.get("outboxDepth") == 0, f"outboxDepth {status.get('outboxDepth')} with dual-write off")
        self.figure(f"serve on :{port}, 20 uploads → {statuses}, {rows} rows, P50 {percentile(latencies, 50)*1000:.0f} ms")

    def step3_dual_write(self):
        before = self.proxy.accepted["up"]
        self.write_flags(ENABLE_DYNAMODB_DUAL_WRITE=True)
        latencies, statuses = self.uploads(100, self.varied, "test", "dual-write")
        self.expect(statuses == {201: 100}, f"test uploads: {statuses}")
        status = self.status() or {}
        mirrors = (status.get("counters") or {}).get("mirrors") or {}
        self.expect(status.get("outboxDepth") == 0, f"outboxDepth {status.get('outboxDepth')}")
        self.expect(mirrors.get("success") == 100, f"mirrors {mirrors}")
        self.expect(self.proxy.accepted["up"] > before, "serve did not reach DynamoDB through the proxy")
        sizes = sorted(os.path.getsize(p) for p in self.varied)
        self.figure(
            f"100 uploads ({len(self.varied)} photos, {sizes[0]//1000}–{sizes[-1]//1000} KB) → {statuses}, "
            f"P50 {percentile(latencies, 50)*1000:.0f} ms, P95 {percentile(latencies, 95)*1000:.0f} ms, "
            f"mirrors {mirrors}, outboxDepth {status.get('outboxDepth')}"
        )

    def step4_backfill(self):
        rows = int(self.psql("SELECT count(*) FROM gallery_images"))
        command = [self.bin, "migrate", "backfill", "--batch-size", "5", "--rate", "20"]
        first = subprocess.Popen(command, env=self.aws_env(self.endpoint), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        copied_at_kill, last_id = 0, None
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                if first.poll() is not None:
                    raise StepFailed(f"backfill finished (exit {first.returncode}) before it could be killed")
                row = self.psql("SELECT copied, last_id FROM migration_checkpoints WHERE name = 'backfill'")
                if row:
                    copied, last = row.split("|", 1)
                    if int(copied) >= 10:
                        first.send_signal(signal.SIGKILL)
                        break
                time.sleep(0.05)
            else:
                raise StepFailed("the backfill checkpoint did not move within 60 s")
        finally:
            if first.poll() is None:
                first.kill()
            first.wait(timeout=10)
        row = self.psql("SELECT copied, last_id FROM migration_checkpoints WHERE name = 'backfill'")
        copied_at_kill, last_id = int(row.split("|", 1)[0]), row.split("|", 1)[1]
        self.expect(first.returncode == -signal.SIGKILL, f"first backfill ended {first.returncode}, not by SIGKILL")
        code, out, err, seconds = self.migrate("backfill", "--batch-size", "5", "--rate", "20", "--resume")
        self.expect(code == 0, f"backfill --resume exit {code}: {err.strip()[-300:]}")
        report = find_key(json_lines(out), "backfill") or (json_lines(out) or [{}])[-1]
        scanned = find_key(report, "scanned")
        already = find_key(report, "alreadyCurrent")
        written = find_key(report, "written")
        resumed = find_key(report, "resumedAfter")
        self.expect(resumed == last_id, f"resumedAfter {resumed}, checkpoint was {last_id}")
        self.expect(isinstance(scanned, int) and scanned + copied_at_kill == rows, f"scanned {scanned} + {copied_at_kill} before the kill != {rows} rows")
        # The 100 dual-written rows are already current; the 20 legacy ones are not, except
        # those the killed run wrote in its last batch (redone at most once).
        self.expect(isinstance(already, int) and already >= scanned - 20, f"alreadyCurrent {already}")
        self.figure(
            f"{rows} rows; killed at checkpoint copied={copied_at_kill} (last {last_id}); resume: "
            f"scanned {scanned}, written {written}, alreadyCurrent {already}, deletesApplied {find_key(report, 'deletesApplied')}, {seconds:.1f} s"
        )
        self.backfill_report = report

    def step5_verify(self):
        code, total, matched, details, out, err = self.verify("--all")
        rows = int(self.psql("SELECT count(*) FROM gallery_images"))
        self.expect(code == 0, f"verify exit {code}: {out.strip()[-300:]}")
        self.expect(total == rows and matched == rows, f"total {total}, matched {matched}, rows {rows}")
        self.figure(f"exit {code}, total {total}, matched {matched}")

    def step6_outage(self):
        # Shortened for the rehearsal (defaults 5000 and 30000): a cool-down fixed when the
        # breaker opens is not shortened by a later flag change, so the "down" phase below
        # can only probe once the breaker the hang opened has cooled down.
        self.write_flags(IMAGE_SERVICE_TIMEOUT_MS=1000, CIRCUIT_BREAKER_COOLDOWN_MS=3000)
        self.proxy.set_mode("hang")
        latencies, statuses = self.uploads(20, self.small, "outage", "outage")
        status = self.status() or {}
        breaker = status.get("breaker") or {}
        mirrors = (status.get("counters") or {}).get("mirrors") or {}
        self.expect(statuses == {201: 20}, f"uploads during the hang: {statuses}")
        self.expect(str(breaker.get("state")) == "open", f"breaker {breaker}")
        self.expect(status.get("outboxDepth") == 20, f"outboxDepth {status.get('outboxDepth')}")
        self.figure(
            f"timeout 1000 ms, cool-down 3000 ms; hang: 20 uploads → {statuses}, P50 {percentile(latencies, 50)*1000:.0f} ms, "
            f"P95 {percentile(latencies, 95)*1000:.0f} ms, max {max(latencies)*1000:.0f} ms; breaker {breaker.get('state')}, "
            f"outboxDepth {status.get('outboxDepth')}, mirrors failure {mirrors.get('failure')}/skipped {mirrors.get('skipped')}"
        )
        # Down (connections refused/dropped): a short cool-down makes every upload probe.
        self.proxy.set_mode("down")
        self.write_flags(CIRCUIT_BREAKER_COOLDOWN_MS=100)
        failure_before = mirrors.get("failure") or 0
        time.sleep(3.2)  # the 3000 ms cool-down in force when it last opened
        down_latencies, down_statuses = [], {}
        for i in range(5):
            time.sleep(0.15)
            more, st = self.uploads(1, self.small[i:] + self.small, "down", "outage", users=[USERS[i]])
            down_latencies += more
            for k, v in st.items():
                down_statuses[k] = down_statuses.get(k, 0) + v
        status = self.status() or {}
        mirrors = (status.get("counters") or {}).get("mirrors") or {}
        self.expect(down_statuses == {201: 5}, f"uploads while down: {down_statuses}")
        self.expect(status.get("outboxDepth") == 25, f"outboxDepth {status.get('outboxDepth')} after 5 more")
        self.expect((mirrors.get("failure") or 0) > failure_before, f"no probe failed while down: {mirrors}")
        self.figure(
            f"down: cool-down lowered to 100 ms, 5 uploads → {down_statuses}, P50 {percentile(down_latencies, 50)*1000:.0f} ms, "
            f"max {max(down_latencies)*1000:.0f} ms; outboxDepth {status.get('outboxDepth')}, probe failures {(mirrors.get('failure') or 0) - failure_before}"
        )
        # Restore and drain.
        self.proxy.set_mode("up")
        code, out, err, seconds = self.migrate("drain", "--now")
        drained = (json_lines(out) or [{}])[-1]
        self.expect(code == 0, f"drain --now exit {code}: {out.strip()[-200:]} {err.strip()[-200:]}")
        status = self.status() or {}
        self.expect(status.get("outboxDepth") == 0, f"outboxDepth {status.get('outboxDepth')} after the drain")
        vcode, total, matched, _, vout, _ = self.verify("--all")
        self.expect(vcode == 0, f"verify exit {vcode}: {vout.strip()[-300:]}")
        self.figure(f"drain --now exit {code} {json.dumps(drained)}, outboxDepth {status.get('outboxDepth')}; verify exit {vcode} ({matched}/{total})")
        # Back to the default timeout and cool-down; the breaker (open for 100 ms after the
        # last failed probe) closes on the next successful call, the first routed read.
        self.write_flags(drop=("IMAGE_SERVICE_TIMEOUT_MS", "CIRCUIT_BREAKER_COOLDOWN_MS"))

    def step7_tampering(self):
        legacy_ids = sorted(i for i, v in self.images.items() if v["source"] == "legacy")
        retitled, lost_record, lost_row = legacy_ids[0], legacy_ids[1], legacy_ids[2]
        self.psql(f"UPDATE gallery_images SET title = 'changed behind the migration' WHERE id = '{retitled}'")
        # moto does not check signatures: a plain DeleteItem with a dummy authorisation.
        request = urllib.request.Request(
            self.endpoint + "/",
            data=json.dumps({"TableName": self.name, "Key": {"PK": {"S": f"IMAGE#{lost_record}"}, "SK": {"S": "METADATA"}}}).encode(),
            method="POST",
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": "DynamoDB_20120810.DeleteItem",
                "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as answer:
                dynamo_deleted = answer.status == 200
        except (urllib.error.URLError, OSError) as error:
            dynamo_deleted = False
            self.figure(f"DynamoDB DeleteItem refused: {error}")
        self.psql(f"DELETE FROM gallery_images WHERE id = '{lost_row}'")
        code, total, matched, details, out, err = self.verify("--all")
        missing = details.get("missing") or []
        mismatched = [m.get("id") for m in details.get("mismatched") or []]
        only_is = details.get("onlyInImageService") or []
        self.expect(code == 1, f"verify exit {code}, expected 1")
        self.expect(retitled in mismatched, f"{retitled} not among mismatched {mismatched}")
        if dynamo_deleted:
            self.expect(lost_record in missing, f"{lost_record} not among missing {missing}")
        self.expect(lost_row in only_is, f"{lost_row} not among onlyInImageService {only_is}")
        self.figure(f"verify exit {code}: missing {missing}, mismatched {mismatched}, onlyInImageService {only_is}")
        code, out, err, _ = self.migrate("reconcile", "--dry-run")
        self.figure(f"reconcile --dry-run exit {code}: {summarise_plan(json_lines(out))}")
        refused, rout, rerr, _ = self.migrate("reconcile")
        self.expect(refused == 1, f"reconcile exit {refused}, expected 1 (conflict)")
        self.expect("conflict" in rout and retitled in rout, f"refusal does not name the conflict: {rout.strip()[-300:]}")
        dynamo_still_missing = self.run_get_missing(lost_record) if dynamo_deleted else True
        self.expect(dynamo_still_missing, "the refused reconcile wrote")
        code, out, err, _ = self.migrate("reconcile", "--from", "postgres")
        self.expect(code == 0, f"reconcile --from postgres exit {code}: {out.strip()[-300:]} {err.strip()[-200:]}")
        self.figure(f"reconcile exit {refused} (refused); --from postgres exit {code}: {summarise_plan(json_lines(out))}")
        # The named side won the conflict at a version above both, on both sides.
        row = self.psql(f"SELECT version || '|' || coalesce(title, '') FROM gallery_images WHERE id = '{retitled}'")
        self.expect(row == "2|changed behind the migration", f"the conflicting row after --from postgres: {row}")
        vcode, total, matched, _, vout, _ = self.verify("--all")
        self.expect(vcode == 0, f"verify exit {vcode}: {vout.strip()[-300:]}")
        row_back = self.psql(f"SELECT count(*) FROM gallery_images WHERE id = '{lost_row}'")
        self.figure(f"verify exit {vcode} ({matched}/{total}); hand-deleted row {lost_row} present again: {row_back == '1'}")
        self.tampered = (retitled, lost_record, lost_row)

    def run_get_missing(self, image_id):
        """True when DynamoDB holds no METADATA item for `image_id` (checked directly)."""
        request = urllib.request.Request(
            self.endpoint + "/",
            data=json.dumps({"TableName": self.name, "Key": {"PK": {"S": f"IMAGE#{image_id}"}, "SK": {"S": "METADATA"}}}).encode(),
            method="POST",
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": "DynamoDB_20120810.GetItem",
                "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
            },
        )
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as answer:
            return "Item" not in json.loads(answer.read())

    def step8_cutover(self):
        live = {i: v for i, v in self.images.items() if self.psql(f"SELECT count(*) FROM gallery_images WHERE id = '{i}'") == "1"}
        by_user = {u: [i for i, v in live.items() if v["user"] == u] for u in USERS}
        breaker = (self.status() or {}).get("breaker") or {}
        lines = [f"breaker before: {breaker.get('state')}"]
        for rollout in (10, 50, 100):
            self.write_flags(USE_IMAGE_SERVICE=True, ROLLOUT_PERCENTAGE=rollout)
            before = self.counters()
            routed_reads = legacy_reads = 0
            statuses = {}
            for user in USERS:
                routed = fnv1a_bucket(user) < rollout
                token = self.token(user)
                reads = 0
                for image_id in by_user[user][:4]:
                    answer = http("GET", f"{self.url}/gallery/images/{image_id}", token)
                    statuses[answer.status] = statuses.get(answer.status, 0) + 1
                    reads += 1
                    if answer.status == 200:
                        self.expect(answer.json().get("id") == image_id, f"GET {image_id} answered another image")
                cursor, seen = None, []
                for _ in range(50):
                    url = f"{self.url}/gallery/images?limit=5" + (f"&cursor={cursor}" if cursor else "")
                    answer = http("GET", url, token)
                    statuses[answer.status] = statuses.get(answer.status, 0) + 1
                    reads += 1
                    if answer.status != 200:
                        break
                    page = answer.json()
                    seen += [item["id"] for item in page.get("items") or []]
                    cursor = page.get("nextCursor")
                    if not cursor:
                        break
                self.expect(sorted(seen) == sorted(by_user[user]) and len(seen) == len(set(seen)), f"rollout {rollout}: {user} listed {len(seen)} ({len(set(seen))} distinct) of {len(by_user[user])}")
                if routed:
                    routed_reads += reads
                else:
                    legacy_reads += reads
            after = self.counters()
            delta = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before) if after.get(k, 0) != before.get(k, 0)}
            self.expect(set(statuses) == {200}, f"rollout {rollout}: statuses {statuses}")
            self.expect(delta.get("image_service/ok", 0) == routed_reads, f"rollout {rollout}: image_service/ok +{delta.get('image_service/ok', 0)}, expected +{routed_reads}")
            self.expect(delta.get("legacy/ok", 0) == legacy_reads, f"rollout {rollout}: legacy/ok +{delta.get('legacy/ok', 0)}, expected +{legacy_reads}")
            included = sum(1 for u in USERS if fnv1a_bucket(u) < rollout)
            lines.append(f"{rollout} %: {included}/10 users routed, {sum(statuses.values())} reads all {sorted(statuses)}, counters {json.dumps(dict(sorted(delta.items())), separators=(',', ':'))}")
        for line in lines:
            self.figure(line)

    def step9_writes_after_cutover_and_reverse(self):
        retitled, lost_record, lost_row = getattr(self, "tampered", (None, None, None))
        candidates = sorted(i for i, v in self.images.items() if v["source"] == "dual-write")
        patched, deleted = candidates[0], candidates[1]
        patched_user, deleted_user = self.images[patched]["user"], self.images[deleted]["user"]
        answer = self.upload("", "user-1", self.small[0])
        self.expect(answer.status == 201, f"POST /images {answer.status} {answer.body[:200]!r}")
        new_id = (answer.json() or {}).get("id")
        versions = []
        for version in (1, 2):
            answer = http("PATCH", f"{self.url}/images/{patched}", self.token(patched_user), {"title": f"edited after cutover v{version + 1}", "version": version})
            self.expect(answer.status == 200, f"PATCH v{version}: {answer.status} {answer.body[:200]!r}")
            versions.append((answer.json() or {}).get("version"))
        answer = http("DELETE", f"{self.url}/images/{deleted}", self.token(deleted_user))
        self.expect(answer.status == 204, f"DELETE {deleted}: {answer.status} {answer.body[:200]!r}")
        self.figure(f"POST /images → {new_id}; PATCH {patched} → versions {versions}; DELETE {deleted} → {answer.status}")
        code, out, err, _ = self.migrate("reconcile", "--dry-run")
        plan = json_lines(out)
        actions = {}
        for entry in plan:
            key = find_key(entry, "id") or find_key(entry, "imageId")
            action = find_key(entry, "action") or next((k for k in entry if k.startswith(("copy_", "delete_"))), None)
            if key:
                actions[key] = action
        self.expect(code == 0, f"reconcile --dry-run exit {code}: {out.strip()[-300:]}")
        self.expect(actions.get(new_id) == "copy_to_postgres", f"plan for the new image: {actions.get(new_id)}")
        self.expect(actions.get(patched) == "copy_to_postgres", f"plan for the PATCHed image: {actions.get(patched)}")
        self.expect(actions.get(deleted) == "delete_in_postgres", f"plan for the deleted image: {actions.get(deleted)}")
        self.figure(f"reconcile --dry-run exit {code}: {summarise_plan(plan)}")
        code, out, err, _ = self.migrate("reverse")
        reverse = (json_lines(out) or [{}])[-1]
        self.expect(code == 0, f"reverse exit {code}: {err.strip()[-300:]}")
        self.expect((find_key(reverse, "copied"), find_key(reverse, "deleted")) == (2, 1), f"reverse {reverse}")
        self.write_flags(USE_IMAGE_SERVICE=False, ROLLOUT_PERCENTAGE=0)
        gone = self.psql(f"SELECT count(*) FROM gallery_images WHERE id = '{deleted}'")
        self.expect(gone == "0", f"the deleted image still has {gone} row(s)")
        answer = http("GET", f"{self.url}/gallery/images/{deleted}", self.token(deleted_user))
        self.expect(answer.status == 404, f"GET /gallery/images/{deleted} at rollout 0: {answer.status}")
        patched_row = self.psql(f"SELECT version || '|' || coalesce(title, '') FROM gallery_images WHERE id = '{patched}'")
        self.expect(patched_row.split("|")[0] == "3", f"PATCHed row: {patched_row}")
        new_row = self.psql(f"SELECT count(*) FROM gallery_images WHERE id = '{new_id}'")
        self.expect(new_row == "1", f"the new image has {new_row} row(s)")
        vcode, total, matched, _, vout, _ = self.verify("--all")
        self.expect(vcode == 0, f"verify exit {vcode}: {vout.strip()[-300:]}")
        self.figure(
            f"reverse exit {code} {json.dumps(reverse, separators=(',', ':'))}; deleted row gone ({gone} left), GET → {answer.status}; "
            f"PATCHed row v{patched_row.split('|')[0]}; new image row {new_row}; verify exit {vcode} ({matched}/{total})"
        )

    def step10_listing_ties(self):
        self.write_flags(USE_IMAGE_SERVICE=False, ROLLOUT_PERCENTAGE=0)
        user = "tie-user"
        columns = "(id, user_id, created_at, updated_at, s3_key, s3_bucket, mime_type, size_bytes, width, height)"
        self.psql(
            f"BEGIN; INSERT INTO gallery_images {columns} SELECT 'TIE' || i, '{user}', now(), now(), 'k' || i, 'b', 'image/jpeg', 1, 1, 1 FROM generate_series(1, 5) AS i; COMMIT;"
        )
        self.psql(
            f"INSERT INTO gallery_images {columns} SELECT 'MICRO' || i, '{user}', timestamptz '2025-01-01T00:00:00.123Z' + i * interval '1 microsecond', now(), 'k' || i, 'b', 'image/jpeg', 1, 1, 1 FROM generate_series(1, 4) AS i"
        )
        self.psql(f"INSERT INTO gallery_images {columns} VALUES ('ALONE', '{user}', '2020-01-01T00:00:00.000001Z', now(), 'k', 'b', 'image/jpeg', 1, 1, 1)")
        token = self.token(user)
        pages_per_limit = []
        for limit in (2, 3):
            seen, cursor, pages = [], None, 0
            for _ in range(30):
                url = f"{self.url}/gallery/images?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
                answer = http("GET", url, token)
                pages += 1
                if not self.expect(answer.status == 200, f"limit {limit}: page {pages} → {answer.status}"):
                    break
                page = answer.json()
                seen += [item["id"] for item in page.get("items") or []]
                cursor = page.get("nextCursor")
                if not cursor:
                    break
            self.expect(len(seen) == 10 and len(set(seen)) == 10, f"limit {limit}: {len(seen)} listed, {len(set(seen))} distinct: {seen}")
            pages_per_limit.append(f"limit {limit}: {pages} pages, {len(seen)} listed, {len(set(seen))} distinct")
        self.figure("10 rows (5 tied on now(), 4 a microsecond apart, 1 alone); " + "; ".join(pages_per_limit))

    # -- run ------------------------------------------------------------------------------------

    def run_all(self):
        steps = [
            (1, "stores + proxy", "fresh database; `aws init` exit 0 (twice); proxy up", self.step1_stores),
            (2, "serve + 20 legacy uploads", "serve healthy; 20 × 201 through /gallery/images, dual-write off", self.step2_serve_and_legacy_uploads),
            (3, "dual-write on (no restart), 100 uploads", "100 × 201; 100 mirrors ok; outbox 0", self.step3_dual_write),
            (4, "backfill killed + --resume", "SIGKILL after the checkpoint moved; resume exit 0, continues after the checkpoint", self.step4_backfill),
            (5, "verify --all", "exit 0, matched = total = rows", self.step5_verify),
            (6, "DynamoDB outage (hang, down), drain", "uploads all 201; breaker open; outbox 20 (25); drain --now exit 0 → outbox 0; verify 0", self.step6_outage),
            (7, "tampering, reconcile", "verify 1 naming them; reconcile refuses (1); --from postgres 0; verify 0", self.step7_tampering),
            (8, "cutover 10/50/100 %", "every read 200; reads by origin match the rollout", self.step8_cutover),
            (9, "writes after cutover, reverse", "plan copies Image Service → PostgreSQL; reverse: row deleted, v3, new row; 404; verify 0", self.step9_writes_after_cutover_and_reverse),
            (10, "listing with microsecond ties", "every row exactly once (limit 2 and 3)", self.step10_listing_ties),
        ]
        for number, what, expectation, function in steps:
            self.step(number, what, expectation, function)
            if number <= 2 and not self.results[-1]["ok"]:
                break  # nothing after this can run without the stores and the server

    def cleanup(self):
        if self.serve is not None and self.serve.poll() is None:
            self.serve.terminate()
            try:
                self.serve.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.serve.kill()
                self.serve.wait(timeout=10)
        if self.proxy is not None:
            self.proxy.stop()
        if not self.args.keep:
            try:
                self.psql(f"DROP DATABASE IF EXISTS {self.db_name}", database=self.args.database_url)
            except StepFailed as error:
                print(f"could not drop {self.db_name}: {error}", file=sys.stderr)

    def table(self):
        lines = ["| step | expectation | result | figures |", "| --- | --- | --- | --- |"]
        for r in self.results:
            cells = [r["step"], r["expectation"], r["result"], r["figures"]]
            lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
        return "\n".join(lines)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=os.path.join(here, "..", "target", "debug", "imgsvc"), help="the imgsvc binary")
    parser.add_argument(
        "--aws-endpoint",
        default=os.environ.get("IMGSVC_REHEARSAL_AWS_ENDPOINT", "http://127.0.0.1:5057"),
        help="the AWS emulator (moto), kept apart from the tests' one on 5055 [env IMGSVC_REHEARSAL_AWS_ENDPOINT]",
    )
    parser.add_argument("--database-url", default=os.environ.get("IMGSVC_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"), help="an administrative connection; a fresh database is created next to it")
    parser.add_argument("--corpus", default=os.path.join(here, "..", "..", "shared", "corpus"), help="the photo corpus (JPEGs are used)")
    parser.add_argument("--report", help="also write the Markdown report here")
    parser.add_argument("--keep", action="store_true", help="keep the database (dropped by default; the work directory with serve.log is kept)")
    args = parser.parse_args()
    if not os.access(args.bin, os.X_OK):
        print(f"not an executable: {args.bin}", file=sys.stderr)
        return 2
    try:
        rehearsal = Rehearsal(args)
    except StepFailed as error:
        print(error, file=sys.stderr)
        return 2
    print(f"rehearsal in {rehearsal.work} (serve log: {rehearsal.serve_log})", flush=True)
    # A SIGTERM still stops serve and the proxy (SystemExit passes through the steps).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        rehearsal.run_all()
    finally:
        rehearsal.cleanup()
    table = rehearsal.table()
    failed = [r for r in rehearsal.results if not r["ok"]]
    summary = f"{len(rehearsal.results) - len(failed)}/{len(rehearsal.results)} steps passed" + (f" (planned: 10)" if len(rehearsal.results) < 10 else "")
    print()
    print(table)
    print()
    print(summary)
    if args.report:
        with open(args.report, "w") as f:
            f.write(f"# Migration rehearsal ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n\n")
            f.write(f"Binary: `{args.bin}`; emulator {args.aws_endpoint}; database {rehearsal.db_name}.\n\n")
            f.write(table + "\n\n" + summary + "\n")
    return 0 if not failed and len(rehearsal.results) == 10 else 1


if __name__ == "__main__":
    sys.exit(main())
