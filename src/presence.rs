//! The bot's presence when the module answers presence for it (mod_component_http, unless
//! presence stanzas are POSTed): always online, accepting every subscription. Here are the
//! decisions — what to answer to each presence, and who has been told the bot is online, so that
//! a reload that changes the avatar tells them again at once (XEP-0153 asks for a new presence
//! then) rather than at their next login. The Lua shim (`component_http_identity.lib.lua`)
//! sends what this returns; the object is handed over on reload.

use std::collections::{BTreeMap, BTreeSet};

use mlua::{Lua, Table, UserData, UserDataMethods, UserDataRefMut};

use crate::jid;
use crate::stanza::Element;

/// The most (bot JID, contact) pairs remembered as told. Past it, a contact learns of an avatar
/// change at its next login, as it would anyway; the bound keeps the set's memory fixed.
pub const MAX_ANNOUNCED: usize = 10_000;

/// What the bot's presence says, and who was told.
#[derive(Debug, Default)]
pub struct Presence {
    /// What the presence says of the avatar (XEP-0153): its hash, `""` for none (so clients do
    /// not ask), or `None` for nothing (when the webhook answers vCard queries, not the module).
    photo: Option<String>,
    /// Contacts sent the bot's available presence, by the bot JID that sent it.
    announced: BTreeMap<String, BTreeSet<String>>,
    /// How many pairs `announced` holds.
    count: usize,
}

impl Presence {
    /// The bot's presence saying `photo` of its avatar (see the field).
    pub fn new(photo: Option<String>) -> Self {
        Presence { photo, ..Default::default() }
    }

    /// How many (bot JID, contact) pairs are remembered as told.
    pub fn announced(&self) -> usize {
        self.count
    }

    /// The bot's available presence from `from` to `to`.
    fn online(&self, from: &str, to: &str) -> Element {
        let presence = Element::new("presence").with_attr("from", from).with_attr("to", to);
        match &self.photo {
            None => presence,
            Some(photo) => {
                let mut tag = Element::new("photo");
                if !photo.is_empty() {
                    tag.push_text(photo);
                }
                presence.with_child(Element::new("x").with_attr("xmlns", "vcard-temp:x:update").with_child(tag))
            }
        }
    }

    fn note(&mut self, online: &str, contact: &str, sent: bool) {
        if sent {
            let told = self.announced.get(online).is_some_and(|contacts| contacts.contains(contact));
            if !told && self.count < MAX_ANNOUNCED {
                self.announced.entry(online.to_owned()).or_default().insert(contact.to_owned());
                self.count += 1;
            }
        } else if let Some(contacts) = self.announced.get_mut(online) {
            if contacts.remove(contact) {
                self.count -= 1;
                if contacts.is_empty() {
                    self.announced.remove(online);
                }
            }
        }
    }

    /// The answer to a presence of `kind` (its type attribute) from `from` to `to`: a probe gets
    /// the bot's available presence, a subscription request is accepted and gets it too, an
    /// unsubscription gets an unavailable presence; anything else (and a presence without both
    /// addresses) gets nothing. The bot answers from `<bare to>/default`.
    pub fn answer(&mut self, to: Option<&str>, from: Option<&str>, kind: Option<&str>) -> Vec<Element> {
        let (Some(to), Some(from)) = (to, from) else { return Vec::new() };
        // `to` was routed here, so it is a valid JID.
        let contact = jid::bare(to);
        let online = format!("{contact}/default");
        match kind {
            Some("probe") => {
                self.note(&online, from, true);
                vec![self.online(&online, from)]
            }
            Some("subscribe") => {
                self.note(&online, from, true);
                let subscribed = Element::new("presence")
                    .with_attr("from", contact)
                    .with_attr("to", from)
                    .with_attr("type", "subscribed");
                vec![subscribed, self.online(&online, from)]
            }
            Some("unsubscribe") => {
                self.note(&online, from, false);
                vec![Element::new("presence")
                    .with_attr("from", &online)
                    .with_attr("to", from)
                    .with_attr("type", "unavailable")]
            }
            _ => Vec::new(),
        }
    }

    /// On reload: takes over who `old` told; if the avatar changed (and the presence says
    /// something of it), the presence to send each of them again (None: it did not change).
    pub fn adopt(&mut self, old: &mut Presence) -> Option<Vec<Element>> {
        self.announced = std::mem::take(&mut old.announced);
        self.count = std::mem::take(&mut old.count);
        if self.photo.is_none() || old.photo == self.photo {
            return None;
        }
        let pairs = self.announced.iter().flat_map(|(online, contacts)| contacts.iter().map(move |c| (online, c)));
        Some(pairs.map(|(online, contact)| self.online(online, contact)).collect())
    }
}

/// [`Presence`] as Lua's userdata, with the stanza metatable its answers are built with.
pub struct LuaPresence {
    presence: Presence,
    stanza_mt: Table,
}

fn stanzas(lua: &Lua, stanza_mt: &Table, elements: Vec<Element>) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(elements.len(), 0)?;
    for element in elements {
        t.raw_push(element.to_lua(lua, stanza_mt)?)?;
    }
    Ok(t)
}

impl UserData for LuaPresence {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // `answer(to, from, type)`: the stanzas to send in answer to a presence.
        methods.add_method_mut(
            "answer",
            |lua, this, (to, from, kind): (Option<String>, Option<String>, Option<String>)| {
                crate::guard("presence:answer", || {
                    let answer = this.presence.answer(to.as_deref(), from.as_deref(), kind.as_deref());
                    stanzas(lua, &this.stanza_mt, answer)
                })
            },
        );
        // `adopt(old)`: on reload, nil when the avatar did not change, else the stanzas to send
        // (the new avatar's presence to everyone told) and how many contacts were told.
        methods.add_method_mut("adopt", |lua, this, mut old: UserDataRefMut<LuaPresence>| {
            crate::guard("presence:adopt", || {
                let Some(resend) = this.presence.adopt(&mut old.presence) else { return Ok((None, None)) };
                Ok((Some(stanzas(lua, &this.stanza_mt, resend)?), Some(this.presence.announced())))
            })
        });
    }
}

/// `presence(photo, stanza_mt)`, for Lua: the bot's presence saying `photo` of its avatar (a
/// hash, `""` for none, or nil/false for nothing).
pub fn new_lua(lua: &Lua, (photo, stanza_mt): (mlua::Value, Table)) -> mlua::Result<mlua::AnyUserData> {
    let photo = match photo {
        mlua::Value::String(s) => Some(s.to_str()?.to_owned()),
        _ => None,
    };
    lua.create_userdata(LuaPresence { presence: Presence::new(photo), stanza_mt })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xml(elements: &[Element]) -> Vec<String> {
        elements.iter().map(Element::to_xml).collect()
    }

    #[test]
    fn always_online_accepting_every_subscription() {
        let mut p = Presence::new(Some(String::new()));
        let (to, from) = (Some("echo@bot.localhost"), Some("u@localhost/r"));
        assert_eq!(
            xml(&p.answer(to, from, Some("subscribe"))),
            [
                "<presence from='echo@bot.localhost' to='u@localhost/r' type='subscribed'/>",
                "<presence from='echo@bot.localhost/default' to='u@localhost/r'>\
                 <x xmlns='vcard-temp:x:update'><photo/></x></presence>",
            ]
        );
        assert_eq!(p.announced(), 1);
        assert_eq!(xml(&p.answer(Some("echo@bot.localhost/x"), from, Some("probe"))).len(), 1);
        assert_eq!(p.announced(), 1, "told once, whatever the resource asked");
        assert_eq!(
            xml(&p.answer(to, from, Some("unsubscribe"))),
            ["<presence from='echo@bot.localhost/default' to='u@localhost/r' type='unavailable'/>"]
        );
        assert_eq!(p.announced(), 0);
        for kind in [None, Some("unavailable"), Some("subscribed"), Some("error")] {
            assert!(p.answer(to, from, kind).is_empty(), "{kind:?}");
        }
        assert!(p.answer(None, from, Some("probe")).is_empty());
        assert!(p.answer(to, None, Some("probe")).is_empty());
        assert_eq!(p.announced(), 0);
    }

    #[test]
    fn the_presence_says_what_it_knows_of_the_avatar() {
        let mut p = Presence::new(Some("abc".into()));
        let sent = xml(&p.answer(Some("b@h"), Some("u@l"), Some("probe")));
        assert_eq!(
            sent,
            ["<presence from='b@h/default' to='u@l'><x xmlns='vcard-temp:x:update'><photo>abc</photo></x></presence>"]
        );
        let mut p = Presence::new(None);
        assert_eq!(
            xml(&p.answer(Some("b@h"), Some("u@l"), Some("probe"))),
            ["<presence from='b@h/default' to='u@l'/>"]
        );
    }

    #[test]
    fn who_was_told_is_bounded() {
        let mut p = Presence::new(None);
        for i in 0..MAX_ANNOUNCED + 5 {
            p.answer(Some("b@h"), Some(&format!("u{i}@l")), Some("probe"));
        }
        assert_eq!(p.announced(), MAX_ANNOUNCED);
        // One past the bound leaving changes nothing; one told leaving makes room.
        p.answer(Some("b@h"), Some(&format!("u{}@l", MAX_ANNOUNCED + 1)), Some("unsubscribe"));
        assert_eq!(p.announced(), MAX_ANNOUNCED);
        p.answer(Some("b@h"), Some("u0@l"), Some("unsubscribe"));
        assert_eq!(p.announced(), MAX_ANNOUNCED - 1);
    }

    #[test]
    fn a_reload_that_changes_the_avatar_tells_everyone_told() {
        let mut old = Presence::new(Some("old".into()));
        old.answer(Some("a@h"), Some("u@l"), Some("probe"));
        old.answer(Some("b@h"), Some("v@l/r"), Some("subscribe"));
        let mut new = Presence::new(Some("new".into()));
        let sent = xml(&new.adopt(&mut old).unwrap());
        assert_eq!(
            sent,
            [
                "<presence from='a@h/default' to='u@l'><x xmlns='vcard-temp:x:update'><photo>new</photo></x></presence>",
                "<presence from='b@h/default' to='v@l/r'><x xmlns='vcard-temp:x:update'><photo>new</photo></x></presence>",
            ]
        );
        assert_eq!((new.announced(), old.announced()), (2, 0));
        // The same avatar, or a presence that says nothing of one: taken over, nobody told again.
        let mut same = Presence::new(Some("new".into()));
        assert_eq!(same.adopt(&mut new), None);
        assert_eq!(same.announced(), 2);
        let mut silent = Presence::new(None);
        assert_eq!(silent.adopt(&mut same), None);
        assert_eq!(silent.announced(), 2);
    }
}
