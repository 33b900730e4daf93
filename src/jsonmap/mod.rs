//! The one JSON mapping: every JSON field a stanza can carry is a row of [`table::ROWS`], and
//! one engine reads the table in both directions: [`element_to_json`] (a stanza the bot gets, or
//! a stanza answered to a mod_rest client, as a JSON object) and [`json_to_element`] (a reply,
//! push or mod_rest request as a stanza). A new field is a new row; the engine only knows the
//! shapes a row can have ([`Place`]).
//!
//! The field names, shapes and XML are those of the current community mod_rest (its
//! `schema-xmpp.json` and the mappings its `jsonmap.lib.lua` adds), so a client written for it
//! reads and writes the same JSON here. component_http's own fields (`stanza`, `room`, `nick` as
//! the room nickname, …) are rows of the [`Profile::ComponentHttp`] profile, read by their
//! callers, not by this engine.
//!
//! Both directions are bounded: every list has a documented maximum (refused past it when
//! building, read up to it from a stanza), and a stanza built here holds at most
//! [`MAX_ELEMENTS`] elements, nested at most [`MAX_DEPTH`] deep, the limits a parsed reply obeys
//! (`crate::xml::ParseLimits`). A field the table does not know, or marks unmapped, is refused with a
//! [`MapError`] naming it: nothing a client sends is dropped silently.
//!
//! Reading a stanza never fails: a child that does not have its row's shape (a `<priority/>`
//! that is not a number) is left out of the JSON, as it would be by a client that does not
//! understand it; the whole stanza stays available to callers that POST it.

mod custom;
pub mod table;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Value};

use crate::stanza::{Element, Node};

pub use table::ROWS;

/// The most elements a stanza built from JSON may hold: the element limit of a parsed reply
/// (`crate::xml::ParseLimits::default().max_elements`), so a JSON reply cannot build more than the
/// same reply written as XML could.
pub const MAX_ELEMENTS: usize = 10_000;

/// How deep a stanza built from JSON may nest: the depth limit of a parsed reply
/// (`crate::xml::ParseLimits::default().max_depth`). Only a forwarded message inside an archive
/// result inside a message… can nest without end; every other row has a fixed depth.
pub const MAX_DEPTH: usize = 32;

/// The namespace of a stanza without one: a child of the stanza in no other namespace is in
/// the stanza's own, which is this one unless the stanza says otherwise.
pub use crate::ns::CLIENT;

/// The three kinds of stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `<message/>`
    Message,
    /// `<presence/>`
    Presence,
    /// `<iq/>`
    Iq,
}

impl Kind {
    /// The element name, which is also the value of the `kind` field.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Presence => "presence",
            Kind::Iq => "iq",
        }
    }

    /// The kind an element name or `kind` value names.
    pub fn from_name(name: &str) -> Option<Kind> {
        match name {
            "message" => Some(Kind::Message),
            "presence" => Some(Kind::Presence),
            "iq" => Some(Kind::Iq),
            _ => None,
        }
    }

    /// The kind a stanza `type` belongs to, as RFC 6121 assigns them (`error` belongs to all).
    pub fn of_type(stanza_type: &str) -> Option<Kind> {
        match stanza_type {
            "get" | "set" | "result" => Some(Kind::Iq),
            "normal" | "chat" | "headline" | "groupchat" => Some(Kind::Message),
            "available" | "unavailable" | "subscribe" | "subscribed" | "unsubscribe" | "unsubscribed" | "probe" => {
                Some(Kind::Presence)
            }
            _ => None,
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Kind::Message => 1,
            Kind::Presence => 2,
            Kind::Iq => 4,
        }
    }
}

/// The kinds of stanza a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kinds(u8);

impl Kinds {
    /// Messages only.
    pub const MESSAGE: Kinds = Kinds(1);
    /// Presences only.
    pub const PRESENCE: Kinds = Kinds(2);
    /// Iqs only.
    pub const IQ: Kinds = Kinds(4);
    /// Messages and iqs.
    pub const MESSAGE_IQ: Kinds = Kinds(5);
    /// Every kind.
    pub const ALL: Kinds = Kinds(7);

    /// Whether `kind` is one of these.
    pub fn has(self, kind: Kind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// The one kind, when there is only one.
    pub fn single(self) -> Option<Kind> {
        [Kind::Message, Kind::Presence, Kind::Iq].into_iter().find(|kind| kind.bit() == self.0)
    }
}

/// Which JSON contract a row belongs to: the current community mod_rest's, or component_http's
/// (the seed contract plus the same rows). Where a name means different things in the two
/// (`nick`), each profile has its own row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `mod_rest`: the community module's fields.
    Rest,
    /// `mod_component_http`: its own fields, and the community module's where no name clashes.
    ComponentHttp,
}

impl Profile {
    /// The JSON contract of the module whose options `profile` names.
    pub fn of(profile: &crate::config::Profile) -> Profile {
        if profile.prefix == crate::config::REST.prefix {
            Profile::Rest
        } else {
            Profile::ComponentHttp
        }
    }
}

/// The profiles a row belongs to: one, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profiles {
    rest: bool,
    component_http: bool,
}

impl Profiles {
    /// mod_rest only.
    pub const REST: Profiles = Profiles { rest: true, component_http: false };
    /// component_http only.
    pub const COMPONENT_HTTP: Profiles = Profiles { rest: false, component_http: true };
    /// Both.
    pub const BOTH: Profiles = Profiles { rest: true, component_http: true };

    /// Whether `profile` is one of these.
    pub fn has(self, profile: Profile) -> bool {
        match profile {
            Profile::Rest => self.rest,
            Profile::ComponentHttp => self.component_http,
        }
    }
}

/// An element a place refers to: its name and namespace (`None`: the namespace of the element
/// it is in, which for a stanza's own children is the stanza's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct El {
    /// The element's name.
    pub name: &'static str,
    /// Its namespace, if not its parent's.
    pub ns: Option<&'static str>,
}

/// What a string in XML is in JSON, and the checks a JSON value gets before it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    /// Any string.
    Str,
    /// A string that is not empty: an id something else refers to.
    Id,
    /// A string with something in it besides white space (an emoji reaction).
    NonBlank,
    /// An integer in a range, written in decimal.
    Int {
        /// The least value.
        min: i64,
        /// The greatest value.
        max: i64,
    },
    /// Any JSON number.
    Number,
    /// `true` or `false` (read from XML also as `1` or `0`, as xs:boolean allows).
    Bool,
    /// One string of a fixed list.
    OneOf(&'static [&'static str]),
    /// A JID, written prepared (as Prosody would route it).
    Jid,
    /// An absolute `http` or `https` URL with a host and no white space or control character:
    /// clients show a file inline only when its URL is exactly that.
    HttpUrl,
    /// Any JSON value, written as JSON text (XEP-0432 payloads).
    Json,
    /// A string, or any other JSON value written as its JSON text (a bot's `body: 42`), as
    /// component_http has always accepted a body.
    Lenient,
}

/// Where a field lives in the XML, relative to the element that holds it (the stanza, for a
/// row; an object's element, for a property of the object).
#[derive(Debug, Clone, Copy)]
pub enum Place {
    /// An attribute of the element itself.
    Attr(&'static str, Scalar),
    /// The element's own text.
    Text(Scalar),
    /// The text of a child.
    ChildText(El, Scalar),
    /// One attribute of a child; the child has no other content.
    ChildAttr(El, &'static str, Scalar),
    /// A child that is there (`true`) or not (absent, or `false` in JSON).
    Flag(El),
    /// A child whose name is the value: one of the names, in the namespace.
    NameIs(&'static str, &'static [&'static str]),
    /// A child read as an object.
    Child(&'static Obj),
    /// Children repeated in the element itself, as a list, at most `max`.
    List(Item, usize),
    /// A child holding repeated children, as a list, at most `max`.
    Wrapped(El, Item, usize),
    /// A structure with its own two functions ([`Custom`]).
    Custom(&'static Custom),
    /// The kind of the stanza (its element name).
    Kind,
    /// Another name for a property of another row (`of`.`key`); with no key, `true` stands for
    /// an empty `of` object (a legacy flag). Written only where the row it names is written.
    Alias(&'static str, Option<&'static str>),
    /// Another way to write the list property `key` of the same object: one string for a list
    /// of one, or the list itself. Written into that property; never read (the list is).
    Shorthand(&'static str),
    /// A field of the contract that its caller reads (`stanza`, `delta`, a request's `room`):
    /// accepted in JSON, never written to or read from XML here. The text says who reads it.
    Caller(&'static str),
    /// A field of the community module's contract not mapped yet: refused, with the reason.
    Unmapped(&'static str),
}

/// What a list holds.
#[derive(Debug, Clone, Copy)]
pub enum Item {
    /// Elements with text, as strings.
    Text(El, Scalar),
    /// Empty elements with one attribute, as strings (`<feature var='…'/>`).
    Attr(El, &'static str, Scalar),
    /// Elements read as objects.
    Obj(&'static Obj),
}

/// A child element read as a JSON object.
#[derive(Debug)]
pub struct Obj {
    /// The element.
    pub el: El,
    /// Its properties, in the order they are written.
    pub props: &'static [Prop],
    /// Write the namespace after the first attribute (`<reply id='…' xmlns='…' to='…'/>`), as
    /// component_http has always written its rich elements; otherwise first.
    pub ns_after_first: bool,
}

/// A property of an object.
#[derive(Debug)]
pub struct Prop {
    /// The JSON key.
    pub key: &'static str,
    /// Where it lives in the object's element.
    pub place: Place,
    /// An object without it is refused when built, and not read from a stanza.
    pub required: bool,
}

/// A structure the other places do not describe, with its own two functions.
pub struct Custom {
    /// The element it reads and writes.
    pub el: El,
    /// Reads the element (`ns`: the namespace it is in) as JSON; `None` if it does not fit.
    pub to_json: fn(&Element, &str) -> Option<Value>,
    /// Builds the element from JSON (`field`: its name in errors), counting what it builds.
    pub to_xml: fn(&Value, &str, &mut Builder) -> Result<Element, MapError>,
}

impl fmt::Debug for Custom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Custom(<{}/>)", self.el.name)
    }
}

/// One JSON field of a stanza.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// The JSON key.
    pub name: &'static str,
    /// The kinds of stanza it belongs to.
    pub kinds: Kinds,
    /// The contracts it belongs to.
    pub profiles: Profiles,
    /// The kind a JSON object with this field is, when neither `kind` nor `type` says.
    pub implies: Option<Kind>,
    /// Where it lives in the stanza.
    pub place: Place,
}

/// Why a JSON value could not be made into a stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// No row of the profile has this name (nor the object this property).
    Unknown,
    /// A row of the community module's contract that is not mapped yet; the reason.
    Unmapped(&'static str),
    /// The field exists, but not on this kind of stanza.
    NotForKind(Kind),
    /// The JSON value has the wrong type.
    Type {
        /// What it must be ("a string").
        expected: &'static str,
        /// What it is ("a number").
        got: &'static str,
    },
    /// A value outside what the field allows; the text says what it allows.
    Invalid(String),
    /// An empty id.
    Empty,
    /// A string with nothing in it but white space, where something must be (an emoji).
    Blank,
    /// A required property is missing.
    Missing,
    /// A list longer than its bound.
    TooMany {
        /// The bound.
        max: usize,
        /// How many it holds.
        len: usize,
        /// The kind of stanza being built, which the bound is for.
        kind: Kind,
    },
    /// The stanza would hold more than [`MAX_ELEMENTS`] elements.
    TooManyElements,
    /// The stanza would nest deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Two fields imply different kinds of stanza; the other field.
    KindConflict(String),
}

/// A field that could not be made into XML, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapError {
    /// The field, as a path: `reply.id`, `dataform.fields[2].var`.
    pub field: String,
    /// Why.
    pub why: Why,
}

impl MapError {
    fn new(field: &str, why: Why) -> MapError {
        MapError { field: field.to_owned(), why }
    }
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = &self.field;
        // An item of a list is named by its list: "'reactions.reactions' holds a number".
        if let Some((list, noun)) = list_of(field) {
            match &self.why {
                Why::Type { expected, got } => {
                    let plural = expected.trim_start_matches("an ").trim_start_matches("a ");
                    return write!(f, "'{list}' holds {got}, expected {plural}s");
                }
                Why::Blank => return write!(f, "'{list}' holds an empty {}", noun.trim_end_matches('s')),
                _ => {}
            }
        }
        match &self.why {
            Why::Unknown => write!(f, "'{field}' is not a field this module knows"),
            Why::Unmapped(why) => write!(f, "'{field}' is not supported: {why}"),
            Why::NotForKind(kind) => write!(f, "'{field}' cannot be used in a {}", kind.name()),
            Why::Type { expected, got } => write!(f, "'{field}' must be {expected}, got {got}"),
            Why::Invalid(allowed) => write!(f, "'{field}' {allowed}"),
            Why::Empty => write!(f, "'{field}' is empty: it must be a message id"),
            Why::Blank => write!(f, "'{field}' is blank"),
            Why::Missing => match field.rsplit_once('.') {
                Some((object, key)) => {
                    write!(f, "'{object}' needs {}", table::needs(field).unwrap_or(&format!("'{key}'")))
                }
                None => write!(f, "'{field}' is missing"),
            },
            Why::TooMany { max, len, kind } => {
                let noun = field.rsplit(['.', '[']).next().unwrap_or(field);
                write!(f, "'{field}' holds {len} {noun}, more than the {max} a {} may carry", kind.name())
            }
            Why::TooManyElements => write!(f, "'{field}' makes the stanza hold more than {MAX_ELEMENTS} elements"),
            Why::TooDeep => write!(f, "'{field}' makes the stanza nest deeper than {MAX_DEPTH} elements"),
            Why::KindConflict(other) => write!(f, "'{field}' and '{other}' belong to different kinds of stanza"),
        }
    }
}

/// For the path of a list's item (`reactions.reactions[3]`), the list's path and its last name.
fn list_of(field: &str) -> Option<(&str, &str)> {
    let list = field.strip_suffix(']')?.rsplit_once('[')?.0;
    Some((list, list.rsplit('.').next().unwrap_or(list)))
}

impl std::error::Error for MapError {}

/// Counts the elements a stanza being built holds, and how deep it nests, against
/// [`MAX_ELEMENTS`] and [`MAX_DEPTH`].
#[derive(Debug)]
pub struct Builder {
    left: usize,
    depth: usize,
    kind: Kind,
}

impl Builder {
    fn new(kind: Kind) -> Builder {
        Builder { left: MAX_ELEMENTS, depth: 0, kind }
    }

    /// A list of `len` items longer than `max`, refused naming `field`.
    pub fn too_many(&self, field: &str, max: usize, len: usize) -> MapError {
        MapError::new(field, Why::TooMany { max, len, kind: self.kind })
    }

    /// A new element, counted; refused (naming `field`) past the limit.
    pub fn element(&mut self, field: &str, name: &str) -> Result<Element, MapError> {
        if self.left == 0 {
            return Err(MapError::new(field, Why::TooManyElements));
        }
        self.left -= 1;
        Ok(Element::new(name))
    }

    /// Runs `f` one level deeper; refused (naming `field`) past [`MAX_DEPTH`].
    pub fn nested<T>(
        &mut self,
        field: &str,
        f: impl FnOnce(&mut Builder) -> Result<T, MapError>,
    ) -> Result<T, MapError> {
        if self.depth >= MAX_DEPTH {
            return Err(MapError::new(field, Why::TooDeep));
        }
        self.depth += 1;
        let result = f(self);
        self.depth -= 1;
        result
    }

    /// Elements this builder may still make.
    pub fn left(&self) -> usize {
        self.left
    }
}

/// The rows of a profile.
pub fn rows(profile: Profile) -> impl Iterator<Item = &'static Row> {
    ROWS.iter().filter(move |row| row.profiles.has(profile))
}

/// The kind of stanza a JSON object describes: its `kind`; else the kind its `type` belongs
/// to; else the kind its fields imply (`ping` an iq, `show` a presence, …: [`Row::implies`],
/// or the one kind a field belongs to); else `default`. Fields that imply different kinds are
/// refused, naming both.
pub fn infer_kind(fields: &Map<String, Value>, profile: Profile, default: Kind) -> Result<Kind, MapError> {
    match fields.get("kind") {
        None | Some(Value::Null) => {}
        Some(Value::String(kind)) => {
            return Kind::from_name(kind).ok_or_else(|| {
                MapError::new("kind", Why::Invalid(format!("is {kind:?}, expected message, presence or iq")))
            })
        }
        Some(other) => return Err(type_error("kind", "a string", other)),
    }
    if let Some(kind) = fields.get("type").and_then(Value::as_str).and_then(Kind::of_type) {
        return Ok(kind);
    }
    let mut found: Option<(Kind, &str)> = None;
    for (key, value) in fields {
        if value.is_null() {
            continue;
        }
        let Some(kind) = implied_kind(key, profile) else { continue };
        match found {
            Some((other, other_key)) if other != kind => {
                return Err(MapError::new(other_key, Why::KindConflict(key.clone())));
            }
            _ => found = Some((kind, key)),
        }
    }
    Ok(found.map_or(default, |(kind, _)| kind))
}

/// The kind a field implies, if any: its rows' explicit [`Row::implies`], or the one kind all
/// its rows belong to.
fn implied_kind(key: &str, profile: Profile) -> Option<Kind> {
    let mut kinds = 0u8;
    for row in rows(profile).filter(|row| row.name == key) {
        if row.implies.is_some() {
            return row.implies;
        }
        kinds |= row.kinds.0;
    }
    Kinds(kinds).single()
}

/// The stanza a JSON object describes, of the kind [`infer_kind`] finds (`default` if nothing
/// says). Fields are written in the table's order. Besides the rows:
///
/// - for mod_rest, an iq without a `type` is a `get`, or a `set` with `command` or `archive`
///   (as the community module does);
/// - a presence of type `available` has no `type` attribute (RFC 6121 has no such type).
///
/// A message gets no default type here: the caller decides (component_http's replies are
/// `chat`).
pub fn json_to_element(fields: &Map<String, Value>, profile: Profile, default: Kind) -> Result<Element, MapError> {
    let kind = infer_kind(fields, profile, default)?;
    let stanza = build_stanza(fields, profile, kind, "", &mut Builder::new(kind))?;
    // Every text was checked as it was written; this guards what a row might add unchecked.
    stanza
        .check_xml()
        .map_err(|why| MapError::new(kind.name(), Why::Invalid(format!("would not be valid XML: {why}"))))?;
    Ok(stanza)
}

/// `prefix.key`, or `key` at the top.
fn path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The stanza of `kind` the fields describe; `prefix` names where they are in errors (empty at
/// the top, `archive.forward.message` for a forwarded message).
fn build_stanza(
    fields: &Map<String, Value>,
    profile: Profile,
    kind: Kind,
    prefix: &str,
    builder: &mut Builder,
) -> Result<Element, MapError> {
    let (fields, aliased) = resolve_aliases(fields, profile, kind, prefix)?;
    // An error in a value given under an alias names the alias, as the client wrote it.
    let named = |mut error: MapError| {
        if let Some((_, alias)) = aliased.iter().find(|(target, _)| *target == error.field) {
            error.field.clone_from(alias);
        }
        error
    };
    check_fields(&fields, profile, kind, prefix).map_err(&named)?;
    write_fields(&fields, WriteTo { profile, kind, prefix }, builder).map_err(named)
}

/// Every field given is one the profile knows, for this kind, and maps.
fn check_fields(fields: &Map<String, Value>, profile: Profile, kind: Kind, prefix: &str) -> Result<(), MapError> {
    for (key, value) in fields.iter() {
        if value.is_null() {
            continue;
        }
        let mut named = rows(profile).filter(|row| row.name == key.as_str()).peekable();
        if named.peek().is_none() {
            return Err(MapError::new(&path(prefix, key), Why::Unknown));
        }
        match named.find(|row| row.kinds.has(kind)) {
            None => return Err(MapError::new(&path(prefix, key), Why::NotForKind(kind))),
            Some(Row { place: Place::Unmapped(why), .. }) => {
                return Err(MapError::new(&path(prefix, key), Why::Unmapped(why)))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Where checked fields are written: the profile's rows for the kind, named under `prefix`.
#[derive(Clone, Copy)]
struct WriteTo<'a> {
    profile: Profile,
    kind: Kind,
    prefix: &'a str,
}

/// The stanza the checked fields describe.
fn write_fields(fields: &Map<String, Value>, to: WriteTo, builder: &mut Builder) -> Result<Element, MapError> {
    let WriteTo { profile, kind, prefix } = to;
    let mut stanza = builder.element(&path(prefix, "kind"), kind.name())?;
    for row in rows(profile).filter(|row| row.kinds.has(kind)) {
        let Some(value) = fields.get(row.name).filter(|value| !value.is_null()) else { continue };
        let field = path(prefix, row.name);
        match row.place {
            Place::Kind | Place::Caller(_) | Place::Alias(..) | Place::Unmapped(_) => {}
            Place::Attr("type", _) => {
                let stanza_type = value.as_str().ok_or_else(|| type_error(&field, "a string", value))?;
                if !(kind == Kind::Presence && stanza_type == "available") {
                    stanza.set_attr("type", stanza_type);
                }
            }
            place => write(place, value, &mut stanza, &field, builder)?,
        }
    }
    // component_http has always sent an iq without a type as written (and refused it).
    if kind == Kind::Iq && profile == Profile::Rest && stanza.attr("type").is_none() {
        let set = ["command", "archive"].iter().any(|key| fields.get(*key).is_some_and(|v| !v.is_null()));
        // First, where a type given is written.
        stanza.attrs.insert(0, ("type".into(), if set { "set" } else { "get" }.into()));
    }
    Ok(stanza)
}

/// Paths written through an alias, each with the alias's own path.
type Aliased = Vec<(String, String)>;

/// The fields with every alias written into the row it names (`oob_url` into `oob.url`), and
/// the paths written so (`oob.url`, with `oob_url`). An alias and its row that disagree are
/// refused, naming the alias.
fn resolve_aliases<'a>(
    fields: &'a Map<String, Value>,
    profile: Profile,
    kind: Kind,
    prefix: &str,
) -> Result<(Cow<'a, Map<String, Value>>, Aliased), MapError> {
    let mut fields = Cow::Borrowed(fields);
    let mut aliased = Vec::new();
    for row in rows(profile).filter(|row| row.kinds.has(kind)) {
        let Place::Alias(of, key) = row.place else { continue };
        let Some(value) = fields.get(row.name).filter(|value| !value.is_null()).cloned() else { continue };
        let target = fields.to_mut().entry(of).or_insert(Value::Null);
        match key {
            None => match value {
                Value::Bool(true) if target.is_null() => *target = Value::Object(Map::new()),
                Value::Bool(_) => {}
                other => return Err(type_error(&path(prefix, row.name), "a boolean", &other)),
            },
            Some(key) => {
                if target.is_null() {
                    *target = Value::Object(Map::new());
                }
                let Value::Object(object) = target else {
                    return Err(type_error(&path(prefix, of), "an object", target));
                };
                match object.get(key) {
                    Some(existing) if !existing.is_null() && *existing != value => {
                        let why = Why::Invalid(format!("differs from '{}'", path(&path(prefix, of), key)));
                        return Err(MapError::new(&path(prefix, row.name), why));
                    }
                    _ => {
                        object.insert(key.to_owned(), value);
                        aliased.push((path(&path(prefix, of), key), path(prefix, row.name)));
                    }
                }
            }
        }
        fields.to_mut().remove(row.name);
    }
    Ok((fields, aliased))
}

/// A stanza as a JSON object: every row of its kind that it carries. For mod_rest, a presence
/// without a type has `type` `available`, as the community module writes it; component_http's
/// requests have always left `type` out when the stanza has none. Never fails; see the module
/// doc.
pub fn element_to_json(stanza: &Element, profile: Profile) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(kind) = Kind::from_name(&stanza.name) else { return out };
    let ns = stanza.attr("xmlns").unwrap_or(CLIENT);
    for row in rows(profile).filter(|row| row.kinds.has(kind)) {
        let value = match row.place {
            Place::Kind => Some(Value::String(kind.name().into())),
            Place::Caller(_) | Place::Alias(..) | Place::Unmapped(_) => None,
            Place::Attr("type", _)
                if profile == Profile::Rest && kind == Kind::Presence && stanza.attr("type").is_none() =>
            {
                Some(Value::String("available".into()))
            }
            place => read(place, stanza, ns, false),
        };
        if let Some(value) = value {
            out.insert(row.name.to_owned(), value);
        }
    }
    for row in rows(profile).filter(|row| row.kinds.has(kind)) {
        if let Place::Alias(of, Some(key)) = row.place {
            if let Some(value) = out.get(of).and_then(|object| object.get(key)).cloned() {
                out.insert(row.name.to_owned(), value);
            }
        }
    }
    out
}

// ---- reading XML ----

/// The element children of `element`.
pub(crate) fn elements(element: &Element) -> impl Iterator<Item = &Element> {
    element.children.iter().filter_map(|child| match child {
        Node::Element(e) => Some(e),
        Node::Text(_) => None,
    })
}

/// The text directly in `element`.
pub(crate) fn text(element: &Element) -> String {
    element
        .children
        .iter()
        .filter_map(|child| match child {
            Node::Text(t) => Some(t.as_str()),
            Node::Element(_) => None,
        })
        .collect()
}

/// Whether `child`, a child of an element in namespace `parent_ns`, is in namespace `ns`
/// (`None`: the parent's).
fn in_ns(child: &Element, parent_ns: &str, ns: Option<&str>) -> bool {
    child.attr("xmlns").unwrap_or(parent_ns) == ns.unwrap_or(parent_ns)
}

/// The namespace `child` is in, as a child of an element in `parent_ns`.
fn ns_of<'a>(child: &'a Element, parent_ns: &'a str) -> &'a str {
    child.attr("xmlns").unwrap_or(parent_ns)
}

fn children<'a>(parent: &'a Element, parent_ns: &'a str, el: El) -> impl Iterator<Item = &'a Element> {
    elements(parent).filter(move |child| child.name == el.name && in_ns(child, parent_ns, el.ns))
}

fn child<'a>(parent: &'a Element, parent_ns: &'a str, el: El) -> Option<&'a Element> {
    children(parent, parent_ns, el).next()
}

/// The JSON value of a string read from XML, if it has the scalar's form.
fn scalar_from_text(text: &str, scalar: Scalar) -> Option<Value> {
    match scalar {
        Scalar::Str | Scalar::Jid | Scalar::Lenient | Scalar::HttpUrl => Some(Value::String(text.into())),
        Scalar::Id | Scalar::NonBlank if text.trim().is_empty() => None,
        Scalar::Id | Scalar::NonBlank => Some(Value::String(text.into())),
        Scalar::Int { min, max } => {
            text.trim().parse::<i64>().ok().filter(|n| (min..=max).contains(n)).map(Value::from)
        }
        Scalar::Number => {
            let text = text.trim();
            match text.parse::<i64>() {
                Ok(n) => Some(Value::from(n)),
                Err(_) => text.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Value::Number),
            }
        }
        Scalar::Bool => match text.trim() {
            "true" | "1" => Some(Value::Bool(true)),
            "false" | "0" => Some(Value::Bool(false)),
            _ => None,
        },
        Scalar::OneOf(names) => names.contains(&text).then(|| Value::String(text.into())),
        Scalar::Json => serde_json::from_str(text).ok(),
    }
}

/// Reads a place of `element` (in namespace `ns`). `required`: a list that is a required
/// property is read as `[]` when empty.
fn read(place: Place, element: &Element, ns: &str, required: bool) -> Option<Value> {
    match place {
        Place::Attr(name, scalar) => scalar_from_text(element.attr(name)?, scalar),
        Place::Text(scalar) => scalar_from_text(&text(element), scalar),
        Place::ChildText(el, scalar) => scalar_from_text(&text(child(element, ns, el)?), scalar),
        Place::ChildAttr(el, name, scalar) => scalar_from_text(child(element, ns, el)?.attr(name)?, scalar),
        Place::Flag(el) => child(element, ns, el).map(|_| Value::Bool(true)),
        Place::NameIs(child_ns, names) => elements(element)
            .find(|child| in_ns(child, ns, Some(child_ns)) && names.contains(&child.name.as_str()))
            .map(|child| Value::String(child.name.clone())),
        Place::Child(obj) => {
            let found = child(element, ns, obj.el)?;
            read_obj(obj, found, ns_of(found, ns)).map(Value::Object)
        }
        Place::List(item, max) => {
            let list = read_list(item, max, element, ns);
            (!list.is_empty() || required).then_some(Value::Array(list))
        }
        Place::Wrapped(el, item, max) => {
            let wrapper = child(element, ns, el)?;
            Some(Value::Array(read_list(item, max, wrapper, ns_of(wrapper, ns))))
        }
        Place::Custom(custom) => {
            let found = child(element, ns, custom.el)?;
            (custom.to_json)(found, ns_of(found, ns))
        }
        Place::Kind | Place::Alias(..) | Place::Shorthand(_) | Place::Caller(_) | Place::Unmapped(_) => None,
    }
}

/// The items of a list: at most `max` of them, the first in document order.
fn read_list(item: Item, max: usize, element: &Element, ns: &str) -> Vec<Value> {
    match item {
        Item::Text(el, scalar) => {
            children(element, ns, el).filter_map(|child| scalar_from_text(&text(child), scalar)).take(max).collect()
        }
        Item::Attr(el, name, scalar) => children(element, ns, el)
            .filter_map(|child| scalar_from_text(child.attr(name)?, scalar))
            .take(max)
            .collect(),
        Item::Obj(obj) => children(element, ns, obj.el)
            .filter_map(|child| read_obj(obj, child, ns_of(child, ns)))
            .map(Value::Object)
            .take(max)
            .collect(),
    }
}

/// An object's element as JSON: `None` if it lacks a required property.
fn read_obj(obj: &Obj, element: &Element, ns: &str) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    for prop in obj.props {
        match read(prop.place, element, ns, prop.required) {
            Some(value) => {
                out.insert(prop.key.to_owned(), value);
            }
            None if prop.required => return None,
            None => {}
        }
    }
    Some(out)
}

// ---- writing XML ----

/// A JSON field that must be a string when present: `None` when absent or `null`; else a
/// refusal naming it as `name` says (`'body'`, `'reply.quote'`) and what it was.
pub fn optional_string<'a>(value: Option<&'a Value>, name: &str) -> Result<Option<&'a str>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(format!("{name} must be a string, got {}", json_type(other))),
    }
}

/// "a string", "an object", …: what a JSON value is, for messages.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn type_error(field: &str, expected: &'static str, got: &Value) -> MapError {
    MapError::new(field, Why::Type { expected, got: json_type(got) })
}

/// Text from JSON that XML can carry, or an error naming its field: one control character
/// written to a client would break its whole stream.
fn checked(text: &str, field: &str) -> Result<(), MapError> {
    crate::stanza::check_text(text, "it").map_err(|why| MapError::new(field, Why::Invalid(why.replacen("it ", "", 1))))
}

/// A JSON value as the string the XML holds, checked.
fn scalar_to_text(value: &Value, scalar: Scalar, field: &str) -> Result<String, MapError> {
    let text = scalar_text(value, scalar, field)?;
    checked(&text, field)?;
    Ok(text)
}

fn scalar_text(value: &Value, scalar: Scalar, field: &str) -> Result<String, MapError> {
    let string = |value: &Value| value.as_str().map(str::to_owned).ok_or_else(|| type_error(field, "a string", value));
    match scalar {
        Scalar::Str => string(value),
        Scalar::Id => match string(value)? {
            id if id.is_empty() => Err(MapError::new(field, Why::Empty)),
            id => Ok(id),
        },
        Scalar::NonBlank => match string(value)? {
            text if text.trim().is_empty() => Err(MapError::new(field, Why::Blank)),
            text => Ok(text),
        },
        Scalar::Int { min, max } => match value.as_i64() {
            Some(n) if (min..=max).contains(&n) => Ok(n.to_string()),
            Some(_) => Err(MapError::new(field, Why::Invalid(format!("must be from {min} to {max}")))),
            None => Err(type_error(field, "an integer", value)),
        },
        Scalar::Number => match value {
            Value::Number(n) => Ok(n.to_string()),
            other => Err(type_error(field, "a number", other)),
        },
        Scalar::Bool => match value {
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(type_error(field, "a boolean", other)),
        },
        Scalar::OneOf(names) => {
            let text = string(value)?;
            if names.contains(&text.as_str()) {
                Ok(text)
            } else {
                Err(MapError::new(field, Why::Invalid(format!("must be one of {}", names.join(", ")))))
            }
        }
        Scalar::Jid => {
            let text = string(value)?;
            crate::jid::prep(&text)
                .map(|jid| jid.to_string())
                .map_err(|why| MapError::new(field, Why::Invalid(format!("{text:?} is not a valid JID: {why}"))))
        }
        Scalar::HttpUrl => {
            let text = string(value)?;
            if is_http_url(&text) {
                Ok(text)
            } else {
                Err(MapError::new(field, Why::Invalid("must be an absolute http or https URL".into())))
            }
        }
        Scalar::Json => Ok(value.to_string()),
        Scalar::Lenient => Ok(match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
    }
}

/// An absolute `http` or `https` URL with a host, and no white space or control character.
fn is_http_url(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let host = if host.starts_with('[') { host } else { host.split(':').next().unwrap_or_default() };
    let scheme_ok = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    scheme_ok && !host.is_empty() && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A new child element for `el`, with its namespace if it differs from its parent's.
fn new_child(el: El, field: &str, builder: &mut Builder) -> Result<Element, MapError> {
    let mut element = builder.element(field, el.name)?;
    if let Some(ns) = el.ns {
        element.set_attr("xmlns", ns);
    }
    Ok(element)
}

/// Writes `value` (not null) into `element` at `place`. `field` names it in errors.
fn write(
    place: Place,
    value: &Value,
    element: &mut Element,
    field: &str,
    builder: &mut Builder,
) -> Result<(), MapError> {
    match place {
        Place::Attr(name, scalar) => element.set_attr(name, &scalar_to_text(value, scalar, field)?),
        Place::Text(scalar) => {
            let text = scalar_to_text(value, scalar, field)?;
            if !text.is_empty() {
                element.push_text(&text);
            }
        }
        Place::ChildText(el, scalar) => {
            let text = scalar_to_text(value, scalar, field)?;
            let mut child = new_child(el, field, builder)?;
            if !text.is_empty() {
                child.push_text(&text);
            }
            element.push_element(child);
        }
        Place::ChildAttr(el, name, scalar) => {
            let text = scalar_to_text(value, scalar, field)?;
            // The attribute first, then the namespace, as component_http has always written
            // `<replace id='…' xmlns='…'/>`.
            let mut child = builder.element(field, el.name)?.with_attr(name, &text);
            if let Some(ns) = el.ns {
                child.set_attr("xmlns", ns);
            }
            element.push_element(child);
        }
        Place::Flag(el) => match value {
            Value::Bool(true) => element.push_element(new_child(el, field, builder)?),
            Value::Bool(false) => {}
            other => return Err(type_error(field, "a boolean", other)),
        },
        Place::NameIs(ns, names) => {
            let name = scalar_to_text(value, Scalar::OneOf(names), field)?;
            let child = builder.element(field, &name)?.with_attr("xmlns", ns);
            element.push_element(child);
        }
        Place::Child(obj) => {
            let child = builder.nested(field, |builder| write_obj(obj, value, field, builder))?;
            element.push_element(child);
        }
        Place::List(item, max) => write_list(item, max, value, element, field, builder)?,
        Place::Wrapped(el, item, max) => {
            let mut wrapper = new_child(el, field, builder)?;
            builder.nested(field, |builder| write_list(item, max, value, &mut wrapper, field, builder))?;
            element.push_element(wrapper);
        }
        Place::Custom(custom) => {
            let child = builder.nested(field, |builder| (custom.to_xml)(value, field, builder))?;
            element.push_element(child);
        }
        Place::Kind | Place::Alias(..) | Place::Shorthand(_) | Place::Caller(_) | Place::Unmapped(_) => {}
    }
    Ok(())
}

fn write_list(
    item: Item,
    max: usize,
    value: &Value,
    element: &mut Element,
    field: &str,
    builder: &mut Builder,
) -> Result<(), MapError> {
    let Value::Array(list) = value else { return Err(type_error(field, "an array", value)) };
    // Counted before any item is looked at: a list past the bound costs nothing more.
    if list.len() > max {
        return Err(builder.too_many(field, max, list.len()));
    }
    for (i, value) in list.iter().enumerate() {
        let field = format!("{field}[{i}]");
        match item {
            Item::Text(el, scalar) => {
                if value.is_null() {
                    return Err(type_error(&field, "a string", value));
                }
                write(Place::ChildText(el, scalar), value, element, &field, builder)?;
            }
            Item::Attr(el, name, scalar) => {
                let text = scalar_to_text(value, scalar, &field)?;
                element.push_element(new_child(el, &field, builder)?.with_attr(name, &text));
            }
            Item::Obj(obj) => {
                let child = builder.nested(&field, |builder| write_obj(obj, value, &field, builder))?;
                element.push_element(child);
            }
        }
    }
    Ok(())
}

/// Builds an object's element. Keys the object does not have are refused, naming them.
fn write_obj(obj: &Obj, value: &Value, field: &str, builder: &mut Builder) -> Result<Element, MapError> {
    let Value::Object(fields) = value else { return Err(type_error(field, "an object", value)) };
    if let Some(key) = fields.keys().find(|key| !obj.props.iter().any(|prop| prop.key == key.as_str())) {
        return Err(MapError::new(&format!("{field}.{key}"), Why::Unknown));
    }
    let fields = shorthands_resolved(obj, fields, field)?;
    let mut element = builder.element(field, obj.el.name)?;
    if let (Some(ns), false) = (obj.el.ns, obj.ns_after_first) {
        element.set_attr("xmlns", ns);
    }
    for prop in obj.props {
        let path = format!("{field}.{}", prop.key);
        match fields.get(prop.key).filter(|value| !value.is_null()) {
            Some(value) => write(prop.place, value, &mut element, &path, builder)?,
            None if prop.required => return Err(MapError::new(&path, Why::Missing)),
            None => {}
        }
    }
    if let (Some(ns), true) = (obj.el.ns, obj.ns_after_first) {
        let at = element.attrs.len().min(1);
        element.attrs.insert(at, ("xmlns".into(), ns.into()));
    }
    Ok(element)
}

/// The object's fields with every [`Place::Shorthand`] written into the list it stands for: a string
/// as a list of one, a list as itself. Given with that list, it is refused, naming both.
fn shorthands_resolved<'a>(
    obj: &Obj,
    fields: &'a Map<String, Value>,
    field: &str,
) -> Result<Cow<'a, Map<String, Value>>, MapError> {
    let mut fields = Cow::Borrowed(fields);
    for prop in obj.props {
        let Place::Shorthand(list) = prop.place else { continue };
        let Some(value) = fields.get(prop.key).filter(|value| !value.is_null()).cloned() else { continue };
        let path = format!("{field}.{}", prop.key);
        if fields.get(list).is_some_and(|value| !value.is_null()) {
            return Err(MapError::new(&path, Why::Invalid(format!("cannot be given with '{field}.{list}'"))));
        }
        let value = match value {
            Value::String(one) => Value::Array(vec![Value::String(one)]),
            Value::Array(many) => Value::Array(many),
            other => return Err(type_error(&path, "a string or an array", &other)),
        };
        let fields = fields.to_mut();
        fields.remove(prop.key);
        fields.insert(list.to_owned(), value);
    }
    Ok(fields)
}
