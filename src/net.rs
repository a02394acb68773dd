//! Small network facts every HTTP caller shares (the services' client and the credential
//! sources): whether a host is this machine, and an error with its causes on one line. A leaf:
//! it imports nothing of ours.

/// Whether a URL's host is this machine (`localhost`, 127.0.0.0/8, `[::1]`): the only place
/// plain http is allowed (a sandbox), for the services and for credential endpoints alike.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The error and its causes on one line (reqwest's own text stops at the first level).
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(err) = source {
        let text = err.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = err.source();
    }
    out
}

/// What a failed connection attempt ran into, in the words an operator pages on: `DNS lookup
/// failed`, `connection refused`, `TLS handshake failed`, `timed out`, else `could not connect`.
/// The error's kind when it has one, else its text (hyper and rustls say it only in words).
pub fn connect_failure(error: &(dyn std::error::Error + 'static)) -> &'static str {
    let mut source = Some(error);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused",
                std::io::ErrorKind::TimedOut => return "timed out",
                _ => {}
            }
        }
        source = err.source();
    }
    let text = describe(error).to_ascii_lowercase();
    let says = |words: &[&str]| words.iter().any(|w| text.contains(w));
    if says(&[
        "dns error",
        "failed to lookup address",
        "name or service not known",
        "no such host",
    ]) {
        "DNS lookup failed"
    } else if says(&["connection refused"]) {
        "connection refused"
    } else if says(&["certificate", "tls", "handshake", "invalid peer"]) {
        "TLS handshake failed"
    } else if says(&["timed out", "timeout", "deadline"]) {
        "timed out"
    } else {
        "could not connect"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Said(&'static str, Option<std::io::Error>);

    impl std::fmt::Display for Said {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Said {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_ref().map(|e| e as _)
        }
    }

    #[test]
    fn a_connect_failure_is_named_by_its_kind_or_its_words() {
        let refused = Said(
            "client error (Connect)",
            Some(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        );
        assert_eq!(connect_failure(&refused), "connection refused");
        let cases = [
            (
                "client error (Connect): dns error: failed to lookup address information",
                "DNS lookup failed",
            ),
            (
                "client error (Connect): invalid peer certificate: UnknownIssuer",
                "TLS handshake failed",
            ),
            ("client error (Connect): operation timed out", "timed out"),
            ("client error (Connect)", "could not connect"),
        ];
        for (text, named) in cases {
            assert_eq!(connect_failure(&Said(text, None)), named, "{text}");
        }
    }

    #[test]
    fn loopback_hosts_are_told_from_others() {
        for host in ["localhost", "127.0.0.1", "127.3.4.5", "[::1]"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["example.com", "10.0.0.1", "[::2]"] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
