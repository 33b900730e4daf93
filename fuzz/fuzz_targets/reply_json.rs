//! The webhook reply parser: any body, as a 200 application/json answer to a message or an iq,
//! must end in an outcome without panicking, and a reply must be a sendable stanza.
#![no_main]

use component_http_native::response::{complete, interpret, jid_domain, HttpAnswer, Outcome};
use component_http_native::stanza::Incoming;
use component_http_native::xml::{parse_stanza, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for (name, stanza_type) in [("message", "chat"), ("iq", "get")] {
        let orig = Incoming {
            name: name.into(),
            to: Some("echo@bot.localhost".into()),
            from: Some("user@localhost/r".into()),
            id: Some("x".into()),
            stanza_type: Some(stanza_type.into()),
            xml: String::new(),
            body: None,
            chat_states: false,
        };
        let answer = HttpAnswer {
            status: 200,
            content_type: Some("application/json".into()),
            body: data.to_vec(),
            retry_after: None,
        };
        let outcome = interpret(&orig, &answer);
        let is_reply = matches!(outcome, Outcome::Reply(_));
        let completion = complete(&orig, outcome);
        if let Some(stanza) = completion.send {
            assert!(matches!(stanza.name.as_str(), "message" | "presence" | "iq"));
            if is_reply {
                let from = stanza.attr("from").expect("replies have a from");
                assert!(jid_domain(from).eq_ignore_ascii_case("bot.localhost"), "reply from {from}");
            }
            parse_stanza(&stanza.to_xml(), Limits::default()).expect("a sent stanza serializes to valid XML");
        }
    }
});
