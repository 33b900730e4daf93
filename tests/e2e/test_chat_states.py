"""Chat states (XEP-0085) while a slow bot thinks (README, Messages: chat states).

A sender whose chat message carries a chat state gets <composing/> when the webhook has not
answered within component_post_chat_state_delay, and <active/> with the answer: in the reply,
or standalone after an answer without a reply. Nobody else gets any, and nothing of it reaches
the webhook.
"""

from conftest import BOT
from e2e_webhook import Reply

BOT_JID = f"echo@{BOT}"
NS = "http://jabber.org/protocol/chatstates"
ACTIVE = f"<active xmlns='{NS}'/>"
DELAY = 0.2  # component_post_chat_state_delay
SLOW = 1.0   # how long the slow webhook thinks: well past the delay
BOT_OPTIONS = {"component_post_chat_state_delay": DELAY}


def state_of(s):
    """The chat state a received message carries, or None."""
    for c in s.el:
        if c.tag.startswith("{" + NS + "}"):
            return c.tag.split("}", 1)[1]
    return None


def exchange(client, body, with_states=True, what="the answer"):
    """Sends a chat message and returns what came back for it, up to and including the answer
    (a message with a body, or an error); then checks that nothing else follows."""
    since = client.mark()
    mid = client.send_message(BOT_JID, body, extra=ACTIVE if with_states else "")
    answer = client.wait_for(lambda s: s.name == "message" and (s.body is not None or s.id == mid),
                             since=since, timeout=15, what=what)
    return since, mid, answer


def received_between(client, since, answer):
    got = client.received[since:]
    return got[:got.index(answer)]


def test_a_slow_reply_is_preceded_by_composing_and_carries_active(hook, alice):
    hook.handler = lambda req: Reply.with_json({"body": "thought about it"}, delay=SLOW)
    since, _, answer = exchange(alice, "think")
    before = received_between(alice, since, answer)
    assert [state_of(s) for s in before] == ["composing"], [s.xml for s in before]
    assert before[0].body is None and before[0].frm == BOT_JID and before[0].type == "chat"
    assert answer.body == "thought about it" and state_of(answer) == "active"
    alice.expect_quiet(since, ignore=lambda s: s in before or s is answer)
    # The webhook got the message once, and nothing of the notifications.
    assert [r.json["body"] for r in hook.requests] == ["think"]


def test_a_fast_reply_gets_no_notification(prosody_factory, make_webhook, connect):
    # "Fast" means within the delay: a delay no loaded machine can exceed keeps this exact.
    hook = make_webhook()
    hook.handler = lambda req: Reply.with_json({"body": "quick"})
    prosody = prosody_factory({BOT: {"component_post_url": hook.url(), "component_post_chat_state_delay": 3600}})
    alice = connect(prosody)
    since, _, answer = exchange(alice, "fast")
    assert received_between(alice, since, answer) == []
    assert state_of(answer) == "active"
    alice.expect_quiet(since, ignore=lambda s: s is answer)


def test_a_sender_without_chat_states_gets_none(hook, alice):
    hook.handler = lambda req: Reply.with_json({"body": "thought about it"}, delay=SLOW)
    since, _, answer = exchange(alice, "think", with_states=False)
    assert received_between(alice, since, answer) == []
    assert state_of(answer) is None
    alice.expect_quiet(since, ignore=lambda s: s is answer)


def test_a_slow_answer_without_a_reply_is_followed_by_active(hook, alice):
    hook.handler = lambda req: Reply(status=204, delay=SLOW)
    since = alice.mark()
    alice.send_message(BOT_JID, "think, say nothing", extra=ACTIVE)
    got = alice.wait_for_count(lambda s: s.name == "message", 2, since=since, timeout=15)
    assert [state_of(s) for s in got] == ["composing", "active"], [s.xml for s in got]
    assert all(s.body is None for s in got)
    alice.expect_quiet(since, ignore=lambda s: s in got)


def test_the_option_off_sends_none(prosody_factory, make_webhook, connect):
    hook = make_webhook()
    hook.handler = lambda req: Reply.with_json({"body": "thought about it"}, delay=SLOW)
    prosody = prosody_factory({BOT: {"component_post_url": hook.url(), "component_post_chat_states": False,
                                     "component_post_chat_state_delay": DELAY}})
    alice = connect(prosody)
    since, _, answer = exchange(alice, "think")
    assert received_between(alice, since, answer) == []
    assert state_of(answer) is None
    alice.expect_quiet(since, ignore=lambda s: s is answer)
