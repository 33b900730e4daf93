#!/usr/bin/env python3
"""A callback bot for mod_rest in its JSON mapping, standard library only.

Run:  PORT=5000 python3 examples/python/rest_bot.py
Prosody (mod_rest loaded as a Component, say "bot.example.com"):

    Component "bot.example.com" "rest"
        component_secret = "..."
        rest_callback_url = "http://127.0.0.1:5000/api"

At start mod_rest sends OPTIONS to the callback URL; this bot's Accept header asks for JSON, so
every stanza comes as a JSON object (kind, type, to, from, id, body, disco, version, ...) and the
bot answers in JSON with the reply's fields only: mod_rest addresses the reply to the sender.

- a message with a body gets a chat reply;
- an iq get of disco#info, disco#items, version or ping gets its answer (ping: 204, no body,
  which answers an iq with an empty result);
- anything else gets 501, which mod_rest turns into a feature-not-implemented error.
"""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = "rest_bot.py"
FEATURES = [
    "http://jabber.org/protocol/disco#info",
    "http://jabber.org/protocol/disco#items",
    "jabber:iq:version",
    "urn:xmpp:ping",
]


def answer(stanza):
    """The reply's JSON fields for `stanza` (a dict), or None for no reply; and the status."""
    kind = stanza.get("kind")
    if kind == "message" and "body" in stanza:
        return {"body": f"You said: {stanza['body']}"}, 200
    if kind == "iq" and stanza.get("type") == "get":
        if "disco" in stanza:
            return {"disco": {"identities": [{"category": "component", "type": "generic", "name": NAME}],
                              "features": FEATURES}}, 200
        if "items" in stanza:
            return {"items": [{"jid": "example.org", "name": "Example Dot Org"}]}, 200
        if "version" in stanza:
            return {"version": {"name": NAME, "version": "1.0"}}, 200
        if "ping" in stanza:
            return None, 204
    return None, 501


class Handler(BaseHTTPRequestHandler):
    def do_OPTIONS(self):
        # The start-up probe: say which format the stanzas should come in.
        self.send_response(200)
        self.send_header("Accept", "application/json")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not (self.headers.get("Content-Type") or "").startswith("application/json"):
            return self.reply(None, 415)
        try:
            stanza = json.loads(raw)
        except ValueError:
            return self.reply(None, 400)
        if not isinstance(stanza, dict) or "kind" not in stanza:
            return self.reply(None, 400)
        fields, status = answer(stanza)
        self.reply(fields, status)

    def reply(self, fields, status):
        body = json.dumps(fields).encode() if fields is not None else b""
        self.send_response(status)
        if fields is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):  # one line per request, on stderr
        super().log_message(fmt, *args)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "5000"))
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
