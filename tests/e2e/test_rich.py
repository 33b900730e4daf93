"""Rich messages (README, "The JSON contract": the rich fields of requests and answers; issue 19):
a file, a correction, a reaction and a reply, from a real client to the webhook as JSON fields,
and from the webhook's answers and pushes to the client as the XML each XEP defines; in a room,
the room's stanza id, what reactions and replies there refer to."""

import json

import pytest

from conftest import BOT
from e2e_webhook import Reply
from test_rest import TOKEN, post, start
from test_rooms import BOT_OCCUPANT, MUC, NICK, ROOM, in_room

BOT_JID = f"echo@{BOT}"
OOB = "jabber:x:oob"
CORRECTION = "urn:xmpp:message-correct:0"
REACTIONS = "urn:xmpp:reactions:0"
REPLY = "urn:xmpp:reply:0"
FALLBACK = "urn:xmpp:fallback:0"
HINTS = "urn:xmpp:hints"
STANZA_ID = "urn:xmpp:sid:0"
URL = "https://upload.localhost/f/cat.jpg"
THUMBS_UP = "\N{THUMBS UP SIGN}"


def children(element, name, ns):
    return [c for c in element if c.tag == f"{{{ns}}}{name}"]


# -- requests: what a client sends, as the webhook gets it -------------------------------------
QUOTE = "> \N{CAT FACE} a cat?\n"  # 11 code points, the emoji one of them

SENT = {
    "photo": (URL, f"<x xmlns='{OOB}'><url>{URL}</url></x>",
              {"oob_url": URL, "body": URL}),
    "correction": ("fixed", f"<replace xmlns='{CORRECTION}' id='m1'/>",
                   {"replace": "m1", "body": "fixed"}),
    "reaction": (None, f"<reactions xmlns='{REACTIONS}' id='m1'><reaction>{THUMBS_UP}</reaction></reactions>"
                       f"<store xmlns='{HINTS}'/>",
                 {"reactions": {"id": "m1", "reactions": [THUMBS_UP]}}),
    "reply": (QUOTE + "Yes!", f"<reply xmlns='{REPLY}' id='m1' to='{BOT_JID}'/><fallback xmlns='{FALLBACK}' "
                              f"for='{REPLY}'><body start='0' end='{len(QUOTE)}'/></fallback>",
              {"reply": {"id": "m1", "to": BOT_JID}, "body": "Yes!"}),
}


@pytest.mark.parametrize("what", SENT)
def test_what_a_client_sends_reaches_the_webhook_as_fields(hook, alice, what):
    body, extra, fields = SENT[what]
    mid = alice.send_message(BOT_JID, body, extra=extra)
    (request,) = hook.wait_for_requests(1)
    assert request.json["id"] == mid
    rich = {k: request.json[k] for k in ("oob_url", "replace", "reactions", "reply", "stanza_id", "body")
            if k in request.json}
    assert rich == fields, request.json
    assert extra.split(">", 1)[0].split(" ", 1)[0] in request.json["stanza"]  # the stanza stays whole


# -- answers: what the webhook says, as the client gets it -------------------------------------
def answer_with(hook, alice, reply):
    """The webhook answers alice's message with `reply(request)`; returns her message's id and
    the mark before it."""
    hook.handler = lambda req: Reply.with_json(reply(req))
    since = alice.mark()
    return alice.send_message(BOT_JID, "hello"), since


def test_a_file_comes_as_its_url_and_its_caption_right_after(hook, alice):
    _, since = answer_with(hook, alice, lambda req: {"oob_url": URL, "body": "My cat."})
    file, caption = alice.wait_for_count(lambda s: s.name == "message", 2, since=since, what="file and caption")
    assert (file.frm, file.type, file.body) == (BOT_JID, "chat", URL), file.xml
    (x,) = children(file.el, "x", OOB)
    assert [u.text for u in children(x, "url", OOB)] == [URL]
    assert (caption.frm, caption.type, caption.body) == (BOT_JID, "chat", "My cat."), caption.xml
    assert caption.child("x", OOB) is None
    alice.expect_quiet(since, ignore=lambda s: s in (file, caption))


def test_a_correction_replaces_the_bots_message(hook, alice):
    _, since = answer_with(hook, alice, lambda req: {"body": "Did you say hello?", "replace": "bot-1"})
    got = alice.wait_for(lambda s: s.name == "message", since=since)
    assert got.body == "Did you say hello?" and got.child("replace", CORRECTION).get("id") == "bot-1", got.xml


def test_a_reaction_goes_to_the_users_message(hook, alice):
    mid, since = answer_with(hook, alice, lambda req: {"reactions": {"id": req.json["id"],
                                                                     "reactions": [THUMBS_UP]}})
    got = alice.wait_for(lambda s: s.name == "message", since=since)
    reactions = got.child("reactions", REACTIONS)
    assert reactions.get("id") == mid, got.xml
    assert [r.text for r in children(reactions, "reaction", REACTIONS)] == [THUMBS_UP]
    assert got.child("store", HINTS) is not None and got.body is None


def test_a_reply_names_the_users_message_and_quotes_it_for_older_clients(hook, alice):
    mid, since = answer_with(hook, alice, lambda req: {
        "body": "Hello to you!", "reply": {"id": req.json["id"], "to": req.json["from"], "quote": req.json["body"]}})
    got = alice.wait_for(lambda s: s.name == "message", since=since)
    assert got.body == "> hello\nHello to you!", got.xml
    reply = got.child("reply", REPLY)
    assert (reply.get("id"), reply.get("to")) == (mid, alice.full_jid)
    (fallback,) = children(got.el, "fallback", FALLBACK)
    assert fallback.get("for") == REPLY
    assert [(b.get("start"), b.get("end")) for b in children(fallback, "body", FALLBACK)] == [("0", "8")]


@pytest.mark.parametrize("field,value,says", [
    ("oob_url", "ftp://upload.localhost/cat.jpg", "'oob_url' must be an absolute http or https URL"),
    ("replace", 7, "'replace' must be a string, got a number"),
    ("reactions", {"id": "m1", "reactions": [""]}, "'reactions.reactions' holds an empty reaction"),
    ("reply", {"id": ["m1"]}, "'reply.id' must be a string, got an array"),
], ids=["oob_url", "replace", "reactions", "reply"])
def test_a_malformed_field_is_an_internal_server_error_and_the_log_names_it(hook, alice, shared_prosody,
                                                                           field, value, says):
    mid, since = answer_with(hook, alice, lambda req: {"body": "never sent", field: value})
    got = alice.wait_for(lambda s: s.name == "message", since=since)
    assert got.id == mid and got.type == "error", got.xml
    assert got.error == ("cancel", "internal-server-error", "The webhook sent an invalid reply")
    alice.expect_quiet(since, ignore=lambda s: s is got)
    assert [line for line in shared_prosody.log_text().splitlines() if mid in line and says in line], says


# -- pushes -------------------------------------------------------------------------------------
def test_a_push_sends_the_same_fields(prosody_factory, connect, webhook):
    prosody, port = start(prosody_factory, {BOT: {"component_post_url": webhook.url(),
                                                  "component_post_push_credentials": TOKEN}})
    alice = connect(prosody)
    since = alice.mark()

    def push(fields):
        return post(port, json.dumps({"to": "alice@localhost", "from": BOT_JID, **fields}),
                    content_type="application/json", host=BOT, path="/component_http")

    status, _, body = push({"oob_url": URL, "body": "Your chart.", "reply": {"id": "u1"}})
    assert status == 202, body
    file, caption = alice.wait_for_count(lambda s: s.name == "message", 2, since=since, what="file and caption")
    assert (file.body, file.child("reply", REPLY).get("id")) == (URL, "u1"), file.xml
    assert children(file.el, "x", OOB) and file.child("fallback", FALLBACK) is None
    assert (caption.frm, caption.body) == (BOT_JID, "Your chart.")
    since = alice.mark()
    assert push({"reactions": {"id": "u1", "reactions": [THUMBS_UP]}})[0] == 202
    got = alice.wait_for(lambda s: s.name == "message", since=since)
    assert got.child("reactions", REACTIONS).get("id") == "u1", got.xml
    status, _, body = push({"reactions": {"id": "u1", "reactions": [1]}})
    assert (status, body.strip()) == (400, "'reactions.reactions' holds a number, expected strings")
    alice.expect_quiet(since, ignore=lambda s: s is got)


# -- rooms --------------------------------------------------------------------------------------
def archived_room_bot(prosody_factory, url, **options):
    """The bot in ROOM, on a group chat service that archives (mod_muc_mam stamps stanza ids)."""
    opts = {"component_post_url": url, "component_post_rooms": [BOT_OCCUPANT], **options}
    return prosody_factory({BOT: opts}, muc=MUC, muc_options={"modules_enabled": ["muc_mam"]})


def stanza_id_of(message, room=ROOM):
    ids = [s.get("id") for s in children(message.el, "stanza-id", STANZA_ID) if s.get("by") == room]
    assert len(ids) == 1, message.xml
    return ids[0]


def test_in_a_room_the_bot_reacts_and_replies_by_the_rooms_stanza_id(prosody_factory, webhook, connect):
    webhook.handler = lambda req: Reply.with_json({
        "body": "Noted.", "reply": {"id": req.json["stanza_id"], "to": req.json["from"]}})
    prosody = archived_room_bot(prosody_factory, webhook.url(), component_post_groupchat="mentions")
    alice, bob = in_room(prosody, connect, "alice", "bob")
    since = bob.mark()
    forged = f"<stanza-id xmlns='{STANZA_ID}' by='{ROOM}' id='forged'/>"
    alice.say(ROOM, "helper: the build is green", extra=forged)
    said = bob.wait_said(ROOM, "alice", "helper: the build is green", since=since)
    (request,) = webhook.wait_for_requests(1)
    assert request.json["stanza_id"] == stanza_id_of(said) != "forged", request.json
    answer = bob.wait_said(ROOM, NICK, "Noted.", since=since)
    reply = answer.child("reply", REPLY)
    assert (reply.get("id"), reply.get("to")) == (stanza_id_of(said), f"{ROOM}/alice"), answer.xml

    # bob answers alice quoting her for older clients: the quote names the bot, his words do not.
    quote = "> helper: the build is green\n"
    bob.say(ROOM, quote + "nice", extra=f"<reply xmlns='{REPLY}' id='{stanza_id_of(said)}' to='{ROOM}/alice'/>"
                                      f"<fallback xmlns='{FALLBACK}' for='{REPLY}'><body start='0' "
                                      f"end='{len(quote)}'/></fallback>")

    # A reaction needs no body; in "mentions" mode it is POSTed when it reacts to the bot's
    # message, and only then: bob's to alice's is not.
    webhook.handler = lambda req: Reply.with_json({"reactions": {"id": req.json["reactions"]["id"],
                                                                 "reactions": [THUMBS_UP]}})

    def react(client, to_id):
        client.say(ROOM, None, extra=f"<reactions xmlns='{REACTIONS}' id='{to_id}'>"
                                     f"<reaction>{THUMBS_UP}</reaction></reactions>")

    since = bob.mark()
    react(bob, stanza_id_of(said))
    react(alice, stanza_id_of(answer))
    back = bob.wait_for(lambda s: s.name == "message" and s.frm == BOT_OCCUPANT and s.child("reactions", REACTIONS)
                        is not None, since=since, what="the bot's reaction")
    assert back.type == "groupchat" and back.child("reactions", REACTIONS).get("id") == stanza_id_of(answer)
    first, second = [r.json for r in webhook.requests]
    assert (second["reactions"], second["mentioned"], second["nick"]) == (
        {"id": stanza_id_of(answer), "reactions": [THUMBS_UP]}, True, "alice"), second
    assert first["id"] == request.json["id"]
