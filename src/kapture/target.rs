//! Where requests go: a subdomain of kapturecrm.com or an explicit base URL, checked once.

use std::fmt;

use reqwest::Url;

/// The base URL every Kapture request is sent below, without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    base_url: String,
}

/// A Kapture target that cannot be used: the user's to fix, so it maps to exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Neither a subdomain nor a base URL was given.
    #[error(
        "failed to find the Kapture target: pass --subdomain NAME or --base-url URL \
         (or set KAPSYNC_SUBDOMAIN / KAPSYNC_BASE_URL, or subdomain / base_url in kapsync.toml)"
    )]
    Missing,
    /// The subdomain is not a single DNS label.
    #[error("failed to use subdomain {name:?}: {reason}")]
    Subdomain { name: String, reason: &'static str },
    /// The base URL cannot be parsed or has parts kapsync does not accept.
    #[error("failed to use base URL {url}: {reason}")]
    BaseUrl { url: String, reason: String },
    /// Plain http to a host that is not loopback.
    #[error(
        "failed to use base URL {url}: plain http:// is allowed only to loopback addresses \
         (127.0.0.0/8, ::1, localhost); use https://"
    )]
    InsecureHttp { url: String },
}

impl TargetError {
    /// Whether the user can fix this (exit code 2): a target is always given by the user.
    pub fn is_usage(&self) -> bool {
        true
    }
}

impl Target {
    /// `subdomain` NAME means `https://NAME.kapturecrm.com`; `base_url` overrides it. Plain
    /// `http://` is accepted only to loopback hosts.
    pub fn resolve(subdomain: Option<&str>, base_url: Option<&str>) -> Result<Target, TargetError> {
        fn given(value: Option<&str>) -> Option<&str> {
            value.map(str::trim).filter(|v| !v.is_empty())
        }
        match (given(subdomain), given(base_url)) {
            (_, Some(url)) => Self::from_base_url(url),
            (Some(name), None) => Self::from_subdomain(name),
            (None, None) => Err(TargetError::Missing),
        }
    }

    /// The base URL, without a trailing slash, e.g. `https://acme.kapturecrm.com`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The full URL of an API path such as [`super::UPDATE_TICKET_PATH`].
    pub(crate) fn url_for(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    fn from_subdomain(name: &str) -> Result<Target, TargetError> {
        let invalid = |reason| TargetError::Subdomain {
            name: name.to_owned(),
            reason,
        };
        if name.contains('.') || name.contains('/') {
            return Err(invalid(
                "give only NAME from NAME.kapturecrm.com, or use --base-url for a full URL",
            ));
        }
        let valid = name.len() <= 63
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !valid {
            return Err(invalid(
                "use letters, digits and inner hyphens only (at most 63 characters)",
            ));
        }
        Ok(Target {
            base_url: format!("https://{}.kapturecrm.com", name.to_ascii_lowercase()),
        })
    }

    fn from_base_url(text: &str) -> Result<Target, TargetError> {
        let url = Url::parse(text).map_err(|e| TargetError::BaseUrl {
            url: without_credentials(text),
            reason: e.to_string(),
        })?;
        let refuse = |reason: &str| TargetError::BaseUrl {
            url: without_credentials(text),
            reason: reason.to_owned(),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refuse(
                "credentials in the URL are not accepted; the token comes from KAPTURE_TOKEN \
                 or --token-file",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(refuse("a base URL takes no query or fragment"));
        }
        match url.scheme() {
            "https" => {}
            "http" => {
                if !is_loopback(url.host_str()) {
                    return Err(TargetError::InsecureHttp {
                        url: text.to_owned(),
                    });
                }
            }
            _ => {
                return Err(refuse(
                    "the scheme must be https:// (or http:// to loopback)",
                ));
            }
        }
        if url.host().is_none() {
            return Err(refuse("the URL names no host"));
        }
        Ok(Target {
            base_url: url.as_str().trim_end_matches('/').to_owned(),
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base_url)
    }
}

/// Whether a URL's host is a loopback address or `localhost`. IPv6 hosts come bracketed.
fn is_loopback(host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.trim_end_matches('.').eq_ignore_ascii_case("localhost"),
    }
}

/// The URL text with any `user:password@` part cut out, safe to show in an error.
fn without_credentials(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!(
                "{}://[credentials removed]@{}",
                &text[..scheme_end],
                &text[at + 1..]
            )
        }
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subdomain_means_https_kapturecrm() {
        let target = Target::resolve(Some("Acme-2"), None).unwrap();
        assert_eq!(target.base_url(), "https://acme-2.kapturecrm.com");
        assert_eq!(
            target.url_for(crate::kapture::UPDATE_TICKET_PATH),
            "https://acme-2.kapturecrm.com/update-ticket-from-other-source.html/v.2.0"
        );
    }

    #[test]
    fn a_base_url_overrides_the_subdomain_and_loses_its_trailing_slash() {
        let target = Target::resolve(Some("acme"), Some("https://proxy.example/kapture/")).unwrap();
        assert_eq!(target.base_url(), "https://proxy.example/kapture");
    }

    #[test]
    fn https_is_accepted_anywhere() {
        for url in [
            "https://10.1.2.3",
            "https://acme.kapturecrm.com",
            "https://[2001:db8::1]:8443",
        ] {
            assert!(Target::resolve(None, Some(url)).is_ok(), "{url}");
        }
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for url in [
            "http://127.0.0.1:8787",
            "http://127.9.8.7",
            "http://[::1]:9000/",
            "http://localhost:1",
            "http://LOCALHOST",
        ] {
            assert!(Target::resolve(None, Some(url)).is_ok(), "{url}");
        }
        for url in [
            "http://10.1.2.3",
            "http://acme.kapturecrm.com",
            "http://localhost.evil.example",
            "http://[2001:db8::1]",
            "http://0.0.0.0",
        ] {
            let err = Target::resolve(None, Some(url)).unwrap_err();
            assert!(
                matches!(err, TargetError::InsecureHttp { .. }),
                "{url}: {err}"
            );
            assert!(err.to_string().contains("loopback"), "{err}");
        }
    }

    #[test]
    fn neither_given_says_what_to_pass() {
        let err = Target::resolve(None, Some("  ")).unwrap_err();
        assert!(err.to_string().contains("--subdomain"), "{err}");
        assert!(err.to_string().contains("--base-url"), "{err}");
    }

    #[test]
    fn bad_subdomains_and_urls_are_refused() {
        for name in ["acme.kapturecrm.com", "-acme", "ac me", "a/b"] {
            assert!(Target::resolve(Some(name), None).is_err(), "{name}");
        }
        for url in ["ftp://acme", "not a url", "https://h/?x=1", "https://h/#f"] {
            assert!(Target::resolve(None, Some(url)).is_err(), "{url}");
        }
    }

    #[test]
    fn credentials_in_the_url_are_refused_and_not_echoed() {
        let err = Target::resolve(None, Some("https://user:SECRET@acme.example")).unwrap_err();
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }
}
