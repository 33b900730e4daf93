"""The example bots in examples/ (README, Writing a bot), each run as its file says, against a
real Prosody: a chat reply, a headline, an iq answered with a stanza, a message pushed on the
bot's own initiative, an iq it does not implement, a delivery retried while the bot restarted;
and posted to directly: bad and stale signatures refused, a retried delivery answered once, with
the answer it got the first time, a signed request replayed under another delivery id or retry
count refused. Without BOT_SECRET each refuses to start unless BOT_INSECURE=1. The README's
verification snippets (Signatures) are the bots' own code."""

import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

from conftest import BOT, REPO_ROOT
from e2e_util import die_with_parent, free_port, port_accepts, stop_process, wait_until
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
    "php": lambda request: (["php", os.path.join(EXAMPLES, "php", "bot.php"), "{port}"], None),
}
# What each bot says when it refuses to start (the same words in the three).
NO_SECRET = ("BOT_SECRET is not set: set it to the component's component_post_secret, "
             "or set BOT_INSECURE=1 to accept unsigned requests from anyone")


@pytest.fixture(params=list(LANGUAGES))
def example_bot(request):
    """(language, the bot (a WebhookProcess), the port of Prosody's HTTP server it pushes to)."""
    command, cwd = LANGUAGES[request.param](request)
    http_port = free_port()
    bot = WebhookProcess(command, name=f"{request.param}-bot", cwd=cwd, env={
        "BOT_SECRET": SECRET, "PUSH_TOKEN": PUSH_TOKEN, "PUSH_URL": f"http://127.0.0.1:{http_port}/component_http"})
    try:
        yield request.param, bot, http_port
    finally:
        if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
            print(f"===== the {request.param} bot's output =====\n{bot.output()}")
        bot.close()


def signed(payload, delivery_id, retry=0, secret=SECRET, timestamp=None):
    """A request as the module makes it, signed as the README says (computed here, independently
    of the module and the bots); no delivery id: neither it nor a retry count sent, and empty
    lines signed for them. -> (body, headers)."""
    body = json.dumps(payload).encode()
    timestamp = str(timestamp or int(time.time()))
    fields = ["", ""] if delivery_id is None else [delivery_id, str(retry)]
    text = "\n".join(["v1", timestamp, *fields, ""]).encode() + body
    signature = "sha256=" + hmac.new(secret.encode(), text, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Signature-Timestamp": timestamp, "X-Signature": signature}
    if delivery_id is not None:
        headers.update({"X-Delivery-Id": delivery_id, "X-Retry-Count": str(retry)})
    return body, headers


def post(url, payload, delivery_id, **kw):
    """POSTs a request as the module does; -> (status, Content-Type, body)."""
    return send(url, *signed(payload, delivery_id, **kw))


def send(url, body, headers):
    """POSTs body with exactly these headers; -> (status, Content-Type, body)."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def test_example_bot_end_to_end(example_bot, prosody_factory, connect):
    language, bot, http_port = example_bot
    url = bot.url()
    prosody = prosody_factory(
        {BOT: {"component_post_url": url, "component_post_secret": SECRET, "component_post_stanzas": ["message", "iq"],
               "component_post_push_credentials": PUSH_TOKEN}},
        global_options={"http_ports": [http_port], "http_interfaces": ["127.0.0.1"], "http_default_host": BOT})
    alice = connect(prosody)

    since = alice.mark()
    alice.send_message(BOT_JID, "hello")
    reply = alice.wait_for(lambda s: s.name == "message", since=since, timeout=15)
    assert (reply.type, reply.frm, reply.body) == ("chat", BOT_JID, "You said: hello (#1)")

    if language == "python":
        # A photo: a thumbs-up reaction to it, then the file back, then its caption.
        since = alice.mark()
        url = "https://upload.localhost/f/cat.jpg"
        mid = alice.send_message(BOT_JID, url, extra=f"<x xmlns='jabber:x:oob'><url>{url}</url></x>")
        reaction, file, caption = alice.wait_for_count(lambda s: s.name == "message", 3, since=since, timeout=15)
        reactions = reaction.child("reactions", "urn:xmpp:reactions:0")
        assert reactions.get("id") == mid and [r.text for r in reactions] == ["\N{THUMBS UP SIGN}"], reaction.xml
        assert file.body == url and file.child("x", "jabber:x:oob") is not None, file.xml
        assert caption.body == "Nice one! Here it is back."

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

    # A delivery retried while the bot restarts: its first attempt fails (the outage is logged
    # after it), so the one that arrives has an X-Retry-Count of 1 or more, signed by the module
    # with the rest; the bot checks the signature and answers.
    bot.kill()
    since = alice.mark()
    alice.send_message(BOT_JID, "again")
    wait_until(lambda: "The webhook is unreachable (" in prosody.log_text(), timeout=15,
               what="the first attempt to fail")
    bot.start()
    reply = alice.wait_for(lambda s: s.name == "message", since=since, timeout=15)
    assert reply.type == "chat" and re.fullmatch(r"You said: again \(#\d+\)", reply.body or ""), reply.xml


def test_example_bot_checks_signatures_and_answers_a_retry_once(example_bot):
    language, bot, _ = example_bot
    url = bot.url()
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


def test_example_bot_refuses_a_replay_under_another_delivery_id(example_bot):
    """Someone who captured a signed request sends it again, within the 5 minutes a timestamp is
    good for, with a fresh X-Delivery-Id (so that "drop duplicates by it" would let it through)
    or another X-Retry-Count: the signature covers both, so the bot refuses it. Sent again as
    it was, it is a duplicate: the first answer again, nothing done twice."""
    _, bot, _ = example_bot
    url = bot.url()
    stanza = {"to": BOT_JID, "from": "alice@localhost/x", "kind": "message",
              "stanza": "<message type='chat'><body>pay</body></message>", "body": "pay"}
    body, headers = signed(stanza, "id-1")
    first = send(url, body, headers)
    assert first[0] == 200 and json.loads(first[2]) == {"body": "You said: pay (#1)"}
    assert send(url, body, {**headers, "X-Delivery-Id": "id-2"})[0] == 401, "replayed with a fresh delivery id"
    assert send(url, body, {**headers, "X-Retry-Count": "1"})[0] == 401, "replayed with another retry count"
    no_id = {k: v for k, v in headers.items() if k not in ("X-Delivery-Id", "X-Retry-Count")}
    assert send(url, body, no_id)[0] == 401, "replayed without the delivery id"
    assert send(url, body, headers) == first
    # Only the first one was handled: the next request is the second.
    assert json.loads(post(url, stanza, "id-3")[2]) == {"body": "You said: pay (#2)"}


def bot_command(language, request):
    """(command with the port filled in, cwd, port) to run a bot as its file says."""
    command, cwd = LANGUAGES[language](request)
    port = free_port()
    return [a.replace("{port}", str(port)) for a in command], cwd, port


def environment(**settings):
    """This process's environment without BOT_SECRET and BOT_INSECURE, plus settings."""
    env = {k: v for k, v in os.environ.items() if k not in ("BOT_SECRET", "BOT_INSECURE")}
    return {**env, **settings}


@pytest.mark.parametrize("settings", [{}, {"BOT_SECRET": ""}, {"BOT_INSECURE": "0"}, {"BOT_INSECURE": "yes"}],
                         ids=["neither", "empty-secret", "insecure-0", "insecure-yes"])
@pytest.mark.parametrize("language", list(LANGUAGES))
def test_example_bot_refuses_to_start_without_a_secret(language, settings, request, tmp_path):
    """Without BOT_SECRET (unset or empty) and without BOT_INSECURE=1 exactly, the bot exits
    with a non-zero status and says why, on its error output, without listening."""
    command, cwd, port = bot_command(language, request)
    with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:
        proc = subprocess.Popen(command, cwd=cwd, env=environment(TMPDIR=str(tmp_path), **settings),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err, preexec_fn=die_with_parent)
    try:
        wait_until(lambda: proc.poll() is not None or port_accepts(port), timeout=30,
                   what=f"the {language} bot to exit or listen")
        assert proc.poll() is not None, f"the {language} bot started without a secret"
    finally:
        stop_process(proc)
    assert proc.returncode != 0
    assert NO_SECRET in (tmp_path / "err").read_text(), (tmp_path / "out").read_text()


@pytest.mark.parametrize("language", list(LANGUAGES))
def test_example_bot_starts_with_bot_insecure(language, request):
    """BOT_INSECURE=1 and no BOT_SECRET: the bot starts, says signatures are not checked, and
    answers an unsigned request."""
    command, cwd = LANGUAGES[language](request)
    bot = WebhookProcess(command, name=f"{language}-insecure-bot", cwd=cwd, env={"BOT_SECRET": "", "BOT_INSECURE": "1"})
    try:
        stanza = {"to": BOT_JID, "from": "alice@localhost/x", "kind": "message",
                  "stanza": "<message type='chat'><body>hi</body></message>", "body": "hi"}
        status, _, body = send(bot.url(), json.dumps(stanza).encode(), {"Content-Type": "application/json"})
        assert (status, json.loads(body)) == (200, {"body": "You said: hi (#1)"})
        assert "BOT_INSECURE=1: signatures are not checked" in bot.output()
    finally:
        bot.close()


def test_php_bot_served_without_a_secret_refuses_every_request():
    """The PHP bot served by `php -S` directly (or any web server), without BOT_SECRET or
    BOT_INSECURE=1: each request gets 500, and the log says why."""
    bot = WebhookProcess(["php", "-S", "127.0.0.1:{port}", os.path.join(EXAMPLES, "php", "bot.php")],
                         name="php-bot-unset", env={"BOT_SECRET": "", "BOT_INSECURE": ""})
    try:
        stanza = {"to": BOT_JID, "from": "alice@localhost/x", "kind": "message",
                  "stanza": "<message type='chat'><body>hi</body></message>", "body": "hi"}
        assert post(bot.url(), stanza, "id-1")[0] == 500
        wait_until(lambda: NO_SECRET in bot.output(), timeout=15, what="the reason in php -S's log")
    finally:
        bot.close()


def code_blocks(section, language):
    """The README's ```language blocks in the section headed `## section`."""
    with open(os.path.join(REPO_ROOT, "README.md")) as f:
        readme = f.read()
    text = readme.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


@pytest.mark.parametrize("language, path", [("php", "php/bot.php"), ("python", "python/bot.py")])
def test_readme_verification_snippet_is_the_bots_code(language, path):
    """README, Signatures: every paragraph of the PHP and the Python snippet is in the bot
    verbatim, so the snippets are what the tests above run (the Python one's `import` line: the
    bot imports the same modules)."""
    (snippet,) = code_blocks("Signatures", language)
    with open(os.path.join(EXAMPLES, path)) as f:
        source = f.read()
    for paragraph in snippet.strip("\n").split("\n\n"):
        if paragraph.startswith("import "):
            for name in paragraph.removeprefix("import ").split(", "):
                assert f"\nimport {name}\n" in source, name
        else:
            assert paragraph.strip("\n") in source, paragraph
