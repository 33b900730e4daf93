//! The JSON body POSTed for one stanza: `to`, `from`, `kind`, `stanza`, and `body` for a message
//! that has one — the contract of the original module — plus the stanza's `id` and `type` when
//! it has them, so a bot need not parse `stanza` for what it answers by; for a message from a
//! group chat room, `room`, `nick` (component_http) and (for what was said in the room)
//! `mentioned`; and every other field of the JSON mapping the stanza carries ([`crate::jsonmap`],
//! in the module's profile: [`crate::rich::RequestFields`]), with `body` as its author wrote it,
//! without the quote of a reply.

use crate::config::{self, Format};
use crate::jsonmap::Profile;
use crate::rich::RequestFields;
use crate::stanza::Incoming;

/// The request body of a stanza in the contract of the module `profile` names: JSON
/// (component_http, or mod_rest's JSON callbacks in its own field names) or the stanza itself,
/// serialized as Prosody does (mod_rest).
pub fn body_for(stanza: &Incoming, profile: &config::Profile) -> Vec<u8> {
    match profile.format {
        Format::Json => encode_as(stanza, Profile::of(profile)),
        Format::Xml => stanza.xml.as_bytes().to_vec(),
    }
}

/// [`body_for`] in component_http's field names when `format` is JSON.
pub fn body(stanza: &Incoming, format: Format) -> Vec<u8> {
    match format {
        Format::Json => encode(stanza),
        Format::Xml => stanza.xml.as_bytes().to_vec(),
    }
}

/// The `Content-Type` of such a body.
pub fn content_type(format: Format) -> &'static str {
    match format {
        Format::Json => "application/json",
        Format::Xml => "application/xmpp+xml",
    }
}

/// [`encode_as`] in component_http's field names.
pub fn encode(stanza: &Incoming) -> Vec<u8> {
    encode_as(stanza, Profile::ComponentHttp)
}

/// Encodes the request body. Keys come in a fixed order so bodies are easy to read in logs:
/// those of every request, the room's, the mapping's (by name), then `stanza` and `body`.
/// `to` and `from` are `""` when the stanza has none, as the original module wrote them.
pub fn encode_as(stanza: &Incoming, profile: Profile) -> Vec<u8> {
    let mut out = Vec::with_capacity(stanza.xml.len() + 128);
    out.push(b'{');
    field(&mut out, "to", stanza.to.as_deref().unwrap_or(""));
    out.push(b',');
    field(&mut out, "from", stanza.from.as_deref().unwrap_or(""));
    out.push(b',');
    field(&mut out, "kind", &stanza.name);
    // mod_rest writes a presence without a type as `available`, as the community module does.
    let available = (profile == Profile::Rest && stanza.name == "presence").then_some("available");
    let stanza_type = stanza.stanza_type.as_deref().or(available);
    for (key, value) in [("id", stanza.id.as_deref()), ("type", stanza_type)] {
        if let Some(value) = value {
            out.push(b',');
            field(&mut out, key, value);
        }
    }
    // The community module writes the language; component_http's requests never had it.
    if let Some(lang) = lang(&stanza.xml).filter(|_| profile == Profile::Rest) {
        out.push(b',');
        field(&mut out, "lang", &lang);
    }
    if let Some(room) = &stanza.room {
        out.push(b',');
        field(&mut out, "room", &room.fields.room);
        // In mod_rest's names `nick` is XEP-0172's: the room nick is in `from` there.
        if profile == Profile::ComponentHttp {
            out.push(b',');
            field(&mut out, "nick", &room.fields.nick);
        }
        if let Some(mentioned) = room.fields.mentioned {
            out.extend_from_slice(if mentioned { b",\"mentioned\":true" } else { b",\"mentioned\":false" });
        }
    }
    let fields = RequestFields::of(stanza, profile);
    fields.write_json(&mut out);
    out.push(b',');
    field(&mut out, "stanza", &stanza.xml);
    if let Some(body) = &stanza.body {
        out.push(b',');
        field(&mut out, "body", &fields.body(body));
    }
    out.push(b'}');
    out
}

/// The stanza's `xml:lang`, read from its start tag alone: Prosody writes attribute values
/// quoted, with `&`, `<`, `>` and both quotes escaped, so the tag ends at the first `>`.
pub(crate) fn lang(xml: &str) -> Option<String> {
    let tag = &xml[..xml.find('>')?];
    let value = &tag[tag.find(" xml:lang=")? + " xml:lang=".len()..];
    let quote = value.chars().next().filter(|c| matches!(c, '\'' | '"'))?;
    let value = &value[1..];
    let value = &value[..value.find(quote)?];
    Some(
        value
            .replace("&apos;", "'")
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

fn field(out: &mut Vec<u8>, key: &str, value: &str) {
    // Writing a &str into a Vec cannot fail.
    serde_json::to_writer(&mut *out, key).expect("JSON string");
    out.push(b':');
    serde_json::to_writer(&mut *out, value).expect("JSON string");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn incoming(body: Option<&str>) -> Incoming {
        Incoming {
            from: Some("user@localhost/r".into()),
            xml: "<message to='echo@bot.localhost'><body>\"hi\" \u{1F600}</body></message>".into(),
            body: body.map(Into::into),
            ..Incoming::sample("message", Some("chat"))
        }
    }

    #[test]
    fn body_is_the_documented_object() {
        let v: Value = serde_json::from_slice(&encode(&incoming(Some("\"hi\" \u{1F600}")))).unwrap();
        assert_eq!(
            v,
            json!({
                "to": "echo@bot.localhost",
                "from": "user@localhost/r",
                "kind": "message",
                "id": "abc",
                "type": "chat",
                "stanza": "<message to='echo@bot.localhost'><body>\"hi\" \u{1F600}</body></message>",
                "body": "\"hi\" \u{1F600}",
            })
        );
    }

    #[test]
    fn a_room_message_names_its_room_nick_and_mention() {
        use crate::room::{RoomContext, RoomFields};
        let fields = |message_type: &str, mentioned| RoomFields {
            message_type: message_type.into(),
            room: "dev@conference.localhost".into(),
            nick: "alice".into(),
            mentioned,
        };
        let said = Incoming {
            room: Some(Box::new(RoomContext {
                fields: fields("groupchat", Some(true)),
                bot_from: "bot.localhost".into(),
            })),
            ..incoming(Some("bot: hi"))
        };
        let v: Value = serde_json::from_slice(&encode(&said)).unwrap();
        assert_eq!(
            (&v["room"], &v["nick"], &v["mentioned"]),
            (&json!("dev@conference.localhost"), &json!("alice"), &json!(true))
        );
        let private = Incoming {
            room: Some(Box::new(RoomContext { fields: fields("chat", None), bot_from: "bot.localhost".into() })),
            ..incoming(Some("psst"))
        };
        let v: Value = serde_json::from_slice(&encode(&private)).unwrap();
        assert_eq!((&v["room"], &v["nick"]), (&json!("dev@conference.localhost"), &json!("alice")));
        assert!(v.get("mentioned").is_none(), "a private message is addressed to the bot by nature");
    }

    #[test]
    fn a_reply_is_posted_with_what_it_answers_and_the_body_as_written() {
        let xml = "<message type='chat' id='m2'><body>&gt; hi\nhello</body><reply xmlns='urn:xmpp:reply:0' id='m1'/>\
                   <fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='0' end='5'/></fallback></message>";
        let reply = Incoming { xml: xml.into(), ..incoming(Some("> hi\nhello")) };
        let v: Value = serde_json::from_slice(&encode(&reply)).unwrap();
        assert_eq!((&v["reply"], &v["body"]), (&json!({ "id": "m1" }), &json!("hello")));
        assert_eq!(v["stanza"], json!(xml), "the stanza stays whole");
    }

    #[test]
    fn the_mapping_fields_a_stanza_carries_are_posted_in_the_modules_names() {
        let xml = "<message type='chat' id='m2' xml:lang='en'><body>b</body><subject>S</subject><thread>t1</thread>\
                   <composing xmlns='http://jabber.org/protocol/chatstates'/>\
                   <nick xmlns='http://jabber.org/protocol/nick'>Ann</nick></message>";
        let message = Incoming { xml: xml.into(), ..incoming(Some("b")) };
        let ours: Value = serde_json::from_slice(&encode(&message)).unwrap();
        assert_eq!(
            (&ours["subject"], &ours["thread"], &ours["body"]),
            (&json!("S"), &json!({ "id": "t1" }), &json!("b"))
        );
        assert!(ours.get("nick").is_none(), "component_http's nick is the room nickname");
        assert!(ours.get("state").is_none(), "component_http handles chat states itself");
        assert!(ours.get("lang").is_none(), "component_http's requests never had the language");
        let rest: Value = serde_json::from_slice(&encode_as(&message, Profile::Rest)).unwrap();
        assert_eq!(rest["lang"], json!("en"));
        assert_eq!(
            (&rest["nick"], &rest["subject"], &rest["state"]),
            (&json!("Ann"), &json!("S"), &json!("composing"))
        );
        // mod_rest writes a presence without a type as `available`, as the community module does.
        let presence = Incoming {
            xml: "<presence><show>away</show></presence>".into(),
            body: None,
            stanza_type: None,
            ..Incoming::sample("presence", None)
        };
        let rest: Value = serde_json::from_slice(&encode_as(&presence, Profile::Rest)).unwrap();
        assert_eq!((&rest["type"], &rest["show"]), (&json!("available"), &json!("away")));
        let ours: Value = serde_json::from_slice(&encode(&presence)).unwrap();
        assert_eq!((ours.get("type"), &ours["show"]), (None, &json!("away")));
    }

    #[test]
    fn the_language_is_read_from_the_start_tag_alone() {
        assert_eq!(lang("<message xml:lang='en-GB' to='a@b'><body>x</body></message>").as_deref(), Some("en-GB"));
        assert_eq!(lang("<message to='a@b' xml:lang=\"a&amp;&apos;b\"/>").as_deref(), Some("a&'b"));
        assert_eq!(lang("<message to='a@b'><body xml:lang='de'>x</body></message>"), None);
        assert_eq!(lang("<presence/>"), None);
    }

    #[test]
    fn no_body_key_without_a_body() {
        let v: Value = serde_json::from_slice(&encode(&incoming(None))).unwrap();
        assert!(v.get("body").is_none());
    }

    #[test]
    fn no_id_or_type_key_without_them() {
        let bare = Incoming { id: None, stanza_type: None, ..incoming(None) };
        let v: Value = serde_json::from_slice(&encode(&bare)).unwrap();
        assert_eq!(v.as_object().unwrap().keys().collect::<Vec<_>>(), ["from", "kind", "stanza", "to"]);
    }
}
