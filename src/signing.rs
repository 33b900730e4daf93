//! Webhook request signing: an HMAC-SHA256, keyed with `component_post_secret`, over everything
//! a bot acts on: the signing time, the delivery id, the retry count and the raw body. The
//! signed text is
//!
//! ```text
//! v1 LF <timestamp> LF <delivery id> LF <retry count> LF <body>
//! ```
//!
//! (LF a single `\n` byte, no spaces), the header value `sha256=<lowercase hex>`. A line feed
//! cannot occur in an HTTP header value, so the fields are unambiguous whatever a client sends;
//! the body comes last and may contain anything. Every attempt is signed anew, so a retry has a
//! signature of its own. The timestamp bounds how long a captured request stays usable, and the
//! signed delivery id makes a replay within that time a duplicate the bot already drops.

use ring::hmac;

/// Unix time in seconds when the request was signed.
pub const TIMESTAMP_HEADER: &str = "X-Signature-Timestamp";
/// `sha256=` followed by the lowercase hex HMAC-SHA256 of the signed text (module docs).
pub const SIGNATURE_HEADER: &str = "X-Signature";
/// The first line of the signed text: which scheme it is.
const VERSION: &[u8] = b"v1";

/// The `X-Signature` value for one attempt; `delivery_id` and `retry` as sent in `X-Delivery-Id`
/// and `X-Retry-Count`.
pub fn sign(secret: &[u8], timestamp: &str, delivery_id: &str, retry: u32, body: &[u8]) -> String {
    debug_assert!(!timestamp.contains('\n') && !delivery_id.contains('\n'));
    let retry = retry.to_string();
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut context = hmac::Context::with_key(&key);
    for field in [VERSION, timestamp.as_bytes(), delivery_id.as_bytes(), retry.as_bytes()] {
        context.update(field);
        context.update(b"\n");
    }
    context.update(body);
    let tag = context.sign();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for byte in tag.as_ref() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::sign;

    // Each expected value from Python's hmac module, not from this code:
    // python3 -c "import hmac,hashlib;print(hmac.new(b'key',b'v1\n1700000000\n000000000000002a-7\n3\n{\"a\":1}',hashlib.sha256).hexdigest())"
    #[test]
    fn matches_an_independent_hmac() {
        assert_eq!(
            sign(b"key", "1700000000", "000000000000002a-7", 3, br#"{"a":1}"#),
            "sha256=4ab5d9a77b4c172a73915768da06cb1fbc9d54ebad59ee9535444b41d371f6ee"
        );
    }

    #[test]
    fn covers_the_delivery_id_and_the_retry_count() {
        // The same request with another delivery id (…-8), and with retry count 0.
        assert_eq!(
            sign(b"key", "1700000000", "000000000000002a-8", 3, br#"{"a":1}"#),
            "sha256=9191517ebabc5f146c73bb58b3c4e33df11a9ef1c95895df6c28407209565ec9"
        );
        assert_eq!(
            sign(b"key", "1700000000", "000000000000002a-7", 0, br#"{"a":1}"#),
            "sha256=ec45515e5d1536962b5ba29f009b41276b64409d48d27e37461f3d6d507d40f4"
        );
    }
}
