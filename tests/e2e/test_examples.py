"""The example bots in examples/ (README, Writing a bot), each run as its file says, against a
real Prosody: a chat reply, a headline, an iq answered with a stanza, a message pushed on the
bot's own initiative, an iq it does not implement; and posted to directly: bad and stale
signatures refused, a retried delivery answered once, with the answer it got the first time."""

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

from conftest import BOT, REPO_ROOT
from e2e_util import free_port
from e2e_webhook import WebhookProcess

SECRET = "example-secret"
PUSH_TOKEN = "Bearer example-push-token"
BOT_JID = f"echo@{BOT}"
EXAMPLES = os.path.join(REPO_ROOT, "examples")


@pytest.fixture(scope="session")
def node_bot_dir():
    """examples/node with Express installed by `npm ci` from the committed lockfile, from the
    registry npm is configured for; once per run, outside the repo."""
    parent = tempfile.mkdtemp(prefix="e2e-node-bot-")
    try:
        for name in ("bot.js", "package.json", "package-lock.json"):
            shutil.copy(os.path.join(EXAMPLES, "node", name), parent)
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=parent, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        yield parent
    finally:
        shutil.rmtree(parent, ignore_errors=True)


# How each bot is run: as the first lines of its file say.
LANGUAGES = {
    "python": lambda request: (["/usr/bin/python3", os.path.join(EXAMPLES, "python", "bot.py"), "{port}"], None),
    "node": lambda request: (["node", "bot.js", "{port}"], request.getfixturevalue("node_bot_dir")),
    "php": lambda request: (["php", "-S", "127.0.0.1:{port}", os.path.join(EXAMPLES, "php", "bot.php")], None),
}


@pytest.fixture(params=list(LANGUAGES))
def example_bot(request):
    """(language, the bot's URL, the port of Prosody's HTTP server it pushes to)."""
    command, cwd = LANGUAGES[request.param](request)
    http_port = free_port()
    bot = WebhookProcess(command, name=f"{request.param}-bot", cwd=cwd, env={
        "BOT_SECRET": SECRET, "PUSH_TOKEN": PUSH_TOKEN, "PUSH_URL": f"http://127.0.0.1:{http_port}/component_http"})
    try:
        yield request.param, bot.url(), http_port
    finally:
        if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
            print(f"===== the {request.param} bot's output =====\n{bot.output()}")
        bot.close()


def post(url, payload, delivery_id, secret=SECRET, timestamp=None):
    """POSTs a request as the module does; -> (status, Content-Type, body)."""
    body = json.dumps(payload).encode()
    timestamp = str(timestamp or int(time.time()))
    signature = "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Signature-Timestamp": timestamp, "X-Signature": signature}
    if delivery_id is not None:
        headers.update({"X-Delivery-Id": delivery_id, "X-Retry-Count": "0"})
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def test_example_bot_end_to_end(example_bot, prosody_factory, connect):
    language, url, http_port = example_bot
    prosody = prosody_factory(
        {BOT: {"component_post_url": url, "component_post_secret": SECRET, "component_post_stanzas": ["message", "iq"],
               "component_post_push_credentials": PUSH_TOKEN}},
        global_options={"http_ports": [http_port], "http_interfaces": ["127.0.0.1"], "http_default_host": BOT})
    alice = connect(prosody)

    since = alice.mark()
    alice.send_message(BOT_JID, "hello")
    reply = alice.wait_for(lambda s: s.name == "message", since=since, timeout=15)
    assert (reply.type, reply.frm, reply.body) == ("chat", BOT_JID, "You said: hello (#1)")

    since = alice.mark()
    alice.send_message(BOT_JID, "news")
    reply = alice.wait_for(lambda s: s.name == "message", since=since, timeout=15)
    assert (reply.type, reply.body) == ("headline", "Nothing new today.")

    since = alice.mark()
    iid = alice.send_iq_get(BOT_JID, "<query xmlns='jabber:iq:version'/>")
    result = alice.wait_for(lambda s: s.name == "iq" and s.id == iid, since=since, timeout=15)
    assert result.type == "result", result.xml
    name = result.child("query", "jabber:iq:version").find("{jabber:iq:version}name").text
    assert name == f"{language} example bot"

    # A message of the bot's own, pushed: the reply and the push both come.
    since = alice.mark()
    alice.send_message(BOT_JID, "ping me")
    got = alice.wait_for_count(lambda s: s.name == "message", 2, since=since, timeout=15)
    assert sorted(s.body for s in got) == sorted(["ping!", "Sent you a ping." if language == "php"
                                                  else "I will, in a second."])
    assert all(s.frm == BOT_JID for s in got)

    since = alice.mark()
    iid = alice.send_iq_get(BOT_JID, "<query xmlns='http://jabber.org/protocol/disco#items'/>")
    error = alice.wait_for(lambda s: s.name == "iq" and s.id == iid, since=since, timeout=15)
    assert error.type == "error" and error.error[:2] == ("cancel", "feature-not-implemented"), error.xml


def test_example_bot_checks_signatures_and_answers_a_retry_once(example_bot):
    language, url, _ = example_bot
    stanza = {"to": BOT_JID, "from": "alice@localhost/x", "kind": "message",
              "stanza": "<message type='chat'><body>hi</body></message>", "body": "hi"}
    assert post(url, stanza, "id-0", secret="wrong")[0] == 401
    assert post(url, stanza, "id-0", timestamp=int(time.time()) - 3600)[0] == 401, "a replayed request"
    first = post(url, stanza, "id-1")
    # Express's res.json() adds a charset, which the module accepts (the end-to-end test's replies).
    content_type = "application/json; charset=utf-8" if language == "node" else "application/json"
    assert first[:2] == (200, content_type) and json.loads(first[2]) == {"body": "You said: hi (#1)"}
    assert post(url, stanza, "id-1") == first, "a retried delivery must get the same answer, not a new one"
    assert json.loads(post(url, stanza, "id-2")[2]) == {"body": "You said: hi (#2)"}
    # Without a delivery id (say, from curl), nothing is taken for a retry.
    assert json.loads(post(url, stanza, None)[2]) == {"body": "You said: hi (#3)"}
    assert json.loads(post(url, stanza, None)[2]) == {"body": "You said: hi (#4)"}
