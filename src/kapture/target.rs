//! Where requests go: a subdomain of kapturecrm.com or an explicit base URL, checked once.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs as _};

use reqwest::Url;

/// The base URL every Kapture request is sent below, without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    base_url: String,
    /// Whether the host is this machine (a loopback address, `localhost`, or a plain-http
    /// name whose every address is loopback): such requests never go through a proxy.
    loopback: bool,
    /// For a plain-http name: the loopback addresses it was checked against. The client
    /// connects only to these, so a resolver that changes its answer later cannot send the
    /// token elsewhere.
    pinned: Vec<SocketAddr>,
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
         (127.0.0.0/8, ::1, localhost){found}; use https://",
        found = resolved.as_deref().map(|a| format!(", and the name resolves to {a}")).unwrap_or_default()
    )]
    InsecureHttp {
        url: String,
        /// The addresses a name resolved to, when one of them is not loopback.
        resolved: Option<String>,
    },
    /// A plain-http name that does not resolve, so it cannot be checked to be loopback.
    #[error(
        "failed to use base URL {url}: its host does not resolve ({reason}), so it cannot be \
         checked to be loopback, which plain http:// requires; check the name or use \
         http://127.0.0.1"
    )]
    Unresolved { url: String, reason: String },
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

    /// The host name or address requests go to.
    pub fn host(&self) -> String {
        Url::parse(&self.base_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Whether requests stay on this machine (they then never go through a proxy).
    pub fn is_loopback(&self) -> bool {
        self.loopback
    }

    /// The addresses a plain-http name was checked against (empty otherwise): connect only
    /// to these.
    pub fn pinned_addrs(&self) -> &[SocketAddr] {
        &self.pinned
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
            loopback: false,
            pinned: Vec::new(),
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
        let (mut loopback, mut pinned) = (is_loopback_literal(&url), Vec::new());
        match url.scheme() {
            "https" => {}
            "http" if loopback => pinned = literal_addrs(&url),
            "http" => {
                pinned = resolve_loopback(&url, text)?;
                loopback = true;
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
            loopback,
            pinned,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base_url)
    }
}

/// Whether a URL's host is, as written, a loopback address or the name `localhost` (exactly:
/// `localhost.` and `x.localhost` are names a DNS server answers for). No resolver is asked.
fn is_loopback_literal(url: &Url) -> bool {
    match host_ip(url) {
        Some(ip) => ip.is_loopback(),
        None => url
            .host_str()
            .is_some_and(|name| name.eq_ignore_ascii_case("localhost")),
    }
}

/// The host as an address, when it is written as one (IPv6 hosts come bracketed).
fn host_ip(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// The addresses of a literal loopback host; `localhost` is pinned to 127.0.0.1 and ::1 so
/// that no resolver is asked about it.
fn literal_addrs(url: &Url) -> Vec<SocketAddr> {
    let port = url.port_or_known_default().unwrap_or(80);
    match host_ip(url) {
        Some(_) => Vec::new(),
        None => vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
        ],
    }
}

/// Resolves a plain-http name and accepts it only when every address is loopback.
fn resolve_loopback(url: &Url, text: &str) -> Result<Vec<SocketAddr>, TargetError> {
    let host = url.host_str().unwrap_or("");
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| TargetError::Unresolved {
            url: text.to_owned(),
            reason: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(TargetError::Unresolved {
            url: text.to_owned(),
            reason: "no addresses".to_owned(),
        });
    }
    if !all_loopback(&addrs) {
        let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
        return Err(TargetError::InsecureHttp {
            url: text.to_owned(),
            resolved: Some(list.join(", ")),
        });
    }
    Ok(addrs)
}

/// Whether every address is a loopback one (an empty list is not).
fn all_loopback(addrs: &[SocketAddr]) -> bool {
    !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
}

/// The URL text with any `user:password@` part cut out, safe to show in an error.
pub(crate) fn without_credentials(text: &str) -> String {
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
            "http://localhost.evil.invalid",
            "http://[2001:db8::1]",
            "http://0.0.0.0",
        ] {
            let err = Target::resolve(None, Some(url)).unwrap_err();
            assert!(
                matches!(
                    err,
                    TargetError::InsecureHttp { .. } | TargetError::Unresolved { .. }
                ),
                "{url}: {err}"
            );
            assert!(err.to_string().contains("loopback"), "{err}");
        }
    }

    #[test]
    fn literal_loopback_hosts_ask_no_resolver_and_localhost_is_pinned() {
        let target = Target::resolve(None, Some("http://LocalHost:4321")).unwrap();
        assert!(target.is_loopback());
        let pinned: Vec<String> = target
            .pinned_addrs()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(pinned, ["127.0.0.1:4321", "[::1]:4321"]);
        let target = Target::resolve(None, Some("http://127.0.0.2:1")).unwrap();
        assert!(target.is_loopback() && target.pinned_addrs().is_empty());
        let https = Target::resolve(None, Some("https://acme.example")).unwrap();
        assert!(!https.is_loopback());
        assert_eq!(https.host(), "acme.example");
    }

    #[test]
    fn a_plain_http_name_must_resolve_to_loopback_only() {
        assert!(all_loopback(&[
            "127.0.0.1:80".parse().unwrap(),
            "[::1]:80".parse().unwrap()
        ]));
        assert!(!all_loopback(&[
            "127.0.0.1:80".parse().unwrap(),
            "10.0.0.1:80".parse().unwrap()
        ]));
        assert!(!all_loopback(&[]));
        // The machine's own name usually resolves to a network address: refused, naming it.
        if let Ok(name) = std::fs::read_to_string("/etc/hostname") {
            let name = name.trim();
            let url = format!("http://{name}:8080");
            if let Ok(addrs) = (name, 8080).to_socket_addrs() {
                let addrs: Vec<SocketAddr> = addrs.collect();
                if all_loopback(&addrs) {
                    // A name for this machine only: accepted, and pinned to what was checked.
                    let target = Target::resolve(None, Some(&url)).unwrap();
                    assert!(target.is_loopback());
                    assert_eq!(target.pinned_addrs(), addrs);
                } else {
                    let err = Target::resolve(None, Some(&url)).unwrap_err();
                    assert!(err.to_string().contains("resolves to"), "{err}");
                }
            }
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
