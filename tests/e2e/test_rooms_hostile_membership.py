"""Room membership under attack (README, "Bots in group chats"): what a room, an occupant or any
user can make the bot do through its membership, with Prosody's own mod_muc on
conference.localhost and real clients."""

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor

from e2e_webhook import Reply

from conftest import BOT, BOT2
from e2e_util import wait_until
from e2e_xmpp import NS_MUC
from e2e_util import free_port
from test_rest import TOKEN, post
from test_rooms import BOT_OCCUPANT, MUC, OPS, ROOM, push, pushing_bot, room_bot

GAMES = f"games@{MUC}"


def history_dropped(prosody):
    """The log lines of room messages the bot got as history (delayed delivery) and dropped."""
    return re.findall(r"not posting message from [^ ]+ .*: history \(delayed delivery\)", prosody.log_text())


def test_a_local_room_sends_the_bot_no_history(prosody_factory, webhook, connect):
    # Every join the bot builds asks for none: a push's, and a presence of its own that carries
    # the join element without a history request.
    prosody, port = pushing_bot(prosody_factory, webhook.url())
    alice = connect(prosody)
    for room in (OPS, GAMES):
        alice.join_room(room, "alice")
        alice.say(room, "old news")
        alice.wait_said(room, "alice", "old news")
    since = alice.mark()
    assert push(port, to=OPS, type="groupchat", body="hello")[0] == 202
    alice.wait_said(OPS, "bot", "hello", since=since)
    assert push(port, stanza=f"<presence to='{GAMES}/Watcher'><x xmlns='{NS_MUC}'/></presence>")[0] == 202
    alice.wait_for(lambda s: s.name == "presence" and s.frm == f"{GAMES}/Watcher" and s.type is None, since=since)
    # What the rooms sent the bot as it joined came before what is said after: once these are
    # POSTed, any history would have been seen (and dropped, with a log line).
    alice.say(OPS, "sentinel one")
    alice.say(GAMES, "sentinel two")
    webhook.wait_for_requests(2)
    assert sorted(r.json["body"] for r in webhook.requests) == ["sentinel one", "sentinel two"]
    assert history_dropped(prosody) == []


def joins_to(prosody, room):
    """How many times the log says the bot joins `room` (not counting "rejoining")."""
    return len(re.findall(r"\bjoining " + re.escape(room) + r" ", prosody.log_text()))


def test_a_push_to_a_mistyped_room_is_not_remembered(prosody_factory, webhook, connect):
    prosody, port = pushing_bot(prosody_factory, webhook.url())
    alice = connect(prosody)
    alice.join_room(OPS, "alice")
    typo = "ops@conferenc.localhost"  # no such service
    status, text = push(port, to=typo, type="groupchat", body="deploy finished")
    assert status >= 400, (status, text)
    # The room the bot got into is remembered: it is back in it after the restart, first thing.
    since = alice.mark()
    assert push(port, to=OPS, type="groupchat", body="here")[0] == 202
    alice.wait_said(OPS, "bot", "here", since=since)
    # Nor is it asked again on its own when its first retry would be due (5 s after the failure).
    wait_until(lambda: f"not rejoining {typo}: the bot was never in it" in prosody.log_text(), timeout=30,
               what="the mistyped room given up")
    alice.close()
    prosody.stop()
    before = joins_to(prosody, typo)
    assert before == 1
    prosody.start()
    alice = connect(prosody)
    assert f"{OPS}/bot" in [p.frm for p in alice.join_room(OPS, "alice") if p.type is None]
    assert joins_to(prosody, typo) == before, "the mistyped room was stored and joined again at start"


def deep_payload(depth=40):
    """An element nested `depth` levels: beyond the module's parse limits, not Prosody's."""
    return "<n xmlns='urn:example:deep'>" * depth + "</n>" * depth


def tracebacks_or_errors(prosody):
    return [line for line in prosody.log_text().splitlines() if "\terror\t" in line or "traceback" in line]


def test_a_deep_presence_never_stops_a_rooms_broadcast(prosody_factory, webhook, connect):
    prosody = room_bot(prosody_factory, webhook.url())
    bob = connect(prosody, "bob")
    assert BOT_OCCUPANT in [p.frm for p in bob.join_room(ROOM, "bob") if p.type is None]
    alice = connect(prosody)
    since, since_bob = alice.mark(), bob.mark()
    # The room broadcasts alice's join to every occupant, the bot among them, then tells alice she
    # is in: an error in the bot's hook would stop it there.
    alice.send_raw(f"<presence to='{ROOM}/alice'><x xmlns='{NS_MUC}'/>{deep_payload()}</presence>")
    alice.wait_for(lambda s: s.name == "presence" and s.frm == f"{ROOM}/alice" and s.type is None, since=since,
                   what="alice's self-presence")
    bob.wait_for(lambda s: s.name == "presence" and s.frm == f"{ROOM}/alice", since=since_bob)
    # Any user's presence to the component, as deep: taken as any presence.
    alice.send_raw(f"<presence to='{BOT}'>{deep_payload()}</presence>")
    # The bot is still in the room and answers: what alice says next is POSTed.
    alice.say(ROOM, "still there?")
    webhook.wait_for_requests(1)
    assert [r.json["body"] for r in webhook.requests] == ["still there?"]
    assert tracebacks_or_errors(prosody) == []


# -- a hostile room: a "service" that is another component, pushing what a room would send ------
HOSTILE = f"room@{BOT2}"


def push_as(port, host, stanza):
    """Pushes `stanza` through the push endpoint of the component `host`: (status, text)."""
    status, _, text = post(port, json.dumps({"stanza": stanza}), content_type="application/json", host=host,
                           path="/component_http")
    return status, text


def test_an_unsolicited_201_flood_does_not_evict_a_pushed_iq(prosody_factory, webhook, make_webhook):
    # BOT2 plays the room's service: what it pushes comes from room@bot2.localhost, and its
    # webhook holds every iq sent to it (the owner forms a 201 would ask for, and the pushed iq
    # below) until released, then answers each with a version.
    released = threading.Event()
    service = make_webhook()

    def hold(req):
        assert released.wait(60), "never released"
        return Reply.with_json({"stanza": "<iq><query xmlns='jabber:iq:version'><name>the real answer</name>"
                                          "</query></iq>"})
    service.handler = hold
    port = free_port()
    prosody = prosody_factory(
        {BOT: {"component_post_url": webhook.url(), "component_post_push_credentials": TOKEN},
         BOT2: {"component_post_url": service.url(), "component_post_push_credentials": TOKEN,
                "component_post_stanzas": ["iq"]}},
        global_options={"http_ports": [port], "http_interfaces": ["127.0.0.1"]})
    assert push_as(port, BOT, f"<presence to='{HOSTILE}/bot'><x xmlns='{NS_MUC}'/></presence>")[0] == 202
    self_presence = (f"<presence from='{HOSTILE}/bot' to='{BOT}'><x xmlns='{NS_MUC}#user'>"
                     "<status code='110'/>{}</x></presence>")
    assert push_as(port, BOT2, self_presence.format(""))[0] == 202
    wait_until(lambda: f'joined {HOSTILE} as "bot"' in prosody.log_text(), timeout=10, what="the bot in the room")
    with ThreadPoolExecutor(1) as pool:
        try:
            pushed = pool.submit(push_as, port, BOT,
                                 f"<iq type='get' to='held@{BOT2}'><query xmlns='jabber:iq:version'/></iq>")
            service.wait_for_requests(1)
            # More "you created the room" than Prosody tracks iqs for (256): none is the answer to
            # a join of the bot's, so none asks for anything.
            for _ in range(300):
                assert push_as(port, BOT2, self_presence.format("<status code='201'/>"))[0] == 202
        finally:
            released.set()
        status, text = pushed.result(timeout=60)
    assert status == 200, (status, text)
    assert "the real answer" in text, text
    assert len(service.requests) == 1, [r.json.get("stanza") for r in service.requests]
