//! Request parameters (query and form body together) and the checks several actions share.

use super::response::ApiError;

/// Every `name=value` pair received, in arrival order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses the query string and a form-encoded body as one list.
    pub fn parse(query: Option<&str>, form_body: &[u8]) -> Self {
        let mut pairs: Vec<(String, String)> = Vec::new();
        if let Some(query) = query {
            pairs.extend(form_urlencoded::parse(query.as_bytes()).into_owned());
        }
        pairs.extend(form_urlencoded::parse(form_body).into_owned());
        Params { pairs }
    }

    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Params {
            pairs: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// The first value of `name`, if sent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Replaces every value of `name` with `value` (V3 sends some parameters as headers).
    pub fn set(&mut self, name: &str, value: &str) {
        self.pairs.retain(|(k, _)| k != name);
        self.pairs.push((name.to_string(), value.to_string()));
    }

    /// The value of `name` unless absent or empty.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// Every pair except `Signature`: what the string-to-sign covers.
    pub fn signed_pairs(&self) -> Vec<(String, String)> {
        self.pairs
            .iter()
            .filter(|(k, _)| k != "Signature")
            .cloned()
            .collect()
    }
}

/// An optional text of at most `max_chars` characters; too long → 400 `code`.
pub(crate) fn optional_chars<'p>(
    params: &'p Params,
    name: &str,
    max_chars: usize,
    code: &'static str,
) -> Result<Option<&'p str>, ApiError> {
    match params.get(name) {
        Some(v) if v.chars().count() > max_chars => Err(ApiError::invalid(
            code,
            format!("{name} must be at most {max_chars} characters."),
        )),
        other => Ok(other),
    }
}

/// An absolute `http`/`https` URL with a host, and no white space.
pub(crate) fn is_web_url(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &url[8..]
    } else if lower.starts_with("http://") {
        &url[7..]
    } else {
        return false;
    };
    if url.chars().any(char::is_whitespace) {
        return false;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = if host_port.starts_with('[') {
        host_port
            .split(']')
            .next()
            .map(|h| h.trim_start_matches('['))
            .unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    !host.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_form_body_are_read_together_and_decoded() {
        let params = Params::parse(
            Some("Action=List&PersonId=a%20b"),
            b"CategoryId=%E5%BC%A0&Name=x+y",
        );
        assert_eq!(params.get("Action"), Some("List"));
        assert_eq!(params.get("PersonId"), Some("a b"));
        assert_eq!(params.get("CategoryId"), Some("张"));
        assert_eq!(params.get("Name"), Some("x y"));
    }

    #[test]
    fn signature_is_left_out_of_the_signed_pairs() {
        let params = Params::from_pairs(&[("A", "1"), ("Signature", "x"), ("B", "2")]);
        let names: Vec<String> = params.signed_pairs().into_iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["A", "B"]);
    }

    #[test]
    fn only_absolute_web_urls_with_a_host_pass() {
        for good in [
            "http://a.example/x.jpg",
            "HTTPS://b.example:8443/p?q=1",
            "http://u@[::1]:80/x",
            "https://h",
        ] {
            assert!(is_web_url(good), "{good}");
        }
        for bad in [
            "ftp://a/x",
            "http:///x.jpg",
            "https://:80/x",
            "/relative.jpg",
            "http://a b/x",
            "",
            "http://",
        ] {
            assert!(!is_web_url(bad), "{bad}");
        }
    }
}
