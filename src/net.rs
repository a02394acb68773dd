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

#[cfg(test)]
mod tests {
    use super::*;

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
