//! Talking to Kapture: the target URL, the secret token, requests and response classification.

/// A Kapture target that cannot be used (bad URL, plain http to a non-loopback host).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(pub String);
