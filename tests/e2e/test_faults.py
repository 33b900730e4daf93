"""Fault injection: a webhook that dies, stalls, refuses, resets or talks nonsense.

Every test drives several senders, each sending numbered messages, and then counts what came
back: for every message exactly one outcome (a reply "ack <id>" or an error stanza carrying its
id), nothing unexpected or duplicated (checked with a sentinel, see XmppClient.expect_quiet),
each sender's outcomes in the order it sent (README "Delivery guarantees": exactly one outcome;
order per sender), the error being one the README's table allows for the fault, and Prosody's
log free of tracebacks and error-level lines.

The faults: 1. the webhook's process killed and restarted; 2. answers slower than the
deadline; 3. 503, then 200; 4. connections reset or closed; 5. garbage, huge and hostile
answers; 6. a full queue in front of a hanging webhook; 7. reloads while the webhook flaps.
RawWebhook (below) misbehaves on raw sockets; EchoWebhookProcess is a webhook to kill.
"""

import json
import os
import re
import select
import socket
import struct
import sys
import threading
import time
from collections import Counter

import pytest

from conftest import BOT, BOT2
from e2e_util import free_port, proc_counts, proc_memory
from e2e_webhook import SENTINEL_PREFIX, Reply, WebhookProcess

BOT_JID = "echo@bot.localhost"
BOT2_JID = "echo@bot2.localhost"
USERS = {"alice": "pw-alice", "bob": "pw-bob", "carol": "pw-carol", "dave": "pw-dave"}
SENDERS = ("alice", "bob", "carol")

REPLY = "reply"
CONNECTION_FAILURE = ("cancel", "remote-server-timeout", "Connection failure")
TIMED_OUT = ("wait", "remote-server-timeout", "The webhook did not answer in time")
BAD_REPLY = ("cancel", "internal-server-error", "The webhook sent an invalid reply")
QUEUE_FULL = ("wait", "resource-constraint", "Too many stanzas are waiting for the webhook")

# A short connect timeout keeps refused connections cheap. component_post_timeout runs from a
# stanza's arrival, time queued behind the sender's earlier stanzas included (README, Delivery
# guarantees): tests whose subject is not the deadline leave it room for a whole burst.
SHORT = {"component_post_timeout": 30, "component_post_connect_timeout": 1}


# -- webhooks that misbehave ----------------------------------------------------------------
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
        self._seq = 0
        self._conns = set()
        self._listener = None
        self._accepter = None
        self.start()

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


# -- rig ---------------------------------------------------------------------------------------
@pytest.fixture
def login(connect):
    """login(prosody, user) -> XmppClient: conftest's `connect`, for the senders registered here."""
    return connect


@pytest.fixture
def raw_hook():
    """Factory of RawWebhook servers, stopped at teardown."""
    hooks = []

    def _make(handler=None, early=None):
        h = RawWebhook(handler=handler, early=early)
        hooks.append(h)
        return h

    yield _make
    for h in hooks:
        h.stop()
        assert not h.handler_errors, h.handler_errors


@pytest.fixture
def echo_process():
    procs = []

    def _make(delay=0.0):
        p = EchoWebhookProcess(delay=delay)
        procs.append(p)
        return p

    yield _make
    for p in procs:
        p.close()


def start(prosody_factory, login, url, users=SENDERS, components=None, global_options=None, **options):
    comps = {BOT: {"component_post_url": url, **SHORT, **options}}
    comps.update(components or {})
    prosody = prosody_factory(comps, users=USERS, global_options=global_options)
    return prosody, [login(prosody, u) for u in users]


def ack(ex):
    ex.answer_json({"body": "ack " + str(ex.body_field)})


def index_of(body):
    """Message number from a body such as "alice-17" (None for anything else)."""
    m = re.fullmatch(r"[a-z]+-(\d+)", str(body))
    return int(m.group(1)) if m else None


def log_problems(prosody):
    """Log lines at error level, and any traceback, anywhere in Prosody's log."""
    bad = []
    for line in prosody.log_text().splitlines():
        fields = line.split("\t")
        if "traceback" in line.lower() or (len(fields) >= 3 and fields[1] == "error"):
            bad.append(line)
    return bad


def assert_healthy(prosody):
    """Prosody still runs, and its log has no error-level line and no traceback."""
    assert prosody.alive(), "Prosody exited"
    bad = log_problems(prosody)
    assert not bad, "error-level or traceback lines in Prosody's log:\n" + "\n".join(bad[:20])


def assert_no_leaks(prosody, before, workers=4, timeout=30.0):
    """Threads and descriptors back near `before` (proc_counts taken after start): the faults
    left no stray thread, and no socket beyond one kept-alive connection per worker. Workers
    started for a burst exit after component_post_idle_timeout (10 s): waited for, not assumed."""
    limit = (before[0], before[1] + workers + 2)
    deadline = time.monotonic() + timeout
    now = proc_counts(prosody.pid)
    while (now[0] > limit[0] or now[1] > limit[1]) and time.monotonic() < deadline:
        time.sleep(0.2)
        now = proc_counts(prosody.pid)
    assert now[0] <= limit[0] and now[1] <= limit[1], \
        f"(threads, fds) of Prosody: {before} after start, {now} after the faults"


def assert_posted_in_order(posts, traffic):
    """posts: [(sender full JID, message body)] in the order the webhook got them.

    Per sender, each message is posted in one run of consecutive attempts (retries), and the
    runs come in the order sent: one at a time, in order (README "Order").
    """
    for client, ids in traffic.plan.items():
        bodies = [b for who, b in posts if who == client.full_jid and index_of(b) is not None]
        runs = [b for k, b in enumerate(bodies) if k == 0 or bodies[k - 1] != b]
        numbers = [index_of(b) for b in runs]
        assert numbers == sorted(set(numbers)), \
            f"{client.jid}: webhook saw this sender's messages out of order or interleaved: {runs}"


class Traffic:
    """N numbered messages from each client to BOT_JID (id and body "<user>-<i>"), and the count
    of what came back."""

    def __init__(self, clients, n):
        self.plan = {c: [f"{c.jid.split('@')[0]}-{i}" for i in range(n)] for c in clients}
        self.marks = {c: c.mark() for c in clients}
        self.threads = []

    @property
    def total(self):
        return sum(len(ids) for ids in self.plan.values())

    def start(self, pace=0.0):
        def sender(client, ids):
            for mid in ids:
                client.send_message(BOT_JID, mid, id_=mid)
                if pace:
                    time.sleep(pace)

        self.threads = [threading.Thread(target=sender, args=item, daemon=True) for item in self.plan.items()]
        for t in self.threads:
            t.start()

    def join(self):
        for t in self.threads:
            t.join(timeout=60)

    def send(self, pace=0.0):
        self.start(pace)
        self.join()

    def send_interleaved(self, pace=0.002):
        """Message 0 of every sender, then message 1 of every sender, ... from one thread, with
        `pace` s between sends so that they reach Prosody interleaved, not as one burst each."""
        for k in range(max(len(ids) for ids in self.plan.values())):
            for client, ids in self.plan.items():
                if k < len(ids):
                    client.send_message(BOT_JID, ids[k], id_=ids[k])
                    time.sleep(pace)

    @staticmethod
    def key(s):
        """The message an incoming stanza is the outcome of, "<sentinel>" or "<unexpected>"."""
        if s.name != "message":
            return "<unexpected>"
        if s.type == "error":
            return s.id or "<unexpected>"
        body = s.body or ""
        if body.startswith("ack sentinel-"):
            return "<sentinel>"
        if body.startswith("ack "):
            return body[4:]
        return "<unexpected>"

    def received(self, client):
        return client.received[self.marks[client]:]  # a copy (slicing is atomic)

    def outcomes(self, client):
        ids = set(self.plan[client])
        return [(self.key(s), s) for s in self.received(client) if self.key(s) in ids]

    def answered(self):
        return sum(len({k for k, _ in self.outcomes(c)}) for c in self.plan)

    def wait_all(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while self.answered() < self.total and time.monotonic() < deadline:
            time.sleep(0.1)

    def expect_quiet(self):
        """XmppClient.expect_quiet for every sender at once (their graces overlap): a sentinel
        through each sender's line proves that nothing more is on its way."""
        failures = []

        def one(client):
            ids = set(self.plan[client])
            try:
                client.expect_quiet(self.marks[client], to=BOT_JID,
                                    ignore=lambda s: self.key(s) in ids or self.key(s) == "<sentinel>")
            except AssertionError as e:
                failures.append(f"{client.jid}: {e}")

        threads = [threading.Thread(target=one, args=(c,), daemon=True) for c in self.plan]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not failures, "\n".join(failures)

    @staticmethod
    def label(s):
        return REPLY if s.type != "error" else s.error

    def check(self, allowed, ordered=True):
        """Count and judge the outcomes; `allowed(mid)` gives the labels a message may end in
        (REPLY or an error (type, condition, text)); `ordered`: each sender's outcomes must come
        in the order it sent. Returns Counter of labels."""
        self.wait_all()
        self.expect_quiet()
        counts = Counter()
        problems = []
        for client, ids in self.plan.items():
            got = self.received(client)
            by_id = {}
            for s in got:
                by_id.setdefault(self.key(s), []).append(s)
            missing = [mid for mid in ids if mid not in by_id]
            duplicated = {mid: [s.xml for s in v] for mid, v in by_id.items() if mid in ids and len(v) > 1}
            unexpected = [s.xml for s in by_id.get("<unexpected>", [])]
            order = [k for k, _ in self.outcomes(client)]
            wrong = {}
            for mid in ids:
                for s in by_id.get(mid, []):
                    label = self.label(s)
                    counts[label] += 1
                    if label not in allowed(mid):
                        wrong[mid] = s.xml
                    if label == REPLY and not (s.frm == BOT_JID and s.type == "chat"):
                        wrong[mid] = s.xml
            if missing:
                problems.append(f"{client.jid}: {len(missing)} message(s) got no outcome: {missing[:20]}")
            if duplicated:
                problems.append(f"{client.jid}: {len(duplicated)} message(s) got more than one: "
                                f"{dict(list(duplicated.items())[:5])}")
            if unexpected:
                problems.append(f"{client.jid}: unexpected stanzas: {unexpected[:5]}")
            if wrong:
                problems.append(f"{client.jid}: outcomes the fault does not allow: {dict(list(wrong.items())[:5])}")
            if ordered and not missing and not duplicated and order != ids:
                firsts = [(a, b) for a, b in zip(order, ids) if a != b][:5]
                problems.append(f"{client.jid}: outcomes out of order; first differences (got, sent): {firsts}")
        assert not problems, "\n".join(problems)
        return counts


def summary(counts):
    return ", ".join(f"{n} {'reply' if k == REPLY else '/'.join(x for x in k[:2])}" for k, n in counts.items())


# -- 1. the endpoint killed and restarted mid-run ----------------------------------------------
def test_endpoint_killed_and_restarted(prosody_factory, login, echo_process):
    """SIGKILL the webhook's process three times while three senders send 100 messages each,
    and start a new one on the same port after 0.1-0.6 s.  Requests in flight die with their
    connection and are retried; while nothing listens, connections are refused.  Each message
    ends in a reply or "Connection failure" once its retries are spent; none is lost."""
    hook = echo_process(delay=0.01)
    prosody, clients = start(prosody_factory, login, hook.url())
    before = proc_counts(prosody.pid)
    traffic = Traffic(clients, n=100)
    t0 = time.monotonic()
    traffic.start(pace=0.015)  # 1.5 s of sending
    for at, down in ((0.3, 0.25), (0.8, 0.6), (1.6, 0.1)):
        time.sleep(max(0.0, t0 + at - time.monotonic()))
        hook.kill()
        time.sleep(down)
        hook.start()
    traffic.join()
    counts = traffic.check(lambda mid: {REPLY, CONNECTION_FAILURE})
    posts = hook.requests()
    print(f"{hook.kills} kills; {summary(counts)}; {len(posts)} posts, "
          f"{sum(1 for p in posts if p['retry'] > 0)} of them retries")
    assert counts[CONNECTION_FAILURE] or any(p["retry"] > 0 for p in posts), \
        "nothing was retried or failed: the kills missed the traffic"
    assert_posted_in_order([(p["from"], p["body"]) for p in posts], traffic)
    assert_no_leaks(prosody, before)
    assert_healthy(prosody)


# -- 2. slower than the deadline -----------------------------------------------------------------
def slow_answer(ex, variant):
    """Answer far too late, three ways: nothing for 3.5 s, then the answer; the status line and
    headers at once, then the body one byte every 0.25 s; the head itself one byte every
    0.1 s. Each would end after component_post_timeout (2 s) if the module waited for it."""
    body = json.dumps({"body": "ack " + ex.body_field}).encode()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    if variant == 0:
        if not ex.hold(3.5):
            ex.send(head + body)
    elif variant == 1:
        ex.send(head)
        ex.dribble(body[:14], 0.25)  # 3.5 s, then the rest
        ex.send(body[14:])
    else:
        ex.dribble(head[:35], 0.1)
        ex.send(head[35:] + body)
    ex.answered = True


def test_answers_slower_than_the_deadline(prosody_factory, login, raw_hook, make_webhook):
    """Three senders, 50 messages each; the webhook answers messages 5, 21 and 37 of each sender
    too late (see slow_answer: silence, a dribbled body, a dribbled head; component_post_timeout
    = 2) and the rest at once. The slow ones end in wait/remote-server-timeout, the rest in
    replies. While slow requests are pending, Prosody answers an iq ping and a second
    component answers a message: both come back before the slow stanza's timeout does.
    Unordered delivery, so that a sender's later messages are not queued behind its slow one
    (ordered, they would wait out its deadline and share its fate; see the dispatcher tests)."""
    slow = lambda mid: index_of(mid) % 16 == 5
    holding = {}
    started = threading.Condition()

    def handler(ex):
        mid = ex.body_field
        if not slow(mid):
            return ack(ex)
        with started:
            holding[mid] = time.monotonic()
            started.notify_all()
        slow_answer(ex, index_of(mid) // 16)

    hook = raw_hook(handler)
    fast = make_webhook()
    fast.handler = lambda req: Reply.with_json({"body": "fast " + str(req.json.get("body"))})
    prosody, clients = start(
        prosody_factory, login, hook.url(),
        component_post_timeout=2, component_post_ordered=False, component_post_workers=6,
        components={BOT2: {"component_post_url": fast.url()}},
        global_options={"modules_enabled": ["roster", "saslauth", "admin_shell", "ping"]})
    prober = login(prosody, "dave")
    traffic = Traffic(clients, n=50)
    traffic.start(pace=0.01)

    rtts = []
    probed = set()
    for k in range(3):
        with started:
            started.wait_for(lambda: set(holding) - probed, timeout=15)
            fresh = sorted(set(holding) - probed, key=holding.get)
        assert fresh, f"no held request to probe during (probe {k})"
        mid = fresh[-1]
        probed.update(holding)
        owner = next(c for c, ids in traffic.plan.items() if mid in ids)
        since = prober.mark()
        t = time.monotonic()
        ping = prober.send_iq("localhost", "get", "<ping xmlns='urn:xmpp:ping'/>")
        prober.send_message(BOT2_JID, f"probe-{k}")
        got_ping = prober.wait_for(lambda s: s.name == "iq" and s.id == ping, since=since, timeout=10)
        got_msg = prober.wait_for(lambda s: s.name == "message" and s.body == f"fast probe-{k}",
                                  since=since, timeout=10)
        rtts.append(round(time.monotonic() - t, 3))
        assert got_ping.type == "result", got_ping.xml
        assert got_msg.frm == BOT2_JID
        done = [s for key, s in traffic.outcomes(owner) if key == mid]
        assert not done, f"the probe was only answered after {mid}'s timeout: {done[0].xml}"
    traffic.join()
    counts = traffic.check(lambda mid: {TIMED_OUT} if slow(mid) else {REPLY}, ordered=False)
    print(f"{summary(counts)}; probes answered in {rtts} s while requests were held")
    assert counts[TIMED_OUT] == 3 * len(clients)
    assert_healthy(prosody)


# -- 3. 503, then 200 ----------------------------------------------------------------------------
def test_503_then_200_for_every_stanza(prosody_factory, login, make_webhook):
    """Every stanza's first attempt gets 503, its retry 200: three senders, 50 messages each,
    all end in their reply, in order, each posted exactly twice with one X-Delivery-Id
    (X-Retry-Count 0, then 1), and delivery ids differ between stanzas."""
    hook = make_webhook()
    seen, lock = set(), threading.Lock()

    def script(req):
        with lock:
            first = req.header("x-delivery-id") not in seen
            seen.add(req.header("x-delivery-id"))
        if first:
            return Reply(status=503, body="try again")
        return Reply.with_json({"body": "ack " + req.json["body"]})

    hook.handler = script
    prosody, clients = start(prosody_factory, login, hook.url())
    traffic = Traffic(clients, n=50)
    traffic.send(pace=0.003)
    counts = traffic.check(lambda mid: {REPLY})
    print(summary(counts))
    assert counts[REPLY] == traffic.total
    posts = {}
    for r in hook.requests:
        posts.setdefault((r.json["from"], r.json["body"]), []).append(r)
    for client, ids in traffic.plan.items():
        for mid in ids:
            tries = posts.get((client.full_jid, mid), [])
            assert len(tries) == 2, f"{mid} posted {len(tries)} times"
            assert [t.header("x-retry-count") for t in tries] == ["0", "1"], mid
            assert tries[0].header("x-delivery-id") == tries[1].header("x-delivery-id"), mid
            assert tries[0].raw_body == tries[1].raw_body, mid
    delivery_ids = [tries[0].header("x-delivery-id") for tries in posts.values()]
    assert None not in delivery_ids and len(set(delivery_ids)) == len(delivery_ids) == traffic.total
    assert_posted_in_order([(r.json["from"], r.json["body"]) for r in hook.requests], traffic)
    assert_healthy(prosody)


# -- 4. connections reset or closed under the request --------------------------------------------
class Resetter:
    """Message i, by i % 8: 1 RST once the request is read; 2 closed (FIN) without an answer;
    3 RST on every attempt; 4 half a status line, then RST; 5 answered, then the kept-alive
    connection closed without notice (the next request on it must not use it); others answered.
    Besides, every 7th request to arrive is reset after its headers, before its body.
    Except for 3, faults hit first attempts only (X-Retry-Count 0), so retries turn every
    message but the always-reset ones into a reply."""

    ALWAYS = 3

    @staticmethod
    def early(ex):
        if ex.seq % 7 == 0 and ex.retry_count == 0:
            ex.reset()

    def __call__(self, ex):
        kind = index_of(ex.body_field) % 8
        first = ex.retry_count == 0
        if kind == self.ALWAYS or (first and kind == 1):
            ex.reset()
        elif first and kind == 2:
            ex.close()
        elif first and kind == 4:
            ex.send(b"HTTP/1.1 20")
            ex.reset()
        else:
            ex.answer_json({"body": "ack " + ex.body_field}, close=(kind == 5))


def test_connections_reset(prosody_factory, login, raw_hook):
    """Three senders, 50 messages each, against a webhook that resets or closes connections
    before, while and after answering (see Resetter). Retries turn the one-off faults into
    replies; the always-reset messages end in "Connection failure" after three attempts; none
    is lost."""
    resetter = Resetter()
    hook = raw_hook(resetter, early=resetter.early)
    prosody, clients = start(prosody_factory, login, hook.url(), component_post_retries=2)
    before = proc_counts(prosody.pid)
    traffic = Traffic(clients, n=50)
    traffic.send(pace=0.003)
    always = lambda mid: index_of(mid) % 8 == Resetter.ALWAYS
    counts = traffic.check(lambda mid: {CONNECTION_FAILURE} if always(mid) else {REPLY})
    print(f"{summary(counts)}; {len(hook.requests)} complete requests, "
          f"{len(hook.early_requests)} reset before their body")
    assert hook.early_requests, "no request was reset before its body"
    assert_posted_in_order([(r.json["from"], r.body_field) for r in hook.requests], traffic)
    attempts = {}
    for r in hook.requests:
        attempts.setdefault((r.json["from"], r.body_field), []).append(r.retry_count)
    # At most three attempts (component_post_retries = 2), numbered in order. Some never arrive
    # complete: reset early, or sent on a connection a kind-5 answer closed an instant too late
    # for the client to notice.
    for (who, body), counts_seen in attempts.items():
        assert counts_seen == sorted(set(counts_seen)) and set(counts_seen) <= {0, 1, 2}, \
            (who, body, counts_seen)
    assert_no_leaks(prosody, before)
    assert_healthy(prosody)


# -- 5. garbage, huge and hostile answers --------------------------------------------------------
MAX_REPLY = 131072  # room for the 10,000-deep stanza (70 kB); the huge answers are 2 MiB
HUGE = 2 * 1024 * 1024


def billion_laughs():
    ents = ['<!ENTITY lol "lol">'] + [
        f'<!ENTITY lol{k} "{("&lol%s;" % (k - 1 if k > 1 else "")) * 10}">' for k in range(1, 10)]
    return (f'<?xml version="1.0"?><!DOCTYPE message [{"".join(ents)}]>'
            '<message><body>&lol9;</body></message>')


def external_entity():
    return ('<?xml version="1.0"?><!DOCTYPE message [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            '<message><body>&xxe;</body></message>')


def deep_nesting(depth=10_000):
    return "<message>" + "<a>" * depth + "</a>" * depth + "</message>"


INVALID_CHARACTERS = [
    "<message><body>bell \u0007 in text</body></message>",
    "<message><body>non-character \ufffe</body></message>",
    "<message><x\u0001y/></message>",
    "<message a='\u0000'/>",
]


def send_huge_chunked(ex):
    ex.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b'{"body": "' + b"x" * 65536
    for _ in range(HUGE // len(chunk)):
        ex.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        chunk = b"y" * 65536
    ex.send(b"0\r\n\r\n")


# name -> (what the webhook does, the outcome, the reason the warn line gives)
GARBAGE = {
    "fine": (ack, REPLY, None),
    "not-json": (lambda ex: ex.answer(200, "this is not JSON", {"Content-Type": "application/json"}),
                 BAD_REPLY, r"invalid JSON"),
    "truncated-json": (lambda ex: ex.answer(200, '{"body": "ack ' + ex.body_field,
                                            {"Content-Type": "application/json"}),
                       BAD_REPLY, r"invalid JSON"),
    "cut-short": (lambda ex: (ex.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                      b"Content-Length: 100\r\n\r\n{\"body\": \"ack"), ex.close()),
                  CONNECTION_FAILURE, r"could not reach the webhook: \S"),
    "http-garbage": (lambda ex: (ex.send(b"SSH-2.0-OpenSSH_9.2 garbage instead of a status line\r\n\r\n"),
                                 ex.close()),
                     CONNECTION_FAILURE, r"could not reach the webhook: \S"),
    "huge": (lambda ex: ex.answer(200, b'{"body": "' + b"x" * HUGE + b'"}', {"Content-Type": "application/json"}),
             BAD_REPLY, r"larger than %d bytes" % MAX_REPLY),
    "huge-chunked": (send_huge_chunked, BAD_REPLY, r"larger than %d bytes" % MAX_REPLY),
    "billion-laughs": (lambda ex: ex.answer_json({"stanza": billion_laughs()}), BAD_REPLY,
                       r"'stanza': a DTD is not allowed"),
    "external-entity": (lambda ex: ex.answer_json({"stanza": external_entity()}), BAD_REPLY,
                        r"'stanza': a DTD is not allowed"),
    "deep-nesting": (lambda ex: ex.answer_json({"stanza": deep_nesting()}), BAD_REPLY,
                     r"'stanza': nested deeper than 32 elements"),
    "invalid-characters": (lambda ex: ex.answer_json(
        {"stanza": INVALID_CHARACTERS[index_of(ex.body_field) % len(INVALID_CHARACTERS)]}),
        BAD_REPLY, r"'stanza': (.* which XML does not allow|invalid element name)"),
    "deep-json": (lambda ex: ex.answer(200, '{"body": ' + "[" * 10_000 + "]" * 10_000 + "}",
                                       {"Content-Type": "application/json"}),
                  BAD_REPLY, r"invalid JSON"),
    "invalid-utf8": (lambda ex: ex.answer(200, b'{"body": "ack \xff\xfe\xc3"}', {"Content-Type": "application/json"}),
                     BAD_REPLY, r"invalid JSON"),
    "huge-header": (lambda ex: ex.answer(200, b'{"body": "ack"}', {"Content-Type": "application/json",
                                                                  "X-Padding": "p" * HUGE}),
                    CONNECTION_FAILURE, r"could not reach the webhook: \S"),
    "from-elsewhere": (lambda ex: ex.answer_json({"from": "evil@localhost", "body": "spoofed"}),
                       BAD_REPLY, r"'from' \"evil@localhost\" is not on this component"),
}
GARBAGE_KINDS = list(GARBAGE)


def garbage_kind(mid):
    return GARBAGE_KINDS[index_of(mid) % len(GARBAGE_KINDS)]


def test_garbage_huge_and_hostile_answers(prosody_factory, login, raw_hook):
    """Each of three senders sends 60 messages; message i gets the i-th kind of answer in
    GARBAGE (cycling): non-JSON as application/json, truncated JSON, a body cut short, garbage
    instead of a status line, 2 MiB bodies with and without Content-Length, a billion-laughs
    DTD, an external entity, 10,000-deep XML, characters XML forbids, 10,000-deep JSON, invalid
    UTF-8, a 2 MiB header, a reply `from` another domain. Each gets its error (the transport-
    level ones after their retry, as "Connection failure"), the good ones their reply, in
    order; then Prosody still answers, and every error is logged at warn with its reason."""
    hook = raw_hook(lambda ex: GARBAGE[garbage_kind(ex.body_field)][0](ex))
    # One retry is enough here (retries are test_connections_reset's subject) and keeps it short.
    prosody, clients = start(prosody_factory, login, hook.url(), component_post_max_reply_size=MAX_REPLY,
                             component_post_retries=1)
    before = proc_counts(prosody.pid)
    traffic = Traffic(clients, n=4 * len(GARBAGE))
    traffic.send(pace=0.002)
    counts = traffic.check(lambda mid: {GARBAGE[garbage_kind(mid)][1]})
    print(summary(counts))

    log = prosody.log_text().splitlines()
    unlogged = []
    for client, ids in traffic.plan.items():
        for mid in ids:
            kind = garbage_kind(mid)
            reason = GARBAGE[kind][2]
            if reason is None:
                continue
            lines = [l for l in log if "\twarn\t" in l and f"(id {mid})" in l]
            if not any(re.search(reason, l) for l in lines):
                unlogged.append((mid, kind, lines))
    assert not unlogged, f"errors without a warn line giving the reason: {unlogged[:5]}"
    assert_posted_in_order([(r.json["from"], r.body_field) for r in hook.requests], traffic)

    # still answering, through the same component
    probe = clients[0]
    since = probe.mark()
    probe.send_message(BOT_JID, "alice-0", id_="after-garbage")
    assert probe.wait_for(lambda s: s.name == "message", since=since).body == "ack alice-0"
    assert_no_leaks(prosody, before)
    assert_healthy(prosody)


# -- 6. a full queue in front of a hanging endpoint ------------------------------------------------
def test_full_queue_under_a_hanging_endpoint(prosody_factory, login, raw_hook):
    """Two workers, a queue of 20, a webhook that never answers (component_post_timeout = 0.5):
    four senders send 25 messages each at once. What does not fit is refused with
    wait/resource-constraint at once; what was accepted ends in wait/remote-server-timeout;
    exactly one outcome each. Refusals overtake the accepted stanzas by design (README:
    "senders get wait/resource-constraint at once"), so order is checked within each kind.
    Prosody's memory (VmRSS, VmHWM) is printed before and at the peak."""
    hook = raw_hook(lambda ex: ex.hold(30))
    prosody, clients = start(prosody_factory, login, hook.url(), users=("alice", "bob", "carol", "dave"),
                             component_post_workers=2, component_post_queue_size=20,
                             component_post_timeout=0.5)
    before = proc_memory(prosody.pid)
    traffic = Traffic(clients, n=25)
    traffic.send_interleaved()
    sent = time.monotonic()

    first_seen = {}  # label -> [time each outcome was first seen]
    peak = dict(before)
    seen_ids = set()
    deadline = time.monotonic() + 40
    while len(seen_ids) < traffic.total and time.monotonic() < deadline:
        mem = proc_memory(prosody.pid)
        peak = {k: max(peak[k], mem[k]) for k in peak}
        now = time.monotonic()
        for c in traffic.plan:
            for key, s in traffic.outcomes(c):
                if key not in seen_ids:
                    seen_ids.add(key)
                    first_seen.setdefault(Traffic.label(s), []).append(now - sent)
        time.sleep(0.02)

    counts = traffic.check(lambda mid: {QUEUE_FULL, TIMED_OUT}, ordered=False)
    refused, timed_out = counts[QUEUE_FULL], counts[TIMED_OUT]
    print(f"{summary(counts)}; refusals seen within {max(first_seen.get(QUEUE_FULL, [0])):.2f} s of "
          f"the last send, timeouts from {min(first_seen.get(TIMED_OUT, [0])):.2f} to "
          f"{max(first_seen.get(TIMED_OUT, [0])):.2f} s; Prosody VmRSS {before['VmRSS']} kB -> "
          f"peak {peak['VmRSS']} kB, VmHWM {before['VmHWM']} kB -> {peak['VmHWM']} kB")
    assert refused + timed_out == traffic.total and refused > 0
    # 20 waiting and up to 2 in flight, plus what the first timeouts freed while sending
    assert 20 <= timed_out <= 22 + 2 * 3, counts
    # Timeouts are not retried, so nothing is posted twice; stanzas whose deadline passed while
    # they waited behind the hanging requests are answered without being posted at all.
    assert 2 <= len(hook.requests) <= timed_out, (len(hook.requests), counts)
    assert len({(r.json["from"], r.json["body"]) for r in hook.requests}) == len(hook.requests)
    # "at once": all refusals came before the accepted stanzas' third round of timeouts
    third_round = sorted(first_seen[TIMED_OUT])[min(4, timed_out - 1)]
    assert max(first_seen[QUEUE_FULL]) < third_round, first_seen
    for client, ids in traffic.plan.items():
        got = traffic.outcomes(client)
        for label in (QUEUE_FULL, TIMED_OUT):
            order = [index_of(k) for k, s in got if Traffic.label(s) == label]
            assert order == sorted(order), f"{client.jid}: {label[1]} outcomes out of order: {order}"
    assert peak["VmRSS"] < 200 * 1024 and peak["VmHWM"] < 200 * 1024, peak
    assert_healthy(prosody)


# -- 7. reloads in the middle of traffic, with the endpoint flapping -------------------------------
def test_reload_while_the_endpoint_flaps(prosody_factory, login, echo_process):
    """Three senders, 100 messages each; meanwhile the webhook's process is killed and restarted
    three times and the module is reloaded three times, overlapping. Reload hands everything
    over (README "Reload"), so the only errors are "Connection failure" from the outages; each
    message has exactly one outcome, in order, and was posted in order."""
    hook = echo_process(delay=0.01)
    prosody, clients = start(prosody_factory, login, hook.url())
    traffic = Traffic(clients, n=100)

    reloads = []

    def reload_thrice():
        for at in (0.35, 0.9, 1.5):
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            prosody.reload_module("component_http", BOT)
            reloads.append((round(time.monotonic() - t0, 2), traffic.answered()))

    t0 = time.monotonic()
    reloader = threading.Thread(target=reload_thrice, daemon=True)
    reloader.start()
    traffic.start(pace=0.02)  # 2 s of sending
    # Killed and restarted from this thread: the process dies with the thread that started it.
    for at, down in ((0.2, 0.3), (1.0, 0.6), (1.9, 0.2)):
        time.sleep(max(0.0, t0 + at - time.monotonic()))
        hook.kill()
        time.sleep(down)
        hook.start()
    reloader.join(timeout=60)
    traffic.join()
    assert len(reloads) == 3, f"only {len(reloads)} reload(s) succeeded"
    assert reloads[0][1] < traffic.total, f"the reloads came after the traffic: {reloads}"
    counts = traffic.check(lambda mid: {REPLY, CONNECTION_FAILURE})
    posts = hook.requests()
    print(f"reloads done at (s, messages answered by then) {reloads}, {hook.kills} kills; {summary(counts)}; {len(posts)} posts, "
          f"{sum(1 for p in posts if p['retry'] > 0)} of them retries")
    assert_posted_in_order([(p["from"], p["body"]) for p in posts], traffic)
    assert_healthy(prosody)
