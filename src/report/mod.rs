//! Status, progress display, exports, run summaries and the migration report.

pub mod activity;
pub mod charts;
pub mod export;
pub mod hints;
pub mod html;
pub mod limits;
pub mod model;
pub mod progress;
pub mod terminal;
pub mod text;
pub mod timeline;
