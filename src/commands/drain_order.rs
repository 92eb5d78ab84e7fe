//! Which runs a drain sends, oldest first: shared by `run`, `sync` and their dry runs.

use crate::store::{Run, Store};

/// The runs to drain to send `run`: the runs holding earlier open rows of its tickets (and
/// those theirs wait on), oldest first, then `run` itself. A row is never sent while an
/// earlier row of its ticket in any run is pending or in flight, so `run --run NAME` sends
/// those earlier rows too rather than wait for them forever; it says so on stderr.
pub async fn with_earlier_runs(store: &Store, run: Run) -> anyhow::Result<Vec<Run>> {
    let mut runs = vec![run];
    let mut next = 0;
    while next < runs.len() {
        let waiting = runs[next].clone();
        next += 1;
        for (holder, rows) in store.runs_holding_earlier_rows(waiting.id).await? {
            if runs.iter().any(|r| r.id == holder.id) {
                continue;
            }
            tracing::warn!(
                "{rows} rows of run {} wait on earlier rows of their tickets in run {}: \
                 sending those first",
                waiting.name,
                holder.name
            );
            runs.push(holder);
        }
    }
    // Oldest first: the order `open_runs` gives, restricted to these runs.
    let order = store.open_runs().await?;
    runs.sort_by_key(|r| {
        order
            .iter()
            .position(|o| o.id == r.id)
            .unwrap_or(usize::MAX)
    });
    Ok(runs)
}

/// The runs a `sync` into `run` drains: every run with rows pending or in flight, oldest
/// open row first, so the leftovers of a stopped night are sent before the new one; `run`
/// is among them (last when it holds nothing older).
pub async fn sync_runs(store: &Store, run: Run) -> anyhow::Result<Vec<Run>> {
    let mut runs = store.open_runs().await?;
    if !runs.iter().any(|r| r.id == run.id) {
        runs.push(run);
    }
    Ok(runs)
}
