"""Streamed answers (README, Streamed answers; issue 18): a webhook that answers `200` with NDJSON
or server-sent events, and what a real client sees of it: a first message, XEP-0308 corrections
of it (intermediate ones `no-store`), a final correction with the exact text, chat states, the
correction cap, cut streams, the order of everything else sent to the same chat (replies and
pushes), a stream in a room, and the options.

The webhook is StreamHook (e2e_stream_hook.py): each test scripts the stream and paces it by
what the client saw (threading.Events), never by time."""

import threading

import pytest

from conftest import BOT
from e2e_stream_hook import (SSE, Framing, StreamHook, at, body, burst, delta, done, piece, raw, reset, stall,
                             text_of, wait)
from e2e_xmpp import new_id
from test_rest import TOKEN, post, start
from test_rooms import NICK, ROOM, in_room, room_bot

BOT_JID = f"echo@{BOT}"
CORRECT = "urn:xmpp:message-correct:0"
HINTS = "urn:xmpp:hints"
CHAT_STATES = "http://jabber.org/protocol/chatstates"
ACTIVE = f"<active xmlns='{CHAT_STATES}'/>"
CUT_MARKER = "(answer cut off)"  # src/stream/draft.rs, CUT_MARKER
CAP = 3  # component_post_stream_max_corrections of the shared Prosody
OPTIONS = {"component_post_stream_interval": 0.2, "component_post_stream_max_corrections": CAP,
           "component_post_chat_state_delay": 0.2}


# -- what the client saw --------------------------------------------------------------------
def state_of(s):
    """The chat state a message carries, or None."""
    for c in s.el:
        if c.tag.startswith("{" + CHAT_STATES + "}"):
            return c.tag.split("}", 1)[1]
    return None


def replaces(s):
    """The id a correction replaces, or None."""
    r = s.child("replace", CORRECT)
    return None if r is None else r.get("id")


def no_store(s):
    return s.child("no-store", HINTS) is not None


def is_final(s):
    """Whether a message from the bot ends an answer: a correction without no-store, an answer
    in one message (it carries <active/>, where a first message carries <composing/>), or the
    standalone <active/> after a first message that already held the whole answer."""
    if replaces(s) is not None:
        return s.body is not None and not no_store(s)
    return state_of(s) == "active"


def answer_of(client, since, frm=BOT_JID, final=is_final, what="the end of the answer"):
    """The messages with a body from `frm` after `since`, up to the one `final` says ends the
    answer (included if it has a body)."""
    def mine(s):
        return s.name == "message" and s.frm == frm

    last = client.wait_for(lambda s: mine(s) and final(s), since=since, timeout=30, what=what)
    got = client.received[since:]
    return [s for s in got[:got.index(last) + 1] if mine(s) and s.body is not None]


def wait_text(client, since, text, frm=BOT_JID):
    """The first message from `frm` after `since` whose body is `text`."""
    return client.wait_for(lambda s: s.name == "message" and s.frm == frm and s.body == text,
                           since=since, timeout=30, what=f"a message saying {text!r}")


def check_answer(stanzas, text, chat_states=True):
    """A first message, corrections of it, the last one final with exactly `text`: every
    correction replaces the first message's id, each has an id of its own, each shows the
    whole text so far, the intermediate ones are no-store (and composing), the final one not
    (and active)."""
    first, *corrections = stanzas
    assert replaces(first) is None and not no_store(first), first.xml
    assert corrections, f"no correction: {[s.xml for s in stanzas]}"
    assert len({s.id for s in stanzas}) == len(stanzas) and None not in {s.id for s in stanzas}, \
        [s.xml for s in stanzas]
    for s in corrections:
        assert replaces(s) == first.id, s.xml
    for s in corrections[:-1]:
        assert no_store(s), s.xml
    final = corrections[-1]
    assert not no_store(final) and final.body == text, final.xml
    if chat_states:
        assert [state_of(s) for s in stanzas] == ["composing"] * len(corrections) + ["active"], \
            [s.xml for s in stanzas]


def ask(client, text, to=BOT_JID):
    """Sends a chat message announcing chat states; (mark before it, its id)."""
    since = client.mark()
    return since, client.send_message(to, text, extra=ACTIVE)


def quiet_after(client, since, answer):
    """Nothing else came for the exchange since `since` than `answer` and chat states."""
    client.expect_quiet(since, ignore=lambda s: s in answer or (s.body is None and state_of(s) is not None))


def error_lines(prosody):
    return [line for line in prosody.log_text().splitlines() if "\terror\t" in line]


# -- one Prosody and stream hook for the tests that need no options of their own ----------------
@pytest.fixture(scope="module")
def module_stream_hook():
    hook = StreamHook()
    yield hook
    hook.close()


@pytest.fixture(scope="module")
def stream_prosody(module_prosody_factory, module_stream_hook):
    return module_prosody_factory({BOT: {"component_post_url": module_stream_hook.url(), **OPTIONS}})


@pytest.fixture
def hook(module_stream_hook, stream_prosody):
    """The shared stream hook, its script and framing to be set by the test."""
    module_stream_hook.script, module_stream_hook.framing = [], Framing()
    module_stream_hook.content_type = module_stream_hook.framing.content_type
    module_stream_hook.raw.requests.clear()
    yield module_stream_hook
    assert not module_stream_hook.handler_errors, module_stream_hook.handler_errors


@pytest.fixture
def alice(stream_prosody, connect):
    return connect(stream_prosody, "alice")


@pytest.fixture
def make_stream_hook():
    hooks = []

    def make(script=(), **kw):
        hooks.append(StreamHook(script, **kw))
        return hooks[-1]

    yield make
    for h in hooks:
        h.close()
        assert not h.handler_errors, h.handler_errors


# -- the answer as it is written -------------------------------------------------------------
def test_a_streamed_answer_is_a_first_message_then_corrections_of_it(hook, alice):
    more, rest = threading.Event(), threading.Event()
    hook.script = [delta("Once"), wait(more), delta(" upon"), wait(rest), delta(" a time.")]
    since, mid = ask(alice, "tell me a story")
    first = wait_text(alice, since, "Once")
    assert first.id != mid and first.type == "chat" and first.to == alice.full_jid
    more.set()
    wait_text(alice, since, "Once upon")
    rest.set()
    answer = answer_of(alice, since)
    check_answer(answer, "Once upon a time.")
    assert [s.body for s in answer][:2] == ["Once", "Once upon"]
    assert all("Once upon a time.".startswith(s.body) for s in answer), [s.body for s in answer]
    quiet_after(alice, since, answer)
    assert [r.body_field for r in hook.requests] == ["tell me a story"]


@pytest.mark.parametrize("ending", [
    "sse-done-with-the-body",
    "ndjson-end-with-the-body",
    "ndjson-end-after-it",
])
def test_an_answer_that_arrives_whole_is_one_message(hook, alice, ending):
    """Two hundred deltas in one write: one message with the whole text, never a correction.
    When the end came in the same write (SSE's [DONE], or the end of the body), it is a plain
    answer with <active/>; when the end came after it, it is a first message (<composing/>) that
    turned out final, and a standalone <active/> ends it."""
    steps = [delta(f"w{i} ") for i in range(200)]
    if ending.startswith("sse"):
        hook.framing = Framing(SSE)
        hook.content_type = SSE
        hook.script = [burst(steps + [done()])]
    elif ending == "ndjson-end-with-the-body":
        hook.script = [burst(steps, end=True)]
    else:
        # The body ends only once the client has the first message.
        first_seen = threading.Event()
        hook.script = [burst(steps), wait(first_seen)]
    since, _ = ask(alice, "burst")
    if ending == "ndjson-end-after-it":
        alice.wait_for(lambda s: s.frm == BOT_JID and s.body is not None, since=since, timeout=30,
                       what="the first message")
        first_seen.set()
    (answer,) = answer_of(alice, since)
    assert answer.body == text_of(steps) and replaces(answer) is None, answer.xml
    states = [(state_of(s), s.body is not None) for s in alice.received[since:] if s.frm == BOT_JID]
    assert states == ([("active", True)] if "with-the-body" in ending else [("composing", True), ("active", False)]), \
        [s.xml for s in alice.received[since:]]
    quiet_after(alice, since, [answer])


def test_a_long_burst_of_deltas_gives_at_most_one_message_plus_the_cap(hook, alice):
    # 200 deltas written one by one over 2 s, ten intervals of the shared Prosody: the cap
    # (3 corrections, the final one included) is what bounds the stanzas, and all are used.
    steps = [delta("w0 ")] + [s for i in range(1, 200) for s in (at(i / 100), delta(f"w{i} "))]
    hook.script = steps
    since, _ = ask(alice, "dribble")
    answer = answer_of(alice, since)
    check_answer(answer, text_of(steps))
    assert len(answer) == 1 + CAP, [s.body for s in answer]
    quiet_after(alice, since, answer)


def test_server_sent_events_with_comments_event_lines_crlf_and_done(hook, alice):
    more = threading.Event()
    hook.framing = Framing(SSE, crlf=True, event="message")
    hook.content_type = "text/event-stream; charset=utf-8"
    hook.script = [raw(": the model is warming up\r\n\r\n"), delta("Server"), wait(more),
                   raw("retry: 1000\r\nid: 7\r\n: a comment inside an event\r\n"),
                   burst([delta("-sent"), delta(" events."), done(), raw("data: {\"delta\": \" never\"}\r\n\r\n")])]
    since, _ = ask(alice, "sse")
    wait_text(alice, since, "Server")
    more.set()
    answer = answer_of(alice, since)
    check_answer(answer, "Server-sent events.")
    quiet_after(alice, since, answer)


def test_a_body_object_replaces_the_text_so_far(hook, alice):
    more = threading.Event()
    hook.script = [delta("A first draft"), wait(more), body("The answer."), delta(" Really.")]
    since, _ = ask(alice, "draft")
    wait_text(alice, since, "A first draft")
    more.set()
    answer = answer_of(alice, since)
    check_answer(answer, "The answer. Really.")
    quiet_after(alice, since, answer)


def test_the_first_object_may_address_the_answer(hook, alice):
    more = threading.Event()
    hook.script = [piece({"from": f"news@{BOT}", "type": "chat", "delta": "Breaking"}), wait(more),
                   delta(" news."), piece({"from": f"other@{BOT}", "delta": ""})]
    since, _ = ask(alice, "news?")
    wait_text(alice, since, "Breaking", frm=f"news@{BOT}")
    more.set()
    answer = answer_of(alice, since, frm=f"news@{BOT}")
    check_answer(answer, "Breaking news.")
    quiet_after(alice, since, answer)


def test_composing_before_the_first_words_and_active_with_the_final_correction(hook, alice):
    words, rest = threading.Event(), threading.Event()
    hook.script = [piece({}), wait(words), delta("Well"), wait(rest), delta(", here it is.")]
    since, _ = ask(alice, "think first")
    composing = alice.wait_for(lambda s: s.name == "message" and s.frm == BOT_JID and state_of(s) == "composing",
                               since=since, what="<composing/> while the webhook thinks")
    assert composing.body is None
    words.set()
    wait_text(alice, since, "Well")
    rest.set()
    answer = answer_of(alice, since)
    check_answer(answer, "Well, here it is.")
    states = [(state_of(s), s.body is not None) for s in alice.received[since:] if s.frm == BOT_JID]
    assert states == [("composing", False), ("composing", True)] + [("composing", True)] * (len(answer) - 2) \
        + [("active", True)], [s.xml for s in alice.received[since:]]
    quiet_after(alice, since, answer)


# -- streams cut short -----------------------------------------------------------------------
@pytest.mark.parametrize("cut,why", [
    (reset(), "the connection broke"),
    (raw("{\"delta\": oops}\n"), "line 2: invalid JSON"),
], ids=["reset", "malformed-line"])
def test_a_stream_cut_short_keeps_its_text_and_says_so(hook, alice, stream_prosody, cut, why):
    seen = threading.Event()
    hook.script = [delta("Half an answer "), wait(seen), cut]
    since, _ = ask(alice, f"cut {why}")
    wait_text(alice, since, "Half an answer ")
    seen.set()
    answer = answer_of(alice, since)
    check_answer(answer, f"Half an answer\n\n{CUT_MARKER}")
    quiet_after(alice, since, answer)
    assert [line for line in stream_prosody.log_text().splitlines() if why in line], \
        stream_prosody.diagnostics(40)


@pytest.mark.parametrize("cut,error,why", [
    ([piece({}), reset()], ("cancel", "remote-server-timeout", "Connection failure"), "the connection broke"),
    ([raw("not json\n")], ("cancel", "internal-server-error", "The webhook sent an invalid reply"),
     "line 1: invalid JSON"),
], ids=["reset", "malformed-line"])
def test_a_stream_cut_before_any_text_is_an_error_to_the_sender(hook, alice, stream_prosody, cut, error, why):
    hook.script = cut
    since, mid = ask(alice, f"nothing {why}")
    bounce = alice.wait_for(lambda s: s.name == "message" and s.id == mid, since=since, what="the error")
    assert bounce.type == "error" and bounce.error == error and bounce.body is None, bounce.xml
    quiet_after(alice, since, [bounce])
    assert [line for line in stream_prosody.log_text().splitlines() if why in line], stream_prosody.diagnostics(40)


def test_a_stream_silent_or_too_long_is_cut_at_its_deadline(prosody_factory, make_stream_hook, connect):
    # component_post_timeout bounds the silence between two pieces, component_post_stream_timeout
    # the whole stream; the second stream sends a piece every 0.1 s for far longer than that.
    steady = [delta("t0 ")] + [s for i in range(1, 300) for s in (at(i / 10), delta(f"t{i} "))]
    hook = make_stream_hook(lambda req: [delta("Stalled "), stall()] if req.body_field == "stall" else steady)
    prosody = prosody_factory({BOT: {"component_post_url": hook.url(), "component_post_timeout": 2,
                                     "component_post_stream_timeout": 4, **OPTIONS}})
    alice = connect(prosody)
    since, _ = ask(alice, "stall")
    answer = answer_of(alice, since, final=lambda s: s.body is not None and CUT_MARKER in s.body)
    assert (answer[0].body, answer[-1].body) == ("Stalled ", f"Stalled\n\n{CUT_MARKER}"), [s.xml for s in answer]
    assert replaces(answer[-1]) == answer[0].id and not no_store(answer[-1])
    assert "no piece for 2 s (component_post_timeout)" in prosody.log_text(), prosody.diagnostics(40)

    since, _ = ask(alice, "steady")
    answer = answer_of(alice, since, final=lambda s: s.body is not None and CUT_MARKER in s.body)
    kept = answer[-1].body.removesuffix(f"\n\n{CUT_MARKER}")
    assert kept != answer[-1].body and text_of(steady).startswith(kept + " ") and kept.count(" ") >= 1, answer[-1].body
    assert replaces(answer[-1]) == answer[0].id and not no_store(answer[-1]) and len(answer) <= 1 + CAP
    assert "(component_post_stream_timeout)" in prosody.log_text(), prosody.diagnostics(40)
    assert hook.requests[1].stream.ended.wait(30) and hook.requests[1].stream.ending == "peer closed"


# -- nothing else in the chat while an answer is written ----------------------------------------
def test_the_next_message_of_the_sender_is_answered_after_the_final_correction(hook, alice):
    finish = threading.Event()
    hook.script = lambda req: ([delta("Answer one"), wait(finish), delta(", finished.")]
                               if req.body_field == "first" else [delta("Answer two.")])
    since, _ = ask(alice, "first")
    wait_text(alice, since, "Answer one")
    ask(alice, "second")
    # A sentinel to another bot JID is answered: Prosody handed "second" to the module before it.
    alice.expect_quiet(alice.mark(), to=f"other@{BOT}", ignore=lambda s: s.body is None)
    finish.set()
    wait_text(alice, since, "Answer two.")
    bodies = [s.body for s in alice.received[since:] if s.frm == BOT_JID and s.body is not None]
    assert bodies[0] == "Answer one" and bodies[-2:] == ["Answer one, finished.", "Answer two."], bodies
    assert [r.body_field for r in hook.requests] == ["first", "second"]


def test_an_answer_to_another_client_of_the_user_waits_for_the_final_correction(hook, alice, stream_prosody,
                                                                              connect):
    """The conversation is the bot's JID and the user's bare JID: an answer to the user's other
    client (another line, POSTed at once) is held while the first answer streams."""
    finish = threading.Event()
    hook.script = lambda req: ([delta("Answer one"), wait(finish), delta(", finished.")]
                               if req.body_field == "first" else [delta("Answer two.")])
    phone = connect(stream_prosody, "alice", resource="phone")
    since, _ = ask(alice, "first")
    wait_text(alice, since, "Answer one")
    phone_since, _ = ask(phone, "second")
    _, second = hook.wait_for_requests(2)
    assert second.body_field == "second" and second.stream.ended.wait(30) and second.stream.ending == "complete"
    # The phone's sentinel to another bot JID is answered; the answer to "second" is not.
    phone.expect_quiet(phone.mark(), to=f"other@{BOT}", ignore=lambda s: s.body is None)
    assert not [s for s in phone.received[phone_since:] if s.frm == BOT_JID and s.body is not None]
    finish.set()
    check_answer(answer_of(alice, since), "Answer one, finished.")
    assert answer_of(phone, phone_since)[-1].body == "Answer two."


def test_a_push_to_a_chat_that_is_streaming_arrives_after_the_final_correction(prosody_factory, make_stream_hook,
                                                                               connect):
    finish = threading.Event()
    hook = make_stream_hook([delta("Streaming"), wait(finish), delta(" along.")])
    prosody, port = start(prosody_factory, {BOT: {"component_post_url": hook.url(),
                                                  "component_post_push_credentials": TOKEN, **OPTIONS}})
    alice = connect(prosody)
    since, _ = ask(alice, "go")
    wait_text(alice, since, "Streaming")
    status, _, text = post(port, f'{{"to": "alice@localhost", "from": "{BOT_JID}", "body": "pushed meanwhile"}}',
                           content_type="application/json", host=BOT, path="/component_http")
    assert status == 202, text
    finish.set()
    pushed = wait_text(alice, since, "pushed meanwhile")
    answer = answer_of(alice, since)
    check_answer(answer, "Streaming along.")
    got = alice.received[since:]
    assert got.index(answer[-1]) < got.index(pushed), [s.xml for s in got]


# -- in a room -----------------------------------------------------------------------------
def test_a_stream_in_a_room_is_corrected_in_the_room(prosody_factory, make_stream_hook, connect):
    more = threading.Event()
    hook = make_stream_hook(lambda req: [delta("Hel"), wait(more), delta("lo, room.")]
                            if req.body_field == "helper: hi" else [delta("ok")])
    prosody = room_bot(prosody_factory, hook.url(), **OPTIONS)
    alice, bob = in_room(prosody, connect, "alice", "bob")
    since = bob.mark()
    alice.say(ROOM, "helper: hi")
    occupant = f"{ROOM}/{NICK}"
    wait_text(bob, since, "Hel", frm=occupant)
    more.set()
    answer = answer_of(bob, since, frm=occupant, final=lambda s: replaces(s) is not None and not no_store(s))
    check_answer(answer, "Hello, room.", chat_states=False)
    assert all(s.type == "groupchat" and s.to == bob.full_jid for s in answer), [s.xml for s in answer]
    # The bot's own messages and corrections, reflected by the room, were never POSTed: the
    # next request is the next thing said.
    alice.say(ROOM, "helper: done?")
    wait_text(bob, since, "ok", frm=occupant)
    assert [r.body_field for r in hook.requests] == ["helper: hi", "helper: done?"]


# -- options -----------------------------------------------------------------------------------
@pytest.mark.parametrize("option,value", [
    ("component_post_stream_interval", 0),
    ("component_post_stream_interval", "fast"),
    ("component_post_stream_max_corrections", 0),
    ("component_post_stream_max_corrections", 101),
    ("component_post_stream_max_corrections", 2.5),
    ("component_post_stream_timeout", -1),
], ids=["interval-0", "interval-text", "corrections-0", "corrections-101", "corrections-fraction", "timeout-negative"])
def test_an_invalid_stream_option_stops_the_component_naming_it(prosody_factory, make_stream_hook, connect,
                                                                option, value):
    hook = make_stream_hook([delta("never")])
    prosody = prosody_factory({BOT: {"component_post_url": hook.url(), option: value}})
    assert prosody.alive()
    named = [line for line in error_lines(prosody) if option in line]
    assert named, f"no error naming {option}:\n" + "\n".join(error_lines(prosody))
    alice = connect(prosody)
    mid = alice.send_message(BOT_JID, new_id("anyone"))
    alice.wait_for(lambda s: s.id == mid and s.type == "error", what="Prosody's bounce")
    assert hook.requests == []
