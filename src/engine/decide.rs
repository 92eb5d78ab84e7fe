//! The next-state decision: what one classified answer means for its row, the rate and the run.
//!
//! [`decide`] is pure: it takes the answer, the attempt number, the policy and the wrong-target
//! check, and returns a [`Decision`] value; the worker applies it in one place
//! (`worker::Shared::apply`). A new kind of answer is a new match arm here plus, when it needs
//! a new effect, a new variant of [`Step`], [`Feedback`] or [`Halt`].

use std::time::Duration;

use serde_json::Value;

use super::events::{ErrorTally, Halt};
use crate::kapture::{Class, Reply, Unreached};

/// Answers before any success that mean the target is wrong, not the rows: 404/405, 501,
/// pages that are not Kapture's JSON, a host that does not resolve.
const CONFIG_STREAK_BEFORE_SUCCESS: u32 = 3;
/// 404/405 answers in a row, after successes, that halt the run.
const CONFIG_STREAK: u32 = 10;

/// What the decision needs from the run's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Policy {
    /// Attempts per row before a passing failure fails it for good.
    pub max_attempts: u32,
}

/// Tells a wrong target (every answer 404/405) from rows Kapture rejects one by one: the
/// state carried from one answer to the next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ConfigCheck {
    pub successes: u64,
    /// 404/405 answers since the last other answer.
    pub streak: u32,
}

/// When a row that goes back to `pending` is due again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Due {
    /// At once (it waits behind the halt or stop that sent it back).
    Now,
    /// When the run-wide pause that this answer's [`Feedback`] starts is over.
    AfterPause,
}

/// What happens to the row.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Step {
    /// Applied: keep the ticket snapshot.
    Succeeded { ticket: Option<Value> },
    /// Failed for good.
    Failed {
        class: &'static str,
        message: String,
    },
    /// Sent again after the retry backoff; the attempt counts.
    Retry {
        class: &'static str,
        message: String,
    },
    /// Back to `pending` without charging the attempt.
    Requeue {
        due: Due,
        class: &'static str,
        message: String,
    },
}

/// What the answer tells the rate control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Feedback {
    /// An answer that was not a 429: counts toward the accepted rate.
    Accepted,
    /// A 429: pause the whole run and slow down.
    Throttled { retry_after: Option<Duration> },
    /// The request never reached the server: pause the whole run and probe.
    Unreached,
    /// Nothing to tell (the run halts anyway).
    Nothing,
}

/// Everything one answer changes, as values.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Decision {
    pub step: Step,
    pub feedback: Feedback,
    /// Halt the whole run.
    pub halt: Option<Halt>,
    /// Count this error in the summary: class and shortened message.
    pub error: Option<(&'static str, String)>,
    /// The wrong-target check after this answer.
    pub check: ConfigCheck,
}

/// Decides what a classified answer to the `attempt`-th send (1-based) of a row means.
pub(super) fn decide(reply: Reply, attempt: u32, policy: &Policy, check: ConfigCheck) -> Decision {
    let Reply {
        class,
        http_status: status,
        message,
        ticket,
        unreached,
        ..
    } = reply;
    // Only failures need a message: a success allocates nothing here.
    let text = move || {
        message.unwrap_or_else(|| match status {
            Some(s) => format!("HTTP {s}"),
            None => "no answer".to_owned(),
        })
    };
    let name = class.as_str();
    let noted = |message: &str| Some((name, ErrorTally::short(message)));
    match class {
        Class::Success => Decision {
            step: Step::Succeeded { ticket },
            feedback: Feedback::Accepted,
            halt: None,
            error: None,
            check: ConfigCheck {
                successes: check.successes + 1,
                streak: 0,
            },
        },
        Class::Rejected if matches!(status, Some(404 | 405)) => {
            let message = text();
            let error = noted(&message);
            // A wrong subdomain or path answers every row like this: before any success a
            // short streak halts the run and puts the rows back; after successes a long one.
            let streak = check.streak + 1;
            let suspect = check.successes == 0;
            let limit = if suspect {
                CONFIG_STREAK_BEFORE_SUCCESS
            } else {
                CONFIG_STREAK
            };
            let halt = (streak >= limit).then(|| Halt::Config {
                http_status: status.unwrap_or(404),
                message: message.clone(),
            });
            let step = if suspect {
                Step::Requeue {
                    due: Due::Now,
                    class: name,
                    message,
                }
            } else {
                Step::Failed {
                    class: name,
                    message,
                }
            };
            Decision {
                step,
                feedback: Feedback::Accepted,
                halt,
                error,
                check: ConfigCheck { streak, ..check },
            }
        }
        Class::Rejected => {
            let message = text();
            Decision {
                error: noted(&message),
                step: Step::Failed {
                    class: name,
                    message,
                },
                feedback: Feedback::Accepted,
                halt: None,
                check: ConfigCheck { streak: 0, ..check },
            }
        }
        Class::Auth | Class::Forbidden => {
            let message = text();
            let error = noted(&message);
            let halt = if class == Class::Auth {
                Halt::Auth {
                    message: message.clone(),
                }
            } else {
                Halt::Forbidden {
                    message: message.clone(),
                }
            };
            Decision {
                step: Step::Requeue {
                    due: Due::Now,
                    class: name,
                    message,
                },
                feedback: Feedback::Nothing,
                halt: Some(halt),
                error,
                check,
            }
        }
        Class::Throttled { retry_after } => {
            let message = text();
            Decision {
                error: noted(&message),
                step: Step::Requeue {
                    due: Due::AfterPause,
                    class: name,
                    message,
                },
                feedback: Feedback::Throttled { retry_after },
                halt: None,
                check,
            }
        }
        Class::NotReceived => {
            let message = text();
            // A wrong subdomain's host does not resolve: before any success that is the
            // target, not an outage.
            let dns = unreached == Some(Unreached::Dns) && check.successes == 0;
            let streak = if dns { check.streak + 1 } else { check.streak };
            let halt = (dns && streak >= CONFIG_STREAK_BEFORE_SUCCESS).then(|| Halt::WrongTarget {
                sign: "a host name that does not resolve".into(),
                message: message.clone(),
            });
            Decision {
                error: noted(&message),
                step: Step::Requeue {
                    due: Due::Now,
                    class: name,
                    message,
                },
                feedback: Feedback::Unreached,
                halt,
                check: ConfigCheck { streak, ..check },
            }
        }
        Class::Transient if check.successes == 0 && not_kapture(status).is_some() => {
            // A server that answers 501, or pages that are not Kapture's JSON (a mistyped
            // subdomain's landing page, a login redirect), to the first requests: the target
            // is wrong, so the rows go back uncharged and a short streak halts.
            let message = text();
            let streak = check.streak + 1;
            let halt = (streak >= CONFIG_STREAK_BEFORE_SUCCESS).then(|| Halt::WrongTarget {
                sign: not_kapture(status).unwrap_or_default(),
                message: ErrorTally::short(&message),
            });
            Decision {
                error: noted(&message),
                step: Step::Requeue {
                    due: Due::Now,
                    class: name,
                    message,
                },
                feedback: Feedback::Accepted,
                halt,
                check: ConfigCheck { streak, ..check },
            }
        }
        Class::Transient | Class::TransientInDoubt => {
            let message = text();
            let error = noted(&message);
            let step = if attempt >= policy.max_attempts {
                Step::Failed {
                    class: name,
                    message: format!("{message} (gave up after {attempt} attempts)"),
                }
            } else {
                Step::Retry {
                    class: name,
                    message,
                }
            };
            Decision {
                step,
                feedback: Feedback::Accepted,
                halt: None,
                error,
                check,
            }
        }
    }
}

/// How an answer that is transient after successes shows a wrong target before any: HTTP 501,
/// or a 2xx whose body is not Kapture's JSON (the classifier calls those transient).
fn not_kapture(status: Option<u16>) -> Option<String> {
    match status? {
        501 => Some("HTTP 501 (Not Implemented)".into()),
        s @ 200..=299 => Some(format!("HTTP {s} with a page that is not Kapture's JSON")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy { max_attempts: 3 };
    const FRESH: ConfigCheck = ConfigCheck {
        successes: 0,
        streak: 0,
    };
    /// A run that has had successes.
    const WARM: ConfigCheck = ConfigCheck {
        successes: 5,
        streak: 0,
    };

    fn reply(class: Class, status: Option<u16>, message: Option<&str>) -> Reply {
        Reply {
            class,
            http_status: status,
            message: message.map(str::to_owned),
            ticket: None,
            excerpt: String::new(),
            elapsed: Duration::ZERO,
            unreached: None,
        }
    }

    fn unreached(cause: Unreached) -> Reply {
        let mut r = reply(Class::NotReceived, None, Some("refused"));
        r.unreached = Some(cause);
        r
    }

    fn check(successes: u64, streak: u32) -> ConfigCheck {
        ConfigCheck { successes, streak }
    }

    fn requeue(due: Due, class: &'static str, message: &str) -> Step {
        Step::Requeue {
            due,
            class,
            message: message.into(),
        }
    }

    fn failed(class: &'static str, message: &str) -> Step {
        Step::Failed {
            class,
            message: message.into(),
        }
    }

    fn retry(class: &'static str, message: &str) -> Step {
        Step::Retry {
            class,
            message: message.into(),
        }
    }

    fn err(class: &'static str, message: &str) -> Option<(&'static str, String)> {
        Some((class, message.into()))
    }

    fn config_halt(status: u16, message: &str) -> Option<Halt> {
        Some(Halt::Config {
            http_status: status,
            message: message.into(),
        })
    }

    #[test]
    fn every_row_of_the_table() {
        use Feedback::{Accepted, Nothing};
        let throttled = |secs| Feedback::Throttled {
            retry_after: Some(Duration::from_secs(secs)),
        };
        let ok = Some("Ticket updated");
        #[rustfmt::skip]
        let rows: Vec<(&str, Reply, u32, ConfigCheck, Decision)> = vec![
            ("success", reply(Class::Success, Some(200), ok), 1, check(0, 2),
             Decision { step: Step::Succeeded { ticket: None }, feedback: Accepted, halt: None, error: None, check: check(1, 0) }),
            ("rejected fails the row and ends a 404 streak", reply(Class::Rejected, Some(400), Some("Invalid Format")), 1, check(5, 2),
             Decision { step: failed("rejected", "Invalid Format"), feedback: Accepted, halt: None, error: err("rejected", "Invalid Format"), check: check(5, 0) }),
            ("rejected without a message names the status", reply(Class::Rejected, Some(422), None), 1, WARM,
             Decision { step: failed("rejected", "HTTP 422"), feedback: Accepted, halt: None, error: err("rejected", "HTTP 422"), check: WARM }),
            // The wrong-target heuristic: before any success, 404/405 rows go back.
            ("first 404 goes back", reply(Class::Rejected, Some(404), None), 1, FRESH,
             Decision { step: requeue(Due::Now, "rejected", "HTTP 404"), feedback: Accepted, halt: None, error: err("rejected", "HTTP 404"), check: check(0, 1) }),
            ("third 404 before a success halts", reply(Class::Rejected, Some(405), Some("Not Allowed")), 1, check(0, 2),
             Decision { step: requeue(Due::Now, "rejected", "Not Allowed"), feedback: Accepted, halt: config_halt(405, "Not Allowed"), error: err("rejected", "Not Allowed"), check: check(0, 3) }),
            ("404 after successes fails the row", reply(Class::Rejected, Some(404), None), 1, check(5, 8),
             Decision { step: failed("rejected", "HTTP 404"), feedback: Accepted, halt: None, error: err("rejected", "HTTP 404"), check: check(5, 9) }),
            ("tenth 404 in a row after successes halts", reply(Class::Rejected, Some(404), None), 1, check(5, 9),
             Decision { step: failed("rejected", "HTTP 404"), feedback: Accepted, halt: config_halt(404, "HTTP 404"), error: err("rejected", "HTTP 404"), check: check(5, 10) }),
            // Halts: the row goes back uncharged.
            ("auth halts", reply(Class::Auth, Some(401), Some("Invalid Auth Key")), 2, WARM,
             Decision { step: requeue(Due::Now, "auth", "Invalid Auth Key"), feedback: Nothing,
                        halt: Some(Halt::Auth { message: "Invalid Auth Key".into() }), error: err("auth", "Invalid Auth Key"), check: WARM }),
            ("forbidden halts", reply(Class::Forbidden, Some(403), None), 1, FRESH,
             Decision { step: requeue(Due::Now, "forbidden", "HTTP 403"), feedback: Nothing,
                        halt: Some(Halt::Forbidden { message: "HTTP 403".into() }), error: err("forbidden", "HTTP 403"), check: FRESH }),
            // 429: back after the run-wide pause, uncharged, whatever the attempt.
            ("throttled", reply(Class::Throttled { retry_after: Some(Duration::from_secs(7)) }, Some(429), None), 3, check(5, 1),
             Decision { step: requeue(Due::AfterPause, "throttled", "HTTP 429"), feedback: throttled(7), halt: None, error: err("throttled", "HTTP 429"), check: check(5, 1) }),
            // Passing failures: retried until the attempts are used up.
            ("transient retries", reply(Class::Transient, Some(503), None), 2, WARM,
             Decision { step: retry("transient", "HTTP 503"), feedback: Accepted, halt: None, error: err("transient", "HTTP 503"), check: WARM }),
            ("no answer retries", reply(Class::Transient, None, None), 1, WARM,
             Decision { step: retry("transient", "no answer"), feedback: Accepted, halt: None, error: err("transient", "no answer"), check: WARM }),
            ("transient on the last attempt fails", reply(Class::Transient, Some(500), None), 3, WARM,
             Decision { step: failed("transient", "HTTP 500 (gave up after 3 attempts)"), feedback: Accepted, halt: None, error: err("transient", "HTTP 500"), check: WARM }),
            ("in doubt retries", reply(Class::TransientInDoubt, None, Some("timed out")), 1, WARM,
             Decision { step: retry("transient_in_doubt", "timed out"), feedback: Accepted, halt: None, error: err("transient_in_doubt", "timed out"), check: WARM }),
            // Not received: back uncharged, the run pauses and probes; never a failure.
            ("refused goes back", unreached(Unreached::Refused), 8, FRESH,
             Decision { step: requeue(Due::Now, "not_received", "refused"), feedback: Feedback::Unreached, halt: None, error: err("not_received", "refused"), check: FRESH }),
            ("dns before a success counts toward a wrong target", unreached(Unreached::Dns), 1, check(0, 1),
             Decision { step: requeue(Due::Now, "not_received", "refused"), feedback: Feedback::Unreached, halt: None, error: err("not_received", "refused"), check: check(0, 2) }),
            ("third dns before a success halts", unreached(Unreached::Dns), 1, check(0, 2),
             Decision { step: requeue(Due::Now, "not_received", "refused"), feedback: Feedback::Unreached,
                        halt: Some(Halt::WrongTarget { sign: "a host name that does not resolve".into(), message: "refused".into() }), error: err("not_received", "refused"), check: check(0, 3) }),
            ("dns after successes is an outage", unreached(Unreached::Dns), 1, WARM,
             Decision { step: requeue(Due::Now, "not_received", "refused"), feedback: Feedback::Unreached, halt: None, error: err("not_received", "refused"), check: WARM }),
            // 501 and non-JSON pages before any success: a wrong target.
            ("first 501 goes back", reply(Class::Transient, Some(501), None), 1, FRESH,
             Decision { step: requeue(Due::Now, "transient", "HTTP 501"), feedback: Accepted, halt: None, error: err("transient", "HTTP 501"), check: check(0, 1) }),
            ("third html page halts", reply(Class::Transient, Some(200), Some("x")), 1, check(0, 2),
             Decision { step: requeue(Due::Now, "transient", "x"), feedback: Accepted,
                        halt: Some(Halt::WrongTarget { sign: "HTTP 200 with a page that is not Kapture's JSON".into(), message: "x".into() }), error: err("transient", "x"), check: check(0, 3) }),
            ("501 after successes retries", reply(Class::Transient, Some(501), None), 1, WARM,
             Decision { step: retry("transient", "HTTP 501"), feedback: Accepted, halt: None, error: err("transient", "HTTP 501"), check: WARM }),
        ];
        for (name, reply, attempt, before, want) in rows {
            assert_eq!(decide(reply, attempt, &POLICY, before), want, "{name}");
        }
    }

    #[test]
    fn a_success_keeps_its_ticket_and_long_messages_are_shortened_for_the_tally() {
        let ticket = serde_json::json!({"ticket_id": "1"});
        let mut ok = reply(Class::Success, Some(200), None);
        ok.ticket = Some(ticket.clone());
        assert_eq!(
            decide(ok, 1, &POLICY, WARM).step,
            Step::Succeeded {
                ticket: Some(ticket)
            }
        );
        let long = "x".repeat(500);
        let d = decide(
            reply(Class::Rejected, Some(400), Some(&long)),
            1,
            &POLICY,
            WARM,
        );
        assert_eq!(d.error.unwrap().1.chars().count(), 160);
        assert_eq!(d.step, failed("rejected", &long), "the row keeps it whole");
    }
}
