"""Reloading the module through Prosody's admin shell, with and without traffic."""

import threading
import time

from conftest import BOT
from e2e_util import proc_counts
from e2e_webhook import Reply

BOT_JID = "echo@bot.localhost"
THREAD_SLACK = 1
FD_SLACK = 3
STOPPED_ERROR = ("wait", "service-unavailable", "The component was stopped before the webhook answered")


def ack_handler(delay):
    return lambda req: Reply.with_json({"body": "ack " + str(req.json.get("body"))}, delay=delay)


def settle(pid, limit, timeout=10.0):
    """Wait until (threads, fds) of pid are within `limit`; return the last sample."""
    deadline = time.monotonic() + timeout
    while True:
        now = proc_counts(pid)
        if now[0] <= limit[0] and now[1] <= limit[1]:
            return now
        if time.monotonic() > deadline:
            return now
        time.sleep(0.2)


def warm_up(alice, n=20):
    """A concurrent burst so workers and keep-alive connections exist before measuring."""
    since = alice.mark()
    for i in range(n):
        alice.send_message(BOT_JID, f"warm{i}")
    alice.wait_for_count(lambda s: s.name == "message", n, since=since, timeout=10)
    time.sleep(0.5)


def outcomes_by_id(stanzas, ids):
    """message id -> list of answers (ack replies carry it in the body, errors as id)."""
    wanted = set(ids)
    out = {}
    for s in stanzas:
        if s.name != "message":
            continue
        if s.type == "error":
            key = s.id
        elif (s.body or "").startswith("ack "):
            key = s.body[4:]
        else:
            key = None
        if key in wanted:
            out.setdefault(key, []).append(s)
        else:
            out.setdefault("<unexpected>", []).append(s)
    return out


def test_reload_under_traffic(prosody_factory, webhook, connect):
    """Three reloads while two users send 100 messages each to a 20 ms webhook.

    README (Delivery guarantees / Reload): the queue, requests in flight and
    connections are handed to the new instance; nothing is answered with an
    error and per-sender order holds across the reload.
    """
    webhook.handler = ack_handler(0.02)
    prosody = prosody_factory({BOT: {"component_post_url": webhook.url()}})
    alice = connect(prosody)
    bob = connect(prosody, "bob")
    warm_up(alice)
    before = proc_counts(prosody.pid)
    webhook.reset()
    webhook.handler = ack_handler(0.02)

    n = 100
    plan = {alice: [f"a{i}" for i in range(n)], bob: [f"b{i}" for i in range(n)]}
    marks = {c: c.mark() for c in plan}

    def sender(client, ids):
        for mid in ids:
            client.send_message(BOT_JID, mid, id_=mid)
            time.sleep(0.008)

    threads = [threading.Thread(target=sender, args=item) for item in plan.items()]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    reloads = []
    for at in (0.2, 0.5, 0.8):
        time.sleep(max(0.0, t0 + at - time.monotonic()))
        prosody.reload_module("component_http", BOT)
        reloads.append(round(time.monotonic() - t0, 2))
    for t in threads:
        t.join()

    # every message ends with exactly one answer
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all(all(mid in outcomes_by_id(c.received[marks[c]:], ids) for mid in ids)
               for c, ids in plan.items()):
            break
        time.sleep(0.2)
    # Late duplicates: each sender's next message is answered after anything still due to it
    # (answers go out in order per sender), so its answer is the sentinel; what came before it
    # is what the component sent for the 100.
    received = {}
    for client in plan:
        token = f"sentinel-{client.jid}"
        client.send_message(BOT_JID, token, id_=token)
        answer = client.wait_for(lambda s, token=token: s.name == "message" and s.body == "ack " + token,
                                 since=marks[client], timeout=30, what=f"answer to {token}")
        received[client] = client.received[marks[client]:client.received.index(answer)]

    summary = []
    for client, ids in plan.items():
        got = outcomes_by_id(received[client], ids)
        missing = [mid for mid in ids if mid not in got]
        duplicated = {mid: [s.xml for s in v] for mid, v in got.items() if mid in ids and len(v) > 1}
        assert not missing, f"{client.jid}: {len(missing)} message(s) never answered: {missing[:20]}"
        assert not duplicated, f"{client.jid}: answered more than once: {duplicated}"
        assert "<unexpected>" not in got, [s.xml for s in got["<unexpected>"]]
        errors = [v[0] for mid, v in got.items() if v[0].type == "error"]
        replies = [v[0] for v in got.values() if v[0].type != "error"]
        assert all(r.frm == BOT_JID and r.type == "chat" for r in replies)
        summary.append(f"{client.jid}: {len(replies)} replies, {len(errors)} errors")
        # README: "nothing is answered with an error" on reload
        assert not errors, f"{client.jid}: errors during reload: {[e.xml for e in errors[:5]]}"
        # README: per-sender order holds across the reload, for posts and replies
        posted = [r.json["body"] for r in webhook.requests if r.json["from"] == client.full_jid]
        assert posted == ids, f"{client.jid}: webhook saw {len(posted)} posts, out of order or repeated"
        answered = [s.body[4:] for s in received[client]
                    if s.name == "message" and (s.body or "").startswith("ack ")]
        assert answered == ids, f"{client.jid}: replies out of order"
    print(f"reloads at {reloads}s; " + "; ".join(summary))

    # still answering afterwards
    s2 = alice.mark()
    alice.send_message(BOT_JID, "after")
    assert alice.wait_for(lambda s: s.name == "message", since=s2).body == "ack after"

    # no leaked workers or descriptors
    limit = (before[0] + THREAD_SLACK, before[1] + FD_SLACK)
    after = settle(prosody.pid, limit)
    assert after[0] <= limit[0], f"threads {before[0]} before, {after[0]} after 3 reloads"
    assert after[1] <= limit[1], f"fds {before[1]} before, {after[1]} after 3 reloads"
    assert prosody.alive()
    assert "Traceback" not in prosody.log_text()


def test_repeated_reloads_do_not_leak(prosody_factory, webhook, connect):
    webhook.handler = ack_handler(0.0)
    prosody = prosody_factory({BOT: {"component_post_url": webhook.url()}})
    alice = connect(prosody)
    warm_up(alice)
    before = proc_counts(prosody.pid)
    for i in range(10):
        prosody.reload_module("component_http", BOT)
        since = alice.mark()
        for j in range(5):
            alice.send_message(BOT_JID, f"x{i}.{j}")
        got = alice.wait_for_count(lambda s: s.name == "message", 5, since=since)
        assert sorted(s.body for s in got) == sorted(f"ack x{i}.{j}" for j in range(5))
    limit = (before[0] + THREAD_SLACK, before[1] + FD_SLACK)
    after = settle(prosody.pid, limit)
    assert after[0] <= limit[0], f"threads {before[0]} before, {after[0]} after 10 reloads"
    assert after[1] <= limit[1], f"fds {before[1]} before, {after[1]} after 10 reloads"


def held_until(release, body="ack pending"):
    """A webhook that answers once the test sets `release` (the timeout only guards a hang)."""
    def handler(req):
        release.wait(timeout=60)
        return Reply.with_json({"body": body})
    return handler


def test_reload_hands_over_pending_stanza(prosody_factory, webhook, connect):
    """A stanza in flight during a reload is answered once by the webhook's reply."""
    release = threading.Event()
    webhook.handler = held_until(release)
    prosody = prosody_factory({BOT: {"component_post_url": webhook.url()}})
    alice = connect(prosody)
    since = alice.mark()
    mid = alice.send_message(BOT_JID, "pending", id_="pending-1")
    webhook.wait_for_requests(1)
    prosody.reload_module("component_http", BOT)
    release.set()  # the webhook answers only now, after the reload
    reply = alice.wait_for(lambda s: s.name == "message", since=since, timeout=30)
    assert reply.body == "ack pending", reply.xml
    webhook.handler = ack_handler(0.0)
    alice.expect_quiet(since, ignore=lambda s: s is reply)
    assert len(webhook.requests) == 1, "the pending stanza was posted again"


def test_reload_applies_new_configuration(prosody_factory, make_webhook, connect):
    old, new = make_webhook(), make_webhook()
    old.handler, new.handler = ack_handler(0.0), (lambda req: Reply.with_json({"body": "new hook"}))
    prosody = prosody_factory({BOT: {"component_post_url": old.url()}})
    alice = connect(prosody)
    since = alice.mark()
    alice.send_message(BOT_JID, "one")
    assert alice.wait_for(lambda s: s.name == "message", since=since).body == "ack one"
    prosody.components[BOT]["component_post_url"] = new.url()
    prosody.write_config()
    r = prosody.shell("config:reload()")
    assert r.returncode == 0, r.stdout + r.stderr
    prosody.reload_module("component_http", BOT)
    since = alice.mark()
    alice.send_message(BOT_JID, "two")
    assert alice.wait_for(lambda s: s.name == "message", since=since).body == "new hook"
    assert len(old.requests) == 1 and len(new.requests) == 1


def test_unload_answers_pending_stanza_with_error(prosody_factory, webhook, connect):
    """The error comes while the webhook still holds the request (it answers only when the
    test releases it, after the error arrived): unloading does not wait for the webhook."""
    release = threading.Event()
    webhook.handler = held_until(release)
    prosody = prosody_factory({BOT: {"component_post_url": webhook.url()}})
    alice = connect(prosody)
    since = alice.mark()
    mid = alice.send_message(BOT_JID, "pending", id_="pending-2")
    webhook.wait_for_requests(1)
    r = prosody.shell("module", "unload", "component_http", BOT)
    assert r.returncode == 0 and "unloaded" in (r.stdout + r.stderr).lower(), r.stdout + r.stderr
    err = alice.wait_for(lambda s: s.id == mid and s.type == "error", since=since, timeout=30)
    assert err.error == STOPPED_ERROR
    release.set()
    # Late duplicates: load the module again; its answer to a new message is the sentinel,
    # after the old instance's webhook answered.
    webhook.handler = ack_handler(0.0)
    r = prosody.shell("module", "load", "component_http", BOT)
    assert r.returncode == 0, r.stdout + r.stderr
    alice.send_message(BOT_JID, "sentinel", id_="sentinel")
    sentinel = alice.wait_for(lambda s: s.name == "message" and s.body == "ack sentinel", since=since,
                              timeout=30)
    late = [s for s in alice.received[since:] if s.name == "message" and s is not err and s is not sentinel]
    assert late == [], [s.xml for s in late]
    assert prosody.alive()
