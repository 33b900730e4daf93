// A mod_component_http bot in Node.js with Express.
//
//     cd examples/node && npm ci && BOT_SECRET=... node bot.js [PORT]     (default port 8080)
//
// It refuses to start without BOT_SECRET; BOT_INSECURE=1 instead accepts unsigned requests from
// anyone (for trying it out without a secret, never exposed).
//
// Prosody side:
//     Component "bot.example.com" "component_http"
//         component_post_url = "http://127.0.0.1:8080/"
//         component_post_stanzas = { "message", "iq" }
//         component_post_secret = "..."   -- the same as BOT_SECRET
//
// It checks X-Signature (README, Signatures: an HMAC-SHA256 over the timestamp, X-Delivery-Id,
// X-Retry-Count and the body), answers a retried request (same X-Delivery-Id) with the answer it
// already gave (as the delivery id is signed, a replayed request is such a duplicate too), and
// shows a chat reply, a headline ("news") and an iq answered with a stanza.
// Express's res.json() sends "application/json; charset=utf-8", which the module accepts.
// "ping me" shows a message sent on the bot's own initiative: POSTed to the component's push
// endpoint (PUSH_URL, e.g. http://bot.example.com:5280/component_http, with PUSH_TOKEN equal to
// component_post_push_credentials).
"use strict";

const secret = process.env.BOT_SECRET || "";
const insecure = process.env.BOT_INSECURE === "1";
const NO_SECRET = "BOT_SECRET is not set: set it to the component's component_post_secret, " +
  "or set BOT_INSECURE=1 to accept unsigned requests from anyone";
if (!secret && !insecure) {
  console.error(NO_SECRET);
  process.exit(1);
}
if (!secret) console.log("BOT_INSECURE=1: signatures are not checked");

const crypto = require("crypto");
const express = require("express");

const pushUrl = process.env.PUSH_URL;
const pushToken = process.env.PUSH_TOKEN || "";
const answered = new Map(); // X-Delivery-Id -> [status, body]: the last 10,000 answers
let handled = 0;

function verified(secret, req) {
  const timestamp = req.get("X-Signature-Timestamp") || "";
  const signed = `v1\n${timestamp}\n${req.get("X-Delivery-Id") || ""}\n${req.get("X-Retry-Count") || ""}\n`;
  const expected = "sha256=" + crypto.createHmac("sha256", secret).update(signed).update(req.body).digest("hex");
  const given = Buffer.from(req.get("X-Signature") || "");
  const fresh = /^\d+$/.test(timestamp) && Math.abs(Date.now() / 1000 - Number(timestamp)) <= 300;
  return fresh && given.length === expected.length && crypto.timingSafeEqual(given, Buffer.from(expected));
}

function answer(stanza) {
  handled += 1;
  if (stanza.kind === "iq") {
    const get = /^<iq\b[^>]*\btype=(['"])get\1/.test(stanza.stanza); // the top element's type
    if (get && stanza.stanza.includes("jabber:iq:version")) {
      return [200, { stanza: "<iq type='result'><query xmlns='jabber:iq:version'>" +
        "<name>node example bot</name><version>1.0</version></query></iq>" }];
    }
    return [501, null]; // feature-not-implemented, for every other iq
  }
  if (stanza.body === undefined) return [204, null]; // a chat state, a receipt...: nothing to say
  if (stanza.body.trim().toLowerCase() === "ping me" && pushUrl) {
    setTimeout(() => fetch(pushUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: pushToken },
      body: JSON.stringify({ to: stanza.from, from: stanza.to, body: "ping!" }),
    }).catch((e) => console.error("push failed:", e)), 1000);
    return [200, { body: "I will, in a second." }];
  }
  if (stanza.body.trim().toLowerCase() === "news") return [200, { type: "headline", body: "Nothing new today." }];
  return [200, { body: `You said: ${stanza.body} (#${handled})` }];
}

const app = express();
// The raw bytes, as signed; parsed below.
app.use(express.raw({ type: "*/*", limit: "1mb" }));
app.post("*", (req, res) => {
  if (secret && !verified(secret, req)) return res.status(401).end(); // no secret: only with BOT_INSECURE=1
  const delivery = req.get("X-Delivery-Id"); // the module always sends one; curl may not
  let result = delivery === undefined ? undefined : answered.get(delivery);
  if (result === undefined) {
    result = answer(JSON.parse(req.body.toString("utf8")));
    if (delivery !== undefined) {
      answered.set(delivery, result);
      if (answered.size > 10000) answered.delete(answered.keys().next().value);
    }
  }
  const [status, body] = result;
  if (body === null) return res.status(status).end();
  return res.status(status).json(body);
});

const port = Number(process.argv[2] || 8080);
app.listen(port, "127.0.0.1", () => console.log(`listening on http://127.0.0.1:${port}/`));
