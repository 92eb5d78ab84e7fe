//! Integration tests: the real binary and the library against real SQLite files and the
//! built-in simulator over loopback.

mod ingest;
mod support;
