//! Whether a message body names the bot: its nick in that room, as a word, in any case.
//!
//! "As a word" means the text around the nick does not continue it: `@Bot,`, `bot:` and
//! `hey bot!` mention `bot`, `robot` and `bots` do not. Only a nick's edge that is itself a word
//! character needs a boundary, so nicks with spaces and punctuation (`Help Bot`, `bot.v2`,
//! `C++`) are found as written.

/// Whether `body` mentions `nick`.
pub fn mentions(body: &str, nick: &str) -> bool {
    let nick = fold(nick);
    if nick.is_empty() {
        return false;
    }
    let body = fold(body);
    let needs_boundary_before = nick.chars().next().is_some_and(is_word_char);
    let needs_boundary_after = nick.chars().next_back().is_some_and(is_word_char);
    body.match_indices(&nick).any(|(at, found)| {
        let before = body[..at].chars().next_back();
        let after = body[at + found.len()..].chars().next();
        (!needs_boundary_before || !before.is_some_and(is_word_char))
            && (!needs_boundary_after || !after.is_some_and(is_word_char))
    })
}

/// Lowercase (Unicode-aware), with the Greek final sigma made ordinary (Rust lowercases `Σ` at
/// the end of a word to `ς` and elsewhere to `σ`, so `ΒΟΤΣ` in a nick and `βοτσ…` in a body
/// would otherwise differ), and every run of white space one space: `Help  Bot` typed twice
/// spaced, or with the no-break space some clients complete nicks with, is still `Help Bot`.
fn fold(text: &str) -> String {
    let mut folded = String::with_capacity(text.len());
    for word in text.to_lowercase().split(char::is_whitespace).filter(|w| !w.is_empty()) {
        if !folded.is_empty() {
            folded.push(' ');
        }
        folded.push_str(word);
    }
    // Leading and trailing space only ever separate words, so dropping them changes no match.
    folded.replace('ς', "σ")
}

/// Letters, digits, `_`, and combining marks (an accent written after a letter continues the
/// word: `boté` spelled with U+0301 is not `bot`).
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
        || c == '_'
        || matches!(c, '\u{0300}'..='\u{036F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}' | '\u{20D0}'..='\u{20FF}' | '\u{FE20}'..='\u{FE2F}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_in_any_case_and_any_punctuation() {
        for body in [
            "bot",
            "@Bot, what time is it?",
            "bot: help",
            "hey bot!",
            "BOT",
            "Hey (bot)",
            "ask the bot's opinion",
            "line one\nbot\nline three",
            "«bot»",
            "bot-like? no: bot",
        ] {
            assert!(mentions(body, "bot"), "{body:?}");
        }
    }

    #[test]
    fn not_inside_another_word() {
        for body in ["robot", "bots", "I like robots", "bot_2", "bot2", "über-robot", "abbot", "", "b o t", "bo t"] {
            assert!(!mentions(body, "bot"), "{body:?}");
        }
    }

    #[test]
    fn a_later_occurrence_counts_when_the_first_does_not() {
        assert!(mentions("robots love bot", "bot"));
        assert!(!mentions("robots love bots", "bot"));
    }

    #[test]
    fn nicks_with_spaces_and_punctuation() {
        assert!(mentions("Thanks, help bot.", "Help Bot"));
        assert!(!mentions("help botany", "Help Bot"));
        assert!(!mentions("help", "Help Bot"));
        assert!(mentions("ask bot.v2 please", "bot.v2"));
        assert!(mentions("bot.v2?", "bot.v2"));
        assert!(!mentions("bot.v20", "bot.v2"));
        assert!(!mentions("ask bot please", "bot.v2"));
        assert!(mentions("what does c++ think?", "C++"));
        assert!(mentions("C++: compile this", "C++"));
        assert!(!mentions("abc++", "C++"));
        assert!(!mentions("c+", "C++"));
        assert!(mentions("[ops] deploy", "[ops]"));
        assert!(mentions("thanks help  bot", "Help Bot"));
        assert!(mentions("thanks help\u{A0}bot", "Help Bot"));
        assert!(mentions("thanks help\nbot", "Help Bot"));
        assert!(mentions("ping @alerts!", "@alerts"));
    }

    #[test]
    fn unicode_case_and_letters() {
        assert!(mentions("ÉCLAIR, are you there?", "éclair"));
        assert!(mentions("привет, БОТ", "бот"));
        assert!(!mentions("роботы", "бот"));
        assert!(mentions("ΒΟΤΣ ping", "βοτσ"));
        assert!(mentions("ping βοτς", "ΒΟΤΣ"));
        assert!(mentions("ping 助手。", "助手"));
        assert!(!mentions("bote\u{301}", "bote"));
        assert!(!mentions("botán", "bot"));
    }

    #[test]
    fn an_empty_nick_is_never_mentioned() {
        assert!(!mentions("anything", ""));
    }
}
