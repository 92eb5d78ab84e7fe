//! Simulator settings: the token policy, accepted sub statuses and the seeded fault rates.

use std::time::Duration;

/// Port `kapsync simulate` listens on.
pub const DEFAULT_SIM_PORT: u16 = 8787;
/// Address `kapsync simulate` binds.
pub const DEFAULT_SIM_BIND: &str = "127.0.0.1";
/// `sub_status` keys the simulator accepts, as seen in public Kapture tenants.
pub const DEFAULT_SUB_STATUSES: &str = "P,CL,OP,IN,RS,PE,CRS,CO";
/// How long a "hang" holds its answer unless told otherwise.
pub const DEFAULT_HANG_FOR: Duration = Duration::from_secs(60);

/// Added latency before each Update Ticket answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latency {
    /// Always this long.
    Fixed(Duration),
    /// Uniformly between the two bounds (inclusive), drawn from the seeded generator.
    Range(Duration, Duration),
}

impl Latency {
    /// Parses `20ms` or a range `5ms..200ms`.
    pub fn parse(text: &str) -> Result<Latency, SimError> {
        let invalid = |reason: String| SimError::Latency {
            text: text.to_owned(),
            reason,
        };
        let one =
            |part: &str| humantime::parse_duration(part.trim()).map_err(|e| invalid(e.to_string()));
        match text.split_once("..") {
            None => Ok(Latency::Fixed(one(text)?)),
            Some((low, high)) => {
                let (low, high) = (one(low)?, one(high)?);
                if low > high {
                    return Err(invalid("the lower bound is above the upper one".into()));
                }
                Ok(Latency::Range(low, high))
            }
        }
    }

    /// The delay for one request.
    pub(crate) fn draw(&self, rng: &mut fastrand::Rng) -> Duration {
        match *self {
            Latency::Fixed(d) => d,
            Latency::Range(low, high) => {
                let span = (high - low).as_micros() as u64;
                low + Duration::from_micros(rng.u64(0..=span))
            }
        }
    }
}

/// Everything the simulator can be told. The default serves every request correctly.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The token expected after `Basic `; `None` accepts any token.
    pub token: Option<String>,
    /// Accepted `sub_status` keys.
    pub sub_statuses: Vec<String>,
    /// Seed for every random fault decision, so runs repeat.
    pub seed: u64,
    /// Share of requests answered 500/502/503 with an HTML page.
    pub fail_rate: f64,
    /// Share of requests answered 429 with `Retry-After`.
    pub throttle_rate: f64,
    /// Update requests served per second before answering 429; 0 means no limit.
    pub rate_limit: u32,
    /// Added latency, if any.
    pub latency: Option<Latency>,
    /// Share of requests answered only after [`SimConfig::hang_for`].
    pub hang_rate: f64,
    /// How long a hanging request waits before it is answered (and applied) as usual.
    pub hang_for: Duration,
    /// Share of requests whose connection is closed without any answer (nothing applied).
    pub drop_rate: f64,
    /// Answer "Invalid Auth Key" to every request after the first N.
    pub auth_fail_after: Option<u64>,
    /// Answer each success with a whole ticket like Kapture's success example (about 2 KB).
    pub full_tickets: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            token: None,
            sub_statuses: split_list(DEFAULT_SUB_STATUSES),
            seed: 0,
            fail_rate: 0.0,
            throttle_rate: 0.0,
            rate_limit: 0,
            latency: None,
            hang_rate: 0.0,
            hang_for: DEFAULT_HANG_FOR,
            drop_rate: 0.0,
            auth_fail_after: None,
            full_tickets: false,
        }
    }
}

/// A simulator setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A rate outside 0..=1.
    #[error("failed to use --{name} {value}: give a share between 0 and 1, e.g. 0.05")]
    Rate { name: &'static str, value: f64 },
    /// A latency that does not parse.
    #[error("failed to parse --latency {text:?}: {reason} (examples: 20ms, 5ms..200ms)")]
    Latency { text: String, reason: String },
    /// No sub status keys.
    #[error("failed to use --sub-statuses: give at least one key, e.g. P,CL")]
    NoSubStatuses,
    /// `--token` was given: it would show the token to every user in `ps`.
    #[error(
        "--token was removed: a token on the command line is visible to every user in `ps`; \
         set KAPTURE_TOKEN or pass --token-file PATH"
    )]
    TokenFlag,
    /// The token file or `KAPTURE_TOKEN` could not be used.
    #[error(transparent)]
    Token(#[from] crate::kapture::TokenError),
}

impl SimError {
    /// Whether the user can fix this (exit code 2): always, it is a flag's value.
    pub fn is_usage(&self) -> bool {
        true
    }
}

impl SimConfig {
    /// Checks the rates and lists; [`super::Simulator::start`] calls it too.
    pub fn validate(&self) -> Result<(), SimError> {
        for (name, value) in [
            ("fail-rate", self.fail_rate),
            ("throttle-rate", self.throttle_rate),
            ("hang-rate", self.hang_rate),
            ("drop-rate", self.drop_rate),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(SimError::Rate { name, value });
            }
        }
        if self.sub_statuses.is_empty() {
            return Err(SimError::NoSubStatuses);
        }
        Ok(())
    }

    /// One line saying which token is accepted, without showing it.
    pub fn token_policy(&self) -> &'static str {
        match self.token {
            Some(_) => {
                "token: required (from --token-file or KAPTURE_TOKEN), on /_sim/ too; others get \
                 \"Invalid Auth Key\""
            }
            None => "token: any token accepted (set KAPTURE_TOKEN or --token-file to check it)",
        }
    }
}

/// A token without its `Basic ` prefix and surrounding space.
pub(crate) fn normalize_token(text: &str) -> &str {
    crate::kapture::strip_basic(text)
}

/// The items of a comma-separated list, trimmed, empty ones dropped.
pub fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_fixed_or_a_range() {
        assert_eq!(
            Latency::parse("20ms").unwrap(),
            Latency::Fixed(Duration::from_millis(20))
        );
        let range = Latency::parse("5ms..200ms").unwrap();
        assert_eq!(
            range,
            Latency::Range(Duration::from_millis(5), Duration::from_millis(200))
        );
        let mut rng = fastrand::Rng::with_seed(1);
        for _ in 0..100 {
            let d = range.draw(&mut rng);
            assert!(d >= Duration::from_millis(5) && d <= Duration::from_millis(200));
        }
        assert!(Latency::parse("200ms..5ms").is_err());
        assert!(Latency::parse("fast").is_err());
    }

    #[test]
    fn rates_must_be_shares() {
        let config = SimConfig {
            drop_rate: 1.5,
            ..SimConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(SimError::Rate {
                name: "drop-rate",
                ..
            })
        ));
        assert!(SimConfig::default().validate().is_ok());
    }

    #[test]
    fn defaults_accept_the_documented_sub_statuses() {
        let config = SimConfig::default();
        assert_eq!(
            config.sub_statuses,
            ["P", "CL", "OP", "IN", "RS", "PE", "CRS", "CO"]
        );
        assert_eq!(normalize_token(" Basic abc "), "abc");
    }
}
