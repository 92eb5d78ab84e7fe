//! The workers: take a chain of claimed rows, wait for the rate limiter, send its first row,
//! and apply the decision; the writer queues the rest once that row's success is stored.
//!
//! Workers only report: each outcome goes to the writer on a channel. [`Shared::apply`] is the
//! one place where an answer changes the rate, halts the run, counts an error and sets the
//! row's next state, all from the [`Decision`] that [`decide`] returns.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::canary::Canary;
use super::decide::{ConfigCheck, Decision, Due, Feedback, Policy, Step, decide};
use super::events::{EngineConfig, ErrorTally, Halt, TestPanic, lock};
use super::policy::RateControl;
use super::queue::{Chain, Taker, unsent};
use super::reach::Reach;
use super::writer::Done;
use crate::kapture::{Class, Client, Reply};
use crate::store::{AttemptRecord, Claimed, Next, Outcome, now_ms};

/// What the workers share, and what the drain reads from them when it ends.
pub(super) struct Shared {
    /// The run being drained, named in the hints of the engine's messages.
    pub run: String,
    pub client: Client,
    pub rate: Arc<RateControl>,
    pub config: EngineConfig,
    pub policy: Policy,
    /// Cancelled on a graceful stop, a halt or a failure: no request starts after it.
    pub stop_sending: CancellationToken,
    pub halt: Mutex<Option<Halt>>,
    pub config_check: Mutex<ConfigCheck>,
    pub results: mpsc::UnboundedSender<Done>,
    pub requests: Arc<AtomicU64>,
    /// Requests being sent (or waiting for the rate limiter) right now.
    pub sending: AtomicUsize,
    pub errors: Mutex<ErrorTally>,
    pub test_panic: TestPanic,
    /// Whether Kapture can be reached; every request passes it first.
    pub reach: Reach,
    pub canary: Mutex<Canary>,
    /// Rows a canary halt failed before it tripped: the drain puts them back to pending.
    pub canary_rows: Mutex<Vec<i64>>,
}

impl Shared {
    pub fn new(
        run: String,
        client: Client,
        config: EngineConfig,
        stop_sending: CancellationToken,
        results: mpsc::UnboundedSender<Done>,
        test_panic: TestPanic,
    ) -> Shared {
        let (unreachable_timeout, canary) = (config.unreachable_timeout, config.canary);
        Shared {
            run,
            client,
            rate: Arc::new(RateControl::new(
                config.rate,
                config.burst,
                config.throttle_cap,
            )),
            policy: Policy {
                max_attempts: config.max_attempts,
            },
            config,
            stop_sending,
            halt: Mutex::new(None),
            config_check: Mutex::new(ConfigCheck::default()),
            results,
            requests: Arc::new(AtomicU64::new(0)),
            sending: AtomicUsize::new(0),
            errors: Mutex::new(ErrorTally::default()),
            test_panic,
            reach: Reach::new(unreachable_timeout),
            canary: Mutex::new(Canary::new(canary)),
            canary_rows: Mutex::new(Vec::new()),
        }
    }

    /// Halts the run: the first halt is kept, and no request starts after it.
    pub fn halt(&self, halt: Halt) {
        let mut slot = lock(&self.halt);
        if slot.is_none() {
            match halt.next_step(&self.config.hint_prefix, &self.run) {
                Some(step) => tracing::error!("halting: {halt} ({step})"),
                None => tracing::error!("halting: {halt}"),
            }
            *slot = Some(halt);
        }
        self.stop_sending.cancel();
    }

    /// Turns a reply into the row's outcome and applies what else the answer means.
    fn apply(&self, row: &Claimed, mut reply: Reply, started_ms: i64) -> Outcome {
        let now = now_ms();
        let status = reply.http_status;
        let attempt = u32::try_from(row.attempt).unwrap_or(u32::MAX);
        let record = AttemptRecord {
            attempt: row.attempt,
            started_ms,
            duration_ms: reply.elapsed.as_millis() as i64,
            http_status: status,
            class: reply.class.as_str(),
            in_doubt: reply.class == Class::TransientInDoubt,
            // A success's body is the ticket snapshot, kept whole on the row: no second copy.
            excerpt: if reply.class == Class::Success {
                String::new()
            } else {
                std::mem::take(&mut reply.excerpt)
            },
        };
        let class = reply.class;
        let Decision {
            step,
            feedback,
            mut halt,
            error,
            check: _,
        } = {
            let mut check = lock(&self.config_check);
            let decision = decide(reply, attempt, &self.policy, *check);
            *check = decision.check;
            decision
        };
        let step = self.watch_canary(row.id, class, step, &mut halt);
        if feedback == Feedback::Unreached {
            if let (Some(down), Step::Requeue { message, .. }) =
                (self.reach.on_unreached(step_message(&step)), &step)
            {
                halt.get_or_insert(Halt::Unreachable {
                    waited_secs: down.as_secs(),
                    message: ErrorTally::short(message),
                });
            }
        } else {
            self.reach.on_reached();
        }
        let pause = match feedback {
            Feedback::Accepted => {
                self.rate.on_accepted();
                Duration::ZERO
            }
            Feedback::Throttled { retry_after } => self
                .rate
                .on_throttled(retry_after, self.config.retry.delay(attempt)),
            Feedback::Nothing | Feedback::Unreached => Duration::ZERO,
        };
        if let Some((class, short)) = error {
            lock(&self.errors).note(class, short);
        }
        if let Some(halt) = halt {
            self.halt(halt);
        }
        let later = |wait: Duration| now + wait.as_millis() as i64;
        let next = match step {
            Step::Succeeded { ticket } => Next::Succeeded {
                response: ticket.map(|t| t.to_string()),
            },
            Step::Failed { class, message } => Next::Failed {
                class: class.into(),
                message,
            },
            Step::Retry { class, message } => Next::Retry {
                at_ms: later(self.config.retry.delay(attempt)),
                class: class.into(),
                message,
            },
            Step::Requeue {
                due,
                class,
                message,
            } => Next::Requeue {
                at_ms: match due {
                    Due::Now => 0,
                    Due::AfterPause => later(pause),
                },
                class: Some(class.into()),
                message: Some(message),
            },
        };
        Outcome {
            job_id: row.id,
            http_status: status,
            next,
            attempt: Some(record),
        }
    }
}

impl Shared {
    /// Feeds the canary a processed answer. Once it trips, the run halts and rejected rows go
    /// back to `pending` instead of failing: the ones before the trip through
    /// [`Shared::canary_rows`], this one and later ones here.
    fn watch_canary(&self, job_id: i64, class: Class, step: Step, halt: &mut Option<Halt>) -> Step {
        let rejection = match &step {
            Step::Failed {
                class: "rejected",
                message,
            } => Some(message.as_str()),
            Step::Succeeded { .. } if class == Class::Success => None,
            _ => return step,
        };
        let mut canary = lock(&self.canary);
        if let Some(trip) = canary.observe(job_id, rejection) {
            lock(&self.canary_rows).extend(trip.earlier);
            halt.get_or_insert(Halt::Canary {
                rows: trip.rows,
                message: ErrorTally::short(&trip.message),
            });
        }
        match step {
            Step::Failed {
                class: "rejected",
                message,
            } if canary.tripped() => Step::Requeue {
                due: Due::Now,
                class: "rejected",
                message,
            },
            other => other,
        }
    }
}

/// The message a step carries, for a log line.
fn step_message(step: &Step) -> &str {
    match step {
        Step::Failed { message, .. }
        | Step::Retry { message, .. }
        | Step::Requeue { message, .. } => message,
        Step::Succeeded { .. } => "",
    }
}

/// Sends one row when the rate allows, unless sending has stopped: then it goes back unsent.
async fn send_one(row: Claimed, shared: &Shared) -> Outcome {
    tokio::select! {
        biased;
        () = shared.stop_sending.cancelled() => return unsent(&row),
        () = async {
            shared.reach.ready().await;
            shared.rate.ready().await;
        } => {}
    }
    if shared.stop_sending.is_cancelled() {
        return unsent(&row);
    }
    let started = now_ms();
    let sent_before = shared.requests.fetch_add(1, Ordering::Relaxed);
    let reply = shared.client.update_ticket(&row.payload).await;
    if sent_before == 0 {
        shared.test_panic.fire_at(TestPanic::Worker);
    }
    shared.apply(&row, reply, started)
}

/// The rows of a chain not yet sent: whatever ends the chain (an answer that is not a
/// success, a stop, the worker aborted mid-request) puts them back to `pending` unsent when
/// this is dropped. Due at once, they wait behind the row that ended the chain as any row
/// waits behind an open row of its ticket (the claim parks them until it finishes).
struct Rest {
    rows: std::vec::IntoIter<Claimed>,
    results: mpsc::UnboundedSender<Done>,
}

impl Drop for Rest {
    fn drop(&mut self) {
        for row in self.rows.by_ref() {
            let _ = self.results.send(unsent(&row).into());
        }
    }
}

/// Sends a chain's first row. On success the rest of the chain goes to the writer with the
/// outcome, which queues it again once that outcome is stored: a row is never sent before the
/// success of the row before it is committed, so a crash replays a ticket's rows as `A, A, B`,
/// never `A, B, A`. Otherwise the rest goes back unsent.
async fn send_chain(chain: Chain, shared: &Shared) {
    let mut rest = Rest {
        rows: chain.into_iter(),
        results: shared.results.clone(),
    };
    let Some(row) = rest.rows.next() else {
        return;
    };
    shared.sending.fetch_add(1, Ordering::Relaxed);
    let outcome = send_one(row, shared).await;
    shared.sending.fetch_sub(1, Ordering::Relaxed);
    let then = if matches!(outcome.next, Next::Succeeded { .. }) {
        rest.rows.by_ref().collect()
    } else {
        Vec::new()
    };
    let _ = shared.results.send(Done { outcome, then });
}

/// A long-lived worker: takes chains from the queue and sends their first rows, until the
/// dispatcher is done. Once sending has stopped, the rows still queued go back unsent.
pub(super) async fn worker(shared: Arc<Shared>, queue: Taker) {
    while let Some(chain) = queue.next().await {
        send_chain(chain, &shared).await;
    }
}
