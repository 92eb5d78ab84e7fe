//! Integration tests: the real binary and the library against real SQLite files, the built-in
//! simulator and scripted servers over loopback, in one test binary.

mod chains;
mod cli;
mod corpus;
mod delta;
mod engine;
mod export;
mod ingest;
mod kapture;
mod layout;
mod nightly;
mod reliability;
mod report;
mod runs;
mod security;
mod shapes;
mod simulator;
mod snapshots;
mod support;
