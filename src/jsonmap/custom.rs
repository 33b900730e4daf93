//! The rows whose JSON is not a plain image of their XML: XHTML-IM text, service discovery
//! (whose value is `true`, a node, or the answer), ad-hoc commands (a node or an object) and a
//! forwarded message (read by the engine itself). Each is a pair of functions; the parts that
//! are plain objects use the engine's own object reader and writer.

use serde_json::{Map, Value};

use super::table::{ARCHIVE_QUERY, DATAFORM, MAX_EXTENSIONS, MAX_FEATURES, MAX_IDENTITIES, MAX_ITEMS};
use super::{
    build_stanza, checked, child, children, element_to_json, elements, ns_of, read_obj, text, type_error, write_obj,
    Builder, Custom, El, Item, Kind, MapError, Obj, Place, Profile, Prop, Scalar, Why, CLIENT,
};
use crate::ns;
use crate::stanza::{Element, Node};

const fn own(name: &'static str) -> El {
    El { name, ns: None }
}

const fn prop(key: &'static str, place: Place) -> Prop {
    Prop { key, place, required: false }
}

const fn required(key: &'static str, place: Place) -> Prop {
    Prop { key, place, required: true }
}

// ---- XEP-0071 XHTML-IM ----

/// `html`: the XHTML `<body>…</body>` as XML text, without its namespace (XHTML is implied).
pub static HTML: Custom =
    Custom { el: El { name: "html", ns: Some(ns::XHTML_IM) }, to_json: html_json, to_xml: html_xml };

fn html_json(html: &Element, html_ns: &str) -> Option<Value> {
    let body = child(html, html_ns, El { name: "body", ns: Some(ns::XHTML) })?;
    let mut body = body.clone();
    strip_ns(&mut body, ns::XHTML);
    Some(Value::String(body.to_xml()))
}

/// Removes `xmlns='ns'` from `element` and its descendants in `ns`: they are written as text
/// where XHTML is the default namespace.
fn strip_ns(element: &mut Element, ns: &str) {
    if element.attr("xmlns") == Some(ns) {
        element.remove_attr("xmlns");
    }
    for child in &mut element.children {
        if let Node::Element(child) = child {
            if child.attr("xmlns").is_none_or(|child_ns| child_ns == ns) {
                strip_ns(child, ns);
            }
        }
    }
}

fn html_xml(value: &Value, field: &str, builder: &mut Builder) -> Result<Element, MapError> {
    let Value::String(markup) = value else { return Err(type_error(field, "a string", value)) };
    let invalid = |why: String| MapError { field: field.to_owned(), why: Why::Invalid(why) };
    // Parsed inside a wrapper that makes XHTML the default namespace, with the limits left: the
    // wrapper is a message, the one top-level element the parser takes.
    let wrapped =
        format!("<message><x:html xmlns:x='{}' xmlns='{}'>{markup}</x:html></message>", ns::XHTML_IM, ns::XHTML);
    let limits = crate::xml::ParseLimits {
        max_depth: super::MAX_DEPTH.saturating_sub(builder.depth).max(3),
        max_elements: builder.left + 1,
        ..Default::default()
    };
    let message = crate::xml::parse_stanza(&wrapped, limits).map_err(|why| invalid(format!("is not XHTML: {why}")))?;
    let mut tops = elements(&message);
    let (Some(html), None) = (tops.next(), tops.next()) else {
        return Err(invalid("must be one <body> element".into()));
    };
    let only_body = html.children.iter().all(|node| match node {
        Node::Element(e) => e.name == "body" && e.attr("xmlns") == Some(ns::XHTML),
        Node::Text(t) => t.trim().is_empty(),
    }) && elements(html).count() == 1;
    if !only_body || html.name != "html" || html.attr("xmlns") != Some(ns::XHTML_IM) {
        return Err(invalid("must be one <body> element".into()));
    }
    let mut html = html.clone();
    html.children.retain(|node| matches!(node, Node::Element(_)));
    let count = count_elements(&html);
    if count > builder.left {
        return Err(MapError { field: field.to_owned(), why: Why::TooManyElements });
    }
    builder.left -= count;
    Ok(html)
}

fn count_elements(element: &Element) -> usize {
    1 + elements(element).map(count_elements).sum::<usize>()
}

// ---- XEP-0030 Service Discovery ----

/// `disco`: `true` (a query), a node (a query of that node), or the answer: `identities`,
/// `features`, and `extensions` (XEP-0128 forms by their `FORM_TYPE`, as field maps).
pub static DISCO: Custom =
    Custom { el: El { name: "query", ns: Some(ns::DISCO_INFO) }, to_json: disco_json, to_xml: disco_xml };

static DISCO_INFO: Obj = Obj {
    el: El { name: "query", ns: Some(ns::DISCO_INFO) },
    props: &[
        prop("node", Place::Attr("node", Scalar::Str)),
        prop("identities", Place::List(Item::Obj(&IDENTITY), MAX_IDENTITIES)),
        prop("features", Place::List(Item::Attr(own("feature"), "var", Scalar::Str), MAX_FEATURES)),
        prop("extensions", Place::Caller("the disco row itself")),
    ],
    ns_after_first: false,
};

static IDENTITY: Obj = Obj {
    el: own("identity"),
    props: &[
        required("category", Place::Attr("category", Scalar::Str)),
        required("type", Place::Attr("type", Scalar::Str)),
        prop("name", Place::Attr("name", Scalar::Str)),
    ],
    ns_after_first: false,
};

/// An empty query is `true`, or its node.
fn empty_query(query: &Element) -> Option<Value> {
    if elements(query).next().is_some() {
        return None;
    }
    Some(query.attr("node").map_or(Value::Bool(true), |node| Value::String(node.into())))
}

/// An empty query for `true` or a node; `None` for anything else.
fn empty_query_xml(value: &Value, el: El, field: &str, builder: &mut Builder) -> Result<Option<Element>, MapError> {
    let mut query = match value {
        Value::Bool(true) | Value::String(_) => builder.element(field, el.name)?,
        _ => return Ok(None),
    };
    query.set_attr("xmlns", el.ns.unwrap_or(CLIENT));
    if let Value::String(node) = value {
        checked(node, field)?;
        query.set_attr("node", node);
    }
    Ok(Some(query))
}

fn disco_json(query: &Element, query_ns: &str) -> Option<Value> {
    if let Some(empty) = empty_query(query) {
        return Some(empty);
    }
    let mut answer = read_obj(&DISCO_INFO, query, query_ns)?;
    for key in ["identities", "features"] {
        answer.entry(key).or_insert_with(|| Value::Array(Vec::new()));
    }
    let mut extensions = Map::new();
    for form in children(query, query_ns, DATAFORM.el).take(MAX_EXTENSIONS) {
        let mut fields = form_fields(form, ns_of(form, query_ns));
        // FORM_TYPE is a hidden field, or one without a type (read as a list) from some servers.
        let form_type = match fields.remove("FORM_TYPE") {
            Some(Value::String(form_type)) => form_type,
            Some(Value::Array(mut list)) if list.len() == 1 => match list.pop() {
                Some(Value::String(form_type)) => form_type,
                _ => continue,
            },
            _ => continue,
        };
        extensions.insert(form_type, Value::Object(fields));
    }
    if !extensions.is_empty() {
        answer.insert("extensions".into(), Value::Object(extensions));
    }
    Some(Value::Object(answer))
}

fn disco_xml(value: &Value, field: &str, builder: &mut Builder) -> Result<Element, MapError> {
    if let Some(query) = empty_query_xml(value, DISCO.el, field, builder)? {
        return Ok(query);
    }
    let Value::Object(answer) = value else { return Err(type_error(field, "true, a node or an object", value)) };
    let mut query = write_obj(&DISCO_INFO, value, field, builder)?;
    if let Some(extensions) = answer.get("extensions").filter(|v| !v.is_null()) {
        let field = format!("{field}.extensions");
        let Value::Object(extensions) = extensions else { return Err(type_error(&field, "an object", extensions)) };
        if extensions.len() > MAX_EXTENSIONS {
            return Err(builder.too_many(&field, MAX_EXTENSIONS, extensions.len()));
        }
        for (form_type, fields) in extensions {
            let field = format!("{field}.{form_type}");
            let form =
                builder.nested(&field, |builder| form_xml(Some(form_type), fields, "result", &field, builder))?;
            query.push_element(form);
        }
    }
    Ok(query)
}

/// `formdata`: a form to submit, written as `{var: value}` (a value a string, a boolean or a
/// list of strings), as the community module's shorthand. Only written: a form in a stanza is
/// read as `dataform`, which says all of it.
pub static FORMDATA: Custom =
    Custom { el: El { name: "x", ns: Some(ns::DATA) }, to_json: |_, _| None, to_xml: formdata_xml };

fn formdata_xml(value: &Value, field: &str, builder: &mut Builder) -> Result<Element, MapError> {
    form_xml(None, value, "submit", field, builder)
}

/// `items`: `true` (a query), a node (a query of that node), `{"node": …}`, or the answer: a
/// list of items, each a JID or `{"jid", "node", "name"}`.
pub static ITEMS: Custom =
    Custom { el: El { name: "query", ns: Some(ns::DISCO_ITEMS) }, to_json: items_json, to_xml: items_xml };

static ITEM: Obj = Obj {
    el: own("item"),
    props: &[
        required("jid", Place::Attr("jid", Scalar::Str)),
        prop("node", Place::Attr("node", Scalar::Str)),
        prop("name", Place::Attr("name", Scalar::Str)),
    ],
    ns_after_first: false,
};

fn items_json(query: &Element, query_ns: &str) -> Option<Value> {
    if let Some(empty) = empty_query(query) {
        return Some(empty);
    }
    let items = children(query, query_ns, ITEM.el)
        .filter_map(|item| read_obj(&ITEM, item, ns_of(item, query_ns)))
        .take(MAX_ITEMS)
        .map(Value::Object)
        .collect();
    Some(Value::Array(items))
}

fn items_xml(value: &Value, field: &str, builder: &mut Builder) -> Result<Element, MapError> {
    if let Some(query) = empty_query_xml(value, ITEMS.el, field, builder)? {
        return Ok(query);
    }
    match value {
        Value::Object(request) => {
            if let Some(key) = request.keys().find(|key| *key != "node") {
                return Err(MapError { field: format!("{field}.{key}"), why: Why::Unknown });
            }
            match request.get("node") {
                Some(Value::String(_)) | None | Some(Value::Null) => {}
                Some(other) => return Err(type_error(&format!("{field}.node"), "a string", other)),
            }
            let node = request.get("node").cloned().unwrap_or(Value::Bool(true));
            let node = if node.is_null() { Value::Bool(true) } else { node };
            Ok(empty_query_xml(&node, ITEMS.el, field, builder)?.expect("true or a string"))
        }
        Value::Array(items) => {
            if items.len() > MAX_ITEMS {
                return Err(builder.too_many(field, MAX_ITEMS, items.len()));
            }
            let mut query = builder.element(field, "query")?.with_attr("xmlns", ns::DISCO_ITEMS);
            for (i, item) in items.iter().enumerate() {
                let field = format!("{field}[{i}]");
                let item = match item {
                    Value::String(jid) => {
                        checked(jid, &field)?;
                        builder.element(&field, "item")?.with_attr("jid", jid)
                    }
                    other => write_obj(&ITEM, other, &field, builder)?,
                };
                query.push_element(item);
            }
            Ok(query)
        }
        other => Err(type_error(field, "true, a node, an object or an array", other)),
    }
}

// ---- XEP-0050 Ad-Hoc Commands ----

/// `command`: a node (execute it), or the command object: `node`, `action`, `sessionid`,
/// `status`, `actions` (`execute` and the flags `next`, `prev`, `complete`), `note` (`type`,
/// `text`), `form` (a data form) and, to send only values, `data` (a map of field values,
/// written as a submitted form and read back as `form`).
pub static COMMAND: Custom =
    Custom { el: El { name: "command", ns: Some(ns::COMMANDS) }, to_json: command_json, to_xml: command_xml };

static COMMAND_OBJ: Obj = Obj {
    el: El { name: "command", ns: Some(ns::COMMANDS) },
    props: &[
        prop("node", Place::Attr("node", Scalar::Str)),
        prop("action", Place::Attr("action", Scalar::OneOf(&["cancel", "complete", "execute", "next", "prev"]))),
        prop("sessionid", Place::Attr("sessionid", Scalar::Str)),
        prop("status", Place::Attr("status", Scalar::OneOf(&["canceled", "completed", "executing"]))),
        prop("actions", Place::Child(&ACTIONS)),
        prop("note", Place::Child(&NOTE)),
        prop("form", Place::Child(&DATAFORM)),
        prop("data", Place::Custom(&FORM_DATA)),
    ],
    ns_after_first: false,
};

static ACTIONS: Obj = Obj {
    el: own("actions"),
    props: &[
        prop("execute", Place::Attr("execute", Scalar::OneOf(&["complete", "next", "prev"]))),
        prop("prev", Place::Flag(own("prev"))),
        prop("next", Place::Flag(own("next"))),
        prop("complete", Place::Flag(own("complete"))),
    ],
    ns_after_first: false,
};

static NOTE: Obj = Obj {
    el: own("note"),
    props: &[
        prop("type", Place::Attr("type", Scalar::OneOf(&["error", "info", "warn"]))),
        prop("text", Place::Text(Scalar::Str)),
    ],
    ns_after_first: false,
};

/// A command's `data`: written as a submitted form; read back by `form`, never by itself.
static FORM_DATA: Custom =
    Custom { el: El { name: "x", ns: Some(ns::DATA) }, to_json: |_, _| None, to_xml: form_data_xml };

fn form_data_xml(value: &Value, field: &str, builder: &mut Builder) -> Result<Element, MapError> {
    form_xml(None, value, "submit", field, builder)
}

fn command_json(command: &Element, command_ns: &str) -> Option<Value> {
    read_obj(&COMMAND_OBJ, command, command_ns).map(Value::Object)
}

fn command_xml(value: &Value, field: &str, builder: &mut Builder) -> Result<Element, MapError> {
    match value {
        Value::String(node) => {
            Ok(builder.element(field, "command")?.with_attr("xmlns", ns::COMMANDS).with_attr("node", node))
        }
        other => write_obj(&COMMAND_OBJ, other, field, builder),
    }
}

// ---- field maps of XEP-0004 forms ----

/// A form's fields as a map from `var` to value: a list for list fields and fields without a
/// type, a boolean for boolean fields, lines joined for text-multi, else the one value.
fn form_fields(form: &Element, form_ns: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for field in children(form, form_ns, own("field")).take(super::table::MAX_FORM_FIELDS) {
        let Some(var) = field.attr("var") else { continue };
        let field_ns = ns_of(field, form_ns);
        let values: Vec<String> =
            children(field, field_ns, own("value")).take(super::table::MAX_FIELD_VALUES).map(text).collect();
        let value = match field.attr("type") {
            Some("boolean") => Value::Bool(matches!(values.first().map(String::as_str), Some("1" | "true"))),
            Some("text-multi") => Value::String(values.join("\n")),
            Some("list-multi" | "jid-multi") | None => values.into_iter().map(Value::String).collect(),
            Some(_) => values.into_iter().next().map_or(Value::Null, Value::String),
        };
        out.insert(var.to_owned(), value);
    }
    out
}

/// A field map as a form of `form_type` (`result` for disco extensions, typed so they read back
/// the same; `submit` for a command's data, untyped: the form's own types are the responder's).
fn form_xml(
    form_type_field: Option<&str>,
    value: &Value,
    form_type: &str,
    field: &str,
    builder: &mut Builder,
) -> Result<Element, MapError> {
    let Value::Object(fields) = value else { return Err(type_error(field, "an object", value)) };
    if fields.len() > super::table::MAX_FORM_FIELDS {
        return Err(builder.too_many(field, super::table::MAX_FORM_FIELDS, fields.len()));
    }
    let typed = form_type == "result";
    let mut form = builder.element(field, "x")?.with_attr("xmlns", ns::DATA).with_attr("type", form_type);
    if let Some(form_type) = form_type_field {
        checked(form_type, field)?;
        let mut hidden = builder.element(field, "field")?.with_attr("var", "FORM_TYPE").with_attr("type", "hidden");
        hidden.push_element(builder.element(field, "value")?.with_text(form_type));
        form.push_element(hidden);
    }
    for (var, value) in fields {
        let path = format!("{field}.{var}");
        checked(var, &path)?;
        let mut element = builder.element(&path, "field")?.with_attr("var", var);
        let (field_type, values): (&str, Vec<String>) = match value {
            Value::String(text) => ("text-single", vec![text.clone()]),
            Value::Bool(b) => ("boolean", vec![if *b { "1" } else { "0" }.to_owned()]),
            Value::Array(list) => {
                if list.len() > super::table::MAX_FIELD_VALUES {
                    return Err(builder.too_many(&path, super::table::MAX_FIELD_VALUES, list.len()));
                }
                let values = list
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.as_str().map(str::to_owned).ok_or_else(|| type_error(&format!("{path}[{i}]"), "a string", v))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                ("list-multi", values)
            }
            Value::Null => ("text-single", Vec::new()),
            other => return Err(type_error(&path, "a string, a boolean or an array of strings", other)),
        };
        if typed {
            element.set_attr("type", field_type);
        }
        for value in values {
            checked(&value, &path)?;
            element.push_element(builder.element(&path, "value")?.with_text(&value));
        }
        form.push_element(element);
    }
    Ok(form)
}

// ---- XEP-0297 forwarded message ----

/// The message inside `<forwarded/>` (an archive result's), read and written by the engine
/// itself with the community profile's rows; it keeps its `jabber:client` namespace.
pub static FORWARDED_MESSAGE: Custom =
    Custom { el: El { name: "message", ns: Some(CLIENT) }, to_json: forwarded_json, to_xml: forwarded_xml };

fn forwarded_json(message: &Element, _ns: &str) -> Option<Value> {
    let mut fields = element_to_json(message, Profile::Rest);
    fields.remove("kind");
    Some(Value::Object(fields))
}

fn forwarded_xml(value: &Value, field: &str, builder: &mut Builder) -> Result<Element, MapError> {
    let Value::Object(fields) = value else { return Err(type_error(field, "an object", value)) };
    if let Some(kind) = fields.get("kind").filter(|kind| kind.as_str() != Some("message") && !kind.is_null()) {
        return Err(MapError {
            field: format!("{field}.kind"),
            why: Why::Invalid(format!("must be message, not {kind}")),
        });
    }
    let mut message = build_stanza(fields, Profile::Rest, Kind::Message, field, builder)?;
    message.attrs.insert(0, ("xmlns".into(), CLIENT.into()));
    Ok(message)
}

// ---- XEP-0313 archive query ----

/// `archive` in an iq: the query as the schema describes it (`queryid`, `form`, `page`), or the
/// community module's shorthand, written as that query: the filters `with`, `start`, `end`,
/// `before-id`, `after-id` and `ids` (a list, or ids separated by commas) become its form, and
/// `after`, `before` and `max` its page. Read back, the query is in its full form.
pub static ARCHIVE: Custom = Custom { el: ARCHIVE_QUERY.el, to_json: archive_json, to_xml: archive_xml };

/// The shorthand's filters, in the order they are written as form fields.
const ARCHIVE_FILTERS: [&str; 6] = ["with", "start", "end", "before-id", "after-id", "ids"];
/// The shorthand's paging.
const ARCHIVE_PAGING: [&str; 3] = ["after", "before", "max"];

fn archive_json(query: &Element, query_ns: &str) -> Option<Value> {
    read_obj(&ARCHIVE_QUERY, query, query_ns).map(Value::Object)
}

fn archive_xml(value: &Value, field: &str, builder: &mut Builder) -> Result<Element, MapError> {
    let Value::Object(archive) = value else { return Err(type_error(field, "an object", value)) };
    let given = |key: &str| archive.get(key).is_some_and(|v| !v.is_null());
    if !ARCHIVE_FILTERS.into_iter().any(given) && !ARCHIVE_PAGING.into_iter().any(given) {
        return write_obj(&ARCHIVE_QUERY, value, field, builder);
    }
    let mut full = archive.clone();
    if let Some(key) = ARCHIVE_FILTERS.into_iter().find(|key| given(key)) {
        if given("form") {
            let why = Why::Invalid("cannot be used with 'form': write the filter into the form".into());
            return Err(MapError { field: format!("{field}.{key}"), why });
        }
        let mut fields = vec![serde_json::json!({ "var": "FORM_TYPE", "type": "hidden", "values": [ns::MAM] })];
        for key in ARCHIVE_FILTERS {
            let Some(value) = full.remove(key).filter(|v| !v.is_null()) else { continue };
            let values = match value {
                Value::String(ids) if key == "ids" => ids.split(',').map(|id| Value::String(id.into())).collect(),
                Value::String(text) => vec![Value::String(text)],
                Value::Array(ids) if key == "ids" => ids,
                other => return Err(type_error(&format!("{field}.{key}"), "a string", &other)),
            };
            fields.push(serde_json::json!({ "var": key, "values": values }));
        }
        full.insert("form".into(), serde_json::json!({ "type": "submit", "fields": fields }));
    }
    if let Some(key) = ARCHIVE_PAGING.into_iter().find(|key| given(key)) {
        if given("page") {
            let why = Why::Invalid("cannot be used with 'page': write it into the page".into());
            return Err(MapError { field: format!("{field}.{key}"), why });
        }
        let mut page = Map::new();
        for key in ARCHIVE_PAGING {
            let Some(value) = full.remove(key).filter(|v| !v.is_null()) else { continue };
            // As the community module does, a `max` given as text (from a URL's query) is a number.
            let value = match value {
                Value::String(max) if key == "max" => max.trim().parse::<u64>().map(Value::from).map_err(|_| {
                    MapError { field: format!("{field}.max"), why: Why::Invalid("must be a number".into()) }
                })?,
                other => other,
            };
            page.insert(key.into(), value);
        }
        full.insert("page".into(), Value::Object(page));
    }
    write_obj(&ARCHIVE_QUERY, &Value::Object(full), field, builder)
}
