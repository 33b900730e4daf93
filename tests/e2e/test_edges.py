"""Cases the README covers that need a rig of their own: a CA file that cannot work, an iq
without an id, a sender on another domain (as over s2s), and upgrading the rock while Prosody
runs."""

import hashlib
import os
import re
import socket
import subprocess
import tempfile

from conftest import BOT, LUA_VERSION, REPO_ROOT, ROCKSPEC
from e2e_util import free_port, wait_until
from e2e_webhook import Reply

BOT_JID = f"echo@{BOT}"


def error_lines(prosody):
    return [line for line in prosody.log_text().splitlines() if "\terror\t" in line]


def test_a_ca_file_that_cannot_work_stops_the_component_naming_it(prosody_factory, webhook):
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as f:
        f.write("this is not a certificate\n")
    try:
        for path, why in [("/nonexistent/ca.pem", "cannot be read"), (f.name, "holds no PEM certificate")]:
            prosody = prosody_factory({BOT: {"component_post_url": webhook.url(), "component_post_ca_file": path}})
            named = [line for line in error_lines(prosody) if "component_post_ca_file" in line and why in line]
            assert named, "\n".join(error_lines(prosody))
            assert prosody.alive()
    finally:
        os.unlink(f.name)




class ExternalComponent:
    """A XEP-0114 component connection, to send stanzas from another domain the way a remote
    server's would arrive: Prosody routes them to the bot like any stanza from outside."""

    def __init__(self, port, domain, secret):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(f"<stream:stream xmlns='jabber:component:accept' xmlns:stream="
                          f"'http://etherx.jabber.org/streams' to='{domain}'>".encode())
        header = self._read_until(b">")
        stream_id = re.search(rb"id=['\"]([^'\"]+)['\"]", header).group(1).decode()
        digest = hashlib.sha1((stream_id + secret).encode()).hexdigest()
        self.sock.sendall(f"<handshake>{digest}</handshake>".encode())
        assert b"<handshake" in self._read_until(b"handshake"), "handshake refused"
        self.buffer = b""

    def _read_until(self, marker):
        data = b""
        while marker not in data:
            chunk = self.sock.recv(4096)
            assert chunk, f"connection closed; got {data!r}"
            data += chunk
        return data

    def send(self, xml):
        self.sock.sendall(xml.encode())

    def wait_for(self, needle):
        self.buffer += self._read_until(needle.encode()) if needle.encode() not in self.buffer else b""
        return self.buffer.decode()

    def close(self):
        self.sock.close()


def test_a_sender_on_another_domain_gets_its_reply_routed_back(prosody_factory, webhook):
    webhook.handler = lambda req: Reply.with_json({"body": "hello " + req.json["from"]})
    port = free_port()
    prosody = prosody_factory(
        {BOT: {"component_post_url": webhook.url()},
         "remote.example": {"component_secret": "s3cret"}},
        component_modules={"remote.example": "component"},
        global_options={"component_ports": [port], "component_interfaces": ["127.0.0.1"]})
    wait_until(lambda: prosody.alive(), timeout=5, what="Prosody")
    remote = ExternalComponent(port, "remote.example", "s3cret")
    try:
        remote.send(f"<message from='someone@remote.example/desk' to='{BOT_JID}' type='chat' id='r1'>"
                    "<body>hi from afar</body></message>")
        (req,) = webhook.wait_for_requests(1)
        assert req.json["from"] == "someone@remote.example/desk"
        received = remote.wait_for("hello someone@remote.example/desk")
        assert f"from='{BOT_JID}'" in received.replace('"', "'") and "to='someone@remote.example/desk'" in \
            received.replace('"', "'"), received
    finally:
        remote.close()


def test_an_iq_without_an_id_is_posted_but_not_answered(prosody_factory, webhook, connect):
    """An iq without an id cannot be answered (RFC 6120 8.2.3 requires one). From a client,
    Prosody refuses it itself and nothing is posted; from a component (or a remote server) it
    reaches the bot: it is posted, and neither the webhook's reply nor an error goes back."""
    webhook.handler = lambda req: Reply.with_json({"stanza": "<iq type='result'/>"} if req.json["kind"] == "iq"
                                                 else {"body": "ack " + str(req.json.get("body"))})
    port = free_port()
    prosody = prosody_factory(
        {BOT: {"component_post_url": webhook.url(), "component_post_stanzas": ["message", "iq"]},
         "remote.example": {"component_secret": "s3cret"}},
        component_modules={"remote.example": "component"},
        global_options={"component_ports": [port], "component_interfaces": ["127.0.0.1"]})
    alice = connect(prosody)
    since = alice.mark()
    alice.send_raw(f"<iq type='get' to='{BOT_JID}'><query xmlns='jabber:iq:version'/></iq>")
    bounce = alice.wait_for(lambda s: s.name == "iq" and s.type == "error", since=since)
    assert bounce.error[:2] == ("modify", "bad-request")
    remote = ExternalComponent(port, "remote.example", "s3cret")
    try:
        remote.send(f"<iq type='get' from='someone@remote.example/desk' to='{BOT_JID}'>"
                    "<query xmlns='jabber:iq:version'/></iq>")
        remote.send(f"<message from='someone@remote.example/desk' to='{BOT_JID}' type='chat' id='after'>"
                    "<body>after the iq</body></message>")
        received = remote.wait_for("ack after the iq")
        assert [r.json["kind"] for r in webhook.requests] == ["iq", "message"]
        assert "<iq" not in received, received
    finally:
        remote.close()


def test_upgrading_the_rock_while_prosody_runs_is_harmless_until_the_restart(prosody_factory, webhook, connect,
                                                                           plugin_tree):
    """`luarocks make` into the tree a running Prosody loaded the module from (the README's
    upgrade step) must not disturb it: the library file is replaced, not rewritten in place,
    so the process keeps the one it mapped. Prosody goes on serving; the new library is used
    after the restart the README asks for."""
    webhook.respond_json({"body": "before"})
    prosody = prosody_factory({BOT: {"component_post_url": webhook.url()}})
    alice = connect(prosody)
    since = alice.mark()
    alice.send_message(BOT_JID, "one")
    assert alice.wait_for(lambda s: s.name == "message", since=since).body == "before"
    lib = os.path.join(plugin_tree, "lib", "lua", LUA_VERSION, "component_http_native.so")
    inode = os.stat(lib).st_ino
    r = subprocess.run(["luarocks", "--lua-version", LUA_VERSION, "make", "--tree", plugin_tree, ROCKSPEC],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr
    assert os.stat(lib).st_ino != inode, "the library was rewritten in place under the running process"
    webhook.respond_json({"body": "after"})
    since = alice.mark()
    alice.send_message(BOT_JID, "two")
    assert alice.wait_for(lambda s: s.name == "message", since=since).body == "after"
    assert prosody.alive()
