//! The rows: every JSON field a stanza can carry, where it lives in the XML, and the bound of
//! every list. Names, shapes and XML follow the current community mod_rest's schema and
//! mappings; the XEP each row implements is named beside it.
//!
//! Rows are written in the order their XML is built: the stanza's attributes, then its
//! children, a message's body first and its rich elements in the order component_http has
//! always written them (body, file, correction, reply, reactions).

use super::custom::{ARCHIVE, COMMAND, DISCO, FORMDATA, FORWARDED_MESSAGE, HTML, ITEMS};
use super::{El, Item, Kind, Kinds, Obj, Place, Profiles, Prop, Row, Scalar};
use crate::ns;

/// Reactions in one reaction message (XEP-0444). A person reacts with a handful of emoji; the
/// bound keeps a megabyte of `["x",…]` from becoming hundreds of thousands of elements that
/// Prosody's main thread turns into a stanza, routes and serializes.
pub const MAX_REACTIONS: usize = 100;
/// Stanza ids on one message (XEP-0359): one per archive it passed through.
pub const MAX_STANZA_IDS: usize = 16;
/// Fields in one data form (XEP-0004).
pub const MAX_FORM_FIELDS: usize = 256;
/// Values, or options, of one data form field.
pub const MAX_FIELD_VALUES: usize = 256;
/// Services in one external service discovery answer (XEP-0215).
pub const MAX_SERVICES: usize = 64;
/// Statistics in one answer (XEP-0039).
pub const MAX_STATS: usize = 256;
/// Headers of an upload slot (XEP-0363 allows three names).
pub const MAX_UPLOAD_HEADERS: usize = 8;
/// Identities in one disco#info answer (XEP-0030).
pub const MAX_IDENTITIES: usize = 64;
/// Features in one disco#info answer.
pub const MAX_FEATURES: usize = 1024;
/// Extension forms in one disco#info answer (XEP-0128).
pub const MAX_EXTENSIONS: usize = 16;
/// Items in one disco#items answer.
pub const MAX_ITEMS: usize = 1024;

/// What an object missing a required property needs, said for a person, where the property's
/// name alone does not say it (`None`: its name is enough).
pub fn needs(field: &str) -> Option<&'static str> {
    Some(match field {
        "reply.id" => "an 'id': the id of the message answered",
        "reactions.id" => "an 'id': the id of the message reacted to",
        "reactions.reactions" => "'reactions': an array of emoji",
        _ => return None,
    })
}

const fn el(name: &'static str, ns: &'static str) -> El {
    El { name, ns: Some(ns) }
}

/// A child in its parent's namespace.
const fn own(name: &'static str) -> El {
    El { name, ns: None }
}

const fn row(name: &'static str, kinds: Kinds, place: Place) -> Row {
    Row { name, kinds, profiles: Profiles::BOTH, implies: None, place }
}

const fn implying(kind: Kind, row: Row) -> Row {
    Row { implies: Some(kind), ..row }
}

const fn only(profiles: Profiles, row: Row) -> Row {
    Row { profiles, ..row }
}

const fn prop(key: &'static str, place: Place) -> Prop {
    Prop { key, place, required: false }
}

const fn required(key: &'static str, place: Place) -> Prop {
    Prop { key, place, required: true }
}

const fn attr(name: &'static str) -> Place {
    Place::Attr(name, Scalar::Str)
}

const fn child_text(name: &'static str) -> Place {
    Place::ChildText(own(name), Scalar::Str)
}

const fn obj(el: El, props: &'static [Prop]) -> Obj {
    Obj { el, props, ns_after_first: false }
}

const NON_NEGATIVE: Scalar = Scalar::Int { min: 0, max: i64::MAX };

// ---- shared structures ----

/// XEP-0004 data form, as the schema describes it: `fields[].values` is always a list.
pub static DATAFORM: Obj = obj(
    el("x", ns::DATA),
    &[
        prop("type", Place::Attr("type", Scalar::OneOf(&["cancel", "form", "result", "submit"]))),
        prop("title", child_text("title")),
        prop("instructions", child_text("instructions")),
        prop("fields", Place::List(Item::Obj(&FORM_FIELD), MAX_FORM_FIELDS)),
    ],
);

static FORM_FIELD: Obj = obj(
    own("field"),
    &[
        prop("var", attr("var")),
        prop(
            "type",
            Place::Attr(
                "type",
                Scalar::OneOf(&[
                    "boolean",
                    "fixed",
                    "hidden",
                    "jid-multi",
                    "jid-single",
                    "list-multi",
                    "list-single",
                    "text-multi",
                    "text-private",
                    "text-single",
                ]),
            ),
        ),
        prop("label", attr("label")),
        prop("desc", child_text("desc")),
        prop("required", Place::Flag(own("required"))),
        prop("values", Place::List(Item::Text(own("value"), Scalar::Str), MAX_FIELD_VALUES)),
        // How the community module's own form mapping writes values (its schema says `values`).
        prop("value", Place::Shorthand("values")),
        prop("options", Place::List(Item::Obj(&FORM_OPTION), MAX_FIELD_VALUES)),
    ],
);

static FORM_OPTION: Obj = obj(own("option"), &[prop("label", attr("label")), prop("value", child_text("value"))]);

/// XEP-0059 result set page.
pub static RSM: Obj = obj(
    el("set", ns::RSM),
    &[
        prop("after", child_text("after")),
        prop("before", child_text("before")),
        prop("count", Place::ChildText(own("count"), NON_NEGATIVE)),
        prop("first", child_text("first")),
        prop("index", Place::ChildText(own("index"), NON_NEGATIVE)),
        prop("last", child_text("last")),
        prop("max", Place::ChildText(own("max"), NON_NEGATIVE)),
    ],
);

/// XEP-0432 JSON payload: `data` is any JSON value, carried as JSON text.
static PAYLOAD: Obj =
    obj(el("payload", ns::JSON_MSG), &[prop("datatype", attr("datatype")), prop("data", Place::Text(Scalar::Json))]);

/// RFC 6120 stanza error: the condition is the name of a child.
static ERROR: Obj = obj(
    own("error"),
    &[
        prop("type", Place::Attr("type", Scalar::OneOf(&["auth", "cancel", "continue", "modify", "wait"]))),
        prop("by", attr("by")),
        prop("code", Place::Attr("code", Scalar::Int { min: 100, max: 999 })),
        required("condition", Place::NameIs(ns::STANZAS, CONDITIONS)),
        prop("text", Place::ChildText(el("text", ns::STANZAS), Scalar::Str)),
    ],
);

/// The defined conditions of RFC 6120 section 8.3.3.
const CONDITIONS: &[&str] = &[
    "bad-request",
    "conflict",
    "feature-not-implemented",
    "forbidden",
    "gone",
    "internal-server-error",
    "item-not-found",
    "jid-malformed",
    "not-acceptable",
    "not-allowed",
    "not-authorized",
    "policy-violation",
    "recipient-unavailable",
    "redirect",
    "registration-required",
    "remote-server-not-found",
    "remote-server-timeout",
    "resource-constraint",
    "service-unavailable",
    "subscription-required",
    "undefined-condition",
    "unexpected-request",
];

// ---- message structures ----

static MESSAGE_OOB: Obj = obj(
    el("x", ns::OOB),
    &[prop("url", Place::ChildText(own("url"), Scalar::HttpUrl)), prop("desc", child_text("desc"))],
);

static REPLY: Obj = Obj {
    el: el("reply", ns::REPLY),
    props: &[
        required("id", Place::Attr("id", Scalar::Id)),
        prop("to", Place::Attr("to", Scalar::Jid)),
        prop("quote", Place::Caller("the message composer: the quoted text and its XEP-0428 fallback")),
    ],
    ns_after_first: true,
};

static REACTIONS: Obj = Obj {
    el: el("reactions", ns::REACTIONS),
    props: &[
        required("id", Place::Attr("id", Scalar::Id)),
        required("reactions", Place::List(Item::Text(own("reaction"), Scalar::NonBlank), MAX_REACTIONS)),
    ],
    ns_after_first: true,
};

static STANZA_ID: Obj =
    obj(el("stanza-id", ns::STANZA_ID), &[required("id", attr("id")), required("by", Place::Attr("by", Scalar::Str))]);

static THREAD: Obj = obj(own("thread"), &[prop("parent", attr("parent")), prop("id", Place::Text(Scalar::Str))]);

static INVITE: Obj = obj(
    el("x", ns::CONFERENCE),
    &[
        required("jid", attr("jid")),
        prop("password", attr("password")),
        prop("reason", attr("reason")),
        prop("thread", attr("thread")),
        prop("continue", Place::Attr("continue", Scalar::Bool)),
    ],
);

static REFERENCE: Obj = obj(
    el("reference", ns::REFERENCE),
    &[
        required("type", attr("type")),
        required("uri", attr("uri")),
        prop("begin", Place::Attr("begin", NON_NEGATIVE)),
        prop("end", Place::Attr("end", NON_NEGATIVE)),
    ],
);

/// XEP-0297: a forwarded stanza with the time it was first sent.
static FORWARDED: Obj = obj(
    el("forwarded", ns::FORWARD),
    &[
        prop("delay", Place::ChildAttr(el("delay", ns::DELAY), "stamp", Scalar::Str)),
        prop("message", Place::Custom(&FORWARDED_MESSAGE)),
    ],
);

/// XEP-0313: one archived message, as a query's result.
static ARCHIVE_RESULT: Obj = obj(
    el("result", ns::MAM),
    &[prop("queryid", attr("queryid")), prop("id", attr("id")), prop("forward", Place::Child(&FORWARDED))],
);

// ---- presence structures ----

static CAPS: Obj = obj(
    el("c", ns::CAPS),
    &[prop("hash", attr("hash")), prop("node", attr("node")), prop("ver", attr("ver")), prop("ext", attr("ext"))],
);

static MUC: Obj = obj(el("x", ns::MUC), &[prop("history", Place::Child(&MUC_HISTORY))]);

static MUC_HISTORY: Obj = obj(
    own("history"),
    &[
        prop("maxchars", Place::Attr("maxchars", NON_NEGATIVE)),
        prop("maxstanzas", Place::Attr("maxstanzas", NON_NEGATIVE)),
        prop("seconds", Place::Attr("seconds", NON_NEGATIVE)),
        prop("since", attr("since")),
    ],
);

static VCARD_UPDATE: Obj = obj(el("x", ns::VCARD_UPDATE), &[prop("photo", child_text("photo"))]);

// ---- iq structures ----

/// XEP-0313 archive query, as the schema describes it (`form`, `page`); the `archive` row
/// also takes the community module's shorthand (see `custom.rs`).
pub static ARCHIVE_QUERY: Obj = obj(
    el("query", ns::MAM),
    &[prop("queryid", attr("queryid")), prop("form", Place::Child(&DATAFORM)), prop("page", Place::Child(&RSM))],
);

static ARCHIVE_FIN: Obj = obj(el("fin", ns::MAM), &[prop("page", Place::Child(&RSM))]);

static EXTDISCO: Obj = obj(
    el("services", ns::EXTDISCO),
    &[prop("type", attr("type")), prop("services", Place::List(Item::Obj(&EXTDISCO_SERVICE), MAX_SERVICES))],
);

static EXTDISCO_SERVICE: Obj = obj(
    own("service"),
    &[
        required("type", attr("type")),
        required("host", attr("host")),
        prop("port", Place::Attr("port", Scalar::Int { min: 0, max: 65535 })),
        prop("transport", attr("transport")),
        prop("name", attr("name")),
        prop("username", attr("username")),
        prop("password", attr("password")),
        prop("restricted", Place::Attr("restricted", Scalar::Bool)),
        prop("expires", attr("expires")),
    ],
);

static GATEWAY: Obj = obj(
    el("query", ns::GATEWAY),
    &[prop("desc", child_text("desc")), prop("prompt", child_text("prompt")), prop("jid", child_text("jid"))],
);

static LAST_ACTIVITY: Obj = obj(
    el("query", ns::LAST),
    &[prop("seconds", Place::Attr("seconds", NON_NEGATIVE)), prop("status", Place::Text(Scalar::Str))],
);

static IQ_OOB: Obj = obj(el("query", ns::IQ_OOB), &[prop("url", child_text("url")), prop("desc", child_text("desc"))]);

static REGISTER: Obj = obj(
    el("query", ns::REGISTER),
    &[
        prop("registered", Place::Flag(own("registered"))),
        prop("instructions", child_text("instructions")),
        prop("username", child_text("username")),
        prop("nick", child_text("nick")),
        prop("password", child_text("password")),
        prop("name", child_text("name")),
        prop("first", child_text("first")),
        prop("last", child_text("last")),
        prop("email", child_text("email")),
        prop("address", child_text("address")),
        prop("city", child_text("city")),
        prop("state", child_text("state")),
        prop("zip", child_text("zip")),
        prop("phone", child_text("phone")),
        prop("url", child_text("url")),
        prop("date", child_text("date")),
        prop("misc", child_text("misc")),
        prop("text", child_text("text")),
        prop("key", child_text("key")),
        prop("remove", Place::Flag(own("remove"))),
    ],
);

static STAT: Obj = obj(
    own("stat"),
    &[required("name", attr("name")), prop("unit", attr("unit")), prop("value", Place::Attr("value", Scalar::Number))],
);

static UPLOAD_REQUEST: Obj = obj(
    el("request", ns::UPLOAD),
    &[
        required("filename", attr("filename")),
        required("size", Place::Attr("size", NON_NEGATIVE)),
        prop("content-type", attr("content-type")),
    ],
);

static UPLOAD_SLOT: Obj =
    obj(el("slot", ns::UPLOAD), &[prop("put", Place::Child(&UPLOAD_PUT)), prop("get", Place::Child(&UPLOAD_GET))]);

static UPLOAD_PUT: Obj = obj(
    own("put"),
    &[required("url", attr("url")), prop("headers", Place::List(Item::Obj(&UPLOAD_HEADER), MAX_UPLOAD_HEADERS))],
);

static UPLOAD_GET: Obj = obj(own("get"), &[required("url", attr("url"))]);

static UPLOAD_HEADER: Obj = obj(
    own("header"),
    &[
        required("name", Place::Attr("name", Scalar::OneOf(&["Authorization", "Cookie", "Expires"]))),
        required("value", Place::Text(Scalar::Str)),
    ],
);

static VERSION: Obj = obj(
    el("query", ns::VERSION),
    &[prop("name", child_text("name")), prop("version", child_text("version")), prop("os", child_text("os"))],
);

use Kind::{Iq, Message, Presence};

/// Every field, in the order a stanza is built.
pub static ROWS: &[Row] = &[
    // The stanza itself.
    row("kind", Kinds::ALL, Place::Kind),
    row("type", Kinds::ALL, attr("type")),
    row("to", Kinds::ALL, attr("to")),
    row("from", Kinds::ALL, attr("from")),
    row("id", Kinds::ALL, attr("id")),
    row("lang", Kinds::ALL, attr("xml:lang")),
    // What component_http's callers read themselves.
    row("stanza", Kinds::ALL, Place::Caller("answer: the whole stanza, as XML")),
    only(Profiles::COMPONENT_HTTP, row("delta", Kinds::MESSAGE, Place::Caller("stream: a piece of a streamed answer"))),
    only(Profiles::COMPONENT_HTTP, row("room", Kinds::MESSAGE, Place::Caller("request: the room a message came from"))),
    only(
        Profiles::COMPONENT_HTTP,
        row("nick", Kinds::MESSAGE, Place::Caller("request: the room nickname of the sender")),
    ),
    only(
        Profiles::COMPONENT_HTTP,
        row("mentioned", Kinds::MESSAGE, Place::Caller("request: whether a room message names the bot")),
    ),
    only(
        Profiles::COMPONENT_HTTP,
        row("stanza_id", Kinds::MESSAGE, Place::Caller("request: the room's archive id, trusted from the room only")),
    ),
    // Message content.
    implying(Message, row("body", Kinds::MESSAGE, Place::ChildText(own("body"), Scalar::Lenient))),
    implying(Message, row("subject", Kinds::MESSAGE, child_text("subject"))),
    implying(Message, row("thread", Kinds::MESSAGE, Place::Child(&THREAD))),
    implying(Message, row("html", Kinds::MESSAGE, Place::Custom(&HTML))),
    row("oob", Kinds::MESSAGE, Place::Child(&MESSAGE_OOB)),
    row("oob_url", Kinds::MESSAGE, Place::Alias("oob", Some("url"))),
    // A file the module uploads for the bot (XEP-0363) and sends as `oob` (see `crate::upload`).
    implying(
        Message,
        row("file", Kinds::MESSAGE, Place::Caller("upload: the file's bytes, uploaded and sent as its URL")),
    ),
    implying(
        Message,
        row("replace", Kinds::MESSAGE, Place::ChildAttr(el("replace", ns::MESSAGE_CORRECT), "id", Scalar::Id)),
    ),
    row("reply", Kinds::MESSAGE, Place::Child(&REPLY)),
    row("reactions", Kinds::MESSAGE, Place::Child(&REACTIONS)),
    row("fallback", Kinds::MESSAGE, Place::Flag(el("fallback", ns::FALLBACK))),
    // component_http sends and answers chat states itself (README: "Chat states"): neither
    // read into its requests nor taken from its replies, where a second state would contradict
    // the one it adds.
    only(
        Profiles::REST,
        implying(
            Message,
            row(
                "state",
                Kinds::MESSAGE,
                Place::NameIs(ns::CHAT_STATES, &["active", "inactive", "gone", "composing", "paused"]),
            ),
        ),
    ),
    row("markable", Kinds::MESSAGE, Place::Flag(el("markable", ns::MARKERS))),
    row("displayed", Kinds::MESSAGE, Place::ChildAttr(el("displayed", ns::MARKERS), "id", Scalar::Id)),
    row("attach_to", Kinds::MESSAGE, Place::ChildAttr(el("attach-to", ns::ATTACHING), "id", Scalar::Id)),
    row("encryption", Kinds::MESSAGE, Place::ChildAttr(el("encryption", ns::EME), "namespace", Scalar::Str)),
    row("invite", Kinds::MESSAGE, Place::Child(&INVITE)),
    row("reference", Kinds::MESSAGE, Place::Child(&REFERENCE)),
    row("occupant_id", Kinds::MESSAGE, Place::ChildAttr(el("occupant-id", ns::OCCUPANT_ID), "id", Scalar::Str)),
    row("stanza_ids", Kinds::MESSAGE, Place::List(Item::Obj(&STANZA_ID), MAX_STANZA_IDS)),
    row("forwarded", Kinds::MESSAGE, Place::Child(&FORWARDED)),
    row("archive", Kinds::MESSAGE, Place::Child(&ARCHIVE_RESULT)),
    // Presence content.
    implying(
        Presence,
        row("show", Kinds::PRESENCE, Place::ChildText(own("show"), Scalar::OneOf(&["away", "chat", "dnd", "xa"]))),
    ),
    implying(Presence, row("status", Kinds::PRESENCE, child_text("status"))),
    implying(
        Presence,
        row("priority", Kinds::PRESENCE, Place::ChildText(own("priority"), Scalar::Int { min: -128, max: 127 })),
    ),
    row("caps", Kinds::PRESENCE, Place::Child(&CAPS)),
    row("idle_since", Kinds::PRESENCE, Place::ChildAttr(el("idle", ns::IDLE), "since", Scalar::Str)),
    row("muc", Kinds::PRESENCE, Place::Child(&MUC)),
    implying(Presence, row("join", Kinds::PRESENCE, Place::Alias("muc", None))),
    row("vcard_update", Kinds::PRESENCE, Place::Child(&VCARD_UPDATE)),
    // Iq payloads.
    implying(Iq, row("ping", Kinds::IQ, Place::Flag(el("ping", ns::PING)))),
    implying(Iq, row("version", Kinds::IQ, Place::Child(&VERSION))),
    implying(Iq, row("disco", Kinds::IQ, Place::Custom(&DISCO))),
    implying(Iq, row("items", Kinds::IQ, Place::Custom(&ITEMS))),
    implying(Iq, row("command", Kinds::IQ, Place::Custom(&COMMAND))),
    implying(Iq, row("archive", Kinds::IQ, Place::Custom(&ARCHIVE))),
    row("result", Kinds::IQ, Place::Child(&ARCHIVE_FIN)),
    row("oob", Kinds::IQ, Place::Child(&IQ_OOB)),
    row("extdisco", Kinds::IQ, Place::Child(&EXTDISCO)),
    row("gateway", Kinds::IQ, Place::Child(&GATEWAY)),
    row("lastactivity", Kinds::IQ, Place::Child(&LAST_ACTIVITY)),
    row("register", Kinds::IQ, Place::Child(&REGISTER)),
    row("stats", Kinds::IQ, Place::Wrapped(el("query", ns::STATS), Item::Obj(&STAT), MAX_STATS)),
    row("upload_request", Kinds::IQ, Place::Child(&UPLOAD_REQUEST)),
    row("upload_slot", Kinds::IQ, Place::Child(&UPLOAD_SLOT)),
    // In every kind.
    only(Profiles::REST, row("nick", Kinds::ALL, Place::ChildText(el("nick", ns::NICK), Scalar::Str))),
    row("delay", Kinds::ALL, Place::ChildAttr(el("delay", ns::DELAY), "stamp", Scalar::Str)),
    row("dataform", Kinds::ALL, Place::Child(&DATAFORM)),
    // Written only: a form is read back as `dataform`.
    row("formdata", Kinds::ALL, Place::Custom(&FORMDATA)),
    row("payload", Kinds::ALL, Place::Child(&PAYLOAD)),
    row("rsm", Kinds::ALL, Place::Child(&RSM)),
    row("error", Kinds::ALL, Place::Child(&ERROR)),
    row(
        "error_code",
        Kinds::ALL,
        Place::Unmapped("the legacy numeric error; send 'error' with 'type', 'condition' and 'code'"),
    ),
];
