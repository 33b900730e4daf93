"""The README's PHP echo bot, end to end."""

import pytest

from conftest import BOT


@pytest.fixture
def echo_setup(prosody_factory, php_echo, connect):
    prosody = prosody_factory({BOT: {"component_post_url": php_echo.url()}})
    client = connect(prosody)
    return prosody, client


@pytest.mark.parametrize("to", ["echo@bot.localhost", "bot.localhost", "echo@bot.localhost/res"],
                         ids=["bare", "host", "full"])
def test_php_echo_bot_replies(echo_setup, to):
    _, client = echo_setup
    since = client.mark()
    client.send_message(to, "hello")
    reply = client.wait_for(lambda s: s.name == "message", since=since, what="echo reply")
    assert reply.body == "Did you say hello?"
    assert reply.type == "chat"
    assert reply.frm == to            # to/from swapped
    assert reply.to == client.full_jid
    assert reply.error is None


def test_php_echo_bot_unicode_and_markup(echo_setup):
    _, client = echo_setup
    since = client.mark()
    client.send_message("echo@bot.localhost", "héllo <b>&</b> 🙂")
    reply = client.wait_for(lambda s: s.name == "message", since=since, what="echo reply")
    assert reply.body == "Did you say héllo <b>&</b> 🙂?"


def test_php_echo_bot_sequence_in_order(echo_setup):
    _, client = echo_setup
    since = client.mark()
    words = [f"w{i}" for i in range(5)]
    for w in words:
        client.send_message("echo@bot.localhost", w)
    replies = client.wait_for_count(lambda s: s.name == "message", len(words), since=since)
    # README, Order: one sender's messages are posted, and answered, in the order sent.
    assert [r.body for r in replies] == [f"Did you say {w}?" for w in words]
