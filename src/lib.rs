//! kapsync moves ticket updates from CSV and JSONL files into Kapture CRM, durably.
//!
//! Files are ingested into a SQLite job table ([`store`], [`ingest`]), drained through a
//! rate-limited pool of workers ([`engine`]) that talk to Kapture's Update Ticket API
//! ([`kapture`]), and every row's outcome and every attempt is recorded so a run can resume
//! after any crash. [`simulator`] is a local Kapture stand-in for rehearsals and tests.
//!
//! The binary in `main.rs` only parses arguments and calls [`commands::dispatch`].

pub mod cli;
pub mod commands;
pub mod config;
pub mod engine;
pub mod exit;
pub mod ingest;
pub mod kapture;
pub mod logging;
pub mod quote;
pub mod report;
pub mod roundtrip;
pub mod simulator;
pub mod store;
pub mod toml_error;
