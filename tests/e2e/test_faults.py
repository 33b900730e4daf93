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
The rig: senders and the judging of outcomes in e2e_traffic.py; RawWebhook (e2e_raw_webhook.py)
misbehaves on raw sockets; EchoWebhookProcess (e2e_webhook.py) is a webhook to kill.
"""

import json
import re
import threading
import time

from conftest import BOT, BOT2
from e2e_traffic import (BAD_REPLY, BOT_JID, CONNECTION_FAILURE, QUEUE_FULL, REPLY, TIMED_OUT, Traffic,
                         assert_healthy, assert_no_leaks, assert_posted_in_order, index_of, start, summary)
from e2e_util import proc_counts, proc_memory
from e2e_webhook import Reply

BOT2_JID = "echo@bot2.localhost"


def ack(ex):
    ex.answer_json({"body": "ack " + str(ex.body_field)})


# -- 1. the endpoint killed and restarted mid-run ----------------------------------------------
def test_endpoint_killed_and_restarted(prosody_factory, connect, echo_process):
    """SIGKILL the webhook's process three times while three senders send 100 messages each,
    and start a new one on the same port after 0.1-0.6 s.  Requests in flight die with their
    connection and are retried; while nothing listens, connections are refused.  Each message
    ends in a reply or "Connection failure" once its retries are spent; none is lost."""
    hook = echo_process(delay=0.01)
    prosody, clients = start(prosody_factory, connect, hook.url())
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


def test_answers_slower_than_the_deadline(prosody_factory, connect, raw_hook, make_webhook):
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
        prosody_factory, connect, hook.url(),
        component_post_timeout=2, component_post_ordered=False, component_post_workers=6,
        components={BOT2: {"component_post_url": fast.url()}},
        global_options={"modules_enabled": ["roster", "saslauth", "admin_shell", "ping"]})
    prober = connect(prosody, "dave")
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
def test_503_then_200_for_every_stanza(prosody_factory, connect, make_webhook):
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
    prosody, clients = start(prosody_factory, connect, hook.url())
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


def test_connections_reset(prosody_factory, connect, raw_hook):
    """Three senders, 50 messages each, against a webhook that resets or closes connections
    before, while and after answering (see Resetter). Retries turn the one-off faults into
    replies; the always-reset messages end in "Connection failure" after three attempts; none
    is lost."""
    resetter = Resetter()
    hook = raw_hook(resetter, early=resetter.early)
    prosody, clients = start(prosody_factory, connect, hook.url(), component_post_retries=2)
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


def test_garbage_huge_and_hostile_answers(prosody_factory, connect, raw_hook):
    """Each of three senders sends 60 messages; message i gets the i-th kind of answer in
    GARBAGE (cycling): non-JSON as application/json, truncated JSON, a body cut short, garbage
    instead of a status line, 2 MiB bodies with and without Content-Length, a billion-laughs
    DTD, an external entity, 10,000-deep XML, characters XML forbids, 10,000-deep JSON, invalid
    UTF-8, a 2 MiB header, a reply `from` another domain. Each gets its error (the transport-
    level ones after their retry, as "Connection failure"), the good ones their reply, in
    order; then Prosody still answers, and every error is logged at warn with its reason."""
    hook = raw_hook(lambda ex: GARBAGE[garbage_kind(ex.body_field)][0](ex))
    # One retry is enough here (retries are test_connections_reset's subject) and keeps it short.
    prosody, clients = start(prosody_factory, connect, hook.url(), component_post_max_reply_size=MAX_REPLY,
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
def test_full_queue_under_a_hanging_endpoint(prosody_factory, connect, raw_hook):
    """Two workers, a queue of 20, a webhook that never answers (component_post_timeout = 0.5):
    four senders send 25 messages each at once. What does not fit is refused with
    wait/resource-constraint at once; what was accepted ends in wait/remote-server-timeout;
    exactly one outcome each. Refusals overtake the accepted stanzas by design (README:
    "senders get wait/resource-constraint at once"), so order is checked within each kind.
    Prosody's memory (VmRSS, VmHWM) is printed before and at the peak."""
    hook = raw_hook(lambda ex: ex.hold(30))
    prosody, clients = start(prosody_factory, connect, hook.url(), users=("alice", "bob", "carol", "dave"),
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
def test_reload_while_the_endpoint_flaps(prosody_factory, connect, echo_process):
    """Three senders, 100 messages each; meanwhile the webhook's process is killed and restarted
    three times and the module is reloaded three times, overlapping. Reload hands everything
    over (README "Reload"), so the only errors are "Connection failure" from the outages; each
    message has exactly one outcome, in order, and was posted in order."""
    hook = echo_process(delay=0.01)
    prosody, clients = start(prosody_factory, connect, hook.url())
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
