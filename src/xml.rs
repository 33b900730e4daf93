//! Parsing of the `stanza` field of webhook replies into an owned tree, with limits.
//!
//! The tree mirrors what Prosody's own `util.xml` parser builds: element names without prefixes,
//! `xmlns` set on every element that is in a namespace, `xml:lang` kept under that name and other
//! namespaced attributes keyed `"<namespace>\u{1}<name>"`. The input comes from a web application,
//! so it is treated as hostile: no DTD (and so no custom entities), bounded depth and element
//! count, one top-level `message`, `presence` or `iq`.

use std::collections::HashSet;

use quick_xml::escape::{resolve_predefined_entity, unescape};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use crate::stanza::{check_name, Element, Node};

const XML_NAMESPACE: &[u8] = b"http://www.w3.org/XML/1998/namespace";

/// How much a parsed stanza may hold.
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    /// Elements nested inside one another, at most.
    pub max_depth: usize,
    /// Elements in the whole stanza, at most.
    pub max_elements: usize,
    /// Attributes on one element. Stanzas use a handful; the cap (with a set for duplicates)
    /// keeps a push of 100,000 attributes from costing Prosody's main thread seconds.
    pub max_attributes: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits { max_depth: 32, max_elements: 10_000, max_attributes: 64 }
    }
}

/// Parses one stanza. Errors are phrased for the operator's log.
pub fn parse_stanza(text: &str, limits: ParseLimits) -> Result<Element, String> {
    let mut reader = NsReader::from_str(text);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;

    loop {
        let event = reader.read_event().map_err(|e| format!("malformed XML: {e}"))?;
        let is_empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(start) | Event::Empty(start) if root.is_none() => {
                elements += 1;
                if elements > limits.max_elements {
                    return Err(format!("more than {} elements", limits.max_elements));
                }
                if stack.len() >= limits.max_depth {
                    return Err(format!("nested deeper than {} elements", limits.max_depth));
                }
                let parent_ns = stack.last().and_then(|parent| parent.attr("xmlns")).unwrap_or("");
                let element = start_element(&reader, &start, parent_ns, limits.max_attributes)?;
                if stack.is_empty() && !matches!(element.name.as_str(), "message" | "presence" | "iq") {
                    return Err(format!("top-level element is <{}>, expected message, presence or iq", element.name));
                }
                if is_empty {
                    close(&mut stack, &mut root, element);
                } else {
                    stack.push(element);
                }
            }
            Event::End(_) => {
                // quick-xml checks that end tags match their start tags.
                let element = stack.pop().ok_or("unexpected end tag")?;
                close(&mut stack, &mut root, element);
            }
            Event::Text(text) => {
                let text = text.decode().map_err(|e| format!("bad text: {e}"))?;
                push_text(&mut stack, &text)?;
            }
            Event::CData(data) => {
                let text = data.decode().map_err(|e| format!("bad CDATA: {e}"))?;
                push_text(&mut stack, &text)?;
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference
                    .resolve_char_ref()
                    .map_err(|e| format!("bad character reference: {e}"))?
                {
                    Some(c) => c.to_string(),
                    None => {
                        let name = reference.decode().map_err(|e| format!("bad entity: {e}"))?;
                        resolve_predefined_entity(&name).ok_or_else(|| format!("unknown entity {name:?}"))?.to_owned()
                    }
                };
                push_text(&mut stack, &resolved)?;
            }
            Event::DocType(_) => return Err("a DTD is not allowed in a stanza".into()),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
            Event::Start(_) | Event::Empty(_) => {
                return Err("more than one top-level element".into());
            }
        }
    }
    if !stack.is_empty() {
        return Err("unexpected end of XML: unclosed elements".into());
    }
    let root = root.ok_or("no element found")?;
    root.check_xml()?;
    Ok(root)
}

/// A namespace name as written in its declaration, with references resolved.
fn namespace(raw: &[u8]) -> Result<String, String> {
    let raw = std::str::from_utf8(raw).map_err(|_| "namespace is not UTF-8")?;
    Ok(unescape(raw).map_err(|e| format!("bad namespace {raw:?}: {e}"))?.into_owned())
}

fn start_element(
    reader: &NsReader<&[u8]>,
    start: &BytesStart,
    parent_ns: &str,
    max_attributes: usize,
) -> Result<Element, String> {
    let (ns, _) = reader.resolve_element(start.name());
    let name =
        std::str::from_utf8(start.local_name().into_inner()).map_err(|_| "element name is not UTF-8")?.to_owned();
    check_name(&name, "element name")?;
    let mut element = Element::new(&name);
    match ns {
        ResolveResult::Bound(ns) => element.set_attr("xmlns", &namespace(ns.into_inner())?),
        // `xmlns=''` under a namespaced parent: keep it, or serializing would lose it.
        ResolveResult::Unbound if !parent_ns.is_empty() => element.set_attr("xmlns", ""),
        ResolveResult::Unbound => {}
        ResolveResult::Unknown(prefix) => {
            return Err(format!("unknown namespace prefix '{}'", String::from_utf8_lossy(&prefix)));
        }
    }
    // Duplicates are found here, after prefixes are resolved (`a:k` and `b:k` are the same
    // attribute when `a` and `b` name one namespace), with a set: quick-xml's own check compares
    // every pair.
    let mut seen = HashSet::new();
    for (count, attr) in start.attributes().with_checks(false).enumerate() {
        if count >= max_attributes {
            return Err(format!("more than {max_attributes} attributes on <{name}>"));
        }
        let attr = attr.map_err(|e| format!("bad attribute on <{name}>: {e}"))?;
        if attr.key.as_namespace_binding().is_some() {
            continue; // xmlns declarations are represented by the `xmlns` of each element
        }
        let value = attr.unescape_value().map_err(|e| format!("bad attribute value on <{name}>: {e}"))?;
        // Check the name as written: a control character in it would otherwise survive as
        // part of Prosody's "namespace\1name" key, and `a:b:c` would lose its meaning.
        let raw_key = std::str::from_utf8(attr.key.as_ref()).map_err(|_| "attribute name is not UTF-8")?;
        match raw_key.split_once(':') {
            Some((prefix, local)) => {
                check_name(prefix, "attribute prefix")?;
                check_name(local, "attribute name")?;
            }
            None => check_name(raw_key, "attribute name")?,
        }
        let (attr_ns, local) = reader.resolve_attribute(attr.key);
        let local = std::str::from_utf8(local.into_inner()).map_err(|_| "attribute name is not UTF-8")?;
        let key = match attr_ns {
            ResolveResult::Unbound => local.to_owned(),
            ResolveResult::Bound(ns) if ns.into_inner() == XML_NAMESPACE => format!("xml:{local}"),
            ResolveResult::Bound(ns) => format!("{}\u{1}{local}", namespace(ns.into_inner())?),
            ResolveResult::Unknown(prefix) => {
                return Err(format!("unknown namespace prefix '{}'", String::from_utf8_lossy(&prefix)));
            }
        };
        if !seen.insert(key.clone()) {
            return Err(format!("duplicate attribute {:?} on <{name}>", key.replace('\u{1}', " ")));
        }
        element.attrs.push((key, value.into_owned()));
    }
    Ok(element)
}

fn close(stack: &mut [Element], root: &mut Option<Element>, element: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(Node::Element(element)),
        None => *root = Some(element),
    }
}

fn push_text(stack: &mut [Element], text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Ok(()); // an empty CDATA section: nothing to keep, and nothing would serialize
    }
    match stack.last_mut() {
        Some(parent) => {
            // References arrive as separate events: join them to the text around them, as a
            // SAX parser's character data would be.
            if let Some(Node::Text(previous)) = parent.children.last_mut() {
                previous.push_str(text);
            } else {
                parent.children.push(Node::Text(text.to_owned()));
            }
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err("text outside the stanza element".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Element, String> {
        parse_stanza(s, ParseLimits::default())
    }

    #[test]
    fn parses_like_prosodys_util_xml() {
        let e = parse("<message xmlns='jabber:client' type='chat' xml:lang='en'><body>a &amp; b &#x263A;</body><x xmlns='urn:x'><y/></x></message>").unwrap();
        assert_eq!(e.attr("xmlns"), Some("jabber:client"));
        assert_eq!(e.attr("xml:lang"), Some("en"));
        let Node::Element(body) = &e.children[0] else { panic!() };
        assert_eq!(body.attr("xmlns"), Some("jabber:client"));
        assert_eq!(body.children, vec![Node::Text("a & b \u{263A}".into())]);
        // Serialized back the Prosody way: child xmlns equal to the parent's is omitted.
        assert_eq!(
            e.to_xml(),
            "<message xmlns='jabber:client' type='chat' xml:lang='en'><body>a &amp; b \u{263A}</body><x xmlns='urn:x'><y/></x></message>"
        );
    }

    #[test]
    fn unprefixed_stanza_has_no_xmlns() {
        let e = parse("<iq type='result'><query xmlns='jabber:iq:version'><name>bot</name></query></iq>").unwrap();
        assert_eq!(e.attr("xmlns"), None);
        assert_eq!(e.to_xml(), "<iq type='result'><query xmlns='jabber:iq:version'><name>bot</name></query></iq>");
    }

    #[test]
    fn namespace_names_are_unescaped() {
        // Found by fuzzing: quick-xml hands namespace names over as written.
        let e = parse("<message xmlns='ja&quot;be'><body/></message>").unwrap();
        assert_eq!(e.attr("xmlns"), Some("ja\"be"));
        assert_eq!(parse(&e.to_xml()).unwrap(), e);
        assert!(parse("<iq><q><![CDATA[]]></q></iq>").unwrap().to_xml() == "<iq><q/></iq>");
    }

    #[test]
    fn prefixed_attributes_use_prosodys_separator() {
        let e = parse("<message xmlns:a='urn:a' a:k='v'/>").unwrap();
        assert_eq!(e.attr("urn:a\u{1}k"), Some("v"));
    }

    #[test]
    fn refuses_hostile_or_wrong_input() {
        let bomb = "<!DOCTYPE m [<!ENTITY a 'aaaa'>]><message><body>&a;</body></message>";
        assert!(parse(bomb).unwrap_err().contains("DTD"));
        assert!(parse("<message><body>&nope;</body></message>").unwrap_err().contains("unknown entity"));
        assert!(parse("<stream:features xmlns:stream='x'/>").is_err());
        assert!(parse("<foo/>").unwrap_err().contains("top-level"));
        assert!(parse("<message>").unwrap_err().contains("unclosed"));
        assert!(parse("<message></presence>").is_err());
        assert!(parse("<message/><message/>").unwrap_err().contains("more than one"));
        assert!(parse("").unwrap_err().contains("no element"));
        assert!(parse("hello <message/>").is_err());
        assert!(parse("<message a='1' a='2'/>").is_err());
        // Found by fuzzing: names and text that quick-xml lets through but XML forbids.
        assert!(parse("<message xml:<m6#lang='en'/>").is_err());
        assert!(parse("<message><body>\u{5}\0</body></message>").is_err());
        assert!(parse("<message><body>&#0;</body></message>").is_err());
        assert!(parse("<message type='chat'\u{1}x='en'/>").is_err());
    }

    #[test]
    fn an_undeclared_default_namespace_survives_serialization() {
        // Found by fuzzing.
        let e = parse("<message xmlns='jabber:client'><x xmlns=''/></message>").unwrap();
        assert_eq!(e.to_xml(), "<message xmlns='jabber:client'><x xmlns=''/></message>");
        assert_eq!(parse(&e.to_xml()).unwrap(), e);
        let deep = format!("<message>{}{}</message>", "<a>".repeat(40), "</a>".repeat(40));
        assert!(parse(&deep).unwrap_err().contains("deeper"));
        let wide = format!("<message>{}</message>", "<a/>".repeat(10_001));
        assert!(parse(&wide).unwrap_err().contains("elements"));
    }
}
