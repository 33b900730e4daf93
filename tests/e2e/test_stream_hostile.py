"""Streamed answers under pressure (README, Streamed answers): a follow-up from the user while
an answer streams keeps its own deadline, and the messages waiting behind a stream are bounded.

Every stream is paced by threading.Events the test sets once it saw what it waits for, so each
outcome is shown to arrive while the stream is still running, with no timing asserted."""

import threading

from conftest import BOT
from e2e_stream_hook import delta, keep_alive_until
from e2e_traffic import QUEUE_FULL, TIMED_OUT
from test_stream import BOT_JID, OPTIONS, answer_of, ask, check_answer, make_stream_hook, wait_text  # noqa: F401 (a fixture)


def test_a_follow_up_during_a_long_stream_gets_its_timeout_while_the_stream_goes_on(prosody_factory,
                                                                                    make_stream_hook, connect):
    # The answer streams (kept alive) for longer than the follow-up's component_post_timeout;
    # the follow-up waits behind it in the sender's line and gets its timeout at its deadline.
    answered = threading.Event()
    hook = make_stream_hook(lambda req: [delta("Thinking"), keep_alive_until(answered, 0.2), delta(" done.")]
                            if req.body_field == "a long question" else [delta("Stopped.")])
    prosody = prosody_factory({BOT: {"component_post_url": hook.url(), "component_post_timeout": 2, **OPTIONS}})
    alice = connect(prosody)
    since, _ = ask(alice, "a long question")
    wait_text(alice, since, "Thinking")
    stop_since, stop_id = ask(alice, "stop")
    bounce = alice.wait_for(lambda s: s.name == "message" and s.id == stop_id, since=stop_since, timeout=30,
                            what="the follow-up's answer")
    assert bounce.type == "error" and bounce.error == TIMED_OUT, bounce.xml
    assert not hook.requests[0].stream.ended.is_set(), "the stream still runs"
    log = prosody.log_text()
    assert "behind an earlier stanza of the same sender" in log, prosody.diagnostics(40)
    answered.set()
    check_answer(answer_of(alice, since), "Thinking done.")
    # Its deadline passed before the stream ended: it was answered, not posted as well.
    alice.expect_quiet(alice.mark(), ignore=lambda s: s.body is None)
    assert [r.body_field for r in hook.requests] == ["a long question"]


def test_answers_waiting_behind_a_stream_are_bounded_by_the_queue_size(prosody_factory, make_stream_hook,
                                                                       connect):
    finish = threading.Event()

    def script(req):
        if req.body_field.startswith("quick"):
            req.answer_json({"body": f"answer to {req.body_field}"})
            return None
        return [delta("Streaming"), keep_alive_until(finish, 0.5), delta(" along.")]

    hook = make_stream_hook(script)
    prosody = prosody_factory({BOT: {"component_post_url": hook.url(), "component_post_queue_size": 3, **OPTIONS}})
    alice = connect(prosody)
    phone = connect(prosody, "alice", resource="phone")
    since, _ = ask(alice, "go")
    wait_text(alice, since, "Streaming")
    # The user's other client: each answer is in before the next question goes (one line).
    phone_since = phone.mark()
    ids = []
    for n in range(5):
        _, mid = ask(phone, f"quick {n}")
        ids.append(mid)
        hook.wait_for_requests(2 + n)
    # Three wait for the stream; the two past the bound are refused now, while it streams.
    for mid in ids[3:]:
        bounce = phone.wait_for(lambda s, mid=mid: s.name == "message" and s.id == mid, since=phone_since,
                                timeout=30, what="the refusal")
        assert bounce.type == "error" and bounce.error == QUEUE_FULL, bounce.xml
    assert not hook.requests[0].stream.ended.is_set(), "the stream still runs"
    assert "component_post_queue_size" in prosody.log_text(), prosody.diagnostics(40)
    finish.set()
    check_answer(answer_of(alice, since), "Streaming along.")
    for n in range(3):
        wait_text(phone, phone_since, f"answer to quick {n}")
    got = [s.body for s in phone.received[phone_since:] if s.frm == BOT_JID and s.body is not None]
    assert got[-3:] == [f"answer to quick {n}" for n in range(3)], got
    assert not [s for s in got if "quick 3" in s or "quick 4" in s], got
