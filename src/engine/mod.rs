//! The drain engine: dispatcher, workers, rate limiting, retry schedule and shutdown.
