//! A local Kapture stand-in with fault injection, used by `simulate`, `demo` and the tests.
//!
//! It serves Update Ticket and Get Ticket as DESIGN.md describes them, keeps tickets in memory,
//! injects seeded faults, and records every update request in a ledger so tests can prove that
//! no row was lost or applied twice.

mod api;
mod config;
mod ledger;
mod server;
mod ticket;

pub use api::digest;
pub use config::{DEFAULT_HANG_FOR, Latency, SimConfig, SimError};
pub use ledger::{LedgerEntry, SimStats};
pub use server::{SimHandle, Simulator};
