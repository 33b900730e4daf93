"""mod_rest's callbacks as the current community module makes them (README: Migrating from the
current community mod_rest): the OPTIONS probe at start, whose Accept picks JSON over the
configured XML, and the example callback bot (examples/python/rest_bot.py, in the style of the
community module's example app) answering a message, disco#info, disco#items, version and ping
in JSON, each answer checked over XMPP."""

import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from e2e_util import die_with_parent, free_port, port_accepts, stop_process, wait_until

REST = "rest.localhost"
BOT_JID = f"bot@{REST}"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"


@pytest.fixture
def rest_bot(tmp_path):
    """examples/python/rest_bot.py, run as its docstring says: its port."""
    port = free_port()
    with open(tmp_path / "bot.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, "examples", "python", "rest_bot.py")],
                                env={**os.environ, "PORT": str(port)}, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log, preexec_fn=die_with_parent)
    try:
        wait_until(lambda: proc.poll() is not None or port_accepts(port), timeout=30, what="rest_bot.py to listen")
        assert proc.poll() is None, (tmp_path / "bot.log").read_text()
        yield port
    finally:
        stop_process(proc)


def answer_to(alice, stanza_id, since):
    return alice.wait_for(lambda s: s.name == "iq" and s.id == stanza_id, since=since, what=f"the answer to {stanza_id}")


def test_the_example_bot_answers_in_json_after_the_options_probe_picks_it(prosody_factory, connect, rest_bot):
    http_port = free_port()
    prosody = prosody_factory({REST: {"component_secret": "s3cret",
                                      "rest_callback_url": f"http://127.0.0.1:{rest_bot}/api"}},
                              component_modules={REST: "rest"},
                              global_options={"http_ports": [http_port], "http_interfaces": ["127.0.0.1"],
                                              "modules_enabled": ["roster", "saslauth", "admin_shell", "ping"]})
    # The probe's answer switches the configured XML (the default) to JSON.
    wait_until(lambda: "stanzas are POSTed as such" in prosody.log_text(), timeout=30,
               what="the OPTIONS probe's answer")
    alice = connect(prosody, "alice")
    since = alice.mark()

    alice.send_message(BOT_JID, "Hello")
    reply = alice.wait_for(lambda s: s.name == "message" and s.frm == BOT_JID, since=since, what="the chat reply")
    assert reply.body == "You said: Hello" and reply.type == "chat", reply

    alice.send_iq(BOT_JID, payload=f"<query xmlns='{DISCO_INFO}'/>", id_="info")
    info = answer_to(alice, "info", since)
    assert info.type == "result", info
    query = info.child("query", DISCO_INFO)
    identity = query.find(f"{{{DISCO_INFO}}}identity")
    assert (identity.get("category"), identity.get("type"), identity.get("name")) == (
        "component", "generic", "rest_bot.py"), info
    features = {f.get("var") for f in query.findall(f"{{{DISCO_INFO}}}feature")}
    assert {"jabber:iq:version", "urn:xmpp:ping", DISCO_ITEMS} <= features, info

    alice.send_iq(BOT_JID, payload=f"<query xmlns='{DISCO_ITEMS}'/>", id_="items")
    items = answer_to(alice, "items", since)
    item = items.child("query", DISCO_ITEMS).find(f"{{{DISCO_ITEMS}}}item")
    assert items.type == "result" and (item.get("jid"), item.get("name")) == ("example.org", "Example Dot Org"), items

    alice.send_iq(BOT_JID, payload="<query xmlns='jabber:iq:version'/>", id_="version")
    version = answer_to(alice, "version", since)
    query = version.child("query", "jabber:iq:version")
    assert version.type == "result", version
    assert (query.findtext("{jabber:iq:version}name"), query.findtext("{jabber:iq:version}version")) == (
        "rest_bot.py", "1.0"), version

    alice.send_iq(BOT_JID, payload="<ping xmlns='urn:xmpp:ping'/>", id_="ping")
    pong = answer_to(alice, "ping", since)
    assert pong.type == "result" and pong.frm == BOT_JID, pong


def test_the_callback_url_is_filled_per_stanza_and_says_its_language(prosody_factory, connect, webhook):
    url = webhook.url("/in/{kind}/{type}") + "?to={to}&from={from}"
    http_port = free_port()
    prosody = prosody_factory({REST: {"rest_callback_url": url, "rest_retry_window": 0}},
                              component_modules={REST: "rest"},
                              global_options={"http_ports": [http_port], "http_interfaces": ["127.0.0.1"],
                                              "modules_enabled": ["roster", "saslauth", "admin_shell", "ping"]})
    alice = connect(prosody, "alice")
    alice.send_raw(f"<message type='chat' to='{BOT_JID}' xml:lang='de'><body>Hallo</body></message>")
    alice.send_raw(f"<presence to='{BOT_JID}'/>")
    requests = webhook.wait_for_requests(2)
    by_kind = {r.path.split("/")[2]: r for r in requests if r.method == "POST"}
    message, presence = by_kind["message"], by_kind["presence"]
    jid = alice.full_jid.replace("@", "%40").replace("/", "%2F")
    assert message.path == f"/in/message/chat?to=bot%40{REST}&from={jid}", message.path
    assert message.header("content-language") == "de", message.headers
    assert presence.path == f"/in/presence/?to=bot%40{REST}&from={jid}", presence.path
    # Without its own, a stanza has its stream's (the client's "en"), which Prosody writes on it.
    assert presence.header("content-language") == "en", presence.headers
