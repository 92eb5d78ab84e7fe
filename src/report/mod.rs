//! Status, progress display, exports and run summaries.

pub mod activity;
pub mod export;
pub mod progress;
pub mod terminal;
pub mod text;
