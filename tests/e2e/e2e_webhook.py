"""Webhook servers for the e2e tests.

ScriptedWebhook is an HTTP server on 127.0.0.1 whose answers each test scripts
and which records every request it gets.  WebhookProcess runs a webhook as a process of its
own (killable, restartable); PhpEchoBot is one serving the README's PHP echo bot with `php -S`,
EchoWebhookProcess a Python echo bot that logs every request, to kill under load.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Union

from e2e_util import die_with_parent, free_port, port_accepts, stop_process, tail, wait_until


@dataclass
class Reply:
    """What the scripted webhook answers.

    json: a value serialised as the body (Content-Type defaults to
    application/json); body: raw bytes/str sent as they are; headers: extra or
    overriding response headers; delay: seconds to sleep before answering.
    """
    status: int = 200
    json: object = None
    body: Union[bytes, str, None] = None
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    has_json: bool = False

    @classmethod
    def with_json(cls, value, status=200, **kw):
        return cls(status=status, json=value, has_json=True, **kw)

    def render(self):
        headers = {}
        if self.has_json:
            payload = json.dumps(self.json).encode()
            headers["Content-Type"] = "application/json"
        elif self.body is None:
            payload = b""
        elif isinstance(self.body, str):
            payload = self.body.encode()
        else:
            payload = self.body
        headers.update(self.headers)
        return payload, headers


@dataclass
class Request:
    method: str
    path: str
    headers: dict          # lower-cased header names -> value
    raw_body: bytes
    json: object           # parsed body, or None if it was not JSON
    received_at: float

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)


SENTINEL_PREFIX = "sentinel-"


class ScriptedWebhook:
    """A threaded HTTP server whose behaviour the test scripts.

    Set `handler` to a callable(Request) -> Reply, or call `respond(...)` /
    `respond_json(...)` to give a fixed answer.  Every request is recorded
    in `requests` (in arrival order) before it is answered.

    Sentinels: a request whose JSON `body` starts with "sentinel-" is always
    answered {"body": "ack <body>"} and recorded in `sentinel_requests`
    instead, so tests can prove that nothing else came back in the meantime
    (see e2e_xmpp.XmppClient.expect_quiet) without disturbing the script.
    """

    def __init__(self, ssl_context=None):
        self.port = free_port()
        self.scheme = "https" if ssl_context else "http"
        self.requests = []
        self.sentinel_requests = []
        self._cond = threading.Condition()
        self.handler: Callable[[Request], Reply] = lambda req: Reply(status=204)
        self.handler_errors = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 15  # idle keep-alive connections are dropped after this

            def log_message(self, fmt, *args):  # keep pytest output clean
                pass

            def setup(self):
                super().setup()
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _read_body(self):
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            break
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self):
                raw = self._read_body()
                try:
                    parsed = json.loads(raw.decode("utf-8")) if raw else None
                except (ValueError, UnicodeDecodeError):
                    parsed = None
                req = Request(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    raw_body=raw,
                    json=parsed,
                    received_at=time.monotonic(),
                )
                sentinel = owner._sentinel_reply(req)
                with owner._cond:
                    (owner.sentinel_requests if sentinel else owner.requests).append(req)
                    owner._cond.notify_all()
                try:
                    reply = sentinel or owner.handler(req)
                except Exception as e:  # a broken test script: answer 599, remember why
                    owner.handler_errors.append(repr(e))
                    reply = Reply(status=599, body=repr(e))
                if reply.delay:
                    time.sleep(reply.delay)
                payload, headers = reply.render()
                self.send_response(reply.status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if not any(k.lower() == "content-length" for k in headers):
                    self.send_header("Content-Length", str(len(payload)))
                # Head and body in one write: no Nagle/delayed-ACK stall on our side.
                self._headers_buffer.append(b"\r\n")
                if payload and self.command != "HEAD":
                    self._headers_buffer.append(payload)
                self.flush_headers()

            do_POST = _handle
            do_GET = _handle
            do_PUT = _handle

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024  # a burst of new connections must not be dropped

            def handle_error(self, request, client_address):
                pass  # e.g. a client refusing our certificate: the test sees the effect

        self.server = Server(("127.0.0.1", self.port), Handler)
        if ssl_context is not None:
            # Handshake in the handler thread, not in the accepting one.
            self.server.socket = ssl_context.wrap_socket(
                self.server.socket, server_side=True, do_handshake_on_connect=False)
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                        name=f"webhook-{self.port}", daemon=True)
        self._thread.start()

    @staticmethod
    def _sentinel_reply(req):
        body = req.json.get("body") if isinstance(req.json, dict) else None
        if isinstance(body, str) and body.startswith(SENTINEL_PREFIX):
            return Reply.with_json({"body": "ack " + body})
        return None

    # -- scripting ------------------------------------------------------
    def reset(self):
        """Forget recorded requests and go back to answering 204."""
        with self._cond:
            self.requests.clear()
            self.sentinel_requests.clear()
        self.handler = lambda req: Reply(status=204)
        self.handler_errors.clear()

    def url(self, path="/hook", userinfo=None):
        auth = f"{userinfo}@" if userinfo else ""
        return f"{self.scheme}://{auth}127.0.0.1:{self.port}{path}"

    def respond(self, status=200, body=None, headers=None, delay=0.0):
        reply = Reply(status=status, body=body, headers=dict(headers or {}), delay=delay)
        self.handler = lambda req: reply

    def respond_json(self, value, status=200, headers=None, delay=0.0):
        reply = Reply.with_json(value, status=status, headers=dict(headers or {}), delay=delay)
        self.handler = lambda req: reply

    # -- inspection -----------------------------------------------------
    def wait_for_requests(self, count, timeout=5.0):
        """Wait until at least `count` requests arrived; return them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"webhook got {len(self.requests)} request(s), expected {count} "
                        f"within {timeout}s: {[r.json for r in self.requests]}")
                self._cond.wait(left)
            return list(self.requests)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


def echo_php_source_path(repo_root):
    """The README's echo bot, as shipped in examples/echo.php."""
    return os.path.join(repo_root, "examples", "echo.php")


class WebhookProcess:
    """A webhook that is a process of its own: `command` (`{port}` and `{dir}` in its arguments
    filled in) run in a private directory, which is also its TMPDIR and holds its output
    (`log_path`). `start` returns once it listens; `kill` ends it at once (SIGKILL: the kernel
    aborts its connections), so a test can `start` it again on the same port.

    The child gets SIGTERM when the thread that started it ends (PR_SET_PDEATHSIG follows the
    parent thread): start it from a thread that outlives it."""

    def __init__(self, command, name="webhook", env=None, cwd=None, files=()):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix=f"e2e-{name}-")
        for path in files:  # copied into the private directory first
            shutil.copy(path, self.dir)
        self.name = name
        self.command = [str(a).replace("{port}", str(self.port)).replace("{dir}", self.dir) for a in command]
        self.env = {**os.environ, "TMPDIR": self.dir, **(env or {})}
        self.cwd = cwd or self.dir
        self.log_path = os.path.join(self.dir, "output.log")
        self.proc = None
        self.kills = 0
        try:
            self.start()
        except BaseException:
            self.close()
            raise

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        wait_until(lambda: self.proc.poll() is not None or port_accepts(self.port),
                   timeout=30, what=f"{self.name} to listen on {self.port}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{tail(self.log_path, 40)}")

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
            self.kills += 1

    def output(self):
        return tail(self.log_path, 80)

    def close(self):
        stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


class PhpEchoBot(WebhookProcess):
    """`php -S 127.0.0.1:PORT echo.php`, the README's echo bot copied to a private directory."""

    def __init__(self, source_path):
        super().__init__(["php", "-S", "127.0.0.1:{port}", os.path.basename(source_path)], name="php-echo",
                         files=[source_path])

    def url(self, path="/echo.php"):
        return super().url(path)


# The child of EchoWebhookProcess: a stdlib HTTP/1.1 echo bot (keep-alive) that appends every
# request to a log before answering. Sentinels are answered but not logged.
ECHO_CHILD = r"""
import json, os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, log_path, delay = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 20

    def log_message(self, *args):
        pass

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        body = str(request.get("body"))
        if not body.startswith("sentinel-"):
            record = {"delivery_id": self.headers.get("X-Delivery-Id"),
                      "retry": int(self.headers.get("X-Retry-Count") or 0),
                      "from": request.get("from"), "body": body, "pid": os.getpid()}
            os.write(log_fd, (json.dumps(record) + "\n").encode())
            time.sleep(delay)
        answer = json.dumps({"body": "ack " + body}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass

Server(("127.0.0.1", port), Echo).serve_forever()
"""


class EchoWebhookProcess(WebhookProcess):
    """An echo webhook ({"body": "ack <body>"} after `delay` s) in a process of its own, so a
    test can kill it and start a new one on the same port.  Every request it got is in
    `requests()` (logged before it is answered)."""

    def __init__(self, delay=0.0):
        super().__init__([sys.executable, "-c", ECHO_CHILD, "{port}", "{dir}/requests.jsonl", delay],
                         name="echo webhook process")

    def url(self, path="/hook"):
        return super().url(path)

    def requests(self):
        try:
            with open(os.path.join(self.dir, "requests.jsonl")) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

