"""Several components using the module at once."""

import threading

from conftest import BOT, BOT2
from e2e_webhook import Reply


def test_two_components_each_use_their_own_webhook(prosody_factory, make_webhook, connect):
    hook1, hook2 = make_webhook(), make_webhook()
    hook1.handler = lambda req: Reply.with_json({"body": "one:" + req.json["body"]}, delay=0.02)
    hook2.handler = lambda req: Reply.with_json({"body": "two:" + req.json["body"]}, delay=0.02)
    prosody = prosody_factory({
        BOT: {"component_post_url": hook1.url("/one")},
        BOT2: {"component_post_url": hook2.url("/two"), "component_post_stanzas": ["message", "iq"]},
    })
    alice = connect(prosody)
    bob = connect(prosody, "bob")
    n = 15

    def talk(client, tag):
        for i in range(n):
            client.send_message("echo@bot.localhost", f"{tag}{i}")
            client.send_message("echo@bot2.localhost", f"{tag}{i}")

    threads = [threading.Thread(target=talk, args=(c, t)) for c, t in ((alice, "a"), (bob, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    for client, tag in ((alice, "a"), (bob, "b")):
        got = client.wait_for_count(lambda s: s.name == "message", 2 * n, timeout=15)
        from1 = sorted(s.body for s in got if s.frm == "echo@bot.localhost")
        from2 = sorted(s.body for s in got if s.frm == "echo@bot2.localhost")
        assert from1 == sorted(f"one:{tag}{i}" for i in range(n))
        assert from2 == sorted(f"two:{tag}{i}" for i in range(n))
        assert all(s.to == client.full_jid for s in got)

    assert {r.path for r in hook1.requests} == {"/one"}
    assert {r.path for r in hook2.requests} == {"/two"}
    assert {r.json["to"] for r in hook1.requests} == {"echo@bot.localhost"}
    assert {r.json["to"] for r in hook2.requests} == {"echo@bot2.localhost"}
    assert len(hook1.requests) == len(hook2.requests) == 2 * n

    # Options are per component: only bot2 forwards iq.
    iid = alice.send_iq_get("echo@bot2.localhost", "<query xmlns='jabber:iq:version'/>")
    hook2.wait_for_requests(2 * n + 1)
    assert hook2.requests[-1].json["kind"] == "iq"
    alice.wait_for(lambda s: s.name == "iq" and s.id == iid)
    alice.send_iq_get("echo@bot.localhost", "<query xmlns='jabber:iq:version'/>")
    alice.send_message("echo@bot.localhost", "last")
    hook1.wait_for_requests(2 * n + 1)
    assert [r.json["kind"] for r in hook1.requests[2 * n:]] == ["message"]
