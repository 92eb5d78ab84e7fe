//! The thread the store's side of a drain (claims, results) runs on, started by the command.
//!
//! A claim is several round trips to SQLite's thread; queued behind thousands of request tasks
//! on the caller's runtime, each of them waited long enough for the workers to run dry. So the
//! dispatcher and the writer get a runtime of their own, one thread, which the command starts
//! and hands to every drain it runs.

use tokio::runtime::{Builder, Handle, Runtime};

/// A one-thread runtime for the store's side of the drains; stopped when dropped.
#[derive(Debug)]
pub struct StoreThread {
    runtime: Option<Runtime>,
}

impl StoreThread {
    /// Starts the thread. Should that fail, the drains share the caller's runtime.
    pub fn start() -> StoreThread {
        let runtime = Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kapsync-store")
            .enable_all()
            .build()
            .inspect_err(|error| {
                tracing::warn!(
                    "failed to start the store thread, sharing the request thread: {error}"
                )
            })
            .ok();
        StoreThread { runtime }
    }

    /// The handle to spawn the store's side on. Must be called inside a tokio runtime.
    pub fn handle(&self) -> Handle {
        match &self.runtime {
            Some(runtime) => runtime.handle().clone(),
            None => Handle::current(),
        }
    }
}

impl Drop for StoreThread {
    fn drop(&mut self) {
        // Dropped inside the caller's runtime: a blocking shutdown is not allowed there.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
