"""README "Delivery guarantees": retries, delivery ids, order, signing, headers, TLS."""

import hashlib
import hmac
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import BOT
from e2e_webhook import Reply, ScriptedWebhook

BOT_JID = "echo@bot.localhost"


def start(prosody_factory, connect, webhook, users=("alice",), **options):
    prosody = prosody_factory({BOT: {"component_post_url": webhook.url(), **options}})
    return [connect(prosody, u) for u in users]


def answers(client, since):
    return [s for s in client.received[since:] if s.name == "message"]


# -- retries -------------------------------------------------------------------
def test_503_is_retried_with_the_same_delivery_id(prosody_factory, webhook, connect):
    (alice,) = start(prosody_factory, connect, webhook)
    attempts = []

    def script(req):
        attempts.append(req)
        if len(attempts) <= 2:
            return Reply(status=503)
        return Reply.with_json({"body": "third time lucky"})
    webhook.handler = script
    since = alice.mark()
    alice.send_message(BOT_JID, "retry me")
    reply = alice.wait_for(lambda s: s.name == "message", since=since, timeout=8)
    assert reply.body == "third time lucky" and reply.type == "chat"
    alice.expect_quiet(since, ignore=lambda s: s is reply)
    assert len(webhook.requests) == 3
    ids = {r.header("x-delivery-id") for r in webhook.requests}
    assert len(ids) == 1 and None not in ids
    assert [r.header("x-retry-count") for r in webhook.requests] == ["0", "1", "2"]
    assert len({r.raw_body for r in webhook.requests}) == 1
    gaps = [b.received_at - a.received_at for a, b in zip(webhook.requests, webhook.requests[1:])]
    # README: the first retry at once, then backoff from 200 ms "with jitter" (at least half)
    assert gaps[1] >= 0.09, f"no backoff before the second retry: {gaps}"


def test_retries_exhausted_answers_last_error(prosody_factory, webhook, connect):
    (alice,) = start(prosody_factory, connect, webhook, component_post_retries=1)
    webhook.respond(504)
    since = alice.mark()
    mid = alice.send_message(BOT_JID, "never")
    err = alice.wait_for(lambda s: s.id == mid and s.type == "error", since=since, timeout=8)
    assert err.error == ("wait", "remote-server-timeout", "Gateway timeout")
    alice.expect_quiet(since, ignore=lambda s: s is err)
    assert len(webhook.requests) == 2


@pytest.mark.parametrize("status,retries,expected_posts", [(500, 2, 1), (503, 0, 1), (404, 2, 1)])
def test_not_retried(prosody_factory, webhook, connect, status, retries, expected_posts):
    (alice,) = start(prosody_factory, connect, webhook, component_post_retries=retries)
    webhook.respond(status)
    since = alice.mark()
    mid = alice.send_message(BOT_JID, "once")
    err = alice.wait_for(lambda s: s.id == mid and s.type == "error", since=since)
    alice.expect_quiet(since, ignore=lambda s: s is err)
    assert len(webhook.requests) == expected_posts


def test_429_waits_for_retry_after(prosody_factory, webhook, connect):
    (alice,) = start(prosody_factory, connect, webhook)
    calls = []

    def script(req):
        calls.append(req)
        if len(calls) == 1:
            return Reply(status=429, headers={"Retry-After": "1"})
        return Reply.with_json({"body": "after waiting"})
    webhook.handler = script
    since = alice.mark()
    alice.send_message(BOT_JID, "slow down")
    reply = alice.wait_for(lambda s: s.name == "message", since=since, timeout=6)
    assert reply.body == "after waiting"
    assert len(calls) == 2
    assert calls[1].received_at - calls[0].received_at >= 0.9


def test_delivery_ids_differ_between_stanzas(prosody_factory, webhook, connect):
    (alice,) = start(prosody_factory, connect, webhook)
    for i in range(3):
        alice.send_message(BOT_JID, f"m{i}")
    reqs = webhook.wait_for_requests(3)
    ids = [r.header("x-delivery-id") for r in reqs]
    assert None not in ids and len(set(ids)) == 3
    assert [r.header("x-retry-count") for r in reqs] == ["0", "0", "0"]


# -- order and concurrency --------------------------------------------------------
class InFlight:
    """Counts requests being answered at the same time, per sender."""

    def __init__(self, delay_for):
        self.lock = threading.Lock()
        self.now = {}
        self.peak = {}
        self.delay_for = delay_for

    def __call__(self, req):
        who = req.json["from"]
        with self.lock:
            self.now[who] = self.now.get(who, 0) + 1
            self.peak[who] = max(self.peak.get(who, 0), self.now[who])
            self.peak["*"] = max(self.peak.get("*", 0), sum(self.now.values()))
        time.sleep(self.delay_for(req))
        with self.lock:
            self.now[who] -= 1
        return Reply.with_json({"body": "ack " + req.json["body"]})


def test_one_sender_is_posted_in_order_one_at_a_time(prosody_factory, webhook, connect):
    (alice,) = start(prosody_factory, connect, webhook)
    # later messages answer faster: a concurrent poster would reorder them
    counter = InFlight(lambda req: 0.12 - 0.01 * int(req.json["body"][1:]))
    webhook.handler = counter
    since = alice.mark()
    sent = [f"m{i}" for i in range(10)]
    for body in sent:
        alice.send_message(BOT_JID, body)
    got = alice.wait_for_count(lambda s: s.name == "message", 10, since=since, timeout=10)
    assert [r.json["body"] for r in webhook.requests] == sent
    assert [s.body for s in got] == [f"ack {b}" for b in sent]
    assert counter.peak[alice.full_jid] == 1


def test_different_senders_are_posted_concurrently(prosody_factory, webhook, connect):
    """Each request is held until the other one arrives: posted one at a time, neither would
    be answered "together" (the barrier's timeout only guards against a hang)."""
    alice, bob = start(prosody_factory, connect, webhook, users=("alice", "bob"))
    both = threading.Barrier(2, timeout=60)

    def handler(req):
        try:
            both.wait()
        except threading.BrokenBarrierError:
            return Reply.with_json({"body": "alone"})
        return Reply.with_json({"body": "together"})

    webhook.handler = handler
    sa, sb = alice.mark(), bob.mark()
    alice.send_message(BOT_JID, "a")
    bob.send_message(BOT_JID, "b")
    got_a = alice.wait_for(lambda s: s.name == "message", since=sa, timeout=90)
    got_b = bob.wait_for(lambda s: s.name == "message", since=sb, timeout=90)
    assert (got_a.body, got_b.body) == ("together", "together"), (got_a.xml, got_b.xml)


def test_unordered_option_posts_one_sender_concurrently(prosody_factory, webhook, connect):
    (alice,) = start(prosody_factory, connect, webhook, component_post_ordered=False)
    counter = InFlight(lambda req: 0.5)
    webhook.handler = counter
    since = alice.mark()
    for i in range(4):
        alice.send_message(BOT_JID, f"u{i}")
    alice.wait_for_count(lambda s: s.name == "message", 4, since=since, timeout=6)
    assert counter.peak[alice.full_jid] >= 2


# -- request decoration -------------------------------------------------------------
def test_signature(prosody_factory, webhook, connect):
    secret = "s3cret-key"
    (alice,) = start(prosody_factory, connect, webhook, component_post_secret=secret)
    alice.send_message(BOT_JID, "signed")
    (req,) = webhook.wait_for_requests(1)
    ts = req.header("x-signature-timestamp")
    assert ts and ts.isdigit() and abs(time.time() - int(ts)) < 60
    # README, Signatures: v1, the timestamp, the delivery id and the retry count, each ended by
    # a line feed, then the body.
    assert req.header("x-retry-count") == "0" and req.header("x-delivery-id")
    text = f"v1\n{ts}\n{req.header('x-delivery-id')}\n0\n".encode() + req.raw_body
    expected = "sha256=" + hmac.new(secret.encode(), text, hashlib.sha256).hexdigest()
    assert req.header("x-signature") == expected


def test_no_signature_without_secret(prosody_factory, webhook, connect):
    (alice,) = start(prosody_factory, connect, webhook)
    alice.send_message(BOT_JID, "unsigned")
    (req,) = webhook.wait_for_requests(1)
    assert req.header("x-signature") is None


def test_extra_headers(prosody_factory, webhook, connect):
    (alice,) = start(prosody_factory, connect, webhook,
                     component_post_headers={"Authorization": "Bearer 0123", "X-Bot-Name": "e2e"})
    alice.send_message(BOT_JID, "headers")
    (req,) = webhook.wait_for_requests(1)
    assert req.header("authorization") == "Bearer 0123"
    assert req.header("x-bot-name") == "e2e"


# -- hostile answers -------------------------------------------------------------------
@pytest.mark.parametrize("frm", ["evil@localhost", "localhost", "x@sub.bot.localhost"])
def test_reply_from_another_domain_is_refused(prosody_factory, webhook, connect, frm):
    alice, bob = start(prosody_factory, connect, webhook, users=("alice", "bob"))
    webhook.respond_json({"from": frm, "to": "bob@localhost", "body": "spoofed"})
    sa, sb = alice.mark(), bob.mark()
    mid = alice.send_message(BOT_JID, "spoof please")
    err = alice.wait_for(lambda s: s.id == mid and s.type == "error", since=sa)
    assert err.error == ("cancel", "internal-server-error", "The webhook sent an invalid reply")
    # bob got nothing: a sentinel of his own through the bot is the first he hears from it.
    bob.expect_quiet(sb)


def test_reply_from_component_host_is_allowed(prosody_factory, webhook, connect):
    (alice,) = start(prosody_factory, connect, webhook)
    webhook.respond_json({"from": "bot.localhost", "body": "from the host"})
    since = alice.mark()
    alice.send_message(BOT_JID, "hi")
    reply = alice.wait_for(lambda s: s.name == "message", since=since)
    assert reply.frm == "bot.localhost" and reply.body == "from the host"


# -- TLS -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls_material():
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    d = tempfile.mkdtemp(prefix="e2e-tls-")

    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=e2e test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(d, "server.pem"), os.path.join(d, "server.key"))
    yield {"ca": os.path.join(d, "ca.pem"), "ctx": ctx}
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def tls_webhook(tls_material):
    w = ScriptedWebhook(ssl_context=tls_material["ctx"])
    yield w
    w.close()


def test_https_with_ca_file(prosody_factory, tls_webhook, tls_material, connect):
    (alice,) = start(prosody_factory, connect, tls_webhook, component_post_ca_file=tls_material["ca"])
    tls_webhook.respond_json({"body": "over tls"})
    since = alice.mark()
    alice.send_message(BOT_JID, "secure?")
    reply = alice.wait_for(lambda s: s.name == "message", since=since)
    assert reply.body == "over tls"
    assert tls_webhook.requests[0].json["body"] == "secure?"


def test_https_untrusted_certificate_is_refused(prosody_factory, tls_webhook, connect):
    (alice,) = start(prosody_factory, connect, tls_webhook, component_post_retries=0)
    tls_webhook.respond_json({"body": "must not arrive"})
    since = alice.mark()
    mid = alice.send_message(BOT_JID, "insecure?")
    err = alice.wait_for(lambda s: s.id == mid and s.type == "error", since=since)
    # A certificate that does not verify is a connection failure, never a request sent.
    assert err.error == ("cancel", "remote-server-timeout", "Connection failure"), err.xml
    # Nothing else came for it: a second message's error is the next stanza.
    mid2 = alice.send_message(BOT_JID, "still insecure?")
    err2 = alice.wait_for(lambda s: s.id == mid2 and s.type == "error", since=since)
    assert [s for s in alice.received[since:] if s.name == "message"] == [err, err2]
    assert tls_webhook.requests == []
