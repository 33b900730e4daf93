//! Group chat rooms (XEP-0045): which rooms to be in, what a room message means, and where a
//! reply to one goes. Owned state and pure functions only; the Lua shim does the sending.
//! (How to wire it: see below, written once the API settles.)

pub mod mention;
pub mod options;

pub use mention::mentions;
pub use options::{ConfiguredRoom, GroupchatMode, RoomOptions};
