//! One POST of one stanza to the webhook: the request with its headers and signature, bounded
//! by the stanza's deadline as a whole (resolve, connect, send, headers and every byte of the
//! body), the answer read to the end, and what kind of result it was. Whether and when to try
//! again is the dispatcher's business.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_LANGUAGE, CONTENT_TYPE};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;

use crate::answer::{interpret, Contract, HttpAnswer};
use crate::config::{Config, Format};
use crate::outcome::{Level, Outcome, BAD_REPLY, CONNECTION_FAILURE, INTERNAL, TIMED_OUT};
use crate::resolve::CachingResolver;
use crate::signing;
use crate::stanza::Incoming;
use crate::stream::Framing;
use crate::transport::{self, Client, Failure, Request, Response};

/// Header carrying an id that stays the same across retries of one stanza.
pub const DELIVERY_HEADER: &str = "X-Delivery-Id";
/// Header carrying how many times this stanza was posted before (0 on the first attempt).
pub const RETRY_HEADER: &str = "X-Retry-Count";

/// What one attempt posts: the stanza and its ready-made body.
pub struct Delivery<'a> {
    /// The stanza posted.
    pub incoming: &'a Incoming,
    /// The request body.
    pub body: Bytes,
    /// The `X-Delivery-Id`, the same on every attempt.
    pub delivery_id: &'a str,
    /// Attempts made before this one.
    pub retry: u32,
    /// When the stanza must be answered by: `component_post_timeout` after it was accepted.
    pub deadline: Instant,
}

/// The HTTP client of one component: its keep-alive connections, its resolver, and the CA
/// certificates it trusts.
#[derive(Clone)]
pub struct Endpoint {
    /// The event-driven client (see [`crate::transport`]); shut down on unload.
    pub client: Client,
    /// Looks the webhook's name up, at most once at a time.
    pub resolver: CachingResolver,
    /// The CA certificates trusted for `https://`.
    pub roots: Roots,
}

impl Endpoint {
    /// A client trusting `roots`; reads no file (see [`Roots::load`]). Fails only for a URL the
    /// configuration would not have accepted.
    pub fn new(config: &Config, roots: &Roots) -> Result<Endpoint, String> {
        let resolver = CachingResolver::default();
        let tls = config
            .url
            .get(..8)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
            .then(|| transport::tls_config(roots.der_certs()));
        let options = transport::Options {
            connect_timeout: config.connect_timeout,
            // One idle connection per request in flight at the peak, so a burst reuses them;
            // the dispatcher closes them when it shrinks back to the warm set.
            max_idle: config.max_in_flight.max(10),
            tls,
            user_agent: concat!("mod_component_http/", env!("CARGO_PKG_VERSION")),
        };
        let client = Client::new(&config.url, resolver.clone(), options)?;
        Ok(Endpoint { client, resolver, roots: roots.clone() })
    }
}

/// The CA certificates `https://` webhooks are verified against: the system's, found as OpenSSL
/// finds them (`SSL_CERT_FILE` and `SSL_CERT_DIR` if set, else the usual files and directories
/// of the system; rustls-native-certs), plus `component_post_ca_file`. Read when the component
/// starts and when it is reconfigured (reload), never in between: a bundle changed on disk is
/// applied by the next reload.
#[derive(Clone, Default)]
pub struct Roots {
    certs: Arc<Vec<CertificateDer<'static>>>,
}

impl PartialEq for Roots {
    fn eq(&self, other: &Roots) -> bool {
        self.certs.len() == other.certs.len() && self.certs.iter().zip(other.certs.iter()).all(|(a, b)| a == b)
    }
}

impl Roots {
    /// The certificates, DER-encoded.
    #[cfg(test)]
    pub fn ders(&self) -> Vec<Vec<u8>> {
        self.certs.iter().map(|cert| cert.to_vec()).collect()
    }

    /// The certificates, DER-encoded, for [`crate::transport::tls_config`].
    pub fn der_certs(&self) -> impl Iterator<Item = &[u8]> {
        self.certs.iter().map(|cert| cert.as_ref())
    }

    /// The system's certificates alone, found as [`Roots::load`] finds them; those it cannot
    /// read are left out unsaid (a file's PUT trusts these: see [`crate::upload::put`]).
    pub fn system() -> Roots {
        Roots { certs: Arc::new(rustls_native_certs::load_native_certs().certs) }
    }

    /// Reads the roots `config` needs (the system's only for an `https://` URL), and what the
    /// operator should be told about them: no system roots found, or files that could not be
    /// read. An unreadable or empty `*_ca_file` is an error.
    pub fn load(config: &Config) -> Result<(Roots, Vec<(Level, String)>), String> {
        let mut certs = Vec::new();
        let mut notes = Vec::new();
        if config.url.get(..8).is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://")) {
            let system = rustls_native_certs::load_native_certs();
            for error in &system.errors {
                notes.push((Level::Warn, format!("could not read the system's CA certificates: {error}")));
            }
            if system.certs.is_empty() {
                let set: Vec<String> = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
                    .iter()
                    .filter_map(|name| std::env::var_os(name).map(|v| format!("{name}={:?}", v.to_string_lossy())))
                    .collect();
                let whence = if set.is_empty() {
                    "in the system's usual places".to_owned()
                } else {
                    format!("in {}", set.join(" "))
                };
                let ca_file = config.profile.option("ca_file");
                let (level, consequence) = match config.ca_file {
                    Some(_) => (Level::Warn, format!("only {ca_file}'s certificates are trusted")),
                    None => (
                        Level::Error,
                        format!(
                            "the https:// webhook cannot be verified; set SSL_CERT_FILE or SSL_CERT_DIR, or {ca_file}"
                        ),
                    ),
                };
                notes.push((level, format!("no system CA certificates found {whence}: {consequence}")));
            }
            certs.extend(system.certs);
        }
        if let Some(path) = &config.ca_file {
            let option = config.profile.option("ca_file");
            let extra = std::fs::read(path).map_err(|e| format!("{option} \"{path}\" cannot be read: {e}"))?;
            let extra_certs = pem_certs(&extra);
            if extra_certs.is_empty() {
                return Err(format!("{option} \"{path}\" holds no PEM certificate"));
            }
            certs.extend(extra_certs);
        }
        Ok((Roots { certs: Arc::new(certs) }, notes))
    }
}

/// The certificates of a PEM file; anything else in it (keys, say) is skipped.
fn pem_certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem).filter_map(Result::ok).collect()
}

/// What one attempt came to, as far as retrying is concerned.
pub enum Verdict {
    /// The webhook answered (or the deadline passed): this is the stanza's outcome.
    Final(Outcome),
    /// The webhook is unreachable or its proxy says the app is down (connection failure, 502,
    /// 503, 504): worth holding the stanza and trying again, after `retry_after` if it said so.
    Unreachable(Outcome, Option<Duration>),
    /// This request's connection failed while other requests to the webhook were answered: this
    /// stanza alone tries again (a reset from a full listen backlog, say), no outage begins.
    Retry(Outcome),
    /// `429 Too Many Requests`: this stanza should wait (`Retry-After`, if given) and try again.
    RateLimited(Outcome, Option<Duration>),
    /// A `200` streamed answer: its body is read piece by piece by the worker.
    /// Never retried.
    Stream(StreamedAnswer),
}

/// A streamed answer's body, not read yet, and how it is framed.
pub struct StreamedAnswer {
    /// The answer, its body read piece by piece ([`Response::next_piece`]).
    pub body: Response,
    /// NDJSON or server-sent events.
    pub framing: Framing,
}

enum Attempt {
    Answer(HttpAnswer),
    Stream(StreamedAnswer),
    Unreachable(String),
    /// Unreachable for this request only: others were answered meanwhile.
    Unlucky(String),
    Unsendable(String),
    TimedOut(String),
    TooLarge(u64),
}

impl Attempt {
    fn into_verdict(self, incoming: &Incoming, config: &Config) -> Verdict {
        let contract = Contract::of(config);
        match self {
            Attempt::Answer(answer) => {
                let outcome = interpret(incoming, &answer, contract);
                match answer.status {
                    502..=504 => Verdict::Unreachable(outcome, answer.retry_after.filter(|_| answer.status == 503)),
                    429 => Verdict::RateLimited(outcome, answer.retry_after),
                    _ => Verdict::Final(outcome),
                }
            }
            Attempt::Stream(stream) => Verdict::Stream(stream),
            Attempt::Unreachable(why) => Verdict::Unreachable(
                Outcome::Error(CONNECTION_FAILURE, format!("could not reach the webhook: {why}")),
                None,
            ),
            Attempt::Unlucky(why) => {
                Verdict::Retry(Outcome::Error(CONNECTION_FAILURE, format!("could not reach the webhook: {why}")))
            }
            Attempt::Unsendable(why) => Verdict::Final(Outcome::Error(INTERNAL, why)),
            Attempt::TimedOut(why) => {
                Verdict::Final(Outcome::Error(TIMED_OUT, format!("webhook did not answer in time ({why})")))
            }
            Attempt::TooLarge(limit) => Verdict::Final(Outcome::Error(
                BAD_REPLY,
                format!(
                    "webhook reply refused: larger than {limit} bytes ({})",
                    config.profile.option("max_reply_size")
                ),
            )),
        }
    }
}

/// Posts once and reads the answer, all within the stanza's deadline. Also returns the HTTP
/// status, if there was a valid answer.
pub async fn post_once(endpoint: &Endpoint, config: &Config, delivery: &Delivery<'_>) -> (Verdict, Option<u16>) {
    let attempt = attempt(endpoint, config, delivery).await;
    let status = match &attempt {
        Attempt::Answer(answer) => Some(answer.status),
        Attempt::TooLarge(_) | Attempt::Stream(_) => Some(200),
        Attempt::Unreachable(_) | Attempt::Unlucky(_) => {
            // The webhook may have moved: look its name up again next time.
            endpoint.resolver.forget();
            None
        }
        Attempt::TimedOut(_) | Attempt::Unsendable(_) => None,
    };
    (attempt.into_verdict(delivery.incoming, config), status)
}

/// One of our own header names (valid: they are constants).
fn known(name: &'static str) -> HeaderName {
    HeaderName::from_bytes(name.as_bytes()).expect("a valid header name")
}

/// The request's header lines, beyond those the transport sets.
fn headers(config: &Config, delivery: &Delivery) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let value = |name: &str, value: &str| {
        HeaderValue::from_str(value).map_err(|e| format!("the {name} header cannot be sent: {e}"))
    };
    let mut headers = vec![
        (CONTENT_TYPE, HeaderValue::from_static(crate::request::content_type(config.profile.format))),
        (known(DELIVERY_HEADER), value(DELIVERY_HEADER, delivery.delivery_id)?),
        (known(RETRY_HEADER), HeaderValue::from(delivery.retry)),
    ];
    // mod_rest says the stanza's language (crate::rest::callback).
    if let Some(lang) =
        (config.profile.prefix == "rest_").then(|| crate::request::lang(&delivery.incoming.xml)).flatten()
    {
        headers.push((CONTENT_LANGUAGE, value("Content-Language", &lang)?));
    }
    if let Some(authorization) = &config.authorization {
        headers.push((AUTHORIZATION, value("Authorization", authorization)?));
    }
    for (name, text) in &config.headers {
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("the {name} header: {e}"))?;
        headers.push((header, value(name, text)?));
    }
    if let Some(secret) = &config.secret {
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0).to_string();
        let signature =
            signing::sign(secret.as_bytes(), &timestamp, delivery.delivery_id, delivery.retry, &delivery.body);
        headers.push((known(signing::TIMESTAMP_HEADER), value(signing::TIMESTAMP_HEADER, &timestamp)?));
        headers.push((known(signing::SIGNATURE_HEADER), value(signing::SIGNATURE_HEADER, &signature)?));
    }
    Ok(headers)
}

/// The path and query of a rendered URL, as the request's target.
fn path_of(url: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("the URL {url:?} cannot be sent: {e}"))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    path.parse().map_err(|e| format!("the URL {url:?} cannot be sent: {e}"))
}

async fn attempt(endpoint: &Endpoint, config: &Config, delivery: &Delivery<'_>) -> Attempt {
    let left = delivery.deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        let timeout = config.profile.option("timeout");
        return Attempt::TimedOut(if delivery.retry == 0 {
            format!("waited longer than {timeout} in the queue")
        } else {
            format!("{timeout} reached")
        });
    }
    let headers = match headers(config, delivery) {
        Ok(headers) => headers,
        Err(why) => return Attempt::Unsendable(why),
    };
    // One bound for the whole exchange, body included: every phase ends by the stanza's
    // deadline, however the webhook spreads its answer out. A stream's reads are bounded by
    // the stream's own deadline instead, once the answer turns out to be one.
    // mod_rest's URL template: the path and query may name the stanza's own values (the host
    // is the same for every stanza, and refused with a placeholder at load).
    let path = if config.profile.prefix == "rest_" && config.url.contains('{') {
        match path_of(&crate::url_template::render(&config.url, delivery.incoming)) {
            Ok(path) => Some(path),
            Err(why) => return Attempt::Unsendable(why),
        }
    } else {
        None
    };
    let request = Request { headers, body: delivery.body.clone(), deadline: delivery.deadline, path };
    let response = match endpoint.client.post(request).await {
        Ok(response) => response,
        Err(e) => return transport_error(e, config),
    };
    let status = response.status;
    let content_type = response.header("content-type").map(str::to_owned);
    let retry_after = response.header("retry-after").and_then(|v| parse_retry_after(v, SystemTime::now()));
    // A stream is read by the worker as it arrives; only the JSON contract has them (mod_rest's
    // XML answers are one stanza).
    let framing = Framing::of(content_type.as_deref()).filter(|_| config.profile.format == Format::Json);
    if let (200, Some(framing)) = (status, framing) {
        return Attempt::Stream(StreamedAnswer { body: response, framing });
    }
    // Read to the end: servers such as `php -S` send no Content-Length and close instead. Only
    // a reply is kept, and only a reply is held to max_reply_size: a 404 with a 2 MiB page is
    // still a 404 (its body is dropped, and so is the connection if the body is that long).
    let is_reply = Contract::of(config).is_reply(status, content_type.as_deref());
    let body = match response.read_to_end(config.max_reply_size, delivery.deadline).await {
        Ok(body) if is_reply => body,
        Ok(_) => Vec::new(),
        Err(Failure::TooLarge(limit)) if is_reply => return Attempt::TooLarge(limit),
        Err(Failure::TooLarge(_)) => Vec::new(),
        Err(e) => return transport_error(e, config),
    };
    Attempt::Answer(HttpAnswer { status, content_type, body, retry_after })
}

/// `Retry-After` as delta-seconds or as an HTTP date (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37
/// GMT`), as a wait from `now`. A date in the past means "now".
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = UNIX_EPOCH.checked_add(Duration::from_secs(imf_fixdate(value)?))?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Seconds since the Unix epoch of an IMF-fixdate.
fn imf_fixdate(value: &str) -> Option<u64> {
    let mut parts = value.split_ascii_whitespace();
    let (_weekday, day, month, year, time, zone) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if zone != "GMT" || parts.next().is_some() {
        return None;
    }
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let mut hms = time.split(':').map(|n| n.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if !(1..=31).contains(&day) || !(1970..=9999).contains(&year) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    // Days from civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days.checked_mul(86_400)?.checked_add(h * 3600 + m * 60 + s)?;
    u64::try_from(seconds).ok()
}

fn transport_error(error: Failure, config: &Config) -> Attempt {
    match error {
        // Not even connected within component_post_connect_timeout, with time left: the
        // webhook is down or unreachable, which is worth retrying.
        Failure::ConnectTimedOut { others_answered } => {
            let why = format!("timed out in phase connect ({})", config.profile.option("connect_timeout"));
            if others_answered {
                Attempt::Unlucky(why)
            } else {
                Attempt::Unreachable(why)
            }
        }
        Failure::TimedOut(phase) => Attempt::TimedOut(format!("timed out in phase {phase}")),
        Failure::NoAnswer { others_answered: true, .. } => Attempt::Unlucky(error.to_string()),
        // Read with no limit of its own: only `read_to_end`'s, handled by the caller.
        other => Attempt::Unreachable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_running_modules_options() {
        // Found by review: a mod_rest operator who set rest_ca_file was told about
        // component_post_ca_file.
        let mut config = Config::with_url("https://127.0.0.1:9/").unwrap();
        config.profile = crate::config::REST;
        config.ca_file = Some("/nonexistent/ca.pem".into());
        let err = Roots::load(&config).err().unwrap();
        assert!(err.starts_with("rest_ca_file \"/nonexistent/ca.pem\" cannot be read"), "{err}");
        let timed_out = Attempt::TimedOut("x".into()).into_verdict(&Incoming::sample("message", None), &config);
        let too_large = Attempt::TooLarge(9).into_verdict(&Incoming::sample("message", None), &config);
        assert!(matches!(timed_out, Verdict::Final(_)));
        assert!(matches!(too_large, Verdict::Final(Outcome::Error(_, why)) if why.contains("(rest_max_reply_size)")));
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:51:37 GMT", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(imf_fixdate("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(imf_fixdate("Tue, 29 Feb 2028 12:00:00 GMT"), Some(1_835_438_400));
        for bad in [
            "soon",
            "-1",
            "Sun, 06 Nov 1994 08:49:37 PST",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:00:00 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }
}
