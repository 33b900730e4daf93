"""examples/python/llm_bot.py (README, Writing a bot) run as its file says, against a real Prosody
and a scripted stand-in of an OpenAI-compatible streaming API (fake_llm_api.py): the user
watches the model's words arrive and ends with the exact answer, the model gets the conversation
so far, a failing model becomes an apology, and the bot refuses to start without a secret or a
model."""

import json
import os
import subprocess
import threading

import pytest

from conftest import BOT
from e2e_stream_hook import wait
from e2e_webhook import WebhookProcess
from fake_llm_api import FakeLlmApi
from test_examples import EXAMPLES, NO_SECRET, SECRET, environment, post
from test_stream import ACTIVE, answer_of, check_answer, wait_text

BOT_JID = f"assistant@{BOT}"
LLM_BOT = os.path.join(EXAMPLES, "python", "llm_bot.py")


@pytest.fixture
def api():
    fake = FakeLlmApi(lambda request: pytest.fail("no answer scripted"))
    yield fake
    fake.close()
    assert not fake.handler_errors, fake.handler_errors


@pytest.fixture
def llm_bot(api):
    bot = WebhookProcess(["/usr/bin/python3", LLM_BOT, "{port}"], name="llm-bot", env={
        "BOT_SECRET": SECRET, "LLM_API_URL": api.url(), "LLM_MODEL": "fake-model", "LLM_API_KEY": "sk-test"})
    yield bot
    bot.close()


def test_the_llm_bot_streams_the_models_answer_and_keeps_the_conversation(api, llm_bot, prosody_factory, connect):
    more = threading.Event()
    answers = iter([["XMPP", " is", wait(more), " an", " open", " protocol."], ["It", " is", " from", " 1999."], 503])
    api.answer = lambda request: next(answers)
    prosody = prosody_factory({BOT: {"component_post_url": llm_bot.url(), "component_post_secret": SECRET,
                                     "component_post_stream_interval": 0.2}})
    alice = connect(prosody)

    since = alice.mark()
    alice.send_message(BOT_JID, "What is XMPP?", extra=ACTIVE)
    wait_text(alice, since, "XMPP is", frm=BOT_JID)
    more.set()
    check_answer(answer_of(alice, since, frm=BOT_JID), "XMPP is an open protocol.")
    (first,) = api.requests
    assert first.header("authorization") == "Bearer sk-test"
    assert (first.json["model"], first.json["stream"]) == ("fake-model", True)
    system = first.json["messages"][0]
    assert system["role"] == "system" and first.json["messages"][1:] == [{"role": "user", "content": "What is XMPP?"}]

    since = alice.mark()
    alice.send_message(BOT_JID, "How old is it?", extra=ACTIVE)
    assert answer_of(alice, since, frm=BOT_JID)[-1].body == "It is from 1999."
    assert api.requests[1].json["messages"] == [
        system, {"role": "user", "content": "What is XMPP?"},
        {"role": "assistant", "content": "XMPP is an open protocol."},
        {"role": "user", "content": "How old is it?"}]

    since = alice.mark()
    alice.send_message(BOT_JID, "And now?", extra=ACTIVE)
    assert answer_of(alice, since, frm=BOT_JID)[-1].body == "Sorry, I cannot answer right now: the language model is not available."
    assert "the model failed for alice@localhost" in llm_bot.output() and "answered 503" in llm_bot.output()


def test_the_llm_bot_answers_a_retried_delivery_with_the_answer_it_gave(api, llm_bot):
    api.answer = lambda request: ["Only", " once."]
    stanza = {"to": BOT_JID, "from": "alice@localhost/x", "kind": "message", "type": "chat",
              "stanza": "<message type='chat'><body>hi</body></message>", "body": "hi"}
    status, content_type, streamed = post(llm_bot.url(), stanza, "id-1")
    assert (status, content_type) == (200, "application/x-ndjson")
    assert [json.loads(line) for line in streamed.splitlines()] == [{"delta": "Only"}, {"delta": " once."}]
    assert post(llm_bot.url(), stanza, "id-1", retry=1) == (200, "application/json", b'{"body": "Only once."}')
    assert post(llm_bot.url(), stanza, "id-2", secret="wrong")[0] == 401
    assert len(api.requests) == 1, "the model was asked once"


@pytest.mark.parametrize("settings,says", [
    ({"LLM_MODEL": "m"}, NO_SECRET),
    ({"BOT_INSECURE": "1"}, "LLM_MODEL is not set"),
], ids=["no-secret", "no-model"])
def test_the_llm_bot_refuses_to_start_without_a_secret_or_a_model(settings, says, tmp_path):
    r = subprocess.run(["/usr/bin/python3", LLM_BOT, "0"], env=environment(TMPDIR=str(tmp_path), **settings),
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and says in r.stderr, r.stdout + r.stderr
