//! Status, progress display, exports and run summaries.
