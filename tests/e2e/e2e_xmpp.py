"""A synchronous XMPP test client on top of slixmpp.

slixmpp is asyncio based; XmppClient runs its own event loop in a background
thread so tests can read as plain sequential code:

    c = XmppClient("alice@localhost", "pw", port)
    mid = c.send_message("echo@bot.localhost", "hello")
    st = c.wait_for(lambda s: s.name == "message" and s.body == "...")

Every incoming <message/>, <presence/> and <iq/> is recorded (in order) as a
`Stanza`.  Stanzas are sent as raw XML so the test fully controls their shape.
"""

import asyncio
import copy
import itertools
import threading
import time
from xml.sax.saxutils import escape, quoteattr

import slixmpp

NS_CLIENT = "jabber:client"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = NS_MUC + "#user"

_ids = itertools.count(1)


def new_id(prefix="e2e"):
    return f"{prefix}-{next(_ids)}"


def _local(tag):
    return tag.rsplit("}", 1)[-1]


def _ns(tag):
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


class Stanza:
    """A received stanza: name, attributes, the element and its XML text, and when it was
    received (time.monotonic(), for the benchmarks: tests wait for stanzas, never time them)."""

    def __init__(self, el, text):
        self.received_at = time.monotonic()
        self.el = el
        self.xml = text
        self.name = _local(el.tag)
        self.type = el.get("type")
        self.to = el.get("to")
        self.frm = el.get("from")
        self.id = el.get("id")

    def __repr__(self):
        return f"<Stanza {self.xml}>"

    def child(self, local_name, ns=None):
        for c in self.el:
            if _local(c.tag) == local_name and (ns is None or _ns(c.tag) == ns):
                return c
        return None

    @property
    def body(self):
        b = self.child("body", NS_CLIENT)
        if b is None:
            return None
        return b.text or ""

    @property
    def error(self):
        """(type, condition, text) of the <error/> child, or None."""
        e = self.child("error")
        if e is None:
            return None
        condition, text = None, None
        for c in e:
            if _ns(c.tag) == NS_STANZAS:
                if _local(c.tag) == "text":
                    text = c.text or ""
                else:
                    condition = _local(c.tag)
        return e.get("type"), condition, text


def xml_message(to, body=None, type_="chat", id_=None, extra=""):
    attrs = f"to={quoteattr(to)}"
    if type_:
        attrs += f" type={quoteattr(type_)}"
    if id_:
        attrs += f" id={quoteattr(id_)}"
    inner = (f"<body>{escape(body)}</body>" if body is not None else "") + extra
    return f"<message {attrs}>{inner}</message>"


def muc_status_codes(presence):
    """The XEP-0045 status codes of a presence from a room, as strings."""
    x = presence.child("x", NS_MUC_USER)
    return [] if x is None else [s.get("code") for s in x if _local(s.tag) == "status"]


class XmppClient:
    def __init__(self, jid, password, port, host="127.0.0.1", resource="e2e",
                 initial_presence=True, get_roster=True, timeout=10.0):
        self.jid = f"{jid}/{resource}"
        self.password = password
        self.received = []
        self._cond = threading.Condition()
        self._session = threading.Event()
        self._failed = None
        self._closed = False
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name=f"xmpp-{jid}", daemon=True)
        self._thread.start()
        self.xmpp = self._run(self._create(initial_presence, get_roster))
        self._call(self.xmpp.connect, (host, port), False, False, True)
        if not self._session.wait(timeout):
            self.close()
            raise AssertionError(f"XMPP login of {self.jid} timed out after {timeout}s")
        if self._failed:
            self.close()
            raise AssertionError(f"XMPP login of {self.jid} failed: {self._failed}")
        self.full_jid = str(self.xmpp.boundjid)
        if initial_presence:
            # Prosody reflects initial presence back; let it arrive before any
            # test takes a mark() so it never counts as an unexpected stanza.
            self.wait_for(lambda s: s.name == "presence" and s.frm == self.full_jid,
                          timeout=timeout, what="reflected initial presence")

    # -- loop plumbing ----------------------------------------------------
    def _run_loop(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _run(self, coro, timeout=10.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def _call(self, fn, *args):
        self.loop.call_soon_threadsafe(fn, *args)

    async def _create(self, initial_presence, get_roster):
        x = slixmpp.ClientXMPP(self.jid, self.password)
        x.loop = self.loop
        # Do not answer or originate anything on our own.
        x.auto_authorize = None
        x.auto_subscribe = False
        x["feature_mechanisms"].unencrypted_plain = True
        x.add_filter("in", self._record)

        async def on_session(_event):
            try:
                if get_roster:
                    await x.get_roster(timeout=5)
                if initial_presence:
                    x.send_presence()
            except Exception as e:  # pragma: no cover - reported to the test
                self._failed = repr(e)
            self._session.set()

        def on_failed(event):
            self._failed = f"{event}"
            self._session.set()

        x.add_event_handler("session_start", on_session)
        x.add_event_handler("failed_auth", on_failed)
        x.add_event_handler("connection_failed", on_failed)
        return x

    def _record(self, stanza):
        el = stanza.xml
        if _local(el.tag) in ("message", "presence", "iq"):
            item = Stanza(copy.deepcopy(el), str(stanza))
            with self._cond:
                self.received.append(item)
                self._cond.notify_all()
        return stanza

    def register_plugin(self, name, config=None):
        """Registers a slixmpp plugin (say "xep_0092", software version), so that the client
        answers what it implements as a real client does, not with feature-not-implemented."""
        async def register():
            self.xmpp.register_plugin(name, pconfig=config)
        self._run(register())

    # -- sending ------------------------------------------------------------
    def send_raw(self, data):
        self._call(self.xmpp.send_raw, data)

    def send_message(self, to, body=None, type_="chat", id_=None, extra=""):
        """Send a message; returns its id."""
        id_ = id_ or new_id("msg")
        self.send_raw(xml_message(to, body, type_, id_, extra))
        return id_

    def send_iq(self, to, type_="get", payload="", id_=None):
        """Send an iq with raw inner XML; returns its id."""
        id_ = id_ or new_id("iq")
        self.send_raw(f"<iq to={quoteattr(to)} type={quoteattr(type_)} id={quoteattr(id_)}>{payload}</iq>")
        return id_

    def send_iq_get(self, to, payload, id_=None):
        return self.send_iq(to, "get", payload, id_)

    def send_presence(self, to=None, type_=None, id_=None, extra=""):
        attrs = []
        if to:
            attrs.append(f"to={quoteattr(to)}")
        if type_:
            attrs.append(f"type={quoteattr(type_)}")
        id_ = id_ or new_id("pres")
        attrs.append(f"id={quoteattr(id_)}")
        self.send_raw(f"<presence {' '.join(attrs)}>{extra}</presence>")
        return id_

    # -- group chat (XEP-0045) ------------------------------------------------
    def join_room(self, room, nick, history=0, open_new=True, timeout=10.0):
        """Joins `room` as `nick`, asking for `history` old messages (None: the room's default),
        and waits for its own presence in the room. A room the join created (status 201) is
        opened as an instant room unless `open_new` is false (then it stays locked). Returns the
        presences the room sent up to and including its own (the occupants, the bot among them);
        raises on an error."""
        since = self.mark()
        ask = "" if history is None else f"<history maxstanzas='{int(history)}'/>"
        self.send_presence(f"{room}/{nick}", extra=f"<x xmlns='{NS_MUC}'>{ask}</x>")
        own = self.wait_for(lambda s: s.name == "presence" and s.frm == f"{room}/{nick}",
                            since=since, timeout=timeout, what=f"own presence in {room}")
        if own.type == "error":
            raise AssertionError(f"{self.jid} could not join {room} as {nick}: {own.xml}")
        got = self.received[since:]
        presences = [s for s in got[:got.index(own) + 1] if s.name == "presence"]
        if open_new and "201" in muc_status_codes(own):
            iq = self.send_iq(room, "set", f"<query xmlns='{NS_MUC}#owner'><x xmlns='jabber:x:data' type='submit'/></query>")
            answer = self.wait_for(lambda s: s.name == "iq" and s.id == iq, since=since, timeout=timeout,
                                   what=f"the answer to opening {room}")
            assert answer.type == "result", answer.xml
        return presences

    def say(self, room, body, id_=None, extra=""):
        """Says `body` in `room` (a groupchat message); returns its id."""
        return self.send_message(room, body, type_="groupchat", id_=id_, extra=extra)

    def wait_said(self, room, nick, body, since=0, timeout=10.0):
        """The first groupchat message from `room`/`nick` with `body` received after `since`."""
        return self.wait_for(lambda s: s.name == "message" and s.type == "groupchat"
                             and s.frm == f"{room}/{nick}" and s.body == body,
                             since=since, timeout=timeout, what=f"{nick}'s {body!r} in {room}")

    # -- receiving ----------------------------------------------------------
    def mark(self):
        """Index to pass as `since` so later waits only see newer stanzas."""
        with self._cond:
            return len(self.received)

    def wait_for(self, predicate, timeout=5.0, since=0, what="stanza"):
        """First received stanza (at index >= since) matching predicate."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for st in self.received[since:]:
                    if predicate(st):
                        return st
                left = deadline - time.monotonic()
                if left <= 0:
                    got = "\n  ".join(s.xml for s in self.received[since:]) or "(nothing)"
                    raise AssertionError(
                        f"{self.jid}: no {what} within {timeout}s; received:\n  {got}")
                self._cond.wait(left)

    def wait_for_count(self, predicate, count, timeout=5.0, since=0, what="stanzas"):
        """Wait until `count` matching stanzas arrived; return the matches."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [s for s in self.received[since:] if predicate(s)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{self.jid}: {len(found)} of {count} {what} within {timeout}s")
                self._cond.wait(left)

    def collect(self, predicate=lambda s: True, duration=1.0, since=0):
        """All matching stanzas received after waiting `duration` seconds."""
        time.sleep(duration)
        with self._cond:
            return [s for s in self.received[since:] if predicate(s)]

    def expect_quiet(self, since, to="echo@bot.localhost", grace=0.3, ignore=lambda s: False):
        """Assert that nothing arrived after `since` except a sentinel's answer.

        Waits `grace` seconds, then sends a "sentinel-..." message to `to`
        (a ScriptedWebhook answers it with "ack sentinel-...") and waits for
        that answer: everything the component would have sent for earlier
        stanzas should have arrived before it.  Returns the unexpected stanzas
        (empty list) or raises AssertionError listing them.
        """
        time.sleep(grace)
        token = new_id("sentinel")
        self.send_message(to, token)
        self.wait_for(lambda s: s.name == "message" and s.body == "ack " + token,
                      since=since, what=f"answer to {token}")
        time.sleep(0.1)
        with self._cond:
            extra = [s for s in self.received[since:]
                     if not (s.name == "message" and s.body == "ack " + token) and not ignore(s)]
        assert not extra, "unexpected stanzas:\n  " + "\n  ".join(s.xml for s in extra)
        return extra

    # -- teardown -----------------------------------------------------------
    def close(self):
        if self._closed:
            return
        self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(8)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()

    async def _shutdown(self):
        x = getattr(self, "xmpp", None)
        if x is not None:
            try:
                await asyncio.wait_for(x.disconnect(wait=0.5), 3)
            except Exception:
                x.abort()
        # Cancel slixmpp's background tasks so none is left pending on a closed loop.
        me = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not me]
        for t in others:
            t.cancel()
        if others:
            await asyncio.wait(others, timeout=2)
