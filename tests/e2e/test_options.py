"""Configuration options: names, defaults, validation, timeouts, limits."""

import re
import threading
import time

import pytest

from conftest import BOT, BOT2
from e2e_webhook import Reply

BOT_JID = "echo@bot.localhost"
VERSION_QUERY = "<query xmlns='jabber:iq:version'/>"


def error_lines(prosody):
    return [l for l in prosody.log_text().splitlines() if "\terror\t" in l]


def start_one(prosody_factory, connect, webhook, **options):
    prosody = prosody_factory({BOT: {"component_post_url": webhook.url(), **options}})
    return prosody, connect(prosody)


def test_post_stanza_types_is_accepted(prosody_factory, webhook, connect):
    _, alice = start_one(prosody_factory, connect, webhook, post_stanza_types=["message", "iq"])
    webhook.respond_json({"stanza": "<iq><query xmlns='jabber:iq:version'><name>x</name></query></iq>"})
    iid = alice.send_iq_get(BOT_JID, VERSION_QUERY)
    (req,) = webhook.wait_for_requests(1)
    assert req.json["kind"] == "iq"
    res = alice.wait_for(lambda s: s.name == "iq" and s.id == iid)
    assert res.type == "result"
    assert res.child("query", "jabber:iq:version") is not None


def test_default_forwards_only_messages(prosody_factory, webhook, connect):
    _, alice = start_one(prosody_factory, connect, webhook)
    since = alice.mark()
    iid = alice.send_iq_get(BOT_JID, VERSION_QUERY)
    alice.send_presence(BOT_JID, "probe")
    alice.send_presence(BOT_JID)
    alice.send_message(BOT_JID, "a message")
    (req,) = webhook.wait_for_requests(1)
    assert req.json["kind"] == "message"
    # A sentinel through the same line: everything sent before it has been handled by now.
    alice.expect_quiet(since, ignore=lambda s: s.name in ("iq", "presence"))
    assert [r.json["kind"] for r in webhook.requests] == ["message"]
    # the iq is still answered, once (by Prosody itself: the module does not take it)
    alice.wait_for(lambda s: s.name == "iq" and s.id == iid, since=since)
    assert len([s for s in alice.received[since:] if s.name == "iq" and s.id == iid]) == 1


def test_component_post_stanzas_wins_over_post_stanza_types(prosody_factory, webhook, connect):
    _, alice = start_one(prosody_factory, connect, webhook,
                         component_post_stanzas=["message"], post_stanza_types=["message", "iq"])
    since = alice.mark()
    alice.send_iq_get(BOT_JID, VERSION_QUERY)
    alice.send_message(BOT_JID, "m")
    webhook.wait_for_requests(1)
    alice.expect_quiet(since, ignore=lambda s: s.name == "iq")
    assert [r.json["kind"] for r in webhook.requests] == ["message"]


def test_missing_url_fails_to_load_but_prosody_runs(prosody_factory, make_webhook, connect):
    hook2 = make_webhook()
    prosody = prosody_factory({BOT: {}, BOT2: {"component_post_url": hook2.url()}})
    assert prosody.alive()
    errors = [l for l in error_lines(prosody) if "component_post_url" in l]
    assert errors, "no error naming component_post_url in the log:\n" + "\n".join(error_lines(prosody))
    # Prosody still serves clients and the other component still works.
    alice = connect(prosody)
    hook2.respond_json({"body": "bot2 here"})
    since = alice.mark()
    alice.send_message("echo@bot2.localhost", "hi")
    reply = alice.wait_for(lambda s: s.name == "message" and s.frm == "echo@bot2.localhost", since=since)
    assert reply.body == "bot2 here"
    mid = alice.send_message(BOT_JID, "into the void")
    # Nobody serves bot.localhost: Prosody bounces it.
    alice.wait_for(lambda s: s.id == mid and s.type == "error", since=since)
    # And bot2's next message is its second request: the first did not go there either.
    alice.send_message("echo@bot2.localhost", "hi again")
    hook2.wait_for_requests(2)
    assert [r.json["body"] for r in hook2.requests] == ["hi", "hi again"]
    assert prosody.alive()


@pytest.mark.parametrize("option,value", [
    ("component_post_url", "ftp://127.0.0.1/hook"),
    ("component_post_url", "not a url"),
    ("component_post_stanzas", ["message", "bogus"]),
    ("component_post_workers", 0),
    ("component_post_workers", 10001),
    ("component_post_timeout", -1),
], ids=["url-ftp", "url-garbage", "stanzas-bogus", "workers-0", "workers-10001", "timeout-negative"])
def test_invalid_option_value_fails_naming_it(prosody_factory, webhook, connect, option, value):
    opts = {"component_post_url": webhook.url(), option: value}
    prosody = prosody_factory({BOT: opts})
    assert prosody.alive()
    named = [l for l in error_lines(prosody) if option in l]
    assert named, f"no error naming {option}:\n" + "\n".join(error_lines(prosody))
    alice = connect(prosody)
    mid = alice.send_message(BOT_JID, "anyone?")
    alice.wait_for(lambda s: s.id == mid and s.type == "error", what="Prosody's bounce")
    assert webhook.requests == []


def test_ready_log_line_hides_credentials(prosody_factory, webhook, connect):
    prosody = prosody_factory({BOT: {"component_post_url": webhook.url("/hook", userinfo="user:pa55"),
                                     "component_post_stanzas": ["message", "iq"]}})
    log = prosody.log_text()
    assert re.search(r"Posting message, iq stanzas to http://127\.0\.0\.1:%d/hook" % webhook.port, log), \
        "\n".join(l for l in log.splitlines() if "component_http" in l)
    assert "pa55" not in log


def test_timeout_answers_with_wait_error(prosody_factory, webhook, connect):
    _, alice = start_one(prosody_factory, connect, webhook, component_post_timeout=1)
    answered_late = threading.Event()

    def late(req):
        time.sleep(2.5)  # the webhook being slow, not the test waiting
        answered_late.set()
        return Reply.with_json({"body": "too late"})

    webhook.handler = late
    since = alice.mark()
    mid = alice.send_message(BOT_JID, "slow")
    err = alice.wait_for(lambda s: s.id == mid and s.type == "error", since=since, timeout=6)
    assert err.error == ("wait", "remote-server-timeout", "The webhook did not answer in time")
    # The late answer is not delivered afterwards (test_deadline checks the bound itself).
    assert answered_late.wait(timeout=10)
    alice.expect_quiet(since, ignore=lambda s: s is err)


def test_full_queue_answers_resource_constraint(prosody_factory, webhook, connect):
    _, alice = start_one(prosody_factory, connect, webhook,
                         component_post_workers=1, component_post_queue_size=1)
    webhook.handler = lambda req: Reply.with_json({"body": "ack " + req.json["body"]}, delay=1.0)
    since = alice.mark()
    ids = [alice.send_message(BOT_JID, f"q{i}", id_=f"q{i}") for i in range(4)]
    alice.wait_for_count(lambda s: s.name == "message", 4, since=since, timeout=8)
    alice.expect_quiet(since, ignore=lambda s: s.name == "message" and (s.id in ids or s.body.startswith("ack q")))
    outcomes = {}
    for s in alice.received[since:]:
        if s.name == "message" and not (s.body or "").startswith("ack sentinel-"):
            key = s.id if s.type == "error" else (s.body or "").replace("ack ", "")
            outcomes.setdefault(key, []).append(s)
    assert sorted(outcomes) == sorted(ids), outcomes
    assert all(len(v) == 1 for v in outcomes.values()), outcomes
    rejected = [k for k, v in outcomes.items() if v[0].type == "error"]
    assert 2 <= len(rejected) <= 3, outcomes
    for k in rejected:
        assert outcomes[k][0].error == ("wait", "resource-constraint",
                                        "Too many stanzas are waiting for the webhook")
    assert outcomes["q0"][0].body == "ack q0"


def test_oversized_reply_is_refused(prosody_factory, webhook, connect):
    _, alice = start_one(prosody_factory, connect, webhook, component_post_max_reply_size=200)
    webhook.respond_json({"body": "x" * 1000})
    since = alice.mark()
    mid = alice.send_message(BOT_JID, "big")
    err = alice.wait_for(lambda s: s.id == mid and s.type == "error", since=since)
    assert err.error[:2] == ("cancel", "internal-server-error")
    alice.expect_quiet(since, ignore=lambda s: s is err)
