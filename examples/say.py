#!/usr/bin/python3
"""Log in as an XMPP user, send one chat message, print every reply that arrives within a few
seconds. A real client for trying a component by hand:

    examples/say.py alice@localhost password echo@bot.localhost "hello" [--port 5222]

With --nick, `to` is a group chat room: join it under that nick (asking for no history), say the
text there, and print what the others say in the room:

    examples/say.py alice@localhost password demo@conference.localhost "hello" --nick alice
"""
import argparse
import asyncio

import slixmpp


class Say(slixmpp.ClientXMPP):
    def __init__(self, jid, password, to, text, wait, nick=None):
        super().__init__(jid, password)
        self.to, self.text, self.wait, self.nick, self.replies = to, text, wait, nick, 0
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("message", self.reply)
        self.add_event_handler("presence", self.joined)

    async def start(self, _event):
        if self.nick:
            # Said once the room has the client in (its own presence comes back).
            self.send_raw(f"<presence to='{self.to}/{self.nick}'>"
                          "<x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>")
        else:
            print(f"{self.boundjid.full} -> {self.to}: {self.text}")
            self.send_message(mto=self.to, mbody=self.text, mtype="chat")
        await asyncio.sleep(self.wait)
        self.disconnect()

    def joined(self, presence):
        if self.nick and presence["from"].full == f"{self.to}/{self.nick}" and presence["type"] != "error":
            print(f"{self.boundjid.full} in {self.to} as {self.nick}: {self.text}")
            self.send_message(mto=self.to, mbody=self.text, mtype="groupchat")

    def reply(self, msg):
        if self.nick and (msg["type"] != "groupchat" or msg["from"].resource in ("", self.nick) or not msg["body"]):
            return  # in a room: only what the others say
        self.replies += 1
        if msg["type"] == "error":
            print(f"{msg['from']} -> error: {msg['error']['condition']} {msg['error']['text']}")
        else:
            print(f"{msg['from']} -> {self.boundjid.bare}: {msg['body']}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("jid")
    p.add_argument("password")
    p.add_argument("to")
    p.add_argument("text")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5222)
    p.add_argument("--wait", type=float, default=2.0, help="seconds to wait for replies")
    p.add_argument("--nick", help="join the room `to` under this nick and say the text there")
    a = p.parse_args()
    client = Say(a.jid, a.password, a.to, a.text, a.wait, a.nick)
    # Plain-text login is only for a local demo Prosody; never do this over a network.
    client["feature_mechanisms"].unencrypted_plain = True
    client.connect((a.host, a.port), disable_starttls=True, force_starttls=False)
    client.loop.run_until_complete(client.disconnected)
    raise SystemExit(0 if client.replies else 1)


if __name__ == "__main__":
    main()
