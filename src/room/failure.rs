//! Why the bot is not in a room: what each refusal of a room means for rejoining (retry later,
//! or not until the module reloads) and for a push waiting on the room (its HTTP status).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
/// Why the bot is not in a room.
pub enum Failure {
    /// Status 301, or `forbidden` on join: the bot's JID is an outcast.
    Banned,
    /// Status 307.
    Kicked,
    /// Status 321: our affiliation was taken away in a members-only room.
    Removed,
    /// Status 322, or `registration-required` on join: the room admits members only.
    MembersOnly,
    /// `not-authorized` on join: the room has a password.
    PasswordRequired,
    /// `not-allowed`: the service does not let us create the room (`restrict_room_creation`),
    /// or refuses the nick.
    NotAllowed,
    /// `jid-malformed`: the nick fails the room's validation.
    BadNick,
    /// `item-not-found` or `gone`: no such room (a locked or destroyed one looks the same).
    NoSuchRoom,
    /// Every nick we tried (`Nick`, `Nick_2`, …) is taken.
    NickTaken,
    /// The room did not answer a join in time, or the server could not reach it
    /// (`remote-server-not-found`, `remote-server-timeout`, `service-unavailable`).
    NoAnswer,
    /// Status 332: the room's service is shutting down.
    Shutdown,
    /// We were dropped without being told why: status 333 (an error of ours was bounced into the
    /// room), an unavailable self-presence we did not ask for, a failed self-ping.
    Dropped,
    /// Any other error condition.
    Other(String),
}

impl Failure {
    /// The failure an error condition on a join means.
    pub fn of_condition(condition: &str) -> Failure {
        match condition {
            "forbidden" => Failure::Banned,
            "registration-required" => Failure::MembersOnly,
            "not-authorized" => Failure::PasswordRequired,
            "not-allowed" => Failure::NotAllowed,
            "jid-malformed" => Failure::BadNick,
            "item-not-found" | "gone" => Failure::NoSuchRoom,
            "conflict" => Failure::NickTaken,
            "remote-server-not-found" | "remote-server-timeout" | "service-unavailable" => Failure::NoAnswer,
            other => Failure::Other(other.to_owned()),
        }
    }

    /// The failure an unavailable self-presence means, from its status codes; `None` when it
    /// carries none of them (an unavailable we did not ask for is [`Failure::Dropped`]).
    pub fn of_status_codes(codes: &[u16]) -> Option<Failure> {
        [
            (301, Failure::Banned),
            (307, Failure::Kicked),
            (321, Failure::Removed),
            (322, Failure::MembersOnly),
            (332, Failure::Shutdown),
            (333, Failure::Dropped),
        ]
        .into_iter()
        .find(|(code, _)| codes.contains(code))
        .map(|(_, failure)| failure)
    }

    /// Whether the room would refuse us again whatever the wait: then we stay out until the
    /// module reloads (or the operator changes the room), never retrying in a loop.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Failure::Banned
                | Failure::Kicked
                | Failure::Removed
                | Failure::MembersOnly
                | Failure::PasswordRequired
                | Failure::NotAllowed
                | Failure::BadNick
        )
    }

    /// The HTTP status a push to the room is answered with.
    pub fn push_status(&self) -> u16 {
        if self.is_final() {
            return 403; // the room will refuse the bot again: not allowed
        }
        match self {
            Failure::NoSuchRoom => 404,
            Failure::NickTaken => 409,
            Failure::NoAnswer | Failure::Shutdown | Failure::Dropped => 504,
            // The room answered, but with something we have no better status for.
            _ => 502,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Banned => f.write_str("the bot is banned from the room"),
            Failure::Kicked => f.write_str("the bot was kicked from the room"),
            Failure::Removed => f.write_str("the bot is no longer a member of the room"),
            Failure::MembersOnly => f.write_str("the room is members-only and the bot is not a member"),
            Failure::PasswordRequired => f.write_str("the room requires a password"),
            Failure::NotAllowed => f.write_str("the service does not allow the bot to join or create the room"),
            Failure::BadNick => f.write_str("the room refuses the nick"),
            Failure::NoSuchRoom => f.write_str("the room does not exist"),
            Failure::NickTaken => f.write_str("the nick is taken"),
            Failure::NoAnswer => f.write_str("no answer from the room"),
            Failure::Shutdown => f.write_str("the room's service is shutting down"),
            Failure::Dropped => f.write_str("the bot was dropped from the room"),
            Failure::Other(condition) => write!(f, "the room answered {condition}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_and_codes() {
        assert_eq!(Failure::of_condition("conflict"), Failure::NickTaken);
        assert_eq!(Failure::of_condition("forbidden").push_status(), 403);
        assert_eq!(Failure::of_condition("not-authorized"), Failure::PasswordRequired);
        assert_eq!(Failure::of_condition("registration-required"), Failure::MembersOnly);
        assert_eq!(Failure::of_condition("item-not-found").push_status(), 404);
        assert_eq!(Failure::of_condition("remote-server-timeout").push_status(), 504);
        assert_eq!(Failure::of_condition("bad-request"), Failure::Other("bad-request".into()));
        assert_eq!(Failure::of_status_codes(&[110, 301]), Some(Failure::Banned));
        assert_eq!(Failure::of_status_codes(&[307, 110]), Some(Failure::Kicked));
        assert_eq!(Failure::of_status_codes(&[332]), Some(Failure::Shutdown));
        assert_eq!(Failure::of_status_codes(&[110]), None);
    }

    #[test]
    fn only_refusals_that_would_repeat_are_final() {
        for failure in [Failure::Banned, Failure::Kicked, Failure::PasswordRequired, Failure::MembersOnly] {
            assert!(failure.is_final(), "{failure}");
        }
        for failure in [Failure::NoSuchRoom, Failure::NoAnswer, Failure::Shutdown, Failure::Dropped, Failure::NickTaken]
        {
            assert!(!failure.is_final(), "{failure}");
        }
    }
}
