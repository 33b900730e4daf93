//! What a webhook reply or a push may make the component send. Every such stanza passes
//! [`check`] before it leaves the native side, so Prosody only ever gets stanzas it can route
//! and a client can parse:
//!
//! - `to` and `from` are valid JIDs by Prosody's own rules ([`crate::jid`]), written in their
//!   prepared form;
//! - `from` is the component's host or a JID on it: a bot speaks for its component, never for a
//!   user or another host;
//! - `to` is not on the component: such a stanza would come straight back to the webhook (one
//!   push once made 4,655 POSTs in 5 s);
//! - `type` is one RFC 6120/6121 defines for the kind; an iq is one Prosody's modules can
//!   handle: an `id`, a `get`/`set` with exactly one payload, a `result` with at most one, an
//!   `error` with its `<error/>`;
//! - the tree serializes to namespace-well-formed XML ([`Element::check_xml`]).

use crate::jid;
use crate::stanza::Element;

/// Why a stanza may not be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Not a stanza Prosody can route or a client can read (for a push: `400`).
    Invalid(String),
    /// Sent as someone the component may not speak for (for a push: `403`).
    NotOurs(String),
}

impl Violation {
    /// What was wrong, for the log or the HTTP client.
    pub fn message(&self) -> &str {
        match self {
            Violation::Invalid(why) | Violation::NotOurs(why) => why,
        }
    }
}

/// Whose stanza this is: the id of a pushed iq `get`/`set` may be left for the push endpoint to
/// assign (it waits for the answer under that id); a webhook's reply must carry its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// A reply in the webhook's answer.
    Webhook,
    /// A stanza pushed over HTTP.
    Push,
}

/// Checks `stanza`, to be sent as the component `host`, and rewrites its addresses prepared.
/// `to` and `from` must be set by now (defaults are the caller's business).
///
/// `host` may instead be an account's bare JID, `user@host`: mod_rest on a VirtualHost sends
/// for the account a client authenticated as. Then `from` must be that account or one of its
/// resources, and `to` may be anyone, the host included (a user's stanzas do not come back to
/// the callback, which gets only stanzas to the host that nothing else handles).
///
/// Or `@host`: mod_rest's callback on a VirtualHost, which gets the stanzas to the host itself
/// and replies as the host. Then `from` must be the host itself, never one of its users, and
/// `to` anything but the host itself (that would come back to the callback).
pub fn check(stanza: &mut Element, host: &str, sender: Sender) -> Result<(), Violation> {
    let invalid = |why: String| Violation::Invalid(why);
    if let Some(domain) = host.strip_prefix('@') {
        let to = address(stanza, "to")?;
        if to.node.is_none() && to.domain.eq_ignore_ascii_case(domain) {
            return Err(invalid(format!(
                "'to' {:?} is the host itself ({domain}): it would come back to the callback",
                to.to_string()
            )));
        }
        let from = address(stanza, "from")?;
        if from.node.is_some() || !from.domain.eq_ignore_ascii_case(domain) {
            return Err(Violation::NotOurs(format!(
                "'from' {:?} is not the host ({domain}): on a VirtualHost the callback speaks as the host only",
                from.to_string()
            )));
        }
        semantics(stanza, sender).map_err(invalid)?;
        return stanza.check_xml().map_err(invalid);
    }
    if let Some((node, domain)) = host.split_once('@') {
        address(stanza, "to")?;
        let from = address(stanza, "from")?;
        if from.node.as_deref() != Some(node) || !from.domain.eq_ignore_ascii_case(domain) {
            return Err(Violation::NotOurs(format!(
                "'from' {:?} is not the account the request authenticated as ({host})",
                from.to_string()
            )));
        }
        semantics(stanza, sender).map_err(invalid)?;
        return stanza.check_xml().map_err(invalid);
    }
    let to = address(stanza, "to")?;
    if to.domain.eq_ignore_ascii_case(host) {
        return Err(invalid(format!(
            "'to' {:?} is this component ({host}): it would come back to the webhook; address users or other services",
            to.to_string()
        )));
    }
    let from = address(stanza, "from")?;
    if !from.domain.eq_ignore_ascii_case(host) {
        return Err(Violation::NotOurs(format!("'from' {:?} is not on this component ({host})", from.to_string())));
    }
    semantics(stanza, sender).map_err(invalid)?;
    stanza.check_xml().map_err(invalid)
}

/// The attribute `key` as a prepared JID, written back in that form.
fn address(stanza: &mut Element, key: &str) -> Result<jid::Jid, Violation> {
    let Some(raw) = stanza.attr(key) else {
        return Err(Violation::Invalid(format!("the stanza has no '{key}'")));
    };
    let prepared =
        jid::prep(raw).map_err(|why| Violation::Invalid(format!("'{key}' {raw:?} is not a valid JID: {why}")))?;
    let text = prepared.to_string();
    if text != raw {
        stanza.set_attr(key, &text);
    }
    Ok(prepared)
}

fn semantics(stanza: &Element, sender: Sender) -> Result<(), String> {
    let stanza_type = stanza.attr("type");
    let allowed: &[&str] = match stanza.name.as_str() {
        "message" => &["chat", "error", "groupchat", "headline", "normal"],
        "presence" => &["error", "probe", "subscribe", "subscribed", "unavailable", "unsubscribe", "unsubscribed"],
        "iq" => &["get", "set", "result", "error"],
        other => return Err(format!("<{other}> is not a stanza: expected message, presence or iq")),
    };
    match stanza_type {
        Some(t) if !allowed.contains(&t) => {
            let (last, rest) = allowed.split_last().unwrap_or((&"", &[]));
            let article = if stanza.name == "iq" { "an" } else { "a" };
            return Err(format!(
                "{article} {} of type {t:?}: the types are {} or {last}",
                stanza.name,
                rest.join(", ")
            ));
        }
        None if stanza.name == "iq" => return Err("an iq needs a type: get, set, result or error".into()),
        _ => {}
    }
    if stanza.name == "iq" {
        iq_semantics(stanza, stanza_type.unwrap_or_default(), sender)?;
    }
    Ok(())
}

/// RFC 6120 8.2.3, as Prosody's iq handlers rely on it (mod_iq reads the payload of a get/set
/// without checking it is there).
fn iq_semantics(iq: &Element, iq_type: &str, sender: Sender) -> Result<(), String> {
    let payloads = iq.elements().count();
    let id_assigned_later = sender == Sender::Push && matches!(iq_type, "get" | "set");
    let payload_check = match iq_type {
        "get" | "set" if payloads != 1 => {
            Err(format!("an iq {iq_type} carries exactly one payload element, this one has {payloads}"))
        }
        "result" if payloads > 1 => {
            Err(format!("an iq result carries at most one payload element, this one has {payloads}"))
        }
        "error" if iq.child_named("error").is_none() => Err("an iq error carries an <error/> element".into()),
        _ => Ok(()),
    };
    payload_check?;
    if iq.attr("id").is_none_or(str::is_empty) && !id_assigned_later {
        return Err(format!("an iq {iq_type} needs an id"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{parse_stanza, ParseLimits};

    const HOST: &str = "bot.localhost";

    fn checked(xml: &str, sender: Sender) -> Result<String, Violation> {
        let mut stanza = parse_stanza(xml, ParseLimits::default()).unwrap();
        check(&mut stanza, HOST, sender).map(|()| stanza.to_xml())
    }

    fn refused(xml: &str) -> String {
        match checked(xml, Sender::Webhook) {
            Err(Violation::Invalid(why)) => why,
            other => panic!("{xml}: {other:?}"),
        }
    }

    #[test]
    fn addresses_are_prepared_jids() {
        assert_eq!(
            checked("<message to='Alice@LOCALHOST/Phone' from='Echo@Bot.Localhost'/>", Sender::Webhook),
            Ok("<message to='alice@localhost/Phone' from='echo@bot.localhost'/>".into())
        );
        assert!(refused("<message to='@localhost' from='bot.localhost'/>").contains("not a valid JID"));
        assert!(refused("<message to='a@b' from='x y@bot.localhost'/>").contains("not a valid JID"));
        assert!(refused("<message from='bot.localhost'/>").contains("no 'to'"));
    }

    #[test]
    fn an_account_speaks_only_as_itself_to_anyone() {
        let account = "alice@localhost";
        let check_as = |xml: &str| {
            let mut stanza = parse_stanza(xml, ParseLimits::default()).unwrap();
            check(&mut stanza, account, Sender::Push).map(|()| stanza.to_xml())
        };
        for from in ["alice@localhost", "alice@LOCALHOST", "alice@localhost/phone"] {
            for to in ["bob@localhost", "localhost", "alice@localhost", "carol@example.org/x"] {
                let xml = format!("<message from='{from}' to='{to}'><body>hi</body></message>");
                assert!(check_as(&xml).is_ok(), "{xml}: {:?}", check_as(&xml));
            }
        }
        for from in ["bob@localhost", "localhost", "alice@example.org", "alice@localhost.evil"] {
            let xml = format!("<message from='{from}' to='bob@localhost'/>");
            assert!(matches!(check_as(&xml), Err(Violation::NotOurs(why)) if why.contains("alice@localhost")), "{xml}");
        }
        let refused = check_as("<iq from='alice@localhost' to='localhost' type='get' id='1'/>");
        assert!(matches!(refused, Err(Violation::Invalid(_))), "an account's iq is checked alike: {refused:?}");
    }

    #[test]
    fn a_virtual_hosts_callback_speaks_only_as_the_host_and_not_to_itself() {
        let check_as = |xml: &str| {
            let mut stanza = parse_stanza(xml, ParseLimits::default()).unwrap();
            check(&mut stanza, "@localhost", Sender::Webhook).map(|()| stanza.to_xml())
        };
        for to in ["alice@localhost/phone", "alice@localhost", "bob@example.org", "conference.localhost"] {
            let xml = format!("<message from='LOCALHOST' to='{to}'><body>hi</body></message>");
            assert!(check_as(&xml).is_ok(), "{xml}: {:?}", check_as(&xml));
        }
        for from in ["alice@localhost", "alice@localhost/x", "example.org", "localhost.evil"] {
            let xml = format!("<message from='{from}' to='bob@localhost'/>");
            assert!(matches!(check_as(&xml), Err(Violation::NotOurs(_))), "{xml}");
        }
        for to in ["localhost", "localhost/res"] {
            let xml = format!("<message from='localhost' to='{to}'/>");
            assert!(matches!(check_as(&xml), Err(Violation::Invalid(why)) if why.contains("come back")), "{xml}");
        }
    }

    #[test]
    fn only_the_component_speaks_and_never_to_itself() {
        for from in ["admin@localhost", "localhost", "bot.localhost.evil.example", "evil.example/bot.localhost"] {
            let xml = format!("<message to='alice@localhost' from='{from}'/>");
            assert!(matches!(checked(&xml, Sender::Push), Err(Violation::NotOurs(_))), "{from}");
        }
        for to in ["bot.localhost", "other@bot.localhost/r", "x@BOT.localhost."] {
            let xml = format!("<message to='{to}' from='echo@bot.localhost'/>");
            assert!(refused(&xml).contains("come back to the webhook"), "{to}");
        }
    }

    #[test]
    fn iqs_are_ones_prosody_can_handle() {
        let ok = |xml: &str, sender| assert!(checked(xml, sender).is_ok(), "{xml}");
        ok(
            "<iq type='get' id='1' to='localhost' from='bot.localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
            Sender::Webhook,
        );
        ok("<iq type='get' to='localhost' from='bot.localhost'><ping xmlns='urn:xmpp:ping'/></iq>", Sender::Push);
        ok("<iq type='result' id='1' to='localhost' from='bot.localhost'/>", Sender::Webhook);
        ok("<iq type='error' id='1' to='localhost' from='bot.localhost'><error type='cancel'/></iq>", Sender::Webhook);
        for (xml, why) in [
            ("<iq to='localhost' from='bot.localhost'/>", "needs a type"),
            ("<iq type='bogus' id='1' to='localhost' from='bot.localhost'/>", "types are"),
            ("<iq type='get' id='1' to='localhost' from='bot.localhost'/>", "exactly one"),
            ("<iq type='set' id='1' to='localhost' from='bot.localhost'><a/><b/></iq>", "exactly one"),
            ("<iq type='get' to='localhost' from='bot.localhost'><ping xmlns='urn:xmpp:ping'/></iq>", "needs an id"),
            ("<iq type='result' id='1' to='localhost' from='bot.localhost'><a/><b/></iq>", "at most one"),
            ("<iq type='error' id='1' to='localhost' from='bot.localhost'/>", "<error/>"),
            ("<message type='shout' to='localhost' from='bot.localhost'/>", "types are"),
            ("<presence type='available' to='localhost' from='bot.localhost'/>", "types are"),
        ] {
            assert!(refused(xml).contains(why), "{xml}: {}", refused(xml));
        }
    }
}
