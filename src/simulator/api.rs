//! The simulated Kapture endpoints: the routes, seeded faults and the in-memory tickets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::config::{SimConfig, normalize_token};
use super::ledger::{Books, Outcome};
use super::request::{parse_ticket_ids, parse_update, validate};
use super::response::{drop_connection, failed, html_error, json_response, too_many_requests};
use crate::kapture::{GET_TICKET_PATH, UPDATE_TICKET_PATH};

/// Everything the handlers share.
#[derive(Debug)]
pub(crate) struct Sim {
    pub config: SimConfig,
    pub books: Books,
    pub tickets: Mutex<HashMap<String, Map<String, Value>>>,
    pub cancel: CancellationToken,
    next_seq: AtomicU64,
    window: Mutex<(u64, u32)>,
}

impl Sim {
    pub fn new(config: SimConfig, cancel: CancellationToken) -> Sim {
        Sim {
            config,
            books: Books::new(),
            tickets: Mutex::new(HashMap::new()),
            cancel,
            next_seq: AtomicU64::new(0),
            window: Mutex::new((0, 0)),
        }
    }

    pub fn ticket_count(&self) -> u64 {
        lock(&self.tickets).len() as u64
    }

    /// Sleeps, unless the simulator shuts down first (then `false`).
    async fn pause(&self, delay: Duration) -> bool {
        if delay.is_zero() {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = self.cancel.cancelled() => false,
        }
    }

    /// Takes a slot in this second's `--rate-limit` window, or says how long until the next.
    fn take_rate_slot(&self) -> Result<(), Duration> {
        let limit = self.config.rate_limit;
        if limit == 0 {
            return Ok(());
        }
        let now = self.books.elapsed();
        let mut window = lock(&self.window);
        if window.0 != now.as_secs() {
            *window = (now.as_secs(), 0);
        }
        if window.1 < limit {
            window.1 += 1;
            Ok(())
        } else {
            Err(Duration::from_secs(1) - Duration::from_nanos(u64::from(now.subsec_nanos())))
        }
    }

    /// `None` when the request may pass; else the reason it is unauthorised and its status.
    fn check_auth(&self, headers: &HeaderMap, seq: u64) -> Option<(StatusCode, &'static str)> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Some((StatusCode::UNAUTHORIZED, "Authorization header missing"));
        };
        if let Some(expected) = &self.config.token {
            let given = value.to_str().map(normalize_token).unwrap_or("");
            if given != expected {
                return Some((StatusCode::OK, "Invalid Auth Key"));
            }
        }
        match self.config.auth_fail_after {
            Some(n) if seq > n => Some((StatusCode::OK, "Invalid Auth Key")),
            _ => None,
        }
    }
}

/// The routes: the two Kapture APIs and the `/_sim/` inspection endpoints.
pub(crate) fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route(UPDATE_TICKET_PATH, post(update_ticket))
        .route(GET_TICKET_PATH, post(get_ticket))
        .route("/_sim/ledger", get(ledger))
        .route("/_sim/stats", get(stats))
        .with_state(sim)
}

/// Random draws for one request, all taken up front so changing one rate leaves the other
/// decisions of a seeded run where they were.
struct Draws {
    latency: Duration,
    drop: f64,
    hang: f64,
    fail: f64,
    throttle: f64,
    fail_status: u16,
}

impl Draws {
    fn new(config: &SimConfig, seq: u64) -> Draws {
        let mut rng = fastrand::Rng::with_seed(mix(config.seed, seq));
        Draws {
            latency: config.latency.map(|l| l.draw(&mut rng)).unwrap_or_default(),
            drop: rng.f64(),
            hang: rng.f64(),
            fail: rng.f64(),
            throttle: rng.f64(),
            fail_status: [500, 502, 503][rng.usize(0..3)],
        }
    }
}

async fn update_ticket(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let seq = sim.next_seq.fetch_add(1, Relaxed) + 1;
    sim.books.requests.fetch_add(1, Relaxed);
    let config = &sim.config;
    let draws = Draws::new(config, seq);
    let (update, seen) = parse_update(&body, seq);

    if !sim.pause(draws.latency).await {
        sim.books.record(seen, Outcome::Drop, None);
        return drop_connection();
    }
    if draws.drop < config.drop_rate {
        sim.books.record(seen, Outcome::Drop, None);
        return drop_connection();
    }
    if draws.hang < config.hang_rate {
        sim.books.hung.fetch_add(1, Relaxed);
        if !sim.pause(config.hang_for).await {
            sim.books.record(seen, Outcome::Hang, None);
            return drop_connection();
        }
    }
    if draws.fail < config.fail_rate {
        sim.books
            .record(seen, Outcome::Fail5xx, Some(draws.fail_status));
        return html_error(draws.fail_status);
    }
    let throttled = if draws.throttle < config.throttle_rate {
        Some(Duration::from_secs(1))
    } else {
        sim.take_rate_slot().err()
    };
    if let Some(wait) = throttled {
        sim.books.record(seen, Outcome::Throttled, Some(429));
        return too_many_requests(wait);
    }
    if let Some((status, message)) = sim.check_auth(&headers, seq) {
        sim.books.record(seen, Outcome::Auth, Some(status.as_u16()));
        return failed(status, message);
    }
    let update = match update.and_then(|u| validate(u, &config.sub_statuses)) {
        Ok(update) => update,
        Err(message) => {
            sim.books.record(seen, Outcome::Rejected, Some(200));
            return failed(StatusCode::OK, &message);
        }
    };
    let mut snapshot = apply(&sim, update);
    if config.full_tickets
        && let Value::Object(stored) = &snapshot
    {
        snapshot = super::ticket::full_ticket(stored);
    }
    sim.books.record(seen, Outcome::Success, Some(200));
    json_response(
        StatusCode::OK,
        &json!({
            "status": "success",
            "message": "Ticket updated successfully",
            "ticket": snapshot,
        }),
    )
}

async fn get_ticket(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    sim.books.reads.fetch_add(1, Relaxed);
    let seq = sim.next_seq.load(Relaxed);
    if let Some((status, message)) = sim.check_auth(&headers, seq) {
        sim.books.count_auth();
        return failed(status, message);
    }
    let ids = match parse_ticket_ids(&body) {
        Ok(ids) => ids,
        Err(message) => return failed(StatusCode::OK, &message),
    };
    let tickets: Vec<Value> = {
        let store = lock(&sim.tickets);
        ids.iter()
            .filter_map(|id| store.get(id).cloned().map(Value::Object))
            .collect()
    };
    json_response(
        StatusCode::OK,
        &json!({
            "status": "success",
            "message": format!("{} ticket(s) found", tickets.len()),
            "tickets": tickets,
        }),
    )
}

/// The `/_sim/` endpoints show every ticket sent: with a token set, they want it too.
fn sim_auth_refused(sim: &Sim, headers: &HeaderMap) -> Option<Response> {
    let expected = sim.config.token.as_deref()?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(normalize_token);
    (given != Some(expected)).then(|| failed(StatusCode::UNAUTHORIZED, "Invalid Auth Key"))
}

async fn ledger(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    if let Some(refused) = sim_auth_refused(&sim, &headers) {
        return refused;
    }
    let mut text = Vec::new();
    for entry in sim.books.ledger() {
        serde_json::to_writer(&mut text, &entry).expect("a ledger entry always serializes");
        text.push(b'\n');
    }
    ([(header::CONTENT_TYPE, "application/x-ndjson")], text).into_response()
}

async fn stats(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    if let Some(refused) = sim_auth_refused(&sim, &headers) {
        return refused;
    }
    json_response(StatusCode::OK, &json!(sim.books.stats(sim.ticket_count())))
}

/// Writes an update over the stored ticket (creating it) and returns the new snapshot.
fn apply(sim: &Sim, update: Map<String, Value>) -> Value {
    let now = format_datetime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
    );
    let ticket_id = update
        .get("ticket_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut store = lock(&sim.tickets);
    let next_id = store.len() as u64 + 1;
    let ticket = store.entry(ticket_id).or_insert_with(|| {
        let mut fresh = Map::new();
        fresh.insert("id".into(), json!(next_id));
        fresh.insert("created_date".into(), json!(now));
        fresh.insert("update_count".into(), json!(0));
        fresh
    });
    let count = ticket["update_count"].as_u64().unwrap_or(0) + 1;
    ticket.extend(update);
    ticket.insert("update_count".into(), json!(count));
    ticket.insert("last_modified_date".into(), json!(now));
    Value::Object(ticket.clone())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Spreads a seed and a sequence number into an independent generator seed (splitmix64).
fn mix(seed: u64, seq: u64) -> u64 {
    let mut z = seed ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Formats Unix seconds as `yyyy-MM-dd HH:mm:ss` (UTC), Kapture's date format.
fn format_datetime(unix_secs: u64) -> String {
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::request::is_callback_time;

    #[test]
    fn formats_kapture_dates() {
        assert_eq!(format_datetime(0), "1970-01-01 00:00:00");
        assert_eq!(format_datetime(951_825_600), "2000-02-29 12:00:00");
        assert_eq!(format_datetime(1_709_251_199), "2024-02-29 23:59:59");
        assert!(is_callback_time(&format_datetime(1_709_251_199)));
    }

    #[test]
    fn seeded_draws_repeat() {
        let config = SimConfig {
            seed: 42,
            ..SimConfig::default()
        };
        let a: Vec<f64> = (1..50).map(|seq| Draws::new(&config, seq).fail).collect();
        let b: Vec<f64> = (1..50).map(|seq| Draws::new(&config, seq).fail).collect();
        assert_eq!(a, b);
        let other = SimConfig { seed: 43, ..config };
        assert_ne!(a[0], Draws::new(&other, 1).fail);
    }
}
