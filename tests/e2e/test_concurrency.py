"""Slow bots and restarting webhooks (README, Delivery guarantees: concurrency follows demand,
outages nobody sees).

- A webhook that answers nothing until N requests are open at once proves that N are in flight
  together with the default configuration; per-sender order still holds.
- After the burst, Prosody's threads and descriptors come back to what they were.
- A webhook killed for a while under load and started again: every message gets its reply, in
  order, and each was posted under one delivery id (a retry only when its answer was cut off).
- A webhook that stays down: every stanza ends in exactly one error, and the webhook saw a
  handful of attempts, not one per stanza per retry.
"""

import threading
import time

from conftest import BOT
from e2e_traffic import CONNECTION_FAILURE, REPLY, Traffic, assert_healthy, start, summary
from e2e_util import proc_counts, wait_until
from e2e_webhook import Reply

IN_FLIGHT = 120  # lines that must be in flight at once: 2 senders x 60 bot JIDs


def test_requests_in_flight_grow_with_demand_and_shrink_back(prosody_factory, connect, make_webhook):
    hook = make_webhook()
    open_now, peak = [0], [0]
    cond = threading.Condition()

    def hold_until_all_are_open(req):
        with cond:
            open_now[0] += 1
            peak[0] = max(peak[0], open_now[0])
            cond.notify_all()
            # The first IN_FLIGHT wait for each other; the guard only keeps a broken module from
            # hanging the suite (it then fails on `peak` below).
            cond.wait_for(lambda: peak[0] >= IN_FLIGHT, timeout=60)
            open_now[0] -= 1
        return Reply.with_json({"body": "ack " + req.json["body"]})

    hook.handler = hold_until_all_are_open
    prosody = prosody_factory({BOT: {"component_post_url": hook.url(), "component_post_idle_timeout": 1}},
                              users={"alice": "pw-alice", "bob": "pw-bob"})
    clients = [connect(prosody, "alice"), connect(prosody, "bob")]
    idle = proc_counts(prosody.pid)
    bots = [f"echo{k}@{BOT}" for k in range(IN_FLIGHT // len(clients))]
    marks = {c: c.mark() for c in clients}
    for n in range(3):
        for c in clients:
            for jid in bots:
                c.send_message(jid, f"{c.jid.split('@')[0]}-{jid}-{n}", id_=f"{jid}-{n}")
    for c in clients:
        c.wait_for_count(lambda s: s.name == "message", 3 * len(bots), since=marks[c], timeout=60,
                         what="a reply to every message")
    assert peak[0] >= IN_FLIGHT, f"only {peak[0]} requests were in flight at once"
    for c in clients:
        got = [s for s in c.received[marks[c]:] if s.name == "message"]
        assert all(s.type == "chat" and s.body.startswith("ack ") for s in got), [s.xml for s in got][:5]
        for jid in bots:
            order = [s.body for s in got if s.frm == jid]
            assert order == [f"ack {c.jid.split('@')[0]}-{jid}-{n}" for n in range(3)], order
    # Idle again: the workers beyond the warm set exit, and their connections are closed.
    wait_until(lambda: all(now <= then for now, then in zip(proc_counts(prosody.pid), idle)), timeout=60,
               what=f"Prosody's (threads, fds) back to {idle} after the burst")
    assert_healthy(prosody)


def test_a_restarting_webhook_goes_unnoticed(prosody_factory, connect, echo_process):
    """Three senders, 100 messages each; the webhook process is killed twice and started again
    3 s later each time. Every message gets its reply, none an error, in order."""
    hook = echo_process(delay=0.01)
    prosody, clients = start(prosody_factory, connect, hook.url())
    traffic = Traffic(clients, n=100)
    traffic.start(pace=0.02)
    for _ in range(2):
        wait_until(lambda: len(hook.requests()) >= 40 * (hook.kills + 1), timeout=60, what="traffic to flow")
        hook.kill()
        time.sleep(3)  # the outage being tested, not a wait for an event
        hook.start()
    traffic.join()
    counts = traffic.check(lambda mid: {REPLY})
    print(summary(counts))
    by_message = {}
    for r in hook.requests():
        by_message.setdefault((r["from"], r["body"]), []).append(r)
    assert len(by_message) == traffic.total
    for key, records in by_message.items():
        assert len({r["delivery_id"] for r in records}) == 1, (key, records)
        assert [r["retry"] for r in records] == sorted({r["retry"] for r in records}), (key, records)
    assert_healthy(prosody)


def test_a_webhook_that_stays_down_gets_one_error_per_stanza_and_few_attempts(prosody_factory, connect, raw_hook):
    """Every request is reset as soon as its headers arrive, for 10 messages from each of three
    senders; with a 2 s retry window each ends in "Connection failure", exactly once, and the
    webhook saw far fewer attempts than one per stanza."""
    down = [True]
    hook = raw_hook(early=lambda ex: ex.reset() if down[0] else None,
                    handler=lambda ex: ex.answer_json({"body": "ack " + str(ex.body_field)}))
    prosody, clients = start(prosody_factory, connect, hook.url(), component_post_retry_window=2)
    traffic = Traffic(clients, n=10)
    traffic.send()
    traffic.wait_all()
    attempts = len(hook.early_requests)
    down[0] = False  # back up, so the sentinels of the quiet check are answered
    counts = traffic.check(lambda mid: {CONNECTION_FAILURE})
    print(f"{summary(counts)}; {attempts} attempts")
    assert attempts < traffic.total, f"{attempts} attempts for {traffic.total} stanzas while down"
    assert_healthy(prosody)
