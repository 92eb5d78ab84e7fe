//! Status, progress display, exports and run summaries.

pub mod progress;
pub mod text;
