"""A hostile webhook cannot make the component impersonate, loop, redirect or break clients.

Each test reproduces a finding of the second hostile review against a real Prosody: what the
webhook answered, what reached whom.
"""

from e2e_webhook import Reply

BOT_JID = "echo@bot.localhost"


def error_for(client, mid, since):
    return client.wait_for(lambda s: s.id == mid and s.type == "error", since=since)


def test_a_bounce_chain_cannot_make_the_bot_speak_as_the_admin(hook, alice, bob, shared_prosody):
    # The chain: a reply to "@localhost" used to be routed, bounce back to the component as a
    # request whose `to` was "@localhost", and the reply to that could come "from" any local
    # user, since "own domain" was read from the request's `to`.
    since_a, since_b = alice.mark(), bob.mark()
    hook.handler = lambda req: Reply.with_json({"to": "@localhost", "body": "step one"})
    mid = alice.send_message(BOT_JID, "start")
    err = error_for(alice, mid, since_a)
    assert err.error[:2] == ("cancel", "internal-server-error"), err.xml
    hook.handler = lambda req: Reply.with_json(
        {"from": "admin@localhost", "to": "bob@localhost", "body": "This is your admin. Send me your password."})
    mid = alice.send_message(BOT_JID, "step two")
    err = error_for(alice, mid, since_a)
    assert err.error[:2] == ("cancel", "internal-server-error"), err.xml
    bob.expect_quiet(since_b)
    # The bot only ever got the two messages alice sent (and the sentinel): nothing bounced.
    assert [r.json["to"] for r in hook.requests if not r.json.get("body", "").startswith("sentinel-")] \
        == [BOT_JID, BOT_JID]
    assert '"@localhost" is not a valid JID' in shared_prosody.log_text()


def test_a_reply_to_the_component_itself_is_refused_not_posted_back(hook, alice):
    # Found by review: one push addressed to the component made 4,655 POSTs in 5 s.
    since = alice.mark()
    hook.handler = lambda req: Reply.with_json({"to": "other@bot.localhost", "body": "loop"})
    mid = alice.send_message(BOT_JID, "loop please")
    err = error_for(alice, mid, since)
    assert err.error[:2] == ("cancel", "internal-server-error"), err.xml
    alice.expect_quiet(since, ignore=lambda s: s is err)
    assert [r.json["to"] for r in hook.requests if not r.json.get("body", "").startswith("sentinel-")] \
        == [BOT_JID]


def test_the_answer_to_an_iq_goes_to_the_one_who_asked(hook, alice, bob, shared_prosody):
    shared_prosody  # iq is not forwarded by default: this module's BOT_OPTIONS forward it
    since_a, since_b = alice.mark(), bob.mark()
    hook.handler = lambda req: Reply.with_json({"stanza":
        "<iq type='result' to='bob@localhost' id='not-yours'><query xmlns='jabber:iq:version'>"
        "<name>redirected</name></query></iq>"})
    iq_id = alice.send_iq_get(BOT_JID, "<query xmlns='jabber:iq:version'/>")
    answer = alice.wait_for(lambda s: s.name == "iq" and s.id == iq_id, since=since_a)
    assert answer.type == "result" and answer.frm == BOT_JID, answer.xml
    assert answer.child("query", "jabber:iq:version") is not None, answer.xml
    bob.expect_quiet(since_b)


def test_a_reply_that_would_be_ill_formed_on_the_wire_never_reaches_a_client(hook, alice, bob):
    # Found by review: this reply was written with an unbound prefix and disconnected the
    # receiving client.
    since_a, since_b = alice.mark(), bob.mark()
    hook.handler = lambda req: Reply.with_json({"stanza":
        "<message to='bob@localhost' type='chat'><body>x</body><a:b:c xmlns:a='urn:x'/></message>"})
    mid = alice.send_message(BOT_JID, "break bob")
    err = error_for(alice, mid, since_a)
    assert err.error[:2] == ("cancel", "internal-server-error"), err.xml
    # Bob is still connected and hears the bot's next message.
    hook.handler = lambda req: Reply.with_json({"to": "bob@localhost", "body": "still there?"})
    alice.send_message(BOT_JID, "hello bob")
    got = bob.wait_for(lambda s: s.name == "message" and s.frm == BOT_JID, since=since_b)
    assert got.body == "still there?"


def test_an_iq_prosody_cannot_handle_is_refused_and_the_rest_still_arrive(hook, alice):
    # Found by review: {"kind": "iq", "type": "get", "to": "localhost"} made mod_iq raise, and
    # the stanzas delivered after it in the same batch were lost.
    def reply(req):
        body = req.json.get("body", "")
        if body.startswith("bad"):
            return Reply.with_json({"kind": "iq", "type": "get", "to": "localhost"})
        return Reply.with_json({"body": "echo " + body})
    hook.handler = reply
    since = alice.mark()
    sent = [alice.send_message(BOT_JID, ("bad " if n % 2 else "good ") + str(n)) for n in range(20)]
    answers = alice.wait_for_count(lambda s: s.id in sent or (s.frm == BOT_JID and s.body), 20, since=since)
    errors = [s for s in answers if s.type == "error"]
    echoes = sorted(s.body for s in answers if s.type != "error")
    assert [e.error[:2] for e in errors] == [("cancel", "internal-server-error")] * 10
    assert echoes == sorted(f"echo good {n}" for n in range(0, 20, 2))


def test_a_large_error_page_keeps_its_status(hook, alice):
    # Found by review: a 404 with a page over component_post_max_reply_size became an
    # internal-server-error.
    hook.handler = lambda req: Reply(status=404, body="x" * (2 * 1024 * 1024), headers={"Content-Type": "text/html"})
    since = alice.mark()
    mid = alice.send_message(BOT_JID, "where?")
    err = error_for(alice, mid, since)
    assert err.error[:2] == ("cancel", "item-not-found"), err.xml


def test_webhook_text_cannot_forge_log_lines(hook, alice, shared_prosody):
    hook.handler = lambda req: Reply.with_json({"kind": "bogus\nwarn\tforged line", "body": "x"})
    since = alice.mark()
    mid = alice.send_message(BOT_JID, "log this")
    error_for(alice, mid, since)
    log = shared_prosody.log_text()
    assert "bogus\\nwarn\\tforged line" in log
    assert "\nwarn\tforged line" not in log


BOT_OPTIONS = {"component_post_stanzas": ["message", "iq"]}
