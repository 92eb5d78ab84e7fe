//! A local Kapture stand-in with fault injection, used by `simulate`, `demo` and the tests.
//!
//! It serves Update Ticket and Get Ticket as DESIGN.md describes them, keeps tickets in memory,
//! injects seeded faults, and records every update request in a ledger so tests can prove that
//! no row was lost or applied twice.

mod api;
mod config;
mod ledger;
mod request;
mod response;
mod server;
mod ticket;

pub use config::{
    DEFAULT_HANG_FOR, DEFAULT_SIM_BIND, DEFAULT_SIM_PORT, DEFAULT_SUB_STATUSES, Latency, SimConfig,
    SimError, split_list,
};
pub use ledger::{LedgerEntry, SimStats};
pub use request::digest;
pub use server::{SimHandle, Simulator};
