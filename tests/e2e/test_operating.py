"""What operators watch (README, Operating it): the component's metrics in Prosody's own
statistics, scraped from mod_http_openmetrics after known traffic, and its status in
`prosodyctl shell` while the webhook is down and after it is back."""

import re
import urllib.request

from conftest import BOT
from e2e_util import free_port, wait_until
from e2e_webhook import Reply

BOT_JID = f"echo@{BOT}"
PREFIX = "prosody_mod_component_http__"


def start_with_metrics(prosody_factory, url, **options):
    http_port = free_port()
    prosody = prosody_factory(
        {BOT: {"component_post_url": url, **options}},
        global_options={
            "statistics": "internal",
            "statistics_interval": "manual",  # collected on each scrape
            "http_ports": [http_port],
            "http_interfaces": ["127.0.0.1"],
            "modules_enabled": ["roster", "saslauth", "admin_shell", "http_openmetrics"],
        })
    return prosody, f"http://127.0.0.1:{http_port}/metrics"


def scrape(url):
    """{(metric name, labels as a sorted tuple): value} of this module's samples."""
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    samples = {}
    for line in text.splitlines():
        m = re.fullmatch(r"(\w+)\{([^}]*)\} (\S+)", line)
        if m and m.group(1).startswith(PREFIX) and not m.group(1).endswith("_created"):
            labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(2))))
            samples[(m.group(1)[len(PREFIX):], labels)] = float(m.group(3))
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted({"host": BOT, **labels}.items()))), 0.0)


def test_metrics_count_known_traffic_exactly(prosody_factory, make_webhook, connect):
    hook = make_webhook()
    first_attempts = set()

    def script(req):
        body = req.json["body"]
        if body.startswith("missing"):
            return Reply(status=404)
        if body == "quiet":
            return Reply(status=204)
        if body == "flaky" and body not in first_attempts:
            first_attempts.add(body)
            return Reply(status=503)  # an outage of one attempt: retried, then answered
        return Reply.with_json({"body": "ack " + body})

    hook.handler = script
    prosody, metrics_url = start_with_metrics(prosody_factory, hook.url())
    alice = connect(prosody)
    since = alice.mark()
    for body in ["one", "two", "three", "missing-1", "missing-2", "quiet", "flaky"]:
        alice.send_message(BOT_JID, body)
    # six answers come back (the 204 has none); then the webhook has seen all eight requests
    alice.wait_for_count(lambda s: s.name == "message", 6, since=since, timeout=15)
    wait_until(lambda: len(hook.requests) == 8, timeout=15, what="eight requests")
    samples = scrape(metrics_url)
    wait_until(lambda: value(scrape(metrics_url), "outcomes_total", outcome="no_reply") == 1, timeout=10,
               what="the 204's outcome counted")
    samples = scrape(metrics_url)
    assert value(samples, "posted_total", kind="message") == 7
    assert value(samples, "outcomes_total", outcome="reply") == 4
    assert value(samples, "outcomes_total", outcome="no_reply") == 1
    assert value(samples, "outcomes_total", outcome="item-not-found") == 2
    assert value(samples, "responses_total", **{"class": "2xx"}) == 5
    assert value(samples, "responses_total", **{"class": "4xx"}) == 2
    assert value(samples, "responses_total", **{"class": "5xx"}) == 1
    assert value(samples, "retries_total") == 1
    assert value(samples, "request_latency_seconds_count") == 8
    assert value(samples, "request_latency_seconds_bucket", le="+Inf") == 8
    assert value(samples, "queued") == 0 and value(samples, "in_flight") == 0
    assert value(samples, "endpoint_up") == 1
    assert value(samples, "workers") >= 1


def module_status(prosody):
    r = prosody.shell(f"module:info('component_http', '{BOT}')")
    m = re.search(r"status: \[(\w+)\] (.*)", r.stdout)
    return (m.group(1), m.group(2).strip()) if m else (None, r.stdout + r.stderr)


def test_status_shows_the_webhook_down_and_back(prosody_factory, make_webhook, connect):
    hook = make_webhook()
    down = [True]
    hook.handler = lambda req: Reply(status=502) if down[0] else Reply.with_json({"body": "ack"})
    prosody, metrics_url = start_with_metrics(prosody_factory, hook.url(), component_post_retry_window=600)
    assert module_status(prosody)[0] == "info"
    alice = connect(prosody)
    since = alice.mark()
    alice.send_message(BOT_JID, "are you there?")
    wait_until(lambda: module_status(prosody)[0] == "warn", timeout=15, what="a warn status")
    status, message = module_status(prosody)
    assert message.startswith("The webhook is unreachable since ") and message.endswith("webhook answered HTTP 502"), message
    assert value(scrape(metrics_url), "endpoint_up") == 0
    down[0] = False
    reply = alice.wait_for(lambda s: s.name == "message", since=since, timeout=15)
    assert reply.body == "ack"
    assert module_status(prosody) == ("info", "The webhook answers")
    assert value(scrape(metrics_url), "endpoint_up") == 1
