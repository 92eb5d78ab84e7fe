//! The Kapture client over real HTTP: every classification row against the simulator, exact
//! sequences against wiremock and raw sockets, and the token never leaking.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use kapsync::kapture::{Class, ClientError, Target, TargetError};
use kapsync::simulator::{Latency, SimConfig};
use serde_json::json;
use tokio::io::AsyncReadExt;
use wiremock::matchers::{body_string, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{client, client_with, closed_port_url, start_sim, update};

const UPDATE: &str = "/update-ticket-from-other-source.html/v.2.0";

// ---- against the simulator -------------------------------------------------------------

#[tokio::test]
async fn success_returns_the_ticket_snapshot_and_get_ticket_reads_it_back() {
    let sim = start_sim(SimConfig::default()).await;
    let client = client(&sim.base_url()).keep_responses(true);
    let payload = r#"{"ticket_id":"123456789012","sub_status":"CL","comment":"closed by import","callback_time":"2024-05-01 09:30:00","x_legacy_id":"ZD-7"}"#;
    // By default a success keeps only what confirms the update, and of that only what the
    // update sent does not say: here nothing (the simulator's ticket has no status or queue).
    let confirmed = crate::support::client(&sim.base_url())
        .update_ticket(payload)
        .await;
    let kept = confirmed
        .ticket
        .expect("a success carries its confirmation");
    assert_eq!(kept, serde_json::json!({}));
    let sent: serde_json::Value = serde_json::from_str(payload).unwrap();
    assert_eq!(
        kapsync::kapture::confirmed(&kept, sent.as_object()),
        serde_json::json!({"ticket_id": "123456789012", "sub_status": "CL",
                           "message": "Ticket updated successfully"})
    );
    let reply = client.update_ticket(payload).await;
    assert_eq!(reply.class, Class::Success, "{reply:?}");
    assert_eq!(reply.http_status, Some(200));
    assert!(reply.message.is_some());
    let ticket = reply.ticket.expect("a success carries a snapshot");
    assert_eq!(ticket["ticket_id"], "123456789012");
    assert_eq!(ticket["sub_status"], "CL");
    assert_eq!(ticket["x_legacy_id"], "ZD-7");
    assert!(reply.excerpt.contains("success"));

    let tickets = client
        .get_tickets(&["123456789012", "999999999999"])
        .await
        .unwrap();
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0]["comment"], "closed by import");
    assert_eq!(tickets[0]["callback_time"], "2024-05-01 09:30:00");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_failed_body_on_http_200_is_rejected_with_its_message() {
    let sim = start_sim(SimConfig::default()).await;
    let client = client(&sim.base_url());
    for (payload, expected) in [
        (update("1", "NOPE", "x"), "Invalid sub_status"),
        (r#"{"sub_status":"P"}"#.to_owned(), "ticket_id missing"),
        (
            r#"{"ticket_id":123,"sub_status":"P"}"#.to_owned(),
            "must be a string",
        ),
        (
            r#"{"ticket_id":"1","sub_status":"P","callback_time":"01/05/2024 9:30"}"#.to_owned(),
            "callback_time",
        ),
    ] {
        let reply = client.update_ticket(&payload).await;
        assert_eq!(reply.class, Class::Rejected, "{payload}: {reply:?}");
        assert_eq!(reply.http_status, Some(200));
        let message = reply.message.unwrap_or_default();
        assert!(message.contains(expected), "{payload}: {message}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_wrong_token_is_auth_and_the_right_one_passes() {
    let sim = start_sim(SimConfig {
        token: Some("right-token".into()),
        ..SimConfig::default()
    })
    .await;
    let wrong = client_with(&sim.base_url(), "wrong-token", Duration::from_secs(5));
    let reply = wrong.update_ticket(&update("1", "P", "x")).await;
    assert_eq!(reply.class, Class::Auth, "{reply:?}");
    assert_eq!(reply.message.as_deref(), Some("Invalid Auth Key"));
    let err = wrong.get_tickets(&["1"]).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Answer {
                class: Class::Auth,
                ..
            }
        ),
        "{err}"
    );

    let right = client_with(&sim.base_url(), "Basic right-token", Duration::from_secs(5));
    let reply = right.update_ticket(&update("1", "P", "x")).await;
    assert_eq!(reply.class, Class::Success, "{reply:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn auth_fails_after_the_first_n_requests() {
    let sim = start_sim(SimConfig {
        auth_fail_after: Some(2),
        ..SimConfig::default()
    })
    .await;
    let client = client(&sim.base_url());
    let mut classes = Vec::new();
    for i in 0..4 {
        classes.push(
            client
                .update_ticket(&update(&i.to_string(), "P", "x"))
                .await
                .class,
        );
    }
    assert_eq!(
        classes,
        [Class::Success, Class::Success, Class::Auth, Class::Auth]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn injected_throttling_is_throttled_with_the_servers_wait() {
    let sim = start_sim(SimConfig {
        throttle_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    let reply = client(&sim.base_url())
        .update_ticket(&update("1", "P", "x"))
        .await;
    assert_eq!(
        reply.class,
        Class::Throttled {
            retry_after: Some(Duration::from_secs(1))
        },
        "{reply:?}"
    );
    assert_eq!(reply.http_status, Some(429));
    sim.shutdown().await;
}

#[tokio::test]
async fn the_rate_limit_throttles_requests_beyond_it() {
    let sim = start_sim(SimConfig {
        rate_limit: 2,
        ..SimConfig::default()
    })
    .await;
    let client = client(&sim.base_url());
    let mut succeeded = 0;
    let mut throttled = 0;
    for i in 0..10 {
        match client
            .update_ticket(&update(&i.to_string(), "P", "x"))
            .await
            .class
        {
            Class::Success => succeeded += 1,
            Class::Throttled { retry_after } => {
                assert!(retry_after.is_some_and(|d| d <= Duration::from_secs(1)));
                throttled += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Ten quick requests span at most two one-second windows.
    assert!((2..=4).contains(&succeeded), "{succeeded} succeeded");
    assert_eq!(succeeded + throttled, 10);
    sim.shutdown().await;
}

#[tokio::test]
async fn injected_5xx_pages_are_transient() {
    let sim = start_sim(SimConfig {
        fail_rate: 1.0,
        seed: 3,
        ..SimConfig::default()
    })
    .await;
    let client = client(&sim.base_url());
    for i in 0..6 {
        let reply = client
            .update_ticket(&update(&i.to_string(), "P", "x"))
            .await;
        assert_eq!(reply.class, Class::Transient, "{reply:?}");
        assert!(
            matches!(reply.http_status, Some(500 | 502 | 503)),
            "{reply:?}"
        );
        assert!(reply.excerpt.contains("<html>"), "{}", reply.excerpt);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_dropped_connection_is_transient_in_doubt() {
    let sim = start_sim(SimConfig {
        drop_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    let reply = client(&sim.base_url())
        .update_ticket(&update("1", "P", "x"))
        .await;
    assert_eq!(reply.class, Class::TransientInDoubt, "{reply:?}");
    assert_eq!(reply.http_status, None);
    assert!(reply.message.is_some());
    assert_eq!(sim.stats().dropped, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_hang_beyond_the_timeout_is_transient_in_doubt() {
    let sim = start_sim(SimConfig {
        hang_rate: 1.0,
        hang_for: Duration::from_secs(30),
        ..SimConfig::default()
    })
    .await;
    let client = client_with(&sim.base_url(), "t", Duration::from_millis(300));
    let reply = client.update_ticket(&update("1", "P", "x")).await;
    assert_eq!(reply.class, Class::TransientInDoubt, "{reply:?}");
    assert!(reply.elapsed >= Duration::from_millis(300));
    assert!(reply.elapsed < Duration::from_secs(10));
    sim.shutdown().await;
}

#[tokio::test]
async fn latency_is_added() {
    let sim = start_sim(SimConfig {
        latency: Some(Latency::Fixed(Duration::from_millis(80))),
        ..SimConfig::default()
    })
    .await;
    let reply = client(&sim.base_url())
        .update_ticket(&update("1", "P", "x"))
        .await;
    assert_eq!(reply.class, Class::Success);
    assert!(
        reply.elapsed >= Duration::from_millis(80),
        "{:?}",
        reply.elapsed
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_refused_connection_was_not_received_and_is_not_in_doubt() {
    let url = closed_port_url();
    let reply = client(&url).update_ticket(&update("1", "P", "x")).await;
    assert_eq!(reply.class, Class::NotReceived, "{reply:?}");
    assert_eq!(reply.http_status, None);
    // The cause, without the URL every row shares.
    let message = reply.message.unwrap();
    assert!(
        message.contains("error sending request") && !message.contains(&url),
        "{message}"
    );
}

#[tokio::test]
async fn a_wrong_path_is_rejected_as_404_and_an_oversized_body_as_413() {
    let sim = start_sim(SimConfig::default()).await;
    let wrong_path = client(&format!("{}/wrong-prefix", sim.base_url()));
    let reply = wrong_path.update_ticket(&update("1", "P", "x")).await;
    assert_eq!(reply.class, Class::Rejected, "{reply:?}");
    assert_eq!(reply.http_status, Some(404));

    let huge = update("1", "P", &"x".repeat(3 * 1024 * 1024));
    let reply = client(&sim.base_url()).update_ticket(&huge).await;
    assert_eq!(reply.class, Class::Rejected, "{reply:?}");
    assert_eq!(reply.http_status, Some(413));
    sim.shutdown().await;
}

#[tokio::test]
async fn get_ticket_takes_at_most_fifty_ids() {
    let ids: Vec<String> = (0..51).map(|i| i.to_string()).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let err = client("http://127.0.0.1:9")
        .get_tickets(&ids)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::TooManyIds { count: 51 }),
        "{err}"
    );
}

// ---- against wiremock and raw sockets --------------------------------------------------

#[tokio::test]
async fn the_request_is_sent_as_documented() {
    let server = MockServer::start().await;
    // The payload's odd spacing proves it is sent as stored, not re-serialized.
    let payload = r#"{ "ticket_id" : "000123456789",  "sub_status":"P" }"#;
    Mock::given(method("POST"))
        .and(path(UPDATE))
        .and(header("authorization", "Basic dG9rZW4="))
        .and(header("content-type", "application/json"))
        .and(header(
            "user-agent",
            concat!("kapsync/", env!("CARGO_PKG_VERSION")),
        ))
        .and(body_string(format!("[{payload}]")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status":"success","message":"ok"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = client_with(&server.uri(), "Basic dG9rZW4=", Duration::from_secs(5));
    let reply = client.update_ticket(payload).await;
    assert_eq!(reply.class, Class::Success, "{reply:?}");
    server.verify().await;
}

#[tokio::test]
async fn throttled_then_success_reads_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "3")
                .set_body_json(json!({"status":"failed","message":"slow down"})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"status":"success","message":"done","ticket":{"ticket_id":"1"}}),
            ),
        )
        .mount(&server)
        .await;
    let client = client(&server.uri());
    let first = client.update_ticket(&update("1", "P", "x")).await;
    assert_eq!(
        first.class,
        Class::Throttled {
            retry_after: Some(Duration::from_secs(3))
        }
    );
    assert_eq!(first.message.as_deref(), Some("slow down"));
    let second = client.update_ticket(&update("1", "P", "x")).await;
    assert_eq!(second.class, Class::Success);
    let sent: serde_json::Value = serde_json::from_str(&update("1", "P", "x")).unwrap();
    let confirmed = kapsync::kapture::confirmed(&second.ticket.unwrap(), sent.as_object());
    assert_eq!(confirmed["ticket_id"], "1");
}

#[tokio::test]
async fn retry_after_as_an_http_date() {
    let server = MockServer::start().await;
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", at.as_str()))
        .mount(&server)
        .await;
    let reply = client(&server.uri())
        .update_ticket(&update("1", "P", "x"))
        .await;
    let Class::Throttled {
        retry_after: Some(wait),
    } = reply.class
    else {
        panic!("{reply:?}");
    };
    assert!(
        wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
        "{wait:?}"
    );
}

#[tokio::test]
async fn a_redirect_is_refused_not_followed() {
    let server = MockServer::start().await;
    let elsewhere = format!("{}/elsewhere", server.uri());
    Mock::given(method("POST"))
        .and(path(UPDATE))
        .respond_with(ResponseTemplate::new(302).insert_header("Location", elsewhere.as_str()))
        .mount(&server)
        .await;
    Mock::given(path("/elsewhere"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status":"success"})))
        .expect(0)
        .mount(&server)
        .await;
    let reply = client(&server.uri())
        .update_ticket(&update("1", "P", "x"))
        .await;
    assert_eq!(reply.class, Class::Rejected, "{reply:?}");
    assert_eq!(reply.http_status, Some(302));
    let message = reply.message.unwrap();
    assert!(message.contains("redirect"), "{message}");
    assert!(message.contains(&elsewhere), "{message}");
    server.verify().await;
}

#[tokio::test]
async fn statuses_and_bodies_the_simulator_does_not_produce() {
    let server = MockServer::start().await;
    let failed = json!({"status":"failed","message":"nope"});
    let cases: Vec<(u16, ResponseTemplate, Class)> = vec![
        (401, ResponseTemplate::new(401), Class::Auth),
        (
            403,
            ResponseTemplate::new(403).set_body_json(&failed),
            Class::Forbidden,
        ),
        (405, ResponseTemplate::new(405), Class::Rejected),
        (408, ResponseTemplate::new(408), Class::Transient),
        (
            422,
            ResponseTemplate::new(422).set_body_json(&failed),
            Class::Rejected,
        ),
        (
            400,
            ResponseTemplate::new(400).set_body_json(&failed),
            Class::Rejected,
        ),
        (
            429,
            ResponseTemplate::new(429).set_body_json(&failed),
            Class::Throttled { retry_after: None },
        ),
        (
            503,
            ResponseTemplate::new(503).set_body_json(&failed),
            Class::Transient,
        ),
        (
            200,
            ResponseTemplate::new(200).set_body_string("<html><body>Maintenance</body></html>"),
            Class::Transient,
        ),
        (
            200,
            ResponseTemplate::new(200).set_body_json(json!({"message":"queued"})),
            Class::Transient,
        ),
        (
            200,
            ResponseTemplate::new(200)
                .set_body_json(json!({"Status":"Failed","Message":"Invalid Format"})),
            Class::Rejected,
        ),
        (
            200,
            ResponseTemplate::new(200).set_body_json(json!({"Status":"Success","Message":"ok"})),
            Class::Success,
        ),
        (
            500,
            ResponseTemplate::new(500)
                .set_body_json(json!({"status":"failed","message":"Invalid Auth Key"})),
            Class::Auth,
        ),
    ];
    let client = client(&server.uri());
    for (status, template, expected) in cases {
        server.reset().await;
        Mock::given(method("POST"))
            .respond_with(template)
            .mount(&server)
            .await;
        let reply = client.update_ticket(&update("1", "P", "x")).await;
        assert_eq!(reply.class, expected, "HTTP {status}: {reply:?}");
        assert_eq!(reply.http_status, Some(status));
    }
}

#[tokio::test]
async fn a_slow_answer_times_out_in_doubt() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let client = client_with(&server.uri(), "t", Duration::from_millis(200));
    let reply = client.update_ticket(&update("1", "P", "x")).await;
    assert_eq!(reply.class, Class::TransientInDoubt, "{reply:?}");
}

/// A server that reads the whole request, then resets the connection (SO_LINGER 0).
async fn reset_after_request() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !(request.ends_with(b"]") || request.ends_with(b"}")) {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            stream.set_zero_linger().unwrap();
            drop(stream);
        }
    });
    url
}

#[tokio::test]
async fn a_reset_after_the_request_was_sent_is_in_doubt() {
    let url = reset_after_request().await;
    let reply = client(&url).update_ticket(&update("1", "P", "x")).await;
    assert_eq!(reply.class, Class::TransientInDoubt, "{reply:?}");
    assert_eq!(reply.http_status, None);
}

// ---- safety ---------------------------------------------------------------------------

#[test]
fn plain_http_to_a_non_loopback_host_is_refused_before_any_request() {
    let err = Target::resolve(None, Some("http://10.1.2.3")).unwrap_err();
    assert!(matches!(err, TargetError::InsecureHttp { .. }), "{err}");
    assert!(err.to_string().contains("http://10.1.2.3"), "{err}");
    assert!(Target::resolve(None, Some("https://10.1.2.3")).is_ok());
}

/// Collects everything the tracing subscriber writes.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_appears_in_trace_logs_or_replies() {
    use tracing_subscriber::util::SubscriberInitExt;

    let capture = Capture::default();
    // Global, so the HTTP libraries' `log` records (bridged) and the simulator's tasks are
    // captured too; other tests' output landing here only widens the check.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish()
        .try_init()
        .expect("this is the only test that installs a global subscriber");

    let canary = format!("CANARY-{:016x}", fastrand::u64(..));
    let sim = start_sim(SimConfig {
        token: Some("another-token".into()),
        ..SimConfig::default()
    })
    .await;
    let open_sim = start_sim(SimConfig::default()).await;
    let dropping_sim = start_sim(SimConfig {
        drop_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    let mut seen = Vec::new();
    for base in [
        sim.base_url(),
        open_sim.base_url(),
        dropping_sim.base_url(),
        closed_port_url(),
        reset_after_request().await,
    ] {
        let client = client_with(&base, &canary, Duration::from_secs(5));
        seen.push(format!("{client:?}"));
        for payload in [update("1", "P", "x"), update("1", "BAD", "x")] {
            let reply = client.update_ticket(&payload).await;
            seen.push(format!("{reply:?}"));
            seen.push(reply.message.clone().unwrap_or_default());
            seen.push(reply.excerpt.clone());
        }
        if let Err(err) = client.get_tickets(&["1"]).await {
            seen.push(format!("{err} {err:?}"));
        }
    }
    sim.shutdown().await;
    open_sim.shutdown().await;
    dropping_sim.shutdown().await;

    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    assert!(
        !logs.is_empty(),
        "nothing was captured, so nothing was checked"
    );
    assert!(
        logs.contains("TRACE") && (logs.contains("reqwest") || logs.contains("hyper")),
        "the capture holds no trace lines from the HTTP stack:\n{logs}"
    );
    assert!(!logs.contains(&canary), "the token leaked into the logs");
    for text in &seen {
        assert!(!text.contains(&canary), "the token leaked into {text}");
    }
}
