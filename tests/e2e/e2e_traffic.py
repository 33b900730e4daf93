"""Numbered messages from several senders to one bot, and the judging of what came back.

`start` runs a Prosody whose bot.localhost posts to a given webhook, with senders logged in;
`Traffic` sends each sender's numbered messages (id and body "<user>-<i>") and `check`s that
every message ended in exactly one outcome the fault allows, nothing unexpected came back (a
sentinel through each sender's line, see XmppClient.expect_quiet), and each sender's outcomes
came in the order it sent (README "Delivery guarantees": exactly one outcome; order per sender).
`assert_posted_in_order` judges the order the webhook saw; `assert_healthy` and
`assert_no_leaks` what the run left in Prosody.
"""

import re
import threading
import time
from collections import Counter

from conftest import BOT
from e2e_util import proc_counts

BOT_JID = "echo@bot.localhost"
USERS = {"alice": "pw-alice", "bob": "pw-bob", "carol": "pw-carol", "dave": "pw-dave"}
SENDERS = ("alice", "bob", "carol")

# What a message can end in: its reply, or an error (type, condition, text) from the README's
# table.
REPLY = "reply"
CONNECTION_FAILURE = ("cancel", "remote-server-timeout", "Connection failure")
TIMED_OUT = ("wait", "remote-server-timeout", "The webhook did not answer in time")
BAD_REPLY = ("cancel", "internal-server-error", "The webhook sent an invalid reply")
QUEUE_FULL = ("wait", "resource-constraint", "Too many stanzas are waiting for the webhook")

# A short connect timeout keeps refused connections cheap. component_post_timeout runs from a
# stanza's arrival, time queued behind the sender's earlier stanzas included (README, Delivery
# guarantees): tests whose subject is not the deadline leave it room for a whole burst.
SHORT = {"component_post_timeout": 30, "component_post_connect_timeout": 1}


def start(prosody_factory, connect, url, users=SENDERS, components=None, global_options=None, **options):
    """A Prosody whose bot.localhost posts to `url` (SHORT and `options` its options, `components`
    more hosts), and an XmppClient logged in for each of `users`: (prosody, [clients])."""
    comps = {BOT: {"component_post_url": url, **SHORT, **options}}
    comps.update(components or {})
    prosody = prosody_factory(comps, users=USERS, global_options=global_options)
    return prosody, [connect(prosody, u) for u in users]


def index_of(body):
    """Message number from a body such as "alice-17" (None for anything else)."""
    m = re.fullmatch(r"[a-z]+-(\d+)", str(body))
    return int(m.group(1)) if m else None


def log_problems(prosody):
    """Log lines at error level, and any traceback, anywhere in Prosody's log."""
    bad = []
    for line in prosody.log_text().splitlines():
        fields = line.split("\t")
        if "traceback" in line.lower() or (len(fields) >= 3 and fields[1] == "error"):
            bad.append(line)
    return bad


def assert_healthy(prosody):
    """Prosody still runs, and its log has no error-level line and no traceback."""
    assert prosody.alive(), "Prosody exited"
    bad = log_problems(prosody)
    assert not bad, "error-level or traceback lines in Prosody's log:\n" + "\n".join(bad[:20])


def assert_no_leaks(prosody, before, workers=4, timeout=30.0):
    """Threads and descriptors back near `before` (proc_counts taken after start): the faults
    left no stray thread, and no socket beyond one kept-alive connection per worker. Workers
    started for a burst exit after component_post_idle_timeout (10 s): waited for, not assumed."""
    limit = (before[0], before[1] + workers + 2)
    deadline = time.monotonic() + timeout
    now = proc_counts(prosody.pid)
    while (now[0] > limit[0] or now[1] > limit[1]) and time.monotonic() < deadline:
        time.sleep(0.2)
        now = proc_counts(prosody.pid)
    assert now[0] <= limit[0] and now[1] <= limit[1], \
        f"(threads, fds) of Prosody: {before} after start, {now} after the faults"


def assert_posted_in_order(posts, traffic):
    """posts: [(sender full JID, message body)] in the order the webhook got them.

    Per sender, each message is posted in one run of consecutive attempts (retries), and the
    runs come in the order sent: one at a time, in order (README "Order").
    """
    for client, ids in traffic.plan.items():
        bodies = [b for who, b in posts if who == client.full_jid and index_of(b) is not None]
        runs = [b for k, b in enumerate(bodies) if k == 0 or bodies[k - 1] != b]
        numbers = [index_of(b) for b in runs]
        assert numbers == sorted(set(numbers)), \
            f"{client.jid}: webhook saw this sender's messages out of order or interleaved: {runs}"


class Traffic:
    """N numbered messages from each client to BOT_JID (id and body "<user>-<i>"), and the count
    of what came back."""

    def __init__(self, clients, n):
        self.plan = {c: [f"{c.jid.split('@')[0]}-{i}" for i in range(n)] for c in clients}
        self.marks = {c: c.mark() for c in clients}
        self.threads = []

    @property
    def total(self):
        return sum(len(ids) for ids in self.plan.values())

    def start(self, pace=0.0):
        def sender(client, ids):
            for mid in ids:
                client.send_message(BOT_JID, mid, id_=mid)
                if pace:
                    time.sleep(pace)

        self.threads = [threading.Thread(target=sender, args=item, daemon=True) for item in self.plan.items()]
        for t in self.threads:
            t.start()

    def join(self):
        for t in self.threads:
            t.join(timeout=60)

    def send(self, pace=0.0):
        self.start(pace)
        self.join()

    def send_interleaved(self, pace=0.002):
        """Message 0 of every sender, then message 1 of every sender, ... from one thread, with
        `pace` s between sends so that they reach Prosody interleaved, not as one burst each."""
        for k in range(max(len(ids) for ids in self.plan.values())):
            for client, ids in self.plan.items():
                if k < len(ids):
                    client.send_message(BOT_JID, ids[k], id_=ids[k])
                    time.sleep(pace)

    @staticmethod
    def key(s):
        """The message an incoming stanza is the outcome of, "<sentinel>" or "<unexpected>"."""
        if s.name != "message":
            return "<unexpected>"
        if s.type == "error":
            return s.id or "<unexpected>"
        body = s.body or ""
        if body.startswith("ack sentinel-"):
            return "<sentinel>"
        if body.startswith("ack "):
            return body[4:]
        return "<unexpected>"

    def received(self, client):
        return client.received[self.marks[client]:]  # a copy (slicing is atomic)

    def outcomes(self, client):
        ids = set(self.plan[client])
        return [(self.key(s), s) for s in self.received(client) if self.key(s) in ids]

    def answered(self):
        return sum(len({k for k, _ in self.outcomes(c)}) for c in self.plan)

    def wait_all(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while self.answered() < self.total and time.monotonic() < deadline:
            time.sleep(0.1)

    def expect_quiet(self):
        """XmppClient.expect_quiet for every sender at once (their graces overlap): a sentinel
        through each sender's line proves that nothing more is on its way."""
        failures = []

        def one(client):
            ids = set(self.plan[client])
            try:
                client.expect_quiet(self.marks[client], to=BOT_JID,
                                    ignore=lambda s: self.key(s) in ids or self.key(s) == "<sentinel>")
            except AssertionError as e:
                failures.append(f"{client.jid}: {e}")

        threads = [threading.Thread(target=one, args=(c,), daemon=True) for c in self.plan]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not failures, "\n".join(failures)

    @staticmethod
    def label(s):
        return REPLY if s.type != "error" else s.error

    def check(self, allowed, ordered=True):
        """Count and judge the outcomes; `allowed(mid)` gives the labels a message may end in
        (REPLY or an error (type, condition, text)); `ordered`: each sender's outcomes must come
        in the order it sent. Returns Counter of labels."""
        self.wait_all()
        self.expect_quiet()
        counts = Counter()
        problems = []
        for client, ids in self.plan.items():
            got = self.received(client)
            by_id = {}
            for s in got:
                by_id.setdefault(self.key(s), []).append(s)
            missing = [mid for mid in ids if mid not in by_id]
            duplicated = {mid: [s.xml for s in v] for mid, v in by_id.items() if mid in ids and len(v) > 1}
            unexpected = [s.xml for s in by_id.get("<unexpected>", [])]
            order = [k for k, _ in self.outcomes(client)]
            wrong = {}
            for mid in ids:
                for s in by_id.get(mid, []):
                    label = self.label(s)
                    counts[label] += 1
                    if label not in allowed(mid):
                        wrong[mid] = s.xml
                    if label == REPLY and not (s.frm == BOT_JID and s.type == "chat"):
                        wrong[mid] = s.xml
            if missing:
                problems.append(f"{client.jid}: {len(missing)} message(s) got no outcome: {missing[:20]}")
            if duplicated:
                problems.append(f"{client.jid}: {len(duplicated)} message(s) got more than one: "
                                f"{dict(list(duplicated.items())[:5])}")
            if unexpected:
                problems.append(f"{client.jid}: unexpected stanzas: {unexpected[:5]}")
            if wrong:
                problems.append(f"{client.jid}: outcomes the fault does not allow: {dict(list(wrong.items())[:5])}")
            if ordered and not missing and not duplicated and order != ids:
                firsts = [(a, b) for a, b in zip(order, ids) if a != b][:5]
                problems.append(f"{client.jid}: outcomes out of order; first differences (got, sent): {firsts}")
        assert not problems, "\n".join(problems)
        return counts


def summary(counts):
    return ", ".join(f"{n} {'reply' if k == REPLY else '/'.join(x for x in k[:2])}" for k, n in counts.items())

