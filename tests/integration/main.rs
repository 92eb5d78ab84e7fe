//! Integration tests: the real binary and the library against real SQLite files, the built-in
//! simulator and scripted servers over loopback, in one test binary.

mod corpus;
mod ingest;
mod kapture;
mod simulator;
mod support;
