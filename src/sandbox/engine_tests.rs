//! Tests of a request's whole trip through the engine, without HTTP.

use super::*;

/// A correctly signed request for `action` with `extra` params, a fresh nonce and timestamp.
fn signed(method: &str, action: &str, extra: &[(&str, &str)]) -> Params {
    let pairs = crate::sandbox::tests::signed_pairs(method, action, extra);
    let borrowed: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    Params::from_pairs(&borrowed)
}

fn engine(config: SandboxConfig) -> (Arc<Engine>, watch::Sender<bool>) {
    let (stop, stopped) = watch::channel(false);
    (Arc::new(Engine::new(config, stopped).unwrap()), stop)
}

fn register(n: usize) -> Params {
    let url = format!("http://img.example/{n}.jpg");
    signed(
        "POST",
        "RegisterCustomFace",
        &[
            ("CategoryId", "c"),
            ("PersonId", &format!("p{n}")),
            ("ImageUrl", &url),
        ],
    )
}

/// The status and `Code` (or "ok" for a 200 JSON body with a RequestId; "reset" for a reset).
fn summary(outcome: &Outcome) -> (u16, String) {
    match outcome {
        Outcome::Reset => (0, "reset".into()),
        Outcome::Reply(reply) => {
            let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
            let code = match body.get("Code") {
                Some(code) => code.as_str().unwrap_or_default().to_string(),
                None if body.get("RequestId").is_some() => "ok".into(),
                None => "unparsable".into(),
            };
            (reply.status, code)
        }
    }
}

fn faces(engine: &Engine) -> usize {
    engine.snapshot().faces().count()
}

#[tokio::test]
async fn a_signed_register_is_applied_and_counted() {
    let (engine, _stop) = engine(SandboxConfig::for_tests());
    let outcome = engine.handle("POST", register(1)).await;
    assert_eq!(summary(&outcome), (200, "ok".into()));
    let Outcome::Reply(reply) = outcome else {
        unreachable!()
    };
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    let snapshot = engine.snapshot();
    assert_eq!(
        body["FaceId"].as_str(),
        Some(
            snapshot.mts.categories[0].persons[0].faces[0]
                .face_id
                .as_str()
        )
    );
    assert_eq!((snapshot.stats.requests, snapshot.stats.applied), (1, 1));
    assert_eq!(snapshot.stats.by_action["RegisterCustomFace"], 1);
}

#[tokio::test]
async fn a_reused_nonce_is_refused_and_counted_as_an_auth_rejection() {
    let (engine, _stop) = engine(SandboxConfig::for_tests());
    let params = register(1);
    assert_eq!(
        summary(&engine.handle("POST", params.clone()).await).1,
        "ok"
    );
    assert_eq!(
        summary(&engine.handle("POST", params).await),
        (400, "SignatureNonceUsed".into())
    );
    let stats = engine.snapshot().stats;
    assert_eq!((stats.auth_rejected, stats.applied), (1, 1));
}

#[tokio::test]
async fn a_wrong_method_is_a_signature_mismatch_that_changes_nothing() {
    let (engine, _stop) = engine(SandboxConfig::for_tests());
    let outcome = engine.handle("GET", register(1)).await;
    assert_eq!(summary(&outcome), (400, "SignatureDoesNotMatch".into()));
    let Outcome::Reply(reply) = outcome else {
        unreachable!()
    };
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    assert!(
        body["Message"]
            .as_str()
            .unwrap()
            .contains("server string to sign is:GET&%2F&AccessKeyId%3D")
    );
    assert_eq!(body["HostId"], "mts.cn-shanghai.aliyuncs.com");
    assert_eq!(faces(&engine), 0);
}

#[tokio::test]
async fn unknown_actions_and_wrong_versions_are_refused_after_authentication() {
    let (engine, _stop) = engine(SandboxConfig::for_tests());
    assert_eq!(
        summary(
            &engine
                .handle("POST", signed("POST", "SubmitJobs", &[]))
                .await
        ),
        (404, "InvalidAction.NotFound".into())
    );
    let wrong = signed("POST", "ListCustomPersons", &[("Version", "2020-11-09")]);
    assert_eq!(
        summary(&engine.handle("POST", wrong).await).1,
        "InvalidVersion"
    );
}

#[tokio::test]
async fn over_the_limit_calls_are_throttled_change_nothing_and_are_not_accepted() {
    let config = SandboxConfig {
        mts_qps: 2,
        retry_after_ms: Some(0),
        ..SandboxConfig::for_tests()
    };
    let (engine, _stop) = engine(config);
    for n in 0..2 {
        assert_eq!(summary(&engine.handle("POST", register(n)).await).1, "ok");
    }
    let outcome = engine.handle("POST", register(2)).await;
    assert_eq!(summary(&outcome), (400, "Throttling.User".into()));
    let Outcome::Reply(reply) = outcome else {
        unreachable!()
    };
    assert!(
        reply
            .retry_after_ms
            .is_some_and(|ms| (1..=1000).contains(&ms))
    );
    assert_eq!(
        summary(
            &engine
                .handle("POST", signed("POST", "ListCustomPersons", &[]))
                .await
        )
        .1,
        "ok",
        "separate budget"
    );
    let stats = engine.snapshot().stats;
    assert_eq!(
        (
            stats.throttled,
            stats.by_action["RegisterCustomFace"],
            stats.applied
        ),
        (1, 2, 2)
    );
    assert_eq!(faces(&engine), 2);
    engine.set_qps(0, 0);
    assert_eq!(
        summary(&engine.handle("POST", register(3)).await).1,
        "ok",
        "0 = unlimited"
    );
}

#[tokio::test]
async fn before_faults_apply_nothing_and_after_faults_apply_the_call() {
    let (engine, _stop) = engine(SandboxConfig::for_tests());
    engine.script(
        "RegisterCustomFace",
        vec![
            Fault::ErrorBefore,
            Fault::HtmlBefore,
            Fault::ResetBefore,
            Fault::ErrorAfter,
            Fault::ResetAfter,
            Fault::MalformedAfter,
        ],
    );
    let expected = [
        (500, "InternalError", 0),
        (502, "unparsable", 0),
        (0, "reset", 0),
        (500, "InternalError", 1),
        (0, "reset", 2),
        (200, "unparsable", 3),
    ];
    for (n, (status, code, applied)) in expected.into_iter().enumerate() {
        let outcome = engine.handle("POST", register(n)).await;
        assert_eq!(summary(&outcome), (status, code.to_string()), "fault #{n}");
        assert_eq!(faces(&engine), applied, "after fault #{n}");
    }
    assert_eq!(
        summary(&engine.handle("POST", register(9)).await).1,
        "ok",
        "the script ran out"
    );
    let stats = engine.snapshot().stats;
    assert_eq!(stats.faults.values().sum::<u64>(), 6);
    assert_eq!(stats.faults["reset_before"], 1);
}

#[tokio::test]
async fn a_scripted_throttle_answers_like_the_limiter_and_is_not_accepted() {
    let (engine, _stop) = engine(SandboxConfig::for_tests());
    engine.script("ListCustomPersons", vec![Fault::Throttle]);
    let list = || signed("POST", "ListCustomPersons", &[]);
    assert_eq!(
        summary(&engine.handle("POST", list()).await).1,
        "Throttling.User"
    );
    assert_eq!(summary(&engine.handle("POST", list()).await).1, "ok");
    let stats = engine.snapshot().stats;
    assert_eq!(
        (
            stats.throttled,
            stats.by_action["ListCustomPersons"],
            stats.faults["throttle"]
        ),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn a_stall_applies_the_request_then_holds_the_answer() {
    let (engine, _stop) = engine(SandboxConfig {
        stall_ms: 300,
        ..SandboxConfig::for_tests()
    });
    engine.script("RegisterCustomFace", vec![Fault::Stall]);
    let started = Instant::now();
    let pending = {
        let engine = engine.clone();
        tokio::spawn(async move { summary(&engine.handle("POST", register(1)).await).1 })
    };
    // Bounded wait for the call to be applied while its answer is still held.
    for _ in 0..200 {
        if faces(&engine) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        faces(&engine),
        1,
        "the stalled call is applied before the answer"
    );
    assert!(!pending.is_finished(), "the answer is still held");
    assert_eq!(pending.await.unwrap(), "ok");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn shutdown_cuts_a_stall_short() {
    let (engine, stop) = engine(SandboxConfig {
        stall_ms: 60_000,
        ..SandboxConfig::for_tests()
    });
    engine.script("RegisterCustomFace", vec![Fault::Stall]);
    stop.send_replace(true);
    let outcome =
        tokio::time::timeout(Duration::from_secs(5), engine.handle("POST", register(1))).await;
    assert_eq!(summary(&outcome.unwrap()).1, "ok");
}

#[tokio::test]
async fn the_same_seed_and_requests_give_the_same_faults() {
    let rates = FaultRates {
        error_before: 0.2,
        error_after: 0.2,
        reset_after: 0.1,
        html_before: 0.1,
        ..FaultRates::default()
    };
    let run = |seed: u64| async move {
        let (engine, _stop) = engine(SandboxConfig {
            faults: rates,
            seed,
            mts_qps: 0,
            ..SandboxConfig::for_tests()
        });
        let mut seen = Vec::new();
        for n in 0..60 {
            seen.push(summary(&engine.handle("POST", register(n)).await));
        }
        (seen, engine.snapshot().stats.faults)
    };
    let (first, faults) = run(11).await;
    assert_eq!(run(11).await.0, first);
    assert_ne!(run(12).await.0, first);
    assert!(faults.values().sum::<u64>() > 0);
}

#[tokio::test]
async fn without_format_json_errors_and_answers_are_xml() {
    let (engine, _stop) = engine(SandboxConfig::for_tests());
    let params = signed("POST", "ListCustomPersons", &[]);
    let xml = signed("POST", "ListCustomPersons", &[("Format", "XML")]);
    let Outcome::Reply(reply) = engine.handle("POST", xml).await else {
        panic!("reset")
    };
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    assert!(
        text.starts_with("<?xml") && text.contains("<ListCustomPersonsResponse><RequestId>"),
        "{text}"
    );
    assert_eq!(summary(&engine.handle("POST", params).await).1, "ok");
}
