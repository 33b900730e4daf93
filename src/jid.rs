//! JIDs as Prosody reads them (`util.jid.prepped_split`): `node@domain/resource`, each part
//! prepared with its stringprep profile (RFC 3920: nodeprep, nameprep, resourceprep) and at most
//! 1023 bytes, the limit of Prosody's `util.encodings`.
//!
//! Two rules are stricter than Prosody's: a domain may not contain ASCII control characters,
//! and no part may prepare to nothing (Prosody makes `a@\u{200B}` the JID `a@`).
//!
//! Every address a webhook or a push writes goes through [`prep`] before anything is sent: what
//! Prosody could not parse, it would bounce back to the component as an error from a made-up
//! address, which is how a reply came to impersonate a user.

use std::fmt;

/// Prosody's `util.encodings` refuses to prepare a part of 1024 bytes or more.
const MAX_PART: usize = 1023;

/// A prepared JID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jid {
    /// The local part, before the `@`.
    pub node: Option<String>,
    /// The domain, prepared (lowercase).
    pub domain: String,
    /// The resource, after the `/`.
    pub resource: Option<String>,
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(node) = &self.node {
            write!(f, "{node}@")?;
        }
        f.write_str(&self.domain)?;
        if let Some(resource) = &self.resource {
            write!(f, "/{resource}")?;
        }
        Ok(())
    }
}

impl Jid {
    /// `node@domain`, or the domain alone: the JID without its resource.
    pub fn bare(&self) -> String {
        match &self.node {
            Some(node) => format!("{node}@{}", self.domain),
            None => self.domain.clone(),
        }
    }
}

/// The bare part of a JID Prosody routed (so a valid one), as `util.jid.bare`: all before the
/// resource, which starts at the first `/` (a node holds none). Nothing is prepared or checked;
/// for text from outside, [`prep`] and [`Jid::bare`].
pub fn bare(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(bare, _)| bare)
}

/// Splits as `util.jid.split` does: the node is what comes before the first `@` (if that comes
/// before any `/`), the domain runs to the next `@` or `/`, the resource is everything after
/// that `/` (it may contain `@` and `/`). Empty parts make the JID invalid.
fn split(jid: &str) -> Option<(Option<&str>, &str, Option<&str>)> {
    let (node, rest) = match jid.find(['@', '/']) {
        Some(i) if jid.as_bytes()[i] == b'@' => (Some(&jid[..i]), &jid[i + 1..]),
        _ => (None, jid),
    };
    let (domain, resource) = match rest.find(['@', '/']) {
        None => (rest, None),
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], Some(&rest[i + 1..])),
        Some(_) => return None, // a second `@` before any `/`
    };
    if node == Some("") || domain.is_empty() || resource == Some("") {
        return None;
    }
    Some((node, domain, resource))
}

fn part(
    text: &str,
    what: &str,
    profile: fn(&str) -> Result<std::borrow::Cow<'_, str>, stringprep::Error>,
) -> Result<String, String> {
    let prepared = profile(text).map_err(|e| format!("its {what} {text:?} is not valid ({e})"))?;
    if prepared.is_empty() || prepared.len() > MAX_PART {
        return Err(format!("its {what} is empty or longer than {MAX_PART} bytes"));
    }
    Ok(prepared.into_owned())
}

/// Parses and prepares a JID with Prosody's rules; the error says what is wrong with it.
pub fn prep(jid: &str) -> Result<Jid, String> {
    let (node, domain, resource) =
        split(jid).ok_or_else(|| "it is not of the form node@domain/resource".to_string())?;
    // A trailing dot is the DNS root: `example.com.` is `example.com` (but `.` is nothing).
    let domain = match domain.strip_suffix('.') {
        Some(stripped) if !stripped.is_empty() => stripped,
        _ if domain == "." => return Err("its domain is empty".into()),
        _ => domain,
    };
    // Nameprep lets ASCII control characters through, and so does Prosody (`a@b\nc` is a valid
    // JID to it); no host name has them, and in a log line a line break forges the next line.
    if domain.chars().any(|c| c.is_ascii_control()) {
        return Err("its domain contains a control character".into());
    }
    Ok(Jid {
        node: node.map(|n| part(n, "node", stringprep::nodeprep)).transpose()?,
        domain: part(domain, "domain", stringprep::nameprep)?,
        resource: resource.map(|r| part(r, "resource", stringprep::resourceprep)).transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepped(jid: &str) -> Result<String, String> {
        prep(jid).map(|j| j.to_string())
    }

    #[test]
    fn splits_like_prosody() {
        assert_eq!(prepped("Alice@Example.COM/Phone"), Ok("alice@example.com/Phone".into()));
        assert_eq!(prepped("example.com."), Ok("example.com".into()));
        assert_eq!(prepped("a@b/c@d/e"), Ok("a@b/c@d/e".into()));
        assert_eq!(prepped("b/c"), Ok("b/c".into()));
        let j = prep("x@bot.localhost/r").unwrap();
        assert_eq!(
            (j.node.as_deref(), j.domain.as_str(), j.resource.as_deref()),
            (Some("x"), "bot.localhost", Some("r"))
        );
    }

    #[test]
    fn bare_drops_the_resource_only() {
        assert_eq!(bare("dev@conference.localhost/Help Bot/2"), "dev@conference.localhost");
        assert_eq!(bare("bot.localhost/default"), "bot.localhost");
        assert_eq!(bare("alice@localhost"), "alice@localhost");
        assert_eq!(prep("Alice@Localhost/Phone").unwrap().bare(), "alice@localhost");
        assert_eq!(prep("localhost/a@b").unwrap().bare(), "localhost");
    }

    #[test]
    fn refuses_what_prosody_cannot_route() {
        for bad in [
            "",
            "@localhost",
            "a@",
            "a@b@c",
            "localhost/",
            "a@/r",
            ".",
            "a b@localhost",
            "a@b\u{0}c",
            "a@b\nc",
            "a@\u{200B}",
        ] {
            assert!(prep(bad).is_err(), "{bad:?}");
        }
        // Characters nodeprep prohibits.
        for c in ['"', '&', '\'', ':', '<', '>'] {
            assert!(prep(&format!("a{c}b@localhost")).is_err(), "{c}");
        }
        assert!(prep(&format!("{}@localhost", "a".repeat(1024))).is_err());
        assert!(prep(&format!("{}@localhost", "a".repeat(1023))).is_ok());
    }
}
