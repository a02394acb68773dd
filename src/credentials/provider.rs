//! The credentials handle the client asks before every request: fixed keys, or temporary ones
//! renewed before they expire — one renewal in flight, the other requests keep the still-valid
//! credentials meanwhile.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use time::OffsetDateTime;

use super::{Credentials, CredentialsError};
use crate::clock;

/// How early temporary credentials are renewed at most: credentials-go renews at 180 s left.
const MAX_MARGIN: Duration = Duration::from_secs(180);
/// After a failed background renewal, the next one waits this long (the old ones still work).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// Credentials are kept at least this long, however soon they say they expire.
const FLOOR: Duration = Duration::from_secs(1);

/// Credentials as a source hands them out, with when they stop working (`None`: never).
#[derive(Clone, Debug)]
pub(crate) struct Issued {
    pub credentials: Credentials,
    pub expiration: Option<OffsetDateTime>,
}

/// Something that can hand out fresh credentials (STS, the metadata service, a command, …).
pub(crate) trait Fetch: Send + Sync + 'static {
    fn fetch(&self) -> BoxFuture<'_, Result<Issued, CredentialsError>>;
}

/// The credentials handle: cheap to clone (an `Arc`), `Debug` shows no secret.
#[derive(Clone)]
pub struct Provider {
    inner: Arc<Inner>,
}

enum Inner {
    Fixed(Credentials),
    Renewing(Renewing),
}

struct Renewing {
    fetch: Box<dyn Fetch>,
    cache: Mutex<Cache>,
    /// Held while a fetch is in flight, so there is only ever one.
    single_flight: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Cache {
    current: Option<Held>,
    background: bool,
    failed_at: Option<OffsetDateTime>,
    fetched: u64,
}

struct Held {
    issued: Issued,
    /// Renew from here on (in the background while the credentials still work).
    renew_at: Option<OffsetDateTime>,
    /// Refused as expired by the server, or about to be: wait for new ones.
    unusable_at: Option<OffsetDateTime>,
}

impl Held {
    fn new(issued: Issued, now: OffsetDateTime) -> Held {
        let (renew_at, unusable_at) = match issued.expiration {
            // Expired on arrival: the machine's clock is ahead of the issuer's. Use them for a
            // second rather than fetch again for every request.
            Some(expiration) if expiration <= now + FLOOR => {
                tracing::warn!(
                    expires = %crate::clock::seconds_text(expiration),
                    "the new temporary credentials expire before they can be used; check the machine clock"
                );
                (Some(now + FLOOR), Some(now + FLOOR))
            }
            Some(expiration) => {
                let lifetime = (expiration - now).unsigned_abs();
                let margin = MAX_MARGIN.min(lifetime / 3);
                // A request in flight must arrive before the expiry: stop using them a little early.
                let safety = (margin / 4).min(Duration::from_secs(10));
                (Some(expiration - margin), Some(expiration - safety))
            }
            None => (None, None),
        };
        Held {
            issued,
            renew_at,
            unusable_at,
        }
    }

    fn usable(&self, now: OffsetDateTime) -> bool {
        self.unusable_at.is_none_or(|at| now < at)
    }

    fn fresh(&self, now: OffsetDateTime) -> bool {
        self.renew_at.is_none_or(|at| now < at)
    }
}

fn lock(cache: &Mutex<Cache>) -> MutexGuard<'_, Cache> {
    cache.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Provider {
    /// Credentials that never change (environment keys, an AK profile, the sandbox's key).
    pub fn fixed(credentials: Credentials) -> Provider {
        Provider {
            inner: Arc::new(Inner::Fixed(credentials)),
        }
    }

    /// Credentials from `fetch`, renewed before they expire.
    pub(crate) fn renewing(fetch: impl Fetch) -> Provider {
        Provider {
            inner: Arc::new(Inner::Renewing(Renewing {
                fetch: Box::new(fetch),
                cache: Mutex::new(Cache::default()),
                single_flight: tokio::sync::Mutex::new(()),
            })),
        }
    }

    /// Whether the credentials can be renewed (false for fixed ones).
    pub fn is_renewable(&self) -> bool {
        matches!(&*self.inner, Inner::Renewing(_))
    }

    /// When the credentials in use expire, if they do.
    pub fn expiration(&self) -> Option<OffsetDateTime> {
        match &*self.inner {
            Inner::Fixed(_) => None,
            Inner::Renewing(r) => lock(&r.cache)
                .current
                .as_ref()
                .and_then(|h| h.issued.expiration),
        }
    }

    /// How many times fresh credentials were fetched so far.
    pub fn fetch_count(&self) -> u64 {
        match &*self.inner {
            Inner::Fixed(_) => 0,
            Inner::Renewing(r) => lock(&r.cache).fetched,
        }
    }

    /// The credentials to sign the next request with. Waits only when none are usable.
    pub async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        let renewing = match &*self.inner {
            Inner::Fixed(credentials) => return Ok(credentials.clone()),
            Inner::Renewing(renewing) => renewing,
        };
        let now = clock::now_utc();
        {
            let mut cache = lock(&renewing.cache);
            if let Some(held) = cache.current.as_ref().filter(|h| h.usable(now)) {
                let credentials = held.issued.credentials.clone();
                let due = !held.fresh(now);
                let backed_off = cache
                    .failed_at
                    .is_some_and(|at| now - at < RETRY_AFTER_FAILURE);
                if due && !cache.background && !backed_off {
                    cache.background = true;
                    let provider = self.clone();
                    tokio::spawn(async move { provider.renew_in_background().await });
                }
                return Ok(credentials);
            }
        }
        self.fetch_now(renewing).await
    }

    /// Forgets `used` after the server said it expired; true when new ones can be fetched.
    pub fn invalidate(&self, used: &Credentials) -> bool {
        let Inner::Renewing(renewing) = &*self.inner else {
            return false;
        };
        let mut cache = lock(&renewing.cache);
        if let Some(held) = cache
            .current
            .as_mut()
            .filter(|h| same(&h.issued.credentials, used))
        {
            tracing::info!("the service says the temporary credentials expired; fetching new ones");
            held.unusable_at = Some(OffsetDateTime::UNIX_EPOCH);
        }
        true
    }

    /// Fetches the first credentials (at start-up, so a bad configuration fails before any work).
    pub(crate) async fn prime(&self) -> Result<(), CredentialsError> {
        self.credentials().await.map(drop)
    }

    async fn fetch_now(&self, renewing: &Renewing) -> Result<Credentials, CredentialsError> {
        let _flight = renewing.single_flight.lock().await;
        // Someone else may have fetched while this caller waited for the flight.
        let now = clock::now_utc();
        if let Some(held) = lock(&renewing.cache)
            .current
            .as_ref()
            .filter(|h| h.usable(now))
        {
            return Ok(held.issued.credentials.clone());
        }
        let issued = renewing.fetch.fetch().await?;
        let credentials = issued.credentials.clone();
        store(renewing, issued);
        Ok(credentials)
    }

    async fn renew_in_background(&self) {
        let Inner::Renewing(renewing) = &*self.inner else {
            return;
        };
        let result = {
            let _flight = renewing.single_flight.lock().await;
            let now = clock::now_utc();
            let still_due = lock(&renewing.cache)
                .current
                .as_ref()
                .is_none_or(|h| !h.fresh(now));
            if still_due {
                Some(
                    renewing
                        .fetch
                        .fetch()
                        .await
                        .map(|issued| store(renewing, issued)),
                )
            } else {
                None
            }
        };
        let mut cache = lock(&renewing.cache);
        cache.background = false;
        if let Some(Err(error)) = result {
            cache.failed_at = Some(clock::now_utc());
            tracing::warn!(%error, "renewing the temporary credentials failed; the current ones are still valid, retrying");
        }
    }
}

fn store(renewing: &Renewing, issued: Issued) {
    let now = clock::now_utc();
    match issued.expiration {
        Some(at) => {
            tracing::info!(expires = %crate::clock::seconds_text(at), "temporary credentials obtained")
        }
        None => tracing::debug!("credentials obtained (they do not expire)"),
    }
    let mut cache = lock(&renewing.cache);
    cache.current = Some(Held::new(issued, now));
    cache.failed_at = None;
    cache.fetched += 1;
}

fn same(a: &Credentials, b: &Credentials) -> bool {
    a.access_key_id == b.access_key_id
        && a.security_token.as_ref().map(|t| t.expose())
            == b.security_token.as_ref().map(|t| t.expose())
}

impl From<Credentials> for Provider {
    fn from(credentials: Credentials) -> Provider {
        Provider::fixed(credentials)
    }
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.inner {
            Inner::Fixed(credentials) => f
                .debug_struct("Provider::Fixed")
                .field("access_key_id", &credentials.access_key_id)
                .finish_non_exhaustive(),
            Inner::Renewing(r) => {
                let cache = lock(&r.cache);
                let held = cache.current.as_ref();
                f.debug_struct("Provider::Renewing")
                    .field(
                        "access_key_id",
                        &held.map(|h| h.issued.credentials.access_key_id.as_str()),
                    )
                    .field("expiration", &held.and_then(|h| h.issued.expiration))
                    .finish_non_exhaustive()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Secret;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Hands out `key-N` credentials living `lifetime`, after `delay`.
    struct Counter {
        n: Arc<AtomicU64>,
        lifetime: Duration,
        delay: Duration,
    }

    impl Fetch for Counter {
        fn fetch(&self) -> BoxFuture<'_, Result<Issued, CredentialsError>> {
            Box::pin(async move {
                tokio::time::sleep(self.delay).await;
                let n = self.n.fetch_add(1, Ordering::SeqCst) + 1;
                Ok(Issued {
                    credentials: Credentials {
                        access_key_id: format!("key-{n}"),
                        access_key_secret: Secret::new("s"),
                        security_token: Some(Secret::new(format!("tok-{n}"))),
                    },
                    expiration: Some(clock::now_utc() + self.lifetime),
                })
            })
        }
    }

    fn counting(lifetime: Duration, delay: Duration) -> (Provider, Arc<AtomicU64>) {
        let n = Arc::new(AtomicU64::new(0));
        let provider = Provider::renewing(Counter {
            n: Arc::clone(&n),
            lifetime,
            delay,
        });
        (provider, n)
    }

    #[tokio::test]
    async fn fixed_credentials_are_returned_as_they_are_and_cannot_be_renewed() {
        let p = Provider::from(Credentials {
            access_key_id: "id".into(),
            access_key_secret: Secret::new("secret-canary"),
            security_token: None,
        });
        assert_eq!(p.credentials().await.unwrap().access_key_id, "id");
        assert!(!p.is_renewable() && !p.invalidate(&p.credentials().await.unwrap()));
        assert!(!format!("{p:?}").contains("secret-canary"));
    }

    #[tokio::test]
    async fn fresh_credentials_are_fetched_once_and_reused() {
        let (p, n) = counting(Duration::from_secs(3600), Duration::ZERO);
        for _ in 0..5 {
            assert_eq!(p.credentials().await.unwrap().access_key_id, "key-1");
        }
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn many_callers_at_once_share_one_fetch() {
        let (p, n) = counting(Duration::from_secs(3600), Duration::from_millis(50));
        let calls = (0..20).map(|_| p.credentials());
        let all = futures::future::join_all(calls).await;
        assert!(
            all.iter()
                .all(|c| c.as_ref().unwrap().access_key_id == "key-1")
        );
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn credentials_near_their_expiry_are_renewed_in_the_background_without_waiting() {
        // Lifetime 3 s: the margin is 1 s, so after 2.1 s a renewal is due but key-1 still works.
        let (p, n) = counting(Duration::from_secs(3), Duration::from_millis(300));
        assert_eq!(p.credentials().await.unwrap().access_key_id, "key-1");
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let started = crate::clock::monotonic();
        assert_eq!(p.credentials().await.unwrap().access_key_id, "key-1");
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "the caller waited for the renewal"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(p.credentials().await.unwrap().access_key_id, "key-2");
        assert_eq!(n.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn credentials_expired_on_arrival_are_fetched_again_at_most_once_a_second() {
        let (p, n) = counting(Duration::ZERO, Duration::ZERO);
        for _ in 0..50 {
            p.credentials().await.unwrap();
        }
        assert_eq!(
            n.load(Ordering::SeqCst),
            1,
            "a clock ahead of STS must not loop"
        );
    }

    #[tokio::test]
    async fn credentials_the_server_called_expired_are_replaced_before_the_next_request() {
        let (p, n) = counting(Duration::from_secs(3600), Duration::ZERO);
        let used = p.credentials().await.unwrap();
        assert!(p.invalidate(&used));
        assert_eq!(p.credentials().await.unwrap().access_key_id, "key-2");
        // A late answer about the old credentials does not throw the new ones away.
        assert!(p.invalidate(&used));
        assert_eq!(p.credentials().await.unwrap().access_key_id, "key-2");
        assert_eq!(n.load(Ordering::SeqCst), 2);
    }
}
