//! The webhook reply handling: any body, as a 200 application/json answer to a message and to
//! an iq get, must end in an outcome without panicking, and what is sent (a file's caption too)
//! must be a stanza the policy allows: from the component's host, not to it, with prepared
//! JIDs, as XML an independent namespace-aware parser accepts.
#![no_main]

use component_http_native::answer::{interpret, Contract, HttpAnswer};
use component_http_native::config::Format;
use component_http_native::jid;
use component_http_native::jsonmap::Profile;
use component_http_native::outcome::{complete, take_after, Outcome};
use component_http_native::stanza::Incoming;
use libfuzzer_sys::fuzz_target;

const HOST: &str = "bot.localhost";

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
            receipt_request: false,
            room: None,
        };
        let answer = HttpAnswer {
            status: 200,
            content_type: Some("application/json".into()),
            body: data.to_vec(),
            retry_after: None,
        };
        let mut outcome =
            interpret(&orig, &answer, Contract { format: Format::Json, host: HOST, profile: Profile::ComponentHttp });
        let is_reply = matches!(outcome, Outcome::Reply(_));
        // What goes out right after the reply (a file's caption, say) is held to the same rules.
        let after = take_after(&orig, &mut outcome);
        let completion = complete(&orig, outcome);
        for stanza in completion.send.into_iter().chain(after) {
            assert!(matches!(stanza.name.as_str(), "message" | "presence" | "iq"));
            if is_reply {
                let from = jid::prep(stanza.attr("from").expect("replies have a from")).expect("a valid from");
                let to = jid::prep(stanza.attr("to").expect("replies have a to")).expect("a valid to");
                assert_eq!(from.domain, HOST, "a reply from {from}");
                assert_ne!(to.domain, HOST, "a reply to {to}");
            }
            let written = stanza.to_xml();
            if let Err(e) = roxmltree::Document::parse(&written) {
                panic!("sent {written:?}, which a namespace-aware parser refuses: {e}");
            }
        }
    }
});
