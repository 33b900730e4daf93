//! Every XML namespace the core reads or writes, in one place: the rows of [`crate::jsonmap`],
//! the rooms, streams, receipts and errors all name them from here.

/// The namespace of a stanza without one (RFC 6120): a child of the stanza in no other
/// namespace is in the stanza's own.
pub const CLIENT: &str = "jabber:client";
/// XEP-0004 Data Forms.
pub const DATA: &str = "jabber:x:data";
/// XEP-0203 Delayed Delivery.
pub const DELAY: &str = "urn:xmpp:delay";
/// XEP-0172 User Nickname.
pub const NICK: &str = "http://jabber.org/protocol/nick";
/// XEP-0432 Simple JSON Messaging.
pub const JSON_MSG: &str = "urn:xmpp:json-msg:0";
/// XEP-0059 Result Set Management.
pub const RSM: &str = "http://jabber.org/protocol/rsm";
/// XEP-0313 Message Archive Management.
pub const MAM: &str = "urn:xmpp:mam:2";
/// XEP-0215 External Service Discovery.
pub const EXTDISCO: &str = "urn:xmpp:extdisco:2";
/// XEP-0100 Gateway Interaction.
pub const GATEWAY: &str = "jabber:iq:gateway";
/// XEP-0012 Last Activity.
pub const LAST: &str = "jabber:iq:last";
/// XEP-0066 Out of Band Data, the iq form.
pub const IQ_OOB: &str = "jabber:iq:oob";
/// XEP-0066 Out of Band Data, the message form.
pub const OOB: &str = "jabber:x:oob";
/// XEP-0199 XMPP Ping.
pub const PING: &str = "urn:xmpp:ping";
/// XEP-0077 In-Band Registration.
pub const REGISTER: &str = "jabber:iq:register";
/// XEP-0039 Statistics Gathering.
pub const STATS: &str = "http://jabber.org/protocol/stats";
/// XEP-0363 HTTP File Upload.
pub const UPLOAD: &str = "urn:xmpp:http:upload:0";
/// XEP-0092 Software Version.
pub const VERSION: &str = "jabber:iq:version";
/// XEP-0367 Message Attaching.
pub const ATTACHING: &str = "urn:xmpp:message-attaching:1";
/// XEP-0333 Chat Markers.
pub const MARKERS: &str = "urn:xmpp:chat-markers:0";
/// XEP-0380 Explicit Message Encryption.
pub const EME: &str = "urn:xmpp:eme:0";
/// XEP-0428 Fallback Indication.
pub const FALLBACK: &str = "urn:xmpp:fallback:0";
/// XEP-0297 Stanza Forwarding.
pub const FORWARD: &str = "urn:xmpp:forward:0";
/// XEP-0249 Direct MUC Invitations.
pub const CONFERENCE: &str = "jabber:x:conference";
/// XEP-0421 Occupant Identifiers.
pub const OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
/// XEP-0444 Message Reactions.
pub const REACTIONS: &str = "urn:xmpp:reactions:0";
/// XEP-0372 References.
pub const REFERENCE: &str = "urn:xmpp:reference:0";
/// XEP-0308 Last Message Correction.
pub const MESSAGE_CORRECT: &str = "urn:xmpp:message-correct:0";
/// XEP-0461 Message Replies.
pub const REPLY: &str = "urn:xmpp:reply:0";
/// XEP-0359 Unique and Stable Stanza IDs.
pub const STANZA_ID: &str = "urn:xmpp:sid:0";
/// XEP-0085 Chat State Notifications.
pub const CHAT_STATES: &str = "http://jabber.org/protocol/chatstates";
/// XEP-0115 Entity Capabilities.
pub const CAPS: &str = "http://jabber.org/protocol/caps";
/// XEP-0319 Last User Interaction in Presence.
pub const IDLE: &str = "urn:xmpp:idle:1";
/// XEP-0045 Multi-User Chat: the join element.
pub const MUC: &str = "http://jabber.org/protocol/muc";
/// XEP-0045: what a room adds to the presence and messages it sends.
pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
/// XEP-0045: the owner's room configuration.
pub const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
/// XEP-0153 vCard-Based Avatars.
pub const VCARD_UPDATE: &str = "vcard-temp:x:update";
/// XEP-0071 XHTML-IM.
pub const XHTML_IM: &str = "http://jabber.org/protocol/xhtml-im";
/// XHTML, the namespace of an XHTML-IM body.
pub const XHTML: &str = "http://www.w3.org/1999/xhtml";
/// XEP-0030 Service Discovery, info.
pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
/// XEP-0030 Service Discovery, items.
pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
/// XEP-0050 Ad-Hoc Commands.
pub const COMMANDS: &str = "http://jabber.org/protocol/commands";
/// RFC 6120 stanza error conditions.
pub const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// XEP-0091 Legacy Delayed Delivery, which older rooms still put on history.
pub const LEGACY_DELAY: &str = "jabber:x:delay";
/// XEP-0334 Message Processing Hints.
pub const HINTS: &str = "urn:xmpp:hints";
/// XEP-0184 Message Delivery Receipts.
pub const RECEIPTS: &str = "urn:xmpp:receipts";
/// The namespace of `xml:lang`; no other prefix may be bound to it.
pub const XML: &str = "http://www.w3.org/XML/1998/namespace";
/// The namespace of `xmlns` declarations themselves; nothing may be in it.
pub const XMLNS: &str = "http://www.w3.org/2000/xmlns/";
