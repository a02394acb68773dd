//! Unit tests of the signed client: URLs, signing, errors, secrets kept out of output.

use super::*;
use crate::credentials::Secret;

fn creds(token: Option<&str>) -> Credentials {
    Credentials {
        access_key_id: "testId".into(),
        access_key_secret: Secret::new("testKeySecret"),
        security_token: token.map(Secret::new),
    }
}

fn client(url: &str, token: Option<&str>) -> Result<Client, ApiError> {
    Client::new(ClientConfig {
        endpoints: Endpoints::single(url)?,
        credentials: creds(token),
        signature: SignatureVersion::default(),
        timeout: Duration::from_secs(5),
        max_idle_per_host: 4,
    })
}

#[test]
fn region_endpoints_are_https_per_service() {
    let e = Endpoints::for_region("cn-beijing");
    assert_eq!(e.mts, "https://mts.cn-beijing.aliyuncs.com/");
    assert_eq!(e.ice, "https://ice.cn-beijing.aliyuncs.com/");
}

#[test]
fn single_endpoint_gets_a_trailing_slash_and_serves_both() {
    let e = Endpoints::single("http://127.0.0.1:8080").unwrap();
    assert_eq!(
        (e.mts.as_str(), e.ice.as_str()),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/")
    );
    let e = Endpoints::single("https://gw.example.com/api").unwrap();
    assert_eq!(e.mts, "https://gw.example.com/api/");
}

#[test]
fn an_endpoint_with_credentials_is_refused_without_echoing_them() {
    let e = Endpoints::single("https://user:hunter2@gw.example.com/").unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert!(e.to_string().contains("must not carry credentials"), "{e}");
}

#[test]
fn single_endpoint_refuses_non_urls_and_other_schemes() {
    for bad in [
        "",
        "mts.aliyuncs.com",
        "ftp://x/",
        "https://x/?a=b",
        "https://u:p@x/",
    ] {
        let e = Endpoints::single(bad).unwrap_err();
        assert_eq!(
            (e.code(), e.class()),
            ("InvalidEndpoint", ErrorClass::RunFatal),
            "{bad}"
        );
    }
}

#[test]
fn plain_http_is_allowed_only_to_loopback_hosts() {
    for ok in [
        "http://127.0.0.1:1/",
        "http://127.8.9.10/",
        "http://[::1]:9/",
        "http://localhost:3/",
    ] {
        assert!(client(ok, None).is_ok(), "{ok}");
    }
    for bad in [
        "http://10.0.0.1/",
        "http://example.com/",
        "http://localhost.evil.com/",
    ] {
        let e = client(bad, None).unwrap_err();
        assert_eq!(
            (e.code(), e.class()),
            ("InsecureEndpoint", ErrorClass::RunFatal),
            "{bad}"
        );
    }
    assert!(client("https://mts.cn-shanghai.aliyuncs.com/", None).is_ok());
}

#[test]
fn signed_url_carries_every_common_parameter_and_a_valid_signature() {
    let c = client("http://127.0.0.1:1/", None).unwrap();
    let url = c.signed_url(
        &creds(None),
        Service::Mts,
        "ListCustomPersons",
        &[("PersonId", "a b*")],
        "n-1",
        "2024-01-02T03:04:05Z",
    );
    let (base, query) = url.as_str().split_once('?').unwrap();
    assert_eq!(base, "http://127.0.0.1:1/");
    let (unsigned, sig) = query.rsplit_once("&Signature=").unwrap();
    assert_eq!(
        unsigned,
        "AccessKeyId=testId&Action=ListCustomPersons&Format=JSON&PersonId=a%20b%2A&SignatureMethod=HMAC-SHA1\
         &SignatureNonce=n-1&SignatureVersion=1.0&Timestamp=2024-01-02T03%3A04%3A05Z&Version=2014-06-18"
    );
    let params: Vec<(String, String)> = [
        ("AccessKeyId", "testId"),
        ("Action", "ListCustomPersons"),
        ("Format", "JSON"),
        ("PersonId", "a b*"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", "n-1"),
        ("SignatureVersion", "1.0"),
        ("Timestamp", "2024-01-02T03:04:05Z"),
        ("Version", "2014-06-18"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        sig,
        sign::percent_encode(&sign::sign("POST", "testKeySecret", &params))
    );
}

#[test]
fn sts_credentials_add_the_security_token_and_ice_uses_its_version() {
    let c = client("http://127.0.0.1:1/", Some("tok/en")).unwrap();
    let url = c.signed_url(
        &creds(Some("tok/en")),
        Service::Ice,
        "ListRecognitionLibs",
        &[],
        "n",
        "t",
    );
    assert!(url.as_str().contains("&SecurityToken=tok%2Fen&"), "{url}");
    assert!(url.as_str().contains("Version=2020-11-09"), "{url}");
}

#[test]
fn a_v3_request_carries_every_header_once_and_a_value_no_header_can_carry_is_refused() {
    let c = client("http://127.0.0.1:8080/", None).unwrap();
    let url = reqwest::Url::parse("http://127.0.0.1:8080/?Format=JSON").unwrap();
    let sent = vec![
        ("x-acs-action", "RegisterCustomFace".to_string()),
        ("authorization", "ACS3-HMAC-SHA256 Credential=k".to_string()),
    ];
    let request = c.v3_builder(url.clone(), sent).build().unwrap();
    assert_eq!(request.url(), &url);
    assert_eq!(request.method(), reqwest::Method::POST);
    let headers: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
        .collect();
    assert_eq!(
        headers,
        [
            ("x-acs-action", "RegisterCustomFace"),
            ("authorization", "ACS3-HMAC-SHA256 Credential=k")
        ]
    );
    // A token with a line break in it: an error from the builder, nothing sent.
    let bad = vec![("x-acs-security-token", "a\nb".to_string())];
    assert!(c.v3_builder(url, bad).build().is_err());
}

#[test]
fn v3_requests_carry_the_acs_headers_and_an_authorization_the_vectors_agree_with() {
    let c = client("http://127.0.0.1:8080/", Some("tok/en")).unwrap();
    let (url, headers) = c.v3_request(
        &creds(Some("tok/en")),
        Service::Mts,
        "RegisterCustomFace",
        &[("PersonId", "a b*")],
        "n-1",
        "2024-01-02T03:04:05Z",
    );
    assert_eq!(
        url.as_str(),
        "http://127.0.0.1:8080/?Format=JSON&PersonId=a%20b%2A"
    );
    let names: Vec<&str> = headers.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        names,
        [
            "x-acs-action",
            "x-acs-version",
            "x-acs-date",
            "x-acs-signature-nonce",
            "x-acs-content-sha256",
            "x-acs-security-token",
            "authorization"
        ]
    );
    assert!(
        !url.as_str().contains("tok"),
        "the token stays out of the URL: {url}"
    );
    let signed: Vec<(String, String)> =
        std::iter::once(("host".to_string(), "127.0.0.1:8080".to_string()))
            .chain(headers[..6].iter().map(|(k, v)| (k.to_string(), v.clone())))
            .collect();
    let query = [
        ("Format".to_string(), "JSON".to_string()),
        ("PersonId".to_string(), "a b*".to_string()),
    ];
    let expected = sign::v3::authorization(
        "testId",
        "testKeySecret",
        &sign::v3::Request {
            method: "POST",
            path: "/",
            query: &query,
            headers: &signed,
            hashed_payload: &sign::v3::hashed_payload(b""),
        },
    );
    assert_eq!(headers[6].1, expected);
    assert!(expected.contains("SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-security-token;x-acs-signature-nonce;x-acs-version,"));
}

#[test]
fn v3_signs_the_host_with_its_port_and_the_base_path() {
    let t = Target::of(&reqwest::Url::parse("https://gw.example.com/api/").unwrap());
    assert_eq!(
        (t.host.as_str(), t.path.as_str()),
        ("gw.example.com", "/api/")
    );
    let t = Target::of(&reqwest::Url::parse("https://gw.example.com:443/").unwrap());
    assert_eq!(t.host, "gw.example.com", "the default port is not sent");
    let t = Target::of(&reqwest::Url::parse("http://127.0.0.1:9/").unwrap());
    assert_eq!(t.host, "127.0.0.1:9");
}

#[test]
fn every_call_gets_a_fresh_uuid_nonce() {
    let (a, b) = (new_nonce(), new_nonce());
    assert_ne!(a, b);
    assert_eq!(uuid::Uuid::parse_str(&a).unwrap().get_version_num(), 4);
}

#[test]
fn timestamps_are_utc_seconds_with_a_z() {
    let t = time::macros::datetime!(2015-05-14 17:03:45.123 +08:00);
    assert_eq!(crate::clock::seconds_text(t), "2015-05-14T09:03:45Z");
    assert_eq!(timestamp_now().len(), 20);
}

#[test]
fn errors_never_show_the_security_token_in_any_encoding() {
    let msg = "x. server string to sign is:POST&%2F&SecurityToken%3Da%252Fb%252Bc";
    let e = scrub(
        &creds(Some("a/b+c")),
        ApiError::new(Some(400), "SignatureDoesNotMatch", msg),
    );
    let shown = format!("{e} {e:?}");
    assert!(
        !shown.contains("a%252Fb") && !shown.contains("a/b+c"),
        "{shown}"
    );
}

#[test]
fn client_debug_shows_the_key_id_but_not_the_secret() {
    let c = client("http://127.0.0.1:1/", Some("tok")).unwrap();
    let shown = format!("{c:?}");
    assert!(
        shown.contains("testId") && !shown.contains("testKeySecret") && !shown.contains("tok"),
        "{shown}"
    );
}
