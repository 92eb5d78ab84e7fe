//! Talking to Kapture: the target URL, the secret token, requests and response classification.

mod classify;
mod client;
mod confirm;
mod redact;
mod target;
mod token;

pub use classify::{Answer, Class, Unreached, classify, excerpt, parse_retry_after};
pub use client::{Client, ClientError, DEFAULT_TIMEOUT_SECS, Reply};
pub use confirm::{SUCCESS_MESSAGE, against_sent, confirmation, confirmed};
pub use redact::{MAX_STORED_MESSAGE, MAX_STORED_TICKET, TOKEN_MARK, cap_text};
pub use target::{Target, TargetError};
pub(crate) use token::strip_basic;
pub use token::{TOKEN_ENV, Token, TokenError};

/// The fields of Kapture's Update Ticket body that kapsync knows by name.
pub const KAPTURE_FIELDS: [&str; 6] = [
    "ticket_id",
    "sub_status",
    "comment",
    "callback_time",
    "queue",
    "disposition",
];

/// Path of the Update Ticket API, below the target's base URL.
pub const UPDATE_TICKET_PATH: &str = "/update-ticket-from-other-source.html/v.2.0";
/// Path of the Get Ticket API, below the target's base URL.
pub const GET_TICKET_PATH: &str = "/search-ticket-by-ticket-id.html/v.2.0";
/// Most ticket ids one Get Ticket request may name.
pub const MAX_GET_TICKET_IDS: usize = 50;
/// Largest excerpt of a response body kept for the attempts log, in bytes.
pub const EXCERPT_BYTES: usize = 512;
