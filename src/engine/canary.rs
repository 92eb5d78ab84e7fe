//! The canary: a run whose first answers (or whose last ones) are all rejections with one
//! message has a systematic error, most likely in its mapping, not that many bad rows.
//!
//! It watches only answers Kapture processed (successes and rejections). It trips when the
//! last N of them are all rejections and, before any success, most share one message, or,
//! after successes, all do. Pure: the worker feeds it and acts on the [`Trip`].

use std::collections::{HashMap, VecDeque};

/// What a tripped canary reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Trip {
    /// The message most of the rejections carried.
    pub message: String,
    /// Rows in the window.
    pub rows: u32,
    /// The window's other rows, already stored as failed: they go back to pending.
    pub earlier: Vec<i64>,
}

/// The canary's state.
#[derive(Debug)]
pub(super) struct Canary {
    size: usize,
    seen_success: bool,
    /// The last `size` processed answers: the row and its rejection message (None: success).
    recent: VecDeque<(i64, Option<String>)>,
    tripped: bool,
}

impl Canary {
    /// A canary over `size` answers; 0 turns it off.
    pub(super) fn new(size: u32) -> Canary {
        Canary {
            size: size as usize,
            seen_success: false,
            recent: VecDeque::new(),
            tripped: false,
        }
    }

    /// Whether it has tripped: later rejections go back to pending too.
    pub(super) fn tripped(&self) -> bool {
        self.tripped
    }

    /// Notes a processed answer for `job_id`: a success (`None`) or a rejection with its
    /// message. Returns the trip, once.
    pub(super) fn observe(&mut self, job_id: i64, rejection: Option<&str>) -> Option<Trip> {
        if self.size == 0 || self.tripped {
            return None;
        }
        self.seen_success |= rejection.is_none();
        self.recent
            .push_back((job_id, rejection.map(str::to_owned)));
        if self.recent.len() > self.size {
            self.recent.pop_front();
        }
        if self.recent.len() < self.size {
            return None;
        }
        let mut by_message: HashMap<&str, usize> = HashMap::new();
        for (_, message) in &self.recent {
            *by_message.entry(message.as_deref()?).or_default() += 1;
        }
        let (message, count) = by_message
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))?;
        let systematic = if self.seen_success {
            count == self.size
        } else {
            count * 2 > self.size
        };
        if !systematic {
            return None;
        }
        self.tripped = true;
        Some(Trip {
            message: message.to_owned(),
            rows: self.size as u32,
            earlier: self
                .recent
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| *id != job_id)
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_answers_all_rejected_mostly_alike_trip_it() {
        let mut canary = Canary::new(4);
        assert_eq!(canary.observe(1, Some("Invalid sub_status: Solved")), None);
        assert_eq!(canary.observe(2, Some("Invalid sub_status: Solved")), None);
        assert_eq!(canary.observe(3, Some("ticket not found")), None);
        let trip = canary
            .observe(4, Some("Invalid sub_status: Solved"))
            .unwrap();
        assert_eq!(trip.message, "Invalid sub_status: Solved");
        assert_eq!(trip.rows, 4);
        assert_eq!(trip.earlier, [1, 2, 3]);
        assert!(canary.tripped());
        assert_eq!(canary.observe(5, Some("x")), None, "once");
    }

    #[test]
    fn one_bad_row_among_good_ones_does_not() {
        let mut canary = Canary::new(3);
        for id in 0..50 {
            let answer = (id == 7).then_some("Invalid Format");
            assert_eq!(canary.observe(id, answer), None);
        }
        // Half and half before any success is not "most".
        let mut split = Canary::new(4);
        for (id, m) in [(1, "a"), (2, "b"), (3, "a"), (4, "b"), (5, "a")] {
            assert_eq!(split.observe(id, Some(m)), None);
        }
    }

    #[test]
    fn after_successes_it_takes_n_rejections_with_one_message() {
        let mut canary = Canary::new(3);
        canary.observe(1, None);
        canary.observe(2, Some("a"));
        canary.observe(3, Some("a"));
        assert_eq!(canary.observe(4, Some("b")), None, "two messages");
        canary.observe(5, Some("b"));
        let trip = canary.observe(6, Some("b")).unwrap();
        assert_eq!(trip.earlier, [4, 5]);
        let mut off = Canary::new(0);
        for id in 0..10 {
            assert_eq!(off.observe(id, Some("a")), None);
        }
    }
}
