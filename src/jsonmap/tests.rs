use std::collections::BTreeSet;

use serde_json::json;

use super::table::{MAX_REACTIONS, MAX_STANZA_IDS};
use super::*;
use crate::xml::{parse_stanza, ParseLimits};

fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn build(value: Value, profile: Profile) -> Result<String, MapError> {
    json_to_element(&fields(value), profile, Kind::Message).map(|e| e.to_xml())
}

fn refusal(value: Value, profile: Profile) -> MapError {
    build(value.clone(), profile).expect_err(&format!("refused: {value}"))
}

fn read(xml: &str, profile: Profile) -> Value {
    Value::Object(element_to_json(&parse_stanza(xml, ParseLimits::default()).unwrap(), profile))
}

/// One sample per row at least: the JSON, the XML it is built into, and the profiles it holds
/// in (`nick` is the room nickname in component_http, so samples with XEP-0172's are Rest's).
fn samples() -> Vec<(Value, &'static str, &'static [Profile])> {
    const BOTH: &[Profile] = &[Profile::Rest, Profile::ComponentHttp];
    const REST: &[Profile] = &[Profile::Rest];
    const COMPONENT_HTTP: &[Profile] = &[Profile::ComponentHttp];
    vec![
        // A chat state: component_http writes its own.
        (
            json!({ "kind": "message", "state": "composing" }),
            "<message><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
            REST,
        ),
        // Messages: the base fields and the rich fields component_http has always had.
        (
            json!({ "kind": "message", "type": "chat", "to": "u@example.org", "from": "bot.example.org", "id": "m1",
                    "lang": "en", "body": "Hi", "subject": "Topic", "thread": { "id": "t1", "parent": "t0" },
                    "oob": { "url": "https://f.example/cat.jpg", "desc": "A cat" },
                    "oob_url": "https://f.example/cat.jpg", "replace": "m0",
                    "reply": { "id": "m0", "to": "anna@example.org/r" },
                    "reactions": { "id": "m0", "reactions": ["\u{1F44D}", "\u{1F389}"] } }),
            "<message type='chat' to='u@example.org' from='bot.example.org' id='m1' xml:lang='en'><body>Hi</body>\
             <subject>Topic</subject><thread parent='t0'>t1</thread><x xmlns='jabber:x:oob'>\
             <url>https://f.example/cat.jpg</url><desc>A cat</desc></x>\
             <replace id='m0' xmlns='urn:xmpp:message-correct:0'/>\
             <reply id='m0' xmlns='urn:xmpp:reply:0' to='anna@example.org/r'/>\
             <reactions id='m0' xmlns='urn:xmpp:reactions:0'><reaction>\u{1F44D}</reaction>\
             <reaction>\u{1F389}</reaction></reactions></message>",
            BOTH,
        ),
        // Messages: the community module's other fields.
        (
            json!({ "kind": "message", "html": "<body><p>Hi <em>there</em></p></body>", "fallback": true,
                    "markable": true, "displayed": "m5", "attach_to": "m6",
                    "encryption": "urn:xmpp:omemo:2",
                    "invite": { "jid": "room@muc.example.org", "password": "pw", "reason": "come", "thread": "t",
                                "continue": true },
                    "reference": { "type": "mention", "uri": "xmpp:u@example.org", "begin": 0, "end": 4 },
                    "occupant_id": "occ1",
                    "stanza_ids": [{ "id": "s1", "by": "room@muc.example.org" }, { "id": "s2", "by": "u@example.org" }] }),
            "<message><html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'>\
             <p>Hi <em>there</em></p></body></html><fallback xmlns='urn:xmpp:fallback:0'/>\
             <markable xmlns='urn:xmpp:chat-markers:0'/>\
             <displayed id='m5' xmlns='urn:xmpp:chat-markers:0'/>\
             <attach-to id='m6' xmlns='urn:xmpp:message-attaching:1'/>\
             <encryption namespace='urn:xmpp:omemo:2' xmlns='urn:xmpp:eme:0'/>\
             <x xmlns='jabber:x:conference' jid='room@muc.example.org' password='pw' reason='come' thread='t' continue='true'/>\
             <reference xmlns='urn:xmpp:reference:0' type='mention' uri='xmpp:u@example.org' begin='0' end='4'/>\
             <occupant-id id='occ1' xmlns='urn:xmpp:occupant-id:0'/>\
             <stanza-id xmlns='urn:xmpp:sid:0' id='s1' by='room@muc.example.org'/>\
             <stanza-id xmlns='urn:xmpp:sid:0' id='s2' by='u@example.org'/></message>",
            BOTH,
        ),
        // Messages: archives, forwarding, and the fields of every kind.
        (
            json!({ "kind": "message",
                    "forwarded": { "delay": "2024-01-02T00:00:00Z", "message": { "body": "fwd" } },
                    "archive": { "queryid": "q1", "id": "a1",
                                 "forward": { "delay": "2024-01-01T00:00:00Z",
                                              "message": { "type": "chat", "from": "u@example.org", "body": "old" } } },
                    "delay": "2024-01-03T00:00:00Z",
                    "dataform": { "type": "form", "title": "T", "instructions": "Fill",
                                  "fields": [{ "var": "a", "type": "list-single", "label": "A", "desc": "pick",
                                               "required": true, "values": ["1"],
                                               "options": [{ "label": "One", "value": "1" }] }] },
                    "payload": { "datatype": "urn:example", "data": { "k": [1, 2] } },
                    "rsm": { "max": 10, "after": "x" } }),
            "<message><forwarded xmlns='urn:xmpp:forward:0'><delay stamp='2024-01-02T00:00:00Z' xmlns='urn:xmpp:delay'/>\
             <message xmlns='jabber:client'><body>fwd</body></message></forwarded>\
             <result xmlns='urn:xmpp:mam:2' queryid='q1' id='a1'><forwarded xmlns='urn:xmpp:forward:0'>\
             <delay stamp='2024-01-01T00:00:00Z' xmlns='urn:xmpp:delay'/>\
             <message xmlns='jabber:client' type='chat' from='u@example.org'><body>old</body></message></forwarded></result>\
             <delay stamp='2024-01-03T00:00:00Z' xmlns='urn:xmpp:delay'/>\
             <x xmlns='jabber:x:data' type='form'><title>T</title><instructions>Fill</instructions>\
             <field var='a' type='list-single' label='A'><desc>pick</desc><required/><value>1</value>\
             <option label='One'><value>1</value></option></field></x>\
             <payload xmlns='urn:xmpp:json-msg:0' datatype='urn:example'>{&quot;k&quot;:[1,2]}</payload>\
             <set xmlns='http://jabber.org/protocol/rsm'><after>x</after><max>10</max></set></message>",
            BOTH,
        ),
        (
            json!({ "kind": "message", "type": "error",
                    "error": { "type": "cancel", "by": "example.org", "code": 503, "condition": "service-unavailable",
                               "text": "Down" } }),
            "<message type='error'><error type='cancel' by='example.org' code='503'>\
             <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>Down</text></error></message>",
            BOTH,
        ),
        // Presences: an available presence has no type, which mod_rest writes as `available`.
        (
            json!({ "kind": "presence", "show": "away", "status": "Lunch", "priority": 5,
                    "caps": { "hash": "sha-1", "node": "https://example.org", "ver": "abc=" },
                    "idle_since": "2024-01-01T00:00:00Z",
                    "muc": { "history": { "maxstanzas": 20, "since": "2024-01-01T00:00:00Z" } },
                    "vcard_update": { "photo": "0123abcd" } }),
            "<presence><show>away</show><status>Lunch</status><priority>5</priority>\
             <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://example.org' ver='abc='/>\
             <idle since='2024-01-01T00:00:00Z' xmlns='urn:xmpp:idle:1'/>\
             <x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='20' since='2024-01-01T00:00:00Z'/></x>\
             <x xmlns='vcard-temp:x:update'><photo>0123abcd</photo></x></presence>",
            COMPONENT_HTTP,
        ),
        (
            json!({ "kind": "presence", "type": "available", "show": "away", "status": "Lunch", "priority": 5,
                    "caps": { "hash": "sha-1", "node": "https://example.org", "ver": "abc=" },
                    "idle_since": "2024-01-01T00:00:00Z",
                    "muc": { "history": { "maxstanzas": 20, "since": "2024-01-01T00:00:00Z" } },
                    "vcard_update": { "photo": "0123abcd" } }),
            "<presence><show>away</show><status>Lunch</status><priority>5</priority>\
             <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://example.org' ver='abc='/>\
             <idle since='2024-01-01T00:00:00Z' xmlns='urn:xmpp:idle:1'/>\
             <x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='20' since='2024-01-01T00:00:00Z'/></x>\
             <x xmlns='vcard-temp:x:update'><photo>0123abcd</photo></x></presence>",
            REST,
        ),
        (
            json!({ "kind": "presence", "type": "unavailable", "to": "room@muc.example.org/bot", "nick": "Bot",
                    "delay": "2024-01-01T00:00:00Z" }),
            "<presence type='unavailable' to='room@muc.example.org/bot'><nick xmlns='http://jabber.org/protocol/nick'>Bot</nick>\
             <delay stamp='2024-01-01T00:00:00Z' xmlns='urn:xmpp:delay'/></presence>",
            REST,
        ),
        // Iqs.
        (
            json!({ "kind": "iq", "type": "get", "to": "example.org", "id": "p1", "ping": true }),
            "<iq type='get' to='example.org' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>",
            BOTH,
        ),
        (
            json!({ "kind": "iq", "type": "result", "version": { "name": "Bot", "version": "1.0", "os": "Linux" } }),
            "<iq type='result'><query xmlns='jabber:iq:version'><name>Bot</name><version>1.0</version><os>Linux</os>\
             </query></iq>",
            BOTH,
        ),
        (
            json!({ "kind": "iq", "type": "get", "disco": "node1" }),
            "<iq type='get'><query xmlns='http://jabber.org/protocol/disco#info' node='node1'/></iq>",
            BOTH,
        ),
        (
            json!({ "kind": "iq", "type": "get", "disco": true }),
            "<iq type='get'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
            BOTH,
        ),
        (
            json!({ "kind": "iq", "type": "result",
                    "disco": { "node": "n", "identities": [{ "category": "client", "type": "bot", "name": "Bot" }],
                               "features": ["urn:xmpp:ping", "jabber:iq:version"],
                               "extensions": { "urn:example:info": { "a": "1", "b": ["x", "y"], "c": true } } } }),
            "<iq type='result'><query xmlns='http://jabber.org/protocol/disco#info' node='n'>\
             <identity category='client' type='bot' name='Bot'/><feature var='urn:xmpp:ping'/>\
             <feature var='jabber:iq:version'/><x xmlns='jabber:x:data' type='result'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:example:info</value></field>\
             <field var='a' type='text-single'><value>1</value></field>\
             <field var='b' type='list-multi'><value>x</value><value>y</value></field>\
             <field var='c' type='boolean'><value>1</value></field></x></query></iq>",
            BOTH,
        ),
        (
            json!({ "kind": "iq", "type": "get", "items": "http://jabber.org/protocol/commands" }),
            "<iq type='get'><query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'/></iq>",
            BOTH,
        ),
        (
            json!({ "kind": "iq", "type": "result",
                    "items": [{ "jid": "a@example.org", "name": "A" }, { "jid": "b@example.org", "node": "n" }] }),
            "<iq type='result'><query xmlns='http://jabber.org/protocol/disco#items'><item jid='a@example.org' name='A'/>\
             <item jid='b@example.org' node='n'/></query></iq>",
            BOTH,
        ),
        (
            json!({ "kind": "iq", "type": "set",
                    "command": { "node": "uptime", "sessionid": "s1", "status": "executing",
                                 "actions": { "execute": "next", "next": true, "complete": true },
                                 "note": { "type": "info", "text": "Up" },
                                 "form": { "type": "form", "fields": [{ "var": "x", "type": "text-single", "values": ["1"] }] } } }),
            "<iq type='set'><command xmlns='http://jabber.org/protocol/commands' node='uptime' sessionid='s1' status='executing'>\
             <actions execute='next'><next/><complete/></actions><note type='info'>Up</note>\
             <x xmlns='jabber:x:data' type='form'><field var='x' type='text-single'><value>1</value></field></x>\
             </command></iq>",
            BOTH,
        ),
        (
            json!({ "kind": "iq", "type": "set",
                    "archive": { "queryid": "q1",
                                 "form": { "type": "submit",
                                           "fields": [{ "var": "FORM_TYPE", "type": "hidden", "values": ["urn:xmpp:mam:2"] },
                                                      { "var": "with", "values": ["u@example.org"] }] },
                                 "page": { "max": 50 } } }),
            "<iq type='set'><query xmlns='urn:xmpp:mam:2' queryid='q1'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>\
             <field var='with'><value>u@example.org</value></field></x>\
             <set xmlns='http://jabber.org/protocol/rsm'><max>50</max></set></query></iq>",
            BOTH,
        ),
        (
            json!({ "kind": "iq", "type": "result", "result": { "page": { "first": "a", "last": "b", "count": 2 } } }),
            "<iq type='result'><fin xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><count>2</count>\
             <first>a</first><last>b</last></set></fin></iq>",
            BOTH,
        ),
        (
            json!({ "kind": "iq", "type": "set", "oob": { "url": "https://f.example/a", "desc": "A" } }),
            "<iq type='set'><query xmlns='jabber:iq:oob'><url>https://f.example/a</url><desc>A</desc></query></iq>",
            BOTH,
        ),
        (
            json!({ "kind": "iq", "type": "result",
                    "extdisco": { "services": [{ "type": "stun", "host": "stun.example.org", "port": 3478,
                                                 "transport": "udp", "restricted": false }] } }),
            "<iq type='result'><services xmlns='urn:xmpp:extdisco:2'>\
             <service type='stun' host='stun.example.org' port='3478' transport='udp' restricted='false'/></services></iq>",
            BOTH,
        ),
        (
            json!({ "kind": "iq", "type": "result", "gateway": { "desc": "Enter", "prompt": "Number" },
                    "lastactivity": { "seconds": 903, "status": "Gone" } }),
            "<iq type='result'><query xmlns='jabber:iq:gateway'><desc>Enter</desc><prompt>Number</prompt></query>\
             <query xmlns='jabber:iq:last' seconds='903'>Gone</query></iq>",
            BOTH,
        ),
        (
            json!({ "kind": "iq", "type": "result",
                    "register": { "registered": true, "username": "u", "email": "u@example.org" } }),
            "<iq type='result'><query xmlns='jabber:iq:register'><registered/><username>u</username>\
             <email>u@example.org</email></query></iq>",
            BOTH,
        ),
        (
            json!({ "kind": "iq", "type": "result",
                    "stats": [{ "name": "users/online", "unit": "users", "value": 42 }, { "name": "load", "value": 0.5 }] }),
            "<iq type='result'><query xmlns='http://jabber.org/protocol/stats'>\
             <stat name='users/online' unit='users' value='42'/><stat name='load' value='0.5'/></query></iq>",
            BOTH,
        ),
        (
            json!({ "kind": "iq", "type": "get",
                    "upload_request": { "filename": "cat.jpg", "size": 1024, "content-type": "image/jpeg" } }),
            "<iq type='get'><request xmlns='urn:xmpp:http:upload:0' filename='cat.jpg' size='1024' content-type='image/jpeg'/></iq>",
            BOTH,
        ),
        (
            json!({ "kind": "iq", "type": "result",
                    "upload_slot": { "put": { "url": "https://up.example/p",
                                              "headers": [{ "name": "Authorization", "value": "Basic eA==" }] },
                                     "get": { "url": "https://up.example/g" } } }),
            "<iq type='result'><slot xmlns='urn:xmpp:http:upload:0'><put url='https://up.example/p'>\
             <header name='Authorization'>Basic eA==</header></put><get url='https://up.example/g'/></slot></iq>",
            BOTH,
        ),
        (
            json!({ "kind": "iq", "type": "error", "id": "p1", "error": { "type": "modify", "condition": "bad-request" },
                    "dataform": { "type": "result", "fields": [{ "var": "a", "values": ["1", "2"] }] },
                    "payload": { "data": [true, null] }, "rsm": { "index": 3 } }),
            "<iq type='error' id='p1'><x xmlns='jabber:x:data' type='result'><field var='a'><value>1</value>\
             <value>2</value></field></x><payload xmlns='urn:xmpp:json-msg:0'>[true,null]</payload>\
             <set xmlns='http://jabber.org/protocol/rsm'><index>3</index></set><error type='modify'>\
             <bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
            BOTH,
        ),
    ]
}

#[test]
fn every_sample_round_trips_in_both_directions() {
    for (json, xml, profiles) in samples() {
        for &profile in profiles {
            // JSON → stanza: the XML expected.
            assert_eq!(build(json.clone(), profile).unwrap(), xml, "{profile:?} {json}");
            // Stanza → JSON: the same value.
            assert_eq!(read(xml, profile), json, "{profile:?} {xml}");
            // And around again from the stanza: the same XML.
            let element = parse_stanza(xml, ParseLimits::default()).unwrap();
            let again = json_to_element(&element_to_json(&element, profile), profile, Kind::Message).unwrap();
            assert_eq!(again.to_xml(), xml, "{profile:?} {xml}");
        }
    }
}

#[test]
fn every_mapped_row_has_a_sample() {
    let mut seen = BTreeSet::new();
    for (json, _, profiles) in samples() {
        let kind = json["kind"].as_str().unwrap().to_owned();
        for key in json.as_object().unwrap().keys() {
            for profile in profiles {
                seen.insert((format!("{profile:?}"), kind.clone(), key.clone()));
            }
        }
    }
    for profile in [Profile::Rest, Profile::ComponentHttp] {
        for row in rows(profile) {
            // `join` and `formdata` are written only: read back as `muc` and `dataform`.
            if matches!(row.place, Place::Caller(_) | Place::Unmapped(_)) || ["join", "formdata"].contains(&row.name) {
                continue;
            }
            let covered = [Kind::Message, Kind::Presence, Kind::Iq].iter().any(|kind| {
                row.kinds.has(*kind) && seen.contains(&(format!("{profile:?}"), kind.name().into(), row.name.into()))
            });
            assert!(covered, "{profile:?} row {} has no sample", row.name);
        }
    }
}

/// The community module's field names, by kind, written by hand from its `schema-xmpp.json`
/// (`_common` copied into each kind), the mappings its `jsonmap.lib.lua` adds (`html`,
/// `oob_url`, `disco`, `items`, `command`), and the keys that file reads besides (`kind`,
/// `error`, `error_code`, and `join` for presence).
#[test]
fn the_rest_rows_are_the_community_fields() {
    let common = ["dataform", "delay", "from", "id", "lang", "nick", "payload", "rsm", "to", "type"];
    // And its openapi.yaml's `formdata`, which its jsonmap.lib.lua writes.
    let common = [&common[..], &["formdata"]].concat();
    // `stanza` is ours in both: the whole stanza as XML, read by the caller.
    let extra = ["kind", "error", "error_code", "stanza"];
    let message = [
        "archive",
        "attach_to",
        "body",
        "displayed",
        "encryption",
        "fallback",
        "forwarded",
        "invite",
        "markable",
        "occupant_id",
        "oob",
        "reactions",
        "reference",
        "replace",
        "reply",
        "stanza_ids",
        "state",
        "subject",
        "thread",
        "html",
        "oob_url",
        // Ours in both: a file the module uploads for the bot (`crate::upload`).
        "file",
    ];
    let presence = ["caps", "idle_since", "muc", "priority", "show", "status", "vcard_update", "join"];
    let iq = [
        "archive",
        "extdisco",
        "gateway",
        "lastactivity",
        "oob",
        "ping",
        "register",
        "result",
        "stats",
        "upload_request",
        "upload_slot",
        "version",
        "disco",
        "items",
        "command",
    ];
    for (kind, own) in [(Kind::Message, &message[..]), (Kind::Presence, &presence[..]), (Kind::Iq, &iq[..])] {
        let expected: BTreeSet<&str> = common.iter().chain(&extra).chain(own).copied().collect();
        let actual: BTreeSet<&str> =
            rows(Profile::Rest).filter(|row| row.kinds.has(kind)).map(|row| row.name).collect();
        assert_eq!(actual, expected, "{kind:?}");
    }
    // component_http: the same, with its own fields, and `nick` its room nickname.
    let own = ["delta", "room", "mentioned", "stanza_id"];
    let component: BTreeSet<&str> = rows(Profile::ComponentHttp).map(|row| row.name).collect();
    let rest: BTreeSet<&str> = rows(Profile::Rest).map(|row| row.name).collect();
    assert_eq!(component.difference(&rest).copied().collect::<BTreeSet<_>>(), own.into_iter().collect());
    assert_eq!(rest.difference(&component).copied().collect::<Vec<_>>(), ["state"], "chat states are ours");
    let nick = |profile| rows(profile).filter(|row| row.name == "nick").map(|row| row.place).collect::<Vec<_>>();
    assert!(matches!(nick(Profile::ComponentHttp)[..], [Place::Caller(_)]));
    assert!(matches!(nick(Profile::Rest)[..], [Place::ChildText(..)]));
}

#[test]
fn the_kind_is_inferred_as_the_community_module_does() {
    let kind = |value: Value| infer_kind(&fields(value), Profile::Rest, Kind::Message);
    assert_eq!(kind(json!({ "to": "x", "ping": true })), Ok(Kind::Iq));
    assert_eq!(kind(json!({ "show": "away" })), Ok(Kind::Presence));
    assert_eq!(kind(json!({ "status": "hi" })), Ok(Kind::Presence));
    assert_eq!(kind(json!({ "join": true })), Ok(Kind::Presence));
    assert_eq!(kind(json!({ "body": "hi" })), Ok(Kind::Message));
    assert_eq!(kind(json!({ "archive": {} })), Ok(Kind::Iq), "archive is an iq unless said otherwise");
    assert_eq!(kind(json!({ "type": "get" })), Ok(Kind::Iq));
    assert_eq!(kind(json!({ "type": "unavailable", "body": "x" })), Ok(Kind::Presence), "type wins over fields");
    assert_eq!(kind(json!({ "kind": "presence", "ping": true })), Ok(Kind::Presence), "kind wins over all");
    assert_eq!(kind(json!({ "type": "error", "disco": true })), Ok(Kind::Iq));
    assert_eq!(kind(json!({ "to": "x" })), Ok(Kind::Message), "the default");
    assert_eq!(infer_kind(&fields(json!({ "to": "x" })), Profile::Rest, Kind::Iq), Ok(Kind::Iq));
    assert_eq!(kind(json!({ "oob": { "url": "https://a.example" } })), Ok(Kind::Message), "in two kinds: no hint");
    assert_eq!(kind(json!({ "ping": null, "body": "x" })), Ok(Kind::Message), "null is absent");
    let conflict = kind(json!({ "body": "hi", "ping": true })).unwrap_err();
    assert_eq!(conflict.why, Why::KindConflict("ping".into()));
    assert_eq!(conflict.to_string(), "'body' and 'ping' belong to different kinds of stanza");
    assert_eq!(kind(json!({ "kind": "stream" })).unwrap_err().field, "kind");
    assert_eq!(kind(json!({ "kind": 1 })).unwrap_err().to_string(), "'kind' must be a string, got a number");

    // What the issue found sent as silent mistranslations.
    assert_eq!(
        build(json!({ "to": "x@example.org", "ping": true }), Profile::Rest).unwrap(),
        "<iq type='get' to='x@example.org'><ping xmlns='urn:xmpp:ping'/></iq>"
    );
    assert_eq!(
        build(json!({ "kind": "presence", "show": "away" }), Profile::Rest).unwrap(),
        "<presence><show>away</show></presence>"
    );
    // Types implied as theirs: an iq is a get, a set with a command or an archive query.
    assert_eq!(
        build(json!({ "command": "uptime" }), Profile::Rest).unwrap(),
        "<iq type='set'><command xmlns='http://jabber.org/protocol/commands' node='uptime'/></iq>"
    );
    assert_eq!(
        build(json!({ "kind": "presence", "type": "available" }), Profile::Rest).unwrap(),
        "<presence/>",
        "available is no type at all"
    );
}

#[test]
fn a_field_on_the_wrong_kind_is_refused_naming_it() {
    let error = refusal(json!({ "kind": "presence", "body": "hi" }), Profile::Rest);
    assert_eq!((error.field.as_str(), &error.why), ("body", &Why::NotForKind(Kind::Presence)));
    assert_eq!(error.to_string(), "'body' cannot be used in a presence");
    let error = refusal(json!({ "kind": "message", "ping": true }), Profile::Rest);
    assert_eq!(error.why, Why::NotForKind(Kind::Message));
}

#[test]
fn unknown_and_unmapped_fields_are_refused_naming_them() {
    for profile in [Profile::Rest, Profile::ComponentHttp] {
        let error = refusal(json!({ "body": "hi", "bogus": 1 }), profile);
        assert_eq!((error.field.as_str(), &error.why), ("bogus", &Why::Unknown));
        let error = refusal(json!({ "reply": { "id": "m1", "extra": 1 } }), profile);
        assert_eq!((error.field.as_str(), &error.why), ("reply.extra", &Why::Unknown));
        let error = refusal(json!({ "kind": "iq", "command": { "node": "x", "note": { "txt": "t" } } }), profile);
        assert_eq!(error.field, "command.note.txt");
        let error = refusal(json!({ "type": "error", "error_code": 500 }), profile);
        assert!(matches!(error.why, Why::Unmapped(_)), "{error}");
        assert!(error.to_string().starts_with("'error_code' is not supported: "), "{error}");
        // A null is an absent field, whatever its name.
        assert!(build(json!({ "body": "hi", "subject": null }), profile).is_ok());
    }
    // component_http's own fields are its callers': accepted, and not written here.
    let own = json!({ "body": "hi", "stanza": null, "delta": "x", "room": "r@muc", "nick": "n", "mentioned": true,
                      "stanza_id": "s1" });
    assert_eq!(build(own, Profile::ComponentHttp).unwrap(), "<message><body>hi</body></message>");
    assert_eq!(refusal(json!({ "delta": "x" }), Profile::Rest).why, Why::Unknown);
}

#[test]
fn lists_past_their_bound_are_refused_naming_the_field() {
    let reactions = vec![json!("\u{1F44D}"); MAX_REACTIONS + 1];
    let error = refusal(json!({ "reactions": { "id": "m1", "reactions": reactions } }), Profile::Rest);
    assert_eq!(
        (error.field.as_str(), &error.why),
        ("reactions.reactions", &Why::TooMany { max: MAX_REACTIONS, len: MAX_REACTIONS + 1, kind: Kind::Message })
    );
    let at_bound = vec![json!("\u{1F44D}"); MAX_REACTIONS];
    assert!(build(json!({ "reactions": { "id": "m1", "reactions": at_bound } }), Profile::Rest).is_ok());

    let ids = vec![json!({ "id": "s", "by": "b" }); MAX_STANZA_IDS + 1];
    assert_eq!(refusal(json!({ "stanza_ids": ids }), Profile::Rest).field, "stanza_ids");
    let items = vec![json!("a@example.org"); table::MAX_ITEMS + 1];
    assert_eq!(
        refusal(json!({ "items": items }), Profile::Rest).why,
        Why::TooMany { max: table::MAX_ITEMS, len: table::MAX_ITEMS + 1, kind: Kind::Iq }
    );
    let fields = vec![json!({ "var": "v" }); table::MAX_FORM_FIELDS + 1];
    assert_eq!(refusal(json!({ "dataform": { "fields": fields } }), Profile::Rest).field, "dataform.fields");
    let stats = vec![json!({ "name": "n" }); table::MAX_STATS + 1];
    assert_eq!(refusal(json!({ "kind": "iq", "stats": stats }), Profile::Rest).field, "stats");

    // Read from a stanza, a list stops at its bound.
    let many: String =
        (0..MAX_STANZA_IDS + 5).map(|i| format!("<stanza-id xmlns='urn:xmpp:sid:0' id='{i}' by='b'/>")).collect();
    let read = read(&format!("<message>{many}</message>"), Profile::Rest);
    assert_eq!(read["stanza_ids"].as_array().unwrap().len(), MAX_STANZA_IDS);
}

#[test]
fn a_stanza_built_from_json_holds_no_more_elements_than_a_parsed_reply() {
    assert_eq!(MAX_ELEMENTS, ParseLimits::default().max_elements);
    assert_eq!(MAX_DEPTH, ParseLimits::default().max_depth);
    // Every list within its bound, together past the element limit.
    let values = vec![json!("v"); table::MAX_FIELD_VALUES];
    let list = vec![json!({ "var": "v", "values": values }); table::MAX_FORM_FIELDS];
    let error = refusal(json!({ "dataform": { "fields": list } }), Profile::Rest);
    assert_eq!(error.why, Why::TooManyElements);
    assert!(error.field.starts_with("dataform.fields["), "{error}");
    // Exactly at the limit: the stanza, the form, 98 fields of 100 values and one of 99.
    let at_limit = |last: usize| {
        let mut list = vec![json!({ "var": "v", "values": vec![json!("v"); 100] }); 98];
        list.push(json!({ "var": "v", "values": vec![json!("v"); last] }));
        json_to_element(&fields(json!({ "dataform": { "fields": list } })), Profile::Rest, Kind::Message)
    };
    assert_eq!(at_limit(99).map(|e| count(&e)), Ok(MAX_ELEMENTS));
    assert_eq!(at_limit(100).unwrap_err().why, Why::TooManyElements);
    // Forwarded messages nest without end: refused past the depth limit.
    let mut message = json!({ "body": "deep" });
    for _ in 0..MAX_DEPTH {
        message = json!({ "forwarded": { "message": message } });
    }
    let error = refusal(message, Profile::Rest);
    assert_eq!(error.why, Why::TooDeep);
    assert!(error.field.starts_with("forwarded.message.forwarded"), "{error}");
}

fn count(element: &Element) -> usize {
    1 + elements(element).map(count).sum::<usize>()
}

#[test]
fn values_are_checked_naming_the_field() {
    for (value, field, text) in [
        (json!({ "kind": "presence", "priority": 200 }), "priority", "'priority' must be from -128 to 127"),
        (json!({ "kind": "presence", "priority": "5" }), "priority", "'priority' must be an integer, got a string"),
        (json!({ "kind": "presence", "show": "busy" }), "show", "'show' must be one of away, chat, dnd, xa"),
        (json!({ "state": "typing" }), "state", "'state' must be one of active, inactive, gone, composing, paused"),
        (json!({ "replace": "" }), "replace", "'replace' is empty: it must be a message id"),
        (json!({ "replace": ["m1"] }), "replace", "'replace' must be a string, got an array"),
        (json!({ "reply": {} }), "reply.id", "'reply' needs an 'id': the id of the message answered"),
        (json!({ "reply": { "id": "m1", "to": "@localhost" } }), "reply.to", ""),
        (
            json!({ "reactions": { "id": "m1" } }),
            "reactions.reactions",
            "'reactions' needs 'reactions': an array of emoji",
        ),
        (
            json!({ "reactions": { "id": "m1", "reactions": [" "] } }),
            "reactions.reactions[0]",
            "'reactions.reactions' holds an empty reaction",
        ),
        (json!({ "reactions": { "id": "m1", "reactions": [1] } }), "reactions.reactions[0]", ""),
        (json!({ "oob_url": "ftp://a.example/x" }), "oob_url", "'oob_url' must be an absolute http or https URL"),
        (json!({ "oob": { "url": "/x" } }), "oob.url", "'oob.url' must be an absolute http or https URL"),
        (json!({ "oob_url": 7 }), "oob_url", "'oob_url' must be a string, got a number"),
        (json!({ "oob_url": "https://a.example/1", "oob": { "url": "https://a.example/2" } }), "oob_url", ""),
        (json!({ "kind": "iq", "ping": "yes" }), "ping", "'ping' must be a boolean, got a string"),
        (json!({ "html": "<p>not a body</p>" }), "html", "'html' must be one <body> element"),
        (json!({ "html": "<body>a</body><body>b</body>" }), "html", "'html' must be one <body> element"),
        (json!({ "html": "<body>" }), "html", ""),
        (json!({ "html": "</x:html></message><message><x:html>" }), "html", ""),
        (json!({ "kind": "iq", "disco": false }), "disco", "'disco' must be true, a node or an object, got a boolean"),
        (json!({ "type": "error", "error": { "condition": "made-up" } }), "error.condition", ""),
        (json!({ "kind": "presence", "join": "yes" }), "join", "'join' must be a boolean, got a string"),
        (json!({ "forwarded": { "message": { "kind": "iq" } } }), "forwarded.message.kind", ""),
        (json!({ "forwarded": { "message": { "ping": true } } }), "forwarded.message.ping", ""),
        (json!({ "body": "a\u{1}b" }), "body", "'body' contains the character U+0001, which XML does not allow"),
        (json!({ "reply": { "id": "m\u{0}" } }), "reply.id", ""),
        (json!({ "kind": "iq", "items": ["a\u{1b}"] }), "items[0]", ""),
        (
            json!({ "kind": "iq", "disco": { "extensions": { "urn:x": { "f\u{7}": "v" } } } }),
            "disco.extensions.urn:x.f\u{7}",
            "",
        ),
        (
            json!({ "kind": "iq", "disco": { "extensions": { "urn:x": { "f": ["\u{ffff}"] } } } }),
            "disco.extensions.urn:x.f",
            "",
        ),
    ] {
        let error = refusal(value.clone(), Profile::Rest);
        assert_eq!(error.field, field, "{value}: {error}");
        if !text.is_empty() {
            assert_eq!(error.to_string(), text, "{value}");
        }
    }
}

#[test]
fn formdata_writes_a_form_to_submit_read_back_as_dataform() {
    let built = build(
        json!({"kind": "iq", "type": "set", "to": "x@y", "formdata": {"a": "1", "b": ["x", "y"], "c": true}}),
        Profile::Rest,
    )
    .unwrap();
    assert_eq!(
        built,
        "<iq type='set' to='x@y'><x xmlns='jabber:x:data' type='submit'><field var='a'><value>1</value></field>\
         <field var='b'><value>x</value><value>y</value></field><field var='c'><value>1</value></field></x></iq>"
    );
    let read = read(&built, Profile::Rest);
    assert!(read.get("formdata").is_none() && read["dataform"]["type"] == "submit", "{read}");
    assert_eq!(refusal(json!({"to": "x@y", "formdata": ["a"]}), Profile::Rest).field, "formdata");
}

#[test]
fn aliases_write_the_row_they_name() {
    // join: the legacy flag for an empty MUC join element.
    let xml = build(json!({ "to": "room@muc.example.org/bot", "join": true }), Profile::Rest).unwrap();
    assert_eq!(xml, "<presence to='room@muc.example.org/bot'><x xmlns='http://jabber.org/protocol/muc'/></presence>");
    assert_eq!(
        read(&xml, Profile::Rest),
        json!({ "kind": "presence", "type": "available", "to": "room@muc.example.org/bot", "muc": {} })
    );
    let with_muc = json!({ "join": true, "muc": { "history": { "maxstanzas": 0 } } });
    assert_eq!(
        build(with_muc, Profile::Rest).unwrap(),
        "<presence><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"
    );
    // oob_url: component_http's name for oob.url, read back as both.
    let xml = build(json!({ "oob_url": "https://f.example/a" }), Profile::ComponentHttp).unwrap();
    assert_eq!(xml, "<message><x xmlns='jabber:x:oob'><url>https://f.example/a</url></x></message>");
    assert_eq!(
        read(&xml, Profile::ComponentHttp),
        json!({ "kind": "message", "oob": { "url": "https://f.example/a" }, "oob_url": "https://f.example/a" })
    );
}

#[test]
fn shorthand_values_read_back_in_their_full_form() {
    let read_back = |value: Value| read(&build(value, Profile::Rest).unwrap(), Profile::Rest);
    assert_eq!(read_back(json!({ "command": "uptime" }))["command"], json!({ "node": "uptime" }));
    assert_eq!(read_back(json!({ "kind": "iq", "items": { "node": "n" } }))["items"], json!("n"));
    assert_eq!(read_back(json!({ "kind": "iq", "items": {} }))["items"], json!(true));
    assert_eq!(
        read_back(json!({ "kind": "iq", "items": ["a@example.org"] }))["items"],
        json!([{ "jid": "a@example.org" }])
    );
    assert_eq!(read_back(json!({ "body": 42 }))["body"], json!("42"), "component_http's lenient body");
    let data = json!({ "kind": "iq", "command": { "node": "n", "data": { "a": "1", "b": ["x", "y"] } } });
    assert_eq!(
        build(data.clone(), Profile::Rest).unwrap(),
        "<iq type='set'><command xmlns='http://jabber.org/protocol/commands' node='n'>\
         <x xmlns='jabber:x:data' type='submit'><field var='a'><value>1</value></field>\
         <field var='b'><value>x</value><value>y</value></field></x></command></iq>"
    );
    assert_eq!(
        read_back(data)["command"]["form"],
        json!({ "type": "submit", "fields": [{ "var": "a", "values": ["1"] }, { "var": "b", "values": ["x", "y"] }] })
    );
}

#[test]
fn an_archive_query_may_be_written_in_the_community_shorthand() {
    let shorthand = json!({ "kind": "iq", "archive": { "queryid": "q1", "with": "u@example.org", "ids": "a,b",
                                                      "max": "10", "after": "x" } });
    let xml = build(shorthand, Profile::Rest).unwrap();
    assert_eq!(
        xml,
        "<iq type='set'><query xmlns='urn:xmpp:mam:2' queryid='q1'><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>\
         <field var='with'><value>u@example.org</value></field><field var='ids'><value>a</value><value>b</value></field>\
         </x><set xmlns='http://jabber.org/protocol/rsm'><after>x</after><max>10</max></set></query></iq>"
    );
    assert_eq!(read(&xml, Profile::Rest)["archive"]["page"], json!({ "after": "x", "max": 10 }));
    let both = json!({ "kind": "iq", "archive": { "with": "u@example.org", "form": { "type": "submit" } } });
    assert_eq!(refusal(both, Profile::Rest).field, "archive.with");
    let both = json!({ "kind": "iq", "archive": { "max": 5, "page": { "max": 5 } } });
    assert_eq!(refusal(both, Profile::Rest).field, "archive.max");
    assert_eq!(refusal(json!({ "kind": "iq", "archive": { "max": "ten" } }), Profile::Rest).field, "archive.max");
    assert_eq!(refusal(json!({ "kind": "iq", "archive": { "with": 1 } }), Profile::Rest).field, "archive.with");
    assert_eq!(refusal(json!({ "kind": "iq", "archive": { "within": 1 } }), Profile::Rest).field, "archive.within");
}

#[test]
fn a_disco_extension_is_read_whatever_its_form_type_field_says_of_its_type() {
    let xml = "<iq type='result'><query xmlns='http://jabber.org/protocol/disco#info'><feature var='f'/>\
               <x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE'><value>urn:x</value></field>\
               <field var='a' type='text-multi'><value>1</value><value>2</value></field>\
               <field var='b' type='jid-single'/></x>\
               <x xmlns='jabber:x:data' type='result'><field var='c'/></x></query></iq>";
    assert_eq!(
        read(xml, Profile::Rest)["disco"],
        json!({ "identities": [], "features": ["f"], "extensions": { "urn:x": { "a": "1\n2", "b": null } } }),
        "a form without FORM_TYPE is no extension"
    );
}

#[test]
fn a_form_field_value_may_be_written_as_the_community_module_writes_it() {
    let form = |field: Value| json!({ "dataform": { "type": "submit", "fields": [field] } });
    let expected =
        "<message><x xmlns='jabber:x:data' type='submit'><field var='a'><value>1</value></field></x></message>";
    assert_eq!(build(form(json!({ "var": "a", "value": "1" })), Profile::Rest).unwrap(), expected);
    assert_eq!(build(form(json!({ "var": "a", "value": ["1"] })), Profile::Rest).unwrap(), expected);
    assert_eq!(read(expected, Profile::Rest)["dataform"]["fields"][0], json!({ "var": "a", "values": ["1"] }));
    let both = refusal(form(json!({ "var": "a", "value": "1", "values": ["1"] })), Profile::Rest);
    assert_eq!(both.field, "dataform.fields[0].value");
    let wrong = refusal(form(json!({ "var": "a", "value": 1 })), Profile::Rest);
    assert_eq!(wrong.to_string(), "'dataform.fields[0].value' must be a string or an array, got a number");
}

#[test]
fn reading_a_stanza_skips_what_does_not_fit_its_row() {
    let xml = "<presence><priority>high</priority><show>busy</show><status>ok</status>\
               <c xmlns='http://jabber.org/protocol/caps' node='n'/><payload xmlns='urn:xmpp:json-msg:0'>{not json</payload>\
               <x xmlns='urn:unknown'/></presence>";
    assert_eq!(
        read(xml, Profile::Rest),
        json!({ "kind": "presence", "type": "available", "status": "ok", "caps": { "node": "n" }, "payload": {} })
    );
    // A child in another namespace is not the row's.
    let other =
        read("<message><body xmlns='urn:other'>x</body><replace xmlns='urn:other' id='m'/></message>", Profile::Rest);
    assert_eq!(other, json!({ "kind": "message" }));
    // The stanza's own namespace, written out, is its children's.
    let client = read("<message xmlns='jabber:client'><body>x</body></message>", Profile::Rest);
    assert_eq!(client, json!({ "kind": "message", "body": "x" }));
    // A reply without an id, reactions without one: not read, as component_http never did.
    let partial = read(
        "<message><reply xmlns='urn:xmpp:reply:0' to='a@b'/><reactions xmlns='urn:xmpp:reactions:0'/></message>",
        Profile::Rest,
    );
    assert_eq!(partial, json!({ "kind": "message" }));
    // All reactions taken back: an empty list, still a field.
    let none = read("<message><reactions xmlns='urn:xmpp:reactions:0' id='m1'/></message>", Profile::Rest);
    assert_eq!(none["reactions"], json!({ "id": "m1", "reactions": [] }));
    assert!(element_to_json(&Element::new("stream"), Profile::Rest).is_empty());
    // component_http has always left out the type a stanza does not have.
    assert_eq!(read("<presence/>", Profile::ComponentHttp), json!({ "kind": "presence" }));
}
