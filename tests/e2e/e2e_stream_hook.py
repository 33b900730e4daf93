"""StreamHook: a webhook that answers each POST with a scripted stream (issue 18, streamed
answers), for the end-to-end tests (test_stream.py), the stand-in of a language model's API
(fake_llm_api.py) and the benchmark (bench/stream).

A script is a list of steps, written one after the other on one `200` answer with chunked
transfer encoding (each step that writes is one chunk, flushed at once):

    hook = StreamHook(lambda request: [delta("Hel"), wait(more), delta("lo"), end()])

- `delta(text)`, `body(text)`, `piece(obj)`: one object, framed as the hook's framing says
  (an NDJSON line, or an SSE event `data: <json>`);
- `raw(data)`: bytes (or text) exactly as given: a malformed line, an SSE comment, an `event:`
  line, CRLF;
- `burst(steps, end=False)`: the bytes of several steps in one chunk, one write (an answer
  that arrives whole); with `end`, the end of the body in the same write;
- `done()`: SSE's `data: [DONE]`;
- `wait(event)`: nothing is written until the test sets the threading.Event (tests pace a
  stream by what they saw, never by a guessed number of milliseconds);
- `reached(event)`: sets the event once everything before it was written;
- `keep_alive_until(event, every)`: a keep-alive object `{}` every `every` seconds until the
  test sets the event, as a model's API keeps a long answer alive (the stream's own pace, so
  the module does not cut it for silence; nothing is judged by it);
- `at(seconds)`: nothing is written until that long after the request arrived (the benchmark's
  pace, never a test's);
- `reset()`: the connection is aborted (RST) here;
- `stall()`: nothing more is written until the module gives up and closes the connection;
- the end of the list ends the body (the last chunk), unless a step ended the connection.

`script` is a list of steps for every request, or a callable(request) -> list, or None when it
answered the request itself (say `request.answer(500)`: not a stream at all). Requests are
RawExchanges (e2e_raw_webhook.py: `.json`, `.headers`, `.body_field`); each gets a `stream`
attribute, a StreamRecord: when the first text was written, and how the stream ended.
Sentinels ("sentinel-…" bodies) are answered with one JSON object, as by every test webhook.
"""

import json
import threading
import time

from e2e_raw_webhook import RawWebhook

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"

# How long a `wait` step waits for its event before the script counts as broken (the
# connection is then reset and the test fails on the hook's handler_errors).
WAIT_LIMIT = 120.0


class Step:
    """One step of a script: `kind` and its argument."""

    def __init__(self, kind, arg=None):
        self.kind, self.arg = kind, arg

    def __repr__(self):
        return f"{self.kind}({self.arg!r})"


def piece(obj):
    return Step("piece", obj)


def delta(text):
    return piece({"delta": text})


def body(text):
    return piece({"body": text})


def raw(data):
    return Step("raw", data.encode() if isinstance(data, str) else data)


def burst(steps, end=False):
    return Step("burst-end" if end else "burst", list(steps))


def done():
    return Step("done")


def wait(event):
    return Step("wait", event)


def reached(event):
    return Step("reached", event)


def keep_alive_until(event, every):
    return Step("keep-alive", (event, every))


def at(seconds):
    return Step("at", seconds)


def reset():
    return Step("reset")


def stall():
    return Step("stall")


def text_of(steps):
    """The text a script's `delta` and `body` steps add up to (what the user must see last)."""
    text = ""
    for step in steps:
        inner = step.arg if step.kind in ("burst", "burst-end") else [step]
        for s in inner:
            if s.kind == "piece" and isinstance(s.arg, dict):
                if "body" in s.arg:
                    text = s.arg["body"]
                elif "delta" in s.arg:
                    text += s.arg["delta"]
    return text


class Framing:
    """How objects are written: NDJSON lines, or SSE events (`crlf` for CRLF line ends,
    `event` for an `event:` line before each `data:` line)."""

    def __init__(self, content_type=NDJSON, crlf=False, event=None):
        self.content_type, self.eol, self.event = content_type, "\r\n" if crlf else "\n", event

    def encode(self, step):
        if step.kind == "raw":
            return step.arg
        if step.kind in ("burst", "burst-end"):
            return b"".join(self.encode(s) for s in step.arg)
        if self.content_type == NDJSON:
            if step.kind == "done":
                raise ValueError("done() is SSE's; an NDJSON stream ends with its body")
            return (json.dumps(step.arg) + self.eol).encode()
        data = "[DONE]" if step.kind == "done" else json.dumps(step.arg)
        head = f"event: {self.event}{self.eol}" if self.event else ""
        return f"{head}data: {data}{self.eol}{self.eol}".encode()


class StreamRecord:
    """What happened to one streamed answer: when its first text and its last byte were written
    (time.monotonic()), and how it ended: "complete", "reset", "stalled" (the module closed the
    connection of a stalled stream) or "peer closed" (the module closed it while we wrote)."""

    def __init__(self):
        self.first_text_at = None
        self.ended_at = None
        self.ending = None
        self.ended = threading.Event()

    def end(self, how):
        self.ending, self.ended_at = how, time.monotonic()
        self.ended.set()


class StreamHook:
    """A RawWebhook answering every request with `script` (see the module's docstring), in
    `framing` (a Framing; NDJSON by default) under `content_type` (the framing's by default)."""

    def __init__(self, script=(), framing=None, content_type=None, port=None):
        self.script = script
        self.framing = framing or Framing()
        self.content_type = content_type or self.framing.content_type
        self.raw = RawWebhook(handler=self._answer, port=port)
        self.port = self.raw.port

    # What the tests read, as on every test webhook.
    @property
    def requests(self):
        return self.raw.requests

    @property
    def handler_errors(self):
        return self.raw.handler_errors

    def url(self, path="/hook"):
        return self.raw.url(path)

    def wait_for_requests(self, count, timeout=10.0):
        return self.raw.wait_for_requests(count, timeout)

    def close(self):
        self.raw.close()

    def _answer(self, ex):
        ex.stream = record = StreamRecord()
        steps = self.script(ex) if callable(self.script) else list(self.script)
        if steps is None:
            return
        ex.send((f"HTTP/1.1 200 OK\r\nContent-Type: {self.content_type}\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n").encode())
        try:
            for step in steps:
                if step.kind == "wait":
                    if not step.arg.wait(WAIT_LIMIT):
                        raise AssertionError(f"the script waited {WAIT_LIMIT} s for an event never set")
                elif step.kind == "reached":
                    step.arg.set()
                elif step.kind == "keep-alive":
                    event, every = step.arg
                    limit = time.monotonic() + WAIT_LIMIT
                    while not event.wait(every):
                        if time.monotonic() > limit:
                            raise AssertionError(f"the script kept alive {WAIT_LIMIT} s for an event never set")
                        data = self.framing.encode(piece({}))
                        ex.send(b"%x\r\n%s\r\n" % (len(data), data))
                elif step.kind == "at":
                    left = ex.received_at + step.arg - time.monotonic()
                    if left > 0:
                        time.sleep(left)
                elif step.kind == "reset":
                    ex.reset()
                    record.end("reset")
                    return
                elif step.kind == "stall":
                    ex.hold(WAIT_LIMIT)
                    ex.close()
                    record.end("stalled")
                    return
                else:
                    data = self.framing.encode(step)
                    last = b"0\r\n\r\n" if step.kind == "burst-end" else b""
                    ex.send(b"%x\r\n%s\r\n%s" % (len(data), data, last))
                    if record.first_text_at is None and text_of([step]):
                        record.first_text_at = time.monotonic()
                    if last:
                        break
            else:
                ex.send(b"0\r\n\r\n")
        except OSError:
            ex.close()
            record.end("peer closed")
            return
        except Exception:
            record.end("broken script")
            raise
        ex.answered = True  # the connection is kept alive for the next request
        record.end("complete")
