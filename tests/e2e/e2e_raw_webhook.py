"""RawWebhook: an HTTP/1.1 server on raw sockets, for answers no well-behaved server gives
(silence, bytes dribbled, connections reset or closed halfway, garbage instead of HTTP). Each
request it reads becomes a RawExchange that the test's handler answers, or does not, by hand.
The fault tests (test_faults.py, test_deadline.py, test_concurrency.py) use it through
conftest's `raw_hook` fixture.
"""

import json
import select
import socket
import struct
import threading
import time

from e2e_util import free_port
from e2e_webhook import SENTINEL_PREFIX


class RawExchange:
    """One request read by a RawWebhook, to be answered (or not) by hand.

    The handler may answer properly (`answer`, `answer_json`), write anything (`send`), cut the
    connection with a FIN (`close`) or an RST (`reset`), or hold it (`hold`).  Only the request
    line and headers are known while RawWebhook's `early` hook runs; `raw_body` and `json` are
    filled in before `handler` runs.
    """

    def __init__(self, conn, method, path, headers, seq):
        self.conn = conn
        self.method = method
        self.path = path
        self.headers = headers      # lower-cased header names -> value
        self.seq = seq              # arrival number on this server, from 1
        self.raw_body = None
        self.json = None
        self.received_at = time.monotonic()
        self.answered = False
        self.closed = False         # the handler ended the connection

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    @property
    def delivery_id(self):
        return self.header("x-delivery-id")

    @property
    def retry_count(self):
        try:
            return int(self.header("x-retry-count", "0"))
        except ValueError:
            return -1

    @property
    def body_field(self):
        """The request's JSON `body` (the message text), or None."""
        return self.json.get("body") if isinstance(self.json, dict) else None

    def send(self, data):
        self.conn.sendall(data)

    def answer(self, status=200, body=b"", headers=None, close=False):
        """A well-formed HTTP/1.1 answer with Content-Length; `close` ends the connection after it
        (without announcing it: a keep-alive connection that dies)."""
        if isinstance(body, str):
            body = body.encode()
        head = [f"HTTP/1.1 {status} Whatever"]
        for k, v in (headers or {}).items():
            head.append(f"{k}: {v}")
        if not any(k.lower() in ("content-length", "transfer-encoding") for k in (headers or {})):
            head.append(f"Content-Length: {len(body)}")
        self.send(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        self.answered = True
        if close:
            self.close()

    def answer_json(self, value, status=200, close=False):
        self.answer(status, json.dumps(value).encode(), {"Content-Type": "application/json"}, close=close)

    def close(self):
        """Orderly close (FIN)."""
        if not self.closed:
            self.closed = True
            try:
                self.conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.conn.close()

    def reset(self):
        """Abortive close: SO_LINGER 0 makes close() send an RST."""
        if not self.closed:
            self.closed = True
            try:
                self.conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            self.conn.close()

    def dribble(self, data, interval):
        """Send `data` one byte every `interval` s; returns False if the peer went away."""
        for k in range(len(data)):
            try:
                self.conn.sendall(data[k:k + 1])
            except OSError:
                return False
            time.sleep(interval)
        return True

    def hold(self, seconds):
        """Answer nothing for up to `seconds`; returns True if the peer gave up (closed) first."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                readable, _, _ = select.select([self.conn], [], [], min(left, 0.2))
                if readable and not self.conn.recv(65536, socket.MSG_PEEK):
                    return True
            except (OSError, ValueError):
                return True


class RawWebhook:
    """An HTTP/1.1 server on raw sockets, for answers no well-behaved server gives.

    `handler(exchange)` gets every complete request except sentinels (answered
    {"body": "ack sentinel-..."} as ScriptedWebhook does); if it neither answers nor closes,
    the connection is closed.  `early(exchange)`, if set, runs right after the headers were
    read, before the body: it may `reset()` or `close()` there.  Requests are recorded in
    `requests` (arrival order) before the handler runs.  Connections are kept alive.

    `stop()` closes the listener and aborts every open connection; `start()` listens again
    on the same port.
    """

    def __init__(self, handler=None, early=None, port=None, idle_timeout=20.0):
        self.port = port or free_port()
        self.handler = handler or (lambda ex: ex.answer(204))
        self.early = early
        self.idle_timeout = idle_timeout
        self.requests = []
        self.sentinel_requests = []
        self.early_requests = []
        self.handler_errors = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # signalled with every request recorded
        self._seq = 0
        self._conns = set()
        self._listener = None
        self._accepter = None
        self.start()

    def wait_for_requests(self, count, timeout=10.0):
        """Waits until at least `count` requests (sentinels aside) arrived; returns them all."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"the webhook got {len(self.requests)} request(s), expected {count}")
            return list(self.requests)

    def url(self, path="/hook"):
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(128)
        self._listener = s
        self._accepter = threading.Thread(target=self._accept_loop, args=(s,),
                                          name=f"raw-webhook-{self.port}", daemon=True)
        self._accepter.start()

    def stop(self):
        s, self._listener = self._listener, None
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes accept()
            except OSError:
                pass
            s.close()
        if self._accepter is not None:
            self._accepter.join(timeout=5)
            self._accepter = None
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    close = stop

    def _accept_loop(self, listener):
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            conn.settimeout(self.idle_timeout)
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, path = (lines[0].split(" ") + ["", ""])[:2]
                headers = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
                with self._lock:
                    self._seq += 1
                    seq = self._seq
                ex = RawExchange(conn, method, path, headers, seq)
                if self.early is not None:
                    self.early(ex)
                    if ex.closed:
                        with self._lock:
                            self.early_requests.append(ex)
                        return
                body, buf = self._read_body(conn, headers, buf)
                ex.raw_body = body
                try:
                    ex.json = json.loads(body.decode("utf-8")) if body else None
                except (ValueError, UnicodeDecodeError):
                    ex.json = None
                text = ex.body_field
                sentinel = isinstance(text, str) and text.startswith(SENTINEL_PREFIX)
                with self._lock:
                    (self.sentinel_requests if sentinel else self.requests).append(ex)
                    self._arrived.notify_all()
                if sentinel:
                    ex.answer_json({"body": "ack " + text})
                else:
                    try:
                        self.handler(ex)
                    except OSError:
                        return
                    except Exception as e:  # a broken test script: remember why
                        self.handler_errors.append(repr(e))
                        ex.reset()
                if ex.closed or not ex.answered:
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    @staticmethod
    def _read_body(conn, headers, buf):
        def fill(n):
            nonlocal buf
            while len(buf) < n:
                data = conn.recv(65536)
                if not data:
                    raise ConnectionError("peer closed in the middle of a request body")
                buf += data

        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                while b"\r\n" not in buf:
                    fill(len(buf) + 1)
                line, buf = buf.split(b"\r\n", 1)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while not buf.startswith(b"\r\n"):  # trailers, if any
                        while b"\r\n" not in buf:
                            fill(len(buf) + 1)
                        buf = buf.split(b"\r\n", 1)[1]
                    return body, buf[2:]
                fill(size + 2)
                body += buf[:size]
                buf = buf[size + 2:]
        length = int(headers.get("content-length") or 0)
        fill(length)
        return buf[:length], buf[length:]

