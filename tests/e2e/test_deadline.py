"""The deadline is hard: nothing waits longer than component_post_timeout, however the webhook
is slow (README, Delivery guarantees).

Each webhook below finishes a valid answer 1.5 s after the request, with
component_post_timeout = 1. A deadline given to each phase afresh (connect, then headers, then
body) would still accept that answer and reply; a hard deadline cuts it and answers the sender
with wait/remote-server-timeout. So the outcome alone tells the two apart, and no wall-clock
bound is asserted.
"""

import json
import socket

import pytest

from e2e_traffic import TIMED_OUT, start

FINISHES_AFTER = 1.5  # seconds: past the 1 s deadline, within a fresh 1 s per phase
TIMEOUT = {"component_post_timeout": 1, "component_post_connect_timeout": 1}


def answer_parts(ex):
    body = json.dumps({"body": "ack " + str(ex.body_field)}).encode()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    return head, body


def late_headers(ex):
    """Silence, then the whole answer at once."""
    head, body = answer_parts(ex)
    if not ex.hold(FINISHES_AFTER):
        ex.send(head + body)
    ex.answered = True


def headers_then_slow_body(ex):
    """The head at 0.8 s, then the body one byte at a time until 1.5 s."""
    head, body = answer_parts(ex)
    if ex.hold(0.8):
        return
    ex.send(head)
    ex.dribble(body, (FINISHES_AFTER - 0.8) / len(body))
    ex.answered = True


def slow_head(ex):
    """The status line and headers one byte at a time until 1.5 s, then the body."""
    head, body = answer_parts(ex)
    ex.dribble(head, FINISHES_AFTER / len(head))
    try:
        ex.send(body)
    except OSError:
        pass
    ex.answered = True


def slow_chunks(ex):
    """A chunked body, one small chunk every 0.1 s until 1.5 s."""
    _, body = answer_parts(ex)
    ex.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    pieces = [body[i:i + 2] for i in range(0, len(body), 2)]
    for piece in pieces:
        if ex.hold(FINISHES_AFTER / len(pieces)):
            return
        try:
            ex.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        except OSError:
            return
    try:
        ex.send(b"0\r\n\r\n")
    except OSError:
        pass
    ex.answered = True


@pytest.mark.parametrize("slowness", [late_headers, headers_then_slow_body, slow_head, slow_chunks])
def test_a_slow_answer_is_cut_at_the_deadline(prosody_factory, connect, raw_hook, slowness):
    hook = raw_hook(slowness)
    prosody, (alice,) = start(prosody_factory, connect, hook.url(), users=("alice",), **TIMEOUT)
    alice.send_message("echo@bot.localhost", "alice-0", id_="slow-1")
    reply = alice.wait_for(lambda s: s.id == "slow-1", timeout=30, what="the answer to slow-1")
    assert reply.error == TIMED_OUT, reply
    alice.expect_quiet(alice.mark())


class NeverAccepting:
    """A listener whose backlog is full: a new connection's SYN is dropped, so connecting hangs
    (until the TCP stack gives up, minutes later). Accepts nothing until `release`."""

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.fillers = []
        # Linux queues backlog+1 connections; a few more make sure the queue is full.
        for _ in range(3):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(s)

    def url(self):
        return f"http://127.0.0.1:{self.port}/hook"

    def close(self):
        for s in self.fillers:
            s.close()
        self.listener.close()


def test_a_webhook_that_never_accepts_the_connection_is_cut_at_the_deadline(prosody_factory, connect):
    hook = NeverAccepting()
    try:
        prosody, (alice,) = start(prosody_factory, connect, hook.url(), users=("alice",),
                                  component_post_timeout=1, component_post_connect_timeout=5)
        alice.send_message("echo@bot.localhost", "alice-0", id_="hang-1")
        reply = alice.wait_for(lambda s: s.id == "hang-1", timeout=30, what="the answer to hang-1")
        assert reply.error == TIMED_OUT, reply
    finally:
        hook.close()
