//! HTTP requests to Kapture: Update Ticket and Get Ticket, with every outcome classified.

use std::error::Error as _;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, LOCATION, RETRY_AFTER};
use serde_json::Value;

use super::classify::{Answer, BodyFields, Class, Unreached, classify, classify_http, excerpt};
use super::redact::{MAX_STORED_MESSAGE, Redactor, cap_text};
use super::{GET_TICKET_PATH, MAX_GET_TICKET_IDS, Target, Token, UPDATE_TICKET_PATH};

/// Seconds a whole request may take when `--timeout` is not given.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// Connect timeout: a reachable server accepts quickly, whatever the request timeout is.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body read; Kapture's answers are small, a runaway page is cut.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// A Kapture API client. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    /// Keep a success's whole ticket snapshot instead of its confirmation.
    keep_responses: bool,
}

struct Inner {
    http: reqwest::Client,
    target: Target,
    /// Parsed once: parsing a URL (with its IDNA pass) per request was a visible share of a
    /// fast drain's CPU.
    update_url: reqwest::Url,
    get_url: reqwest::Url,
    auth: HeaderValue,
    redactor: Redactor,
    proxy: Option<String>,
}

/// A client that cannot be built or a Get Ticket that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The HTTP client could not be set up (TLS roots, for instance).
    #[error("failed to build the HTTP client")]
    Build(#[source] reqwest::Error),
    /// The `--proxy` URL cannot be used.
    #[error("failed to use the proxy {url}: {reason}")]
    Proxy { url: String, reason: String },
    /// The target and an API path do not make a valid URL.
    #[error("failed to build the request URL {url}: {reason}")]
    Url { url: String, reason: String },
    /// More ids than one Get Ticket request accepts.
    #[error("failed to read tickets: {count} ids given, at most {MAX_GET_TICKET_IDS} per request")]
    TooManyIds { count: usize },
    /// Get Ticket was answered with something other than success.
    #[error("failed to read tickets: Kapture answered {class}{status}{message}",
        class = class.as_str(),
        status = http_status.map(|s| format!(" (HTTP {s})")).unwrap_or_default(),
        message = message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Answer {
        class: Class,
        http_status: Option<u16>,
        message: Option<String>,
    },
    /// Get Ticket succeeded but its body holds no list of tickets.
    #[error("failed to read tickets: the answer holds no ticket list: {excerpt}")]
    Shape { excerpt: String },
}

/// The outcome of one Update Ticket request.
#[derive(Debug, Clone)]
pub struct Reply {
    /// What the engine should do.
    pub class: Class,
    /// The HTTP status, when an answer came back.
    pub http_status: Option<u16>,
    /// The body's message, the refused redirect, or the transport error; never the token
    /// (replaced by `[token]`), at most [`super::MAX_STORED_MESSAGE`] bytes.
    pub message: Option<String>,
    /// The ticket snapshot a success carries, token replaced: its confirming fields and the
    /// message where they differ from what was sent (see [`super::confirm::against_sent`]), or
    /// the whole snapshot (at most [`super::MAX_STORED_TICKET`] bytes of JSON) with
    /// [`Client::keep_responses`].
    pub ticket: Option<Value>,
    /// At most [`super::EXCERPT_BYTES`] bytes of the body (token replaced), for the attempts log.
    pub excerpt: String,
    /// Time from sending to the classified answer.
    pub elapsed: Duration,
    /// Why the request never reached the server, when it did not.
    pub unreached: Option<Unreached>,
}

impl Client {
    /// Builds a client for `target`: rustls, connection reuse, a connect timeout, `timeout`
    /// for each whole request, redirects refused, and a `kapsync/<version>` User-Agent.
    pub fn new(target: Target, token: Token, timeout: Duration) -> Result<Client, ClientError> {
        Self::with_proxy(target, token, timeout, None)
    }

    /// As [`Client::new`], with the proxy rule: a loopback target is never sent through a
    /// proxy (a plain-http request would hand the token to it); any other goes through
    /// `proxy` when given, else through the proxy the environment names (`HTTPS_PROXY`,
    /// `ALL_PROXY`, `NO_PROXY`, ...), if any.
    pub fn with_proxy(
        target: Target,
        token: Token,
        timeout: Duration,
        proxy: Option<&str>,
    ) -> Result<Client, ClientError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("kapsync/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true);
        let route;
        if target.is_loopback() {
            builder = builder.no_proxy();
            route = None;
            if !target.pinned_addrs().is_empty() {
                builder = builder.resolve_to_addrs(&target.host(), target.pinned_addrs());
            }
        } else if let Some(url) = proxy {
            let shown = super::target::without_credentials(url);
            let proxy = reqwest::Proxy::all(url).map_err(|e| ClientError::Proxy {
                url: shown.clone(),
                reason: e.to_string(),
            })?;
            builder = builder.proxy(proxy);
            route = Some(format!("{shown} (--proxy)"));
        } else {
            route = environment_proxy(&target)
                .map(|url| format!("{url} (from the environment's proxy variables)"));
        }
        let http = builder.build().map_err(ClientError::Build)?;
        let parse = |path| {
            let url = target.url_for(path);
            reqwest::Url::parse(&url).map_err(|e| ClientError::Url {
                url,
                reason: e.to_string(),
            })
        };
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                update_url: parse(UPDATE_TICKET_PATH)?,
                get_url: parse(GET_TICKET_PATH)?,
                target,
                auth: token.header_value(),
                redactor: Redactor::new(token.secret()),
                proxy: route,
            }),
            keep_responses: false,
        })
    }

    /// With `true`, a success's [`Reply::ticket`] is Kapture's whole snapshot; by default it is
    /// only what confirms the update (see [`super::confirm::confirmation`]).
    pub fn keep_responses(mut self, keep: bool) -> Client {
        self.keep_responses = keep;
        self
    }

    /// The target this client sends to.
    pub fn target(&self) -> &Target {
        &self.inner.target
    }

    /// The proxy requests go through, without credentials, and where it came from; `None`
    /// when they go straight to the target.
    pub fn proxy(&self) -> Option<&str> {
        self.inner.proxy.as_deref()
    }

    /// Sends one update: `payload` is the JSON object text of the update, sent as-is inside
    /// `[` `]`. Never fails: transport errors come back classified.
    pub async fn update_ticket(&self, payload: &str) -> Reply {
        let mut body = Vec::with_capacity(payload.len() + 2);
        body.push(b'[');
        body.extend_from_slice(payload.as_bytes());
        body.push(b']');
        let mut reply = self.post(self.inner.update_url.clone(), body).await.0;
        if !self.keep_responses
            && let Some(ticket) = &reply.ticket
        {
            let full = super::confirm::confirmation(ticket, reply.message.as_deref());
            reply.ticket = Some(super::confirm::against_sent(&full, payload));
        }
        reply
    }

    /// Reads tickets back with Get Ticket (at most [`MAX_GET_TICKET_IDS`] ids per call).
    pub async fn get_tickets(&self, ids: &[&str]) -> Result<Vec<Value>, ClientError> {
        if ids.len() > MAX_GET_TICKET_IDS {
            return Err(ClientError::TooManyIds { count: ids.len() });
        }
        let body = serde_json::json!({ "ticket_ids": ids.join(",") });
        let (reply, json) = self
            .post(self.inner.get_url.clone(), body.to_string().into_bytes())
            .await;
        if reply.class != Class::Success {
            return Err(ClientError::Answer {
                class: reply.class,
                http_status: reply.http_status,
                message: reply.message,
            });
        }
        // Kapture's exact Get Ticket shape is not documented: take the first list under a
        // ticket-ish key.
        let json = json.map(|j| self.inner.redactor.json(j));
        let list = match json {
            Some(Value::Object(map)) => map.into_iter().find_map(|(key, value)| match value {
                Value::Array(list) if is_ticket_list_key(&key) => Some(list),
                _ => None,
            }),
            _ => None,
        };
        list.ok_or(ClientError::Shape {
            excerpt: reply.excerpt,
        })
    }

    /// Posts a JSON body and classifies the answer; a success also gives the parsed body.
    async fn post(&self, url: reqwest::Url, body: Vec<u8>) -> (Reply, Option<Value>) {
        let started = Instant::now();
        let sent = self
            .inner
            .http
            .post(url)
            .header(AUTHORIZATION, self.inner.auth.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => return (self.transport_reply(error, None, started), None),
        };
        let status = response.status().as_u16();
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let retry_after = header(RETRY_AFTER);
        let location = header(LOCATION);
        let body = match read_body(response).await {
            Ok(body) => body,
            Err(error) => return (self.transport_reply(error, Some(status), started), None),
        };
        let fields = BodyFields::parse(&body);
        let class = classify_http(status, retry_after.as_deref(), &fields, SystemTime::now());
        let message = if (300..400).contains(&status) && class == Class::Rejected {
            Some(format!(
                "refused to follow a redirect: HTTP {status} to {}; check --subdomain or \
                 --base-url",
                location.as_deref().unwrap_or("(no Location header)")
            ))
        } else {
            fields.message
        };
        let redactor = &self.inner.redactor;
        let (ticket, json) = match class {
            Class::Success => (fields.ticket, fields.json),
            _ => (None, None),
        };
        let reply = Reply {
            class,
            http_status: Some(status),
            message: message.map(|m| cap_text(redactor.text(m), MAX_STORED_MESSAGE)),
            ticket: ticket.map(|t| redactor.ticket(t, &body)),
            excerpt: excerpt(&redactor.bytes(redactor.excerpt_window(&body))),
            elapsed: started.elapsed(),
            unreached: None,
        };
        (reply, json)
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("target", &self.inner.target.base_url())
            .finish_non_exhaustive()
    }
}

fn is_ticket_list_key(key: &str) -> bool {
    [
        "tickets",
        "ticket",
        "data",
        "ticket_details",
        "ticketdetails",
    ]
    .iter()
    .any(|k| key.eq_ignore_ascii_case(k))
}

/// Reads the body up to [`MAX_BODY_BYTES`]; a longer one is cut (and will not parse).
async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_BODY_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == MAX_BODY_BYTES {
            break;
        }
    }
    Ok(body)
}

impl Client {
    /// A reply for a request that got no complete answer.
    fn transport_reply(
        &self,
        error: reqwest::Error,
        status: Option<u16>,
        started: Instant,
    ) -> Reply {
        // Every row of a run has the same URL, and it would push the cause past a summary's
        // cut.
        let error = error.without_url();
        let text = error_text(&error);
        let unreached = (status.is_none() && !was_sent(&error))
            .then(|| Unreached::from_error_text(&text, was_refused(&error), error.is_timeout()));
        let answer = if unreached.is_some() {
            Answer::NotSent
        } else {
            Answer::InDoubt
        };
        let text = match unreached {
            Some(cause) => format!("{}: {text}", cause.explain()),
            None => text,
        };
        let message = self.inner.redactor.text(text);
        Reply {
            class: classify(&answer, SystemTime::now()),
            http_status: status,
            message: Some(cap_text(message, MAX_STORED_MESSAGE)),
            ticket: None,
            excerpt: String::new(),
            elapsed: started.elapsed(),
            unreached,
        }
    }
}

/// The proxy the environment sets for the target's scheme and host, without credentials.
fn environment_proxy(target: &Target) -> Option<String> {
    let uri: hyper::Uri = target.base_url().parse().ok()?;
    let intercept = hyper_util::client::proxy::matcher::Matcher::from_env().intercept(&uri)?;
    Some(super::target::without_credentials(
        &intercept.uri().to_string(),
    ))
}

/// Whether the request may have reached the server. Only failures known to happen before the
/// request went out (connect errors, a request hyper cancelled before dispatch) count as not
/// sent; everything else is in doubt.
fn was_sent(error: &reqwest::Error) -> bool {
    if error.is_connect() || error.is_builder() {
        return false;
    }
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(hyper_error) = cause.downcast_ref::<hyper::Error>()
            && hyper_error.is_canceled()
        {
            return false;
        }
        source = cause.source();
    }
    true
}

/// Whether the OS refused the connection (nothing listens there).
fn was_refused(error: &reqwest::Error) -> bool {
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// The error and its causes on one line, repeated texts dropped. reqwest's texts never name a
/// header, so the token cannot appear.
fn error_text(error: &reqwest::Error) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}
