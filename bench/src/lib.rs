//! Shared pieces of the mod_component_http benchmark: the XMPP client, the
//! closed-loop load generator and /proc sampling. See README.md.

pub mod loadgen;
pub mod procstat;
pub mod xmpp;
