//! Integration tests: the Kapture client and the simulator over real HTTP, in one binary.

mod kapture;
mod simulator;
mod support;
