//! A local Kapture stand-in with fault injection, used by `simulate`, `demo` and the tests.
