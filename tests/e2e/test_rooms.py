"""Bots in group chats (README, "Bots in group chats"; issue 17), with Prosody's own mod_muc on
conference.localhost and real clients in the rooms."""

import json
import re

import pytest

from e2e_webhook import Reply

from conftest import BOT
from e2e_util import free_port
from e2e_xmpp import NS_MUC
from test_rest import TOKEN, post

MUC = "conference.localhost"
CHAT_STATES = "http://jabber.org/protocol/chatstates"
ROOM = f"dev@{MUC}"


def error_lines(prosody):
    return [l for l in prosody.log_text().splitlines() if "\terror\t" in l]


@pytest.mark.parametrize("module,prefix", [("component_http", "component_post_"), ("rest", "rest_")])
@pytest.mark.parametrize("option,value,says", [
    ("rooms", ["conference.localhost"], "has no room name"),
    ("rooms", [f"dev@{BOT}/x"], "is on this component"),
    ("rooms", 7, "must be a list of rooms"),
    ("nick", " ", "is not a valid nick"),
    ("groupchat", "some", 'it must be "all" or "mentions"'),
], ids=["no-room-name", "on-the-component", "not-a-list", "blank-nick", "bad-mode"])
def test_invalid_room_options_stop_the_component_naming_them(prosody_factory, webhook, module, prefix,
                                                             option, value, says):
    url_option = "component_post_url" if module == "component_http" else "rest_callback_url"
    prosody = prosody_factory({BOT: {url_option: webhook.url(), prefix + option: value}},
                              component_module=module, muc=MUC)
    assert prosody.alive()
    named = [l for l in error_lines(prosody) if prefix + option in l and says in l]
    assert named, f"no error naming {prefix}{option}:\n" + "\n".join(error_lines(prosody))


NICK = "Helper"
BOT_OCCUPANT = f"{ROOM}/{NICK}"


def room_bot(prosody_factory, url, **options):
    """Prosody with mod_muc and the bot configured into ROOM as NICK."""
    opts = {"component_post_url": url, "component_post_rooms": [BOT_OCCUPANT], **options}
    return prosody_factory({BOT: opts}, muc=MUC)


def room_messages(client, since, room=ROOM):
    """The groupchat messages with a body from `room` received after `since`, as (nick, body)."""
    return [(s.frm.split("/", 1)[1], s.body) for s in client.received[since:]
            if s.name == "message" and s.type == "groupchat" and s.body is not None
            and s.frm.startswith(room + "/")]


def test_joined_from_config_and_seen_by_occupants(prosody_factory, webhook, connect):
    prosody = room_bot(prosody_factory, webhook.url())
    alice = connect(prosody)
    occupants = alice.join_room(ROOM, "alice")
    assert BOT_OCCUPANT in [p.frm for p in occupants if p.type is None], [p.xml for p in occupants]
    assert "joined dev@conference.localhost as \"Helper\"" in prosody.log_text()


def test_room_messages_are_posted_with_the_room_fields(prosody_factory, webhook, connect):
    prosody = room_bot(prosody_factory, webhook.url())
    alice, bob = connect(prosody, "alice"), connect(prosody, "bob")
    alice.join_room(ROOM, "alice")
    bob.join_room(ROOM, "bob")
    plain = alice.say(ROOM, "hello all")
    named = alice.say(ROOM, "helper: what time is it?")
    first, second = webhook.wait_for_requests(2)
    for request, id_, body, mentioned in [(first, plain, "hello all", False),
                                          (second, named, "helper: what time is it?", True)]:
        fields = {k: request.json.get(k) for k in ("kind", "type", "id", "room", "nick", "mentioned", "body", "from")}
        assert fields == {"kind": "message", "type": "groupchat", "id": id_, "room": ROOM, "nick": "alice",
                          "mentioned": mentioned, "body": body, "from": f"{ROOM}/alice"}, request.json


def in_room(prosody, connect, *users):
    """Clients of `users`, each joined to ROOM under its own name."""
    clients = []
    for user in users:
        client = connect(prosody, user)
        client.join_room(ROOM, user)
        clients.append(client)
    return clients


def test_a_reply_goes_to_the_room_and_the_bots_own_message_is_never_posted(prosody_factory, webhook, connect):
    webhook.handler = lambda req: Reply.with_json({"body": f"you said: {req.json['body']}"})
    prosody = room_bot(prosody_factory, webhook.url())
    alice, bob = in_room(prosody, connect, "alice", "bob")
    since = bob.mark()
    alice.say(ROOM, "one")
    reply = bob.wait_said(ROOM, NICK, "you said: one", since=since)
    assert reply.to == bob.full_jid and reply.error is None
    # The room reflected the bot's message to the bot as well; a second message said after it
    # is POSTed next, and nothing of the bot's own came in between.
    alice.say(ROOM, "two")
    bob.wait_said(ROOM, NICK, "you said: two", since=since)
    assert [r.json["body"] for r in webhook.requests] == ["one", "two"]
    assert room_messages(bob, since) == [("alice", "one"), (NICK, "you said: one"),
                                         ("alice", "two"), (NICK, "you said: two")]


def test_a_reply_naming_its_own_addressing_is_honoured(prosody_factory, webhook, connect):
    webhook.handler = lambda req: Reply.with_json({"to": f"{ROOM}/{req.json['nick']}", "type": "chat",
                                                   "body": "just between us"})
    prosody = room_bot(prosody_factory, webhook.url())
    alice, bob = in_room(prosody, connect, "alice", "bob")
    since_alice, since_bob = alice.mark(), bob.mark()
    alice.say(ROOM, "psst")
    private = alice.wait_for(lambda s: s.name == "message" and s.body == "just between us", since=since_alice)
    assert (private.type, private.frm) == ("chat", BOT_OCCUPANT)
    # bob saw alice's message and nothing of the bot's answer: a sentinel of his proves it.
    webhook.handler = lambda req: Reply.with_json({"body": "sentinel answered"})
    bob.say(ROOM, "sentinel")
    bob.wait_said(ROOM, NICK, "sentinel answered", since=since_bob)
    assert room_messages(bob, since_bob) == [("alice", "psst"), ("bob", "sentinel"), (NICK, "sentinel answered")]
    assert not [s for s in bob.received[since_bob:] if s.name == "message" and s.type != "groupchat"]


def test_a_private_message_from_an_occupant_is_posted_and_answered_privately(prosody_factory, webhook, connect):
    webhook.handler = lambda req: Reply.with_json({"body": "privately yours"})
    prosody = room_bot(prosody_factory, webhook.url())
    (alice,) = in_room(prosody, connect, "alice")
    since = alice.mark()
    mid = alice.send_message(BOT_OCCUPANT, "hi, bot")
    answer = alice.wait_for(lambda s: s.name == "message" and s.body == "privately yours", since=since)
    assert (answer.type, answer.frm) == ("chat", BOT_OCCUPANT)
    (request,) = webhook.wait_for_requests(1)
    fields = {k: request.json.get(k) for k in ("type", "id", "room", "nick", "from")}
    assert fields == {"type": "chat", "id": mid, "room": ROOM, "nick": "alice", "from": f"{ROOM}/alice"}
    assert "mentioned" not in request.json


def test_mentions_mode_posts_only_what_names_the_bot(prosody_factory, webhook, connect):
    prosody = room_bot(prosody_factory, webhook.url(), component_post_groupchat="mentions")
    (alice,) = in_room(prosody, connect, "alice")
    alice.say(ROOM, "hello all")
    alice.say(ROOM, "Helperless talk")
    named = alice.say(ROOM, "so, Helper, what now?")
    # One sender's messages are posted in order: had the first two been posted, they would be first.
    (request,) = webhook.wait_for_requests(1)
    assert (request.json["id"], request.json["mentioned"]) == (named, True)
    alice.say(ROOM, "helper?")
    webhook.wait_for_requests(2)
    assert [r.json["body"] for r in webhook.requests] == ["so, Helper, what now?", "helper?"]


@pytest.mark.parametrize("answer", [Reply(status=500), Reply.with_json({"to": "@nowhere", "body": "x"})],
                         ids=["http-500", "bad-reply"])
def test_errors_never_go_into_the_room_or_to_the_occupant(prosody_factory, webhook, connect, answer):
    prosody = room_bot(prosody_factory, webhook.url())
    alice, bob = in_room(prosody, connect, "alice", "bob")
    since_alice, since_bob = alice.mark(), bob.mark()
    webhook.handler = lambda req: (Reply.with_json({"body": "fine again"}) if req.json["body"] == "sentinel"
                                   else answer)
    alice.say(ROOM, "break it")
    alice.send_message(BOT_OCCUPANT, "break it privately")
    webhook.wait_for_requests(2)
    bob.say(ROOM, "sentinel")
    bob.wait_said(ROOM, NICK, "fine again", since=since_bob)
    alice.wait_said(ROOM, NICK, "fine again", since=since_alice)
    for client in (alice, bob):
        errors = [s for s in client.received if s.type == "error"]
        assert not errors, [s.xml for s in errors]
    assert room_messages(bob, since_bob) == [("alice", "break it"), ("bob", "sentinel"), (NICK, "fine again")]
    # Still in the room (an error sent to the room would have had the bot kicked: status 333).
    assert BOT_OCCUPANT in [p.frm for p in connect(prosody, "alice", resource="late").join_room(ROOM, "late")]
    assert "errors never go to a room or its occupants" in prosody.log_text()


def test_the_php_echo_bot_answers_each_message_once(prosody_factory, php_echo, connect):
    prosody = room_bot(prosody_factory, php_echo.url())
    alice, bob = in_room(prosody, connect, "alice", "bob")
    since = bob.mark()
    for word in ("hello", "again"):
        alice.say(ROOM, word)
        bob.wait_said(ROOM, NICK, f"Did you say {word}?", since=since)
    # The sentinel: said after the answers, answered after anything the bot would still say.
    bob.say(ROOM, "sentinel")
    bob.wait_said(ROOM, NICK, "Did you say sentinel?", since=since)
    assert room_messages(bob, since) == [
        ("alice", "hello"), (NICK, "Did you say hello?"),
        ("alice", "again"), (NICK, "Did you say again?"),
        ("bob", "sentinel"), (NICK, "Did you say sentinel?"),
    ]


def test_composing_goes_to_the_room_only_for_a_mention(prosody_factory, webhook, connect):
    # A slow answer, well past the chat state delay.
    webhook.handler = lambda req: Reply.with_json({"body": f"re: {req.json['body']}"}, delay=1.0)
    prosody = room_bot(prosody_factory, webhook.url(), component_post_chat_state_delay=0.1)
    alice, bob = in_room(prosody, connect, "alice", "bob")
    since = bob.mark()
    alice.say(ROOM, "just chatting")
    bob.wait_said(ROOM, NICK, "re: just chatting", since=since)
    alice.say(ROOM, "Helper, think")
    bob.wait_said(ROOM, NICK, "re: Helper, think", since=since)
    states = [(s.body, [c.tag.split("}")[1] for c in s.el if c.tag.startswith("{" + CHAT_STATES + "}")])
              for s in bob.received[since:] if s.name == "message" and s.frm == BOT_OCCUPANT]
    assert states == [("re: just chatting", []), (None, ["composing"]), ("re: Helper, think", ["active"])], states


# -- pushes to rooms, and rooms joined by the bot's own presence -----------------------------
OPS = f"ops@{MUC}"


def pushing_bot(prosody_factory, url, http_port=None, **options):
    """Prosody with mod_muc, HTTP, and the bot's push endpoint: (prosody, http_port)."""
    http_port = http_port or free_port()
    prosody = prosody_factory({BOT: {"component_post_url": url, "component_post_push_credentials": TOKEN, **options}},
                              muc=MUC, global_options={"http_ports": [http_port], "http_interfaces": ["127.0.0.1"]})
    return prosody, http_port


def push(port, **fields):
    """POSTs `fields` as JSON to the bot's push endpoint: (status, text)."""
    status, _, text = post(port, json.dumps(fields), content_type="application/json", host=BOT, path="/component_http")
    return status, text


def test_a_push_to_a_room_joins_it_first_then_says_it(prosody_factory, webhook, connect):
    prosody, port = pushing_bot(prosody_factory, webhook.url())
    alice = connect(prosody)
    alice.join_room(OPS, "alice")
    since = alice.mark()
    assert push(port, to=OPS, type="groupchat", body="deploy finished")[0] == 202
    said = alice.wait_said(OPS, "bot", "deploy finished", since=since)
    # The bot came in (under the default nick, the host's first label) before it spoke.
    joined = alice.wait_for(lambda s: s.name == "presence" and s.frm == f"{OPS}/bot", since=since)
    assert alice.received.index(joined) < alice.received.index(said)
    assert push(port, to=OPS, type="groupchat", body="and again")[0] == 202
    alice.wait_said(OPS, "bot", "and again", since=since)
    assert room_messages(alice, since, OPS) == [("bot", "deploy finished"), ("bot", "and again")]
    assert webhook.requests == [], "nothing the bot said came back to the webhook"


def test_a_push_to_a_room_that_refuses_the_bot_gets_the_reason(prosody_factory, webhook, connect):
    prosody, port = pushing_bot(prosody_factory, webhook.url())
    alice = connect(prosody)
    # A room created and not opened yet: locked, it looks like no room at all.
    alice.join_room(f"locked@{MUC}", "alice", open_new=False)
    status, text = push(port, to=f"locked@{MUC}", type="groupchat", body="hello?")
    assert status == 404, text
    # A room whose owner banned the bot: 403, and it is not asked again.
    alice.join_room(f"closed@{MUC}", "alice")
    iq = alice.send_iq(f"closed@{MUC}", "set", f"<query xmlns='{NS_MUC}#admin'>"
                                               f"<item affiliation='outcast' jid='{BOT}'/></query>")
    assert alice.wait_for(lambda s: s.name == "iq" and s.id == iq).type == "result"
    status, text = push(port, to=f"closed@{MUC}", type="groupchat", body="let me in")
    assert status == 403 and "banned" in text, (status, text)
    assert push(port, to=f"closed@{MUC}", type="groupchat", body="please")[0] == 403
    assert "not rejoining until the module reloads" in prosody.log_text()
    # Not a room at all.
    assert push(port, to=f"{OPS}/someone", type="groupchat", body="x")[0] == 400


def test_rooms_joined_by_presence_are_remembered_across_a_restart(prosody_factory, webhook, connect):
    prosody, port = pushing_bot(prosody_factory, webhook.url())
    alice = connect(prosody)
    alice.join_room(OPS, "alice")
    since = alice.mark()
    # A presence to a room on a service the bot knows nothing of says it is a join (XEP-0045).
    assert push(port, stanza=f"<presence to='{OPS}/Watcher'><x xmlns='{NS_MUC}'/></presence>")[0] == 202
    alice.wait_for(lambda s: s.name == "presence" and s.frm == f"{OPS}/Watcher" and s.type is None, since=since)
    alice.close()
    prosody.stop()
    prosody.start()
    # Back after the restart: in the room before any client, which finds it there.
    alice = connect(prosody)
    assert f"{OPS}/Watcher" in [p.frm for p in alice.join_room(OPS, "alice") if p.type is None]
    # An unavailable presence leaves, and the room is forgotten.
    since = alice.mark()
    assert push(port, kind="presence", type="unavailable", to=f"{OPS}/Watcher")[0] == 202
    alice.wait_for(lambda s: s.name == "presence" and s.frm == f"{OPS}/Watcher" and s.type == "unavailable",
                   since=since)
    alice.close()
    prosody.stop()
    prosody.start()
    alice = connect(prosody)
    assert f"{OPS}/Watcher" not in [p.frm for p in alice.join_room(OPS, "alice")]


# -- staying in the room ----------------------------------------------------------------------
def test_a_reload_keeps_the_bot_in_the_room_without_a_flicker(prosody_factory, webhook, connect):
    webhook.handler = lambda req: Reply.with_json({"body": f"you said: {req.json['body']}"})
    prosody = room_bot(prosody_factory, webhook.url())
    alice, bob = in_room(prosody, connect, "alice", "bob")
    since = bob.mark()
    prosody.reload_module()
    alice.say(ROOM, "after the reload")
    bob.wait_said(ROOM, NICK, "you said: after the reload", since=since)
    alice.say(ROOM, "sentinel")
    bob.wait_said(ROOM, NICK, "you said: sentinel", since=since)
    # No leave, no join: nothing of the bot's presence; its own messages still never posted.
    assert [s.xml for s in bob.received[since:] if s.name == "presence"] == []
    assert [r.json["body"] for r in webhook.requests] == ["after the reload", "sentinel"]


def test_a_room_that_goes_away_and_comes_back_is_rejoined(prosody_factory, webhook, connect):
    prosody, port = pushing_bot(prosody_factory, webhook.url())
    alice = connect(prosody)
    alice.join_room(OPS, "alice")
    assert push(port, stanza=f"<presence to='{OPS}/Watcher'><x xmlns='{NS_MUC}'/></presence>")[0] == 202
    alice.wait_for(lambda s: s.name == "presence" and s.frm == f"{OPS}/Watcher" and s.type is None)
    # The owner destroys the room: every occupant is sent away.
    iq = alice.send_iq(OPS, "set", f"<query xmlns='{NS_MUC}#owner'><destroy/></query>")
    assert alice.wait_for(lambda s: s.name == "iq" and s.id == iq).type == "result"
    since = alice.mark()
    alice.join_room(OPS, "alice")
    # The bot comes back by itself (after its first backoff, 5 s).
    alice.wait_for(lambda s: s.name == "presence" and s.frm == f"{OPS}/Watcher" and s.type is None,
                   since=since, timeout=60, what="the bot back in the room")
    assert "rejoining in" in prosody.log_text()


def test_mod_rest_joins_its_rooms_and_answers_in_them(prosody_factory, webhook, connect):
    # mod_rest posts presence and iqs too (its default): the occupants' presence among them.
    webhook.handler = lambda req: (Reply(body="<message><body>rest here</body></message>",
                                         headers={"Content-Type": "application/xmpp+xml"})
                                   if req.raw_body.startswith(b"<message") else Reply(status=204))
    prosody = prosody_factory({BOT: {"rest_callback_url": webhook.url(), "rest_rooms": [BOT_OCCUPANT]}},
                              component_module="rest", muc=MUC)
    alice, bob = in_room(prosody, connect, "alice", "bob")
    since = bob.mark()
    alice.say(ROOM, "hello rest")
    bob.wait_said(ROOM, NICK, "rest here", since=since)
    bob.say(ROOM, "sentinel")
    bob.wait_for(lambda s: len(room_messages(bob, since)) >= 4, since=since)
    assert room_messages(bob, since) == [("alice", "hello rest"), (NICK, "rest here"),
                                         ("bob", "sentinel"), (NICK, "rest here")]
    # The XML callback is the stanza as it came: the room and the nick are in its 'from'.
    messages = [r.raw_body.decode() for r in webhook.requests if r.raw_body.startswith(b"<message")]
    assert [f"from='{ROOM}/alice'" in messages[0], f"from='{ROOM}/bob'" in messages[1]] == [True, True], messages


def test_a_taken_nick_joins_with_a_suffix(prosody_factory, webhook, connect):
    prosody, port = pushing_bot(prosody_factory, webhook.url())
    alice = connect(prosody)
    alice.join_room(OPS, "bot")  # the bot's default nick, taken
    since = alice.mark()
    assert push(port, to=OPS, type="groupchat", body="here I am")[0] == 202
    alice.wait_said(OPS, "bot_2", "here I am", since=since)
    assert 'nick "bot" is taken in ops@conference.localhost, joining as "bot_2"' in prosody.log_text()


def test_history_is_never_posted_even_when_the_join_asks_for_it(prosody_factory, webhook, connect):
    prosody, port = pushing_bot(prosody_factory, webhook.url())
    alice = connect(prosody)
    alice.join_room(OPS, "alice")
    alice.say(OPS, "old news")
    alice.wait_said(OPS, "alice", "old news")
    since = alice.mark()
    # The bot's own presence asks for the history: the room sends it, delayed, and it is dropped.
    join = f"<presence to='{OPS}/Watcher'><x xmlns='{NS_MUC}'><history maxstanzas='5'/></x></presence>"
    assert push(port, stanza=join)[0] == 202
    alice.wait_for(lambda s: s.name == "presence" and s.frm == f"{OPS}/Watcher" and s.type is None, since=since)
    alice.say(OPS, "news")
    webhook.wait_for_requests(1)
    alice.say(OPS, "sentinel")
    webhook.wait_for_requests(2)
    assert [r.json["body"] for r in webhook.requests] == ["news", "sentinel"]
    assert re.search(r"not posting message from ops@conference.localhost/alice .*: history \(delayed delivery\)",
                     prosody.log_text())


def test_a_send_only_mod_rest_stays_in_its_rooms(prosody_factory, connect):
    # Without rest_callback_url nothing takes the room's messages: left to Prosody, they would be
    # answered service-unavailable, and the room kicks an occupant whose JID answers with an error.
    http_port = free_port()
    prosody = prosody_factory({BOT: {"rest_credentials": TOKEN, "rest_rooms": [BOT_OCCUPANT]}},
                              component_module="rest", muc=MUC,
                              global_options={"http_ports": [http_port], "http_interfaces": ["127.0.0.1"]})
    alice, bob = in_room(prosody, connect, "alice", "bob")
    since = bob.mark()
    alice.say(ROOM, "anyone home?")
    bob.wait_said(ROOM, "alice", "anyone home?", since=since)
    status, _, text = post(http_port, f"<message to='{ROOM}' type='groupchat'><body>still here</body></message>",
                           host=BOT)
    assert status == 202, text
    bob.wait_said(ROOM, NICK, "still here", since=since)
    assert [s.xml for s in bob.received[since:] if s.name == "presence"] == [], "nobody left or came"


def test_occupants_presence_is_posted_with_the_room_and_never_answered_with_an_error(prosody_factory, webhook,
                                                                                     connect):
    webhook.handler = lambda req: Reply(status=500)
    prosody = room_bot(prosody_factory, webhook.url(), component_post_stanzas=["message", "presence"])
    (alice,) = in_room(prosody, connect, "alice")
    (request,) = webhook.wait_for_requests(1)
    assert {k: request.json.get(k) for k in ("kind", "from", "room", "nick")} == {
        "kind": "presence", "from": f"{ROOM}/alice", "room": ROOM, "nick": "alice"}
    # The 500 was not answered with an error presence (the room would have kicked the bot):
    # bob, coming later, finds the bot in the room.
    bob = connect(prosody, "bob")
    assert BOT_OCCUPANT in [p.frm for p in bob.join_room(ROOM, "bob") if p.type is None]
    assert "errors never go to a room or its occupants" in prosody.log_text()


def test_the_bot_still_answers_after_the_muc_service_reloads(prosody_factory, webhook, connect):
    webhook.handler = lambda req: Reply.with_json({"body": f"you said: {req.json['body']}"})
    prosody = room_bot(prosody_factory, webhook.url())
    alice, bob = in_room(prosody, connect, "alice", "bob")
    since = bob.mark()
    prosody.reload_module("muc", MUC)
    alice.say(ROOM, "after the muc reload")
    bob.wait_said(ROOM, NICK, "you said: after the muc reload", since=since)
    assert [r.json["body"] for r in webhook.requests] == ["after the muc reload"]
