//! The ICE target: one person's images become samples of one entity in one library, each
//! created exactly once.
//!
//! The server invents every id, so names are resolved to ids once per run and cached: one
//! once-cell per library name and per entity name, so two workers never create the same library
//! or entity. Libraries and entities are always looked for by listing before they are created, so
//! one left behind by a crash is found, not made twice. Samples follow the MTS rule: `pending` on
//! disk first; after an unknown outcome, or a `pending` left by a crash, the entity's samples are
//! listed (by ImageUrl) before anything is sent again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::api::{Algorithm, ApiError, ErrorClass, Page};
use crate::ice::{PAGE_SIZE, all_pages, entity_info};
use crate::ledger::{ImageRecord, ObjectKind, ObjectRecord, Record, Status, TargetName};
use crate::manifest::fold_id;
use crate::pipeline::recorder::Event;
use crate::pipeline::stop::StopReason;
use crate::pipeline::worker::{self, Context, Process};
use crate::plan::{ImageWork, PersonJob};
use crate::retry::Failure;

/// The ICE worker: the shared run context, the algorithm, and the name → id caches.
pub(crate) struct IceWorker {
    ctx: Context,
    algorithm: Algorithm,
    libs: Cells<LibSlot>,
}

/// Folded name → the one cell that resolves it. A cached `Err` is the service refusing the
/// name (every person of that library would be refused alike); a stop or exhausted retries
/// leave the cell empty for the next worker to try.
type Cells<T> = Mutex<HashMap<String, Arc<OnceCell<Result<Arc<T>, ApiError>>>>>;

struct LibSlot {
    lib_id: String,
    /// Created by this run just now: it has no entities, so there is nothing to list.
    created_now: bool,
    /// Folded entity name → EntityId, listed once per run when first needed.
    listed: OnceCell<HashMap<String, String>>,
    entities: Cells<EntitySlot>,
}

struct EntitySlot {
    entity_id: String,
    created_now: bool,
}

/// Why a person's images were not (all) finished.
enum Halt {
    /// The run is stopping; the rest is left for the next run.
    Stopped,
    /// Retries ran out: recorded as a retryable failure.
    Exhausted(ApiError),
    /// The service refused the library or entity: recorded as failed.
    Rejected(ApiError),
}

/// A create that succeeded, or was found applied after an unknown outcome.
struct Created {
    id: String,
    recovered: bool,
    attempts: u32,
}

/// Where a person's samples go.
struct Ids<'a> {
    lib_id: &'a str,
    entity_id: &'a str,
}

fn cell<T>(cells: &Cells<T>, name: &str) -> Arc<OnceCell<Result<Arc<T>, ApiError>>> {
    let mut map = cells.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(fold_id(name)).or_default().clone()
}

/// The id of the first item named `name`: an exact match first, else one equal once folded.
fn pick<'a>(
    items: impl Iterator<Item = (&'a str, Option<&'a str>)> + Clone,
    name: &str,
) -> Option<String> {
    let exact = items.clone().find(|(_, n)| *n == Some(name));
    let folded = fold_id(name);
    exact
        .or_else(|| {
            items
                .clone()
                .find(|(_, n)| n.is_some_and(|n| fold_id(n) == folded))
        })
        .map(|(id, _)| id.to_string())
}

impl Process for IceWorker {
    fn context(&self) -> &Context {
        &self.ctx
    }

    fn process(&self, job: PersonJob) -> impl Future<Output = ()> + Send {
        self.person(job)
    }
}

impl IceWorker {
    pub(crate) fn new(ctx: Context, algorithm: Algorithm) -> IceWorker {
        IceWorker {
            ctx,
            algorithm,
            libs: Cells::default(),
        }
    }

    async fn person(&self, job: PersonJob) {
        let ctx = &self.ctx;
        let lib = match self.lib(&job.category_id).await {
            Ok(lib) => lib,
            Err(halt) => return self.halt(&job, &job.images, halt, None),
        };
        let entity = match self.entity(&lib, &job).await {
            Ok(entity) => entity,
            Err(halt) => return self.halt(&job, &job.images, halt, Some((&lib.lib_id, None))),
        };
        let ids = Ids {
            lib_id: &lib.lib_id,
            entity_id: &entity.entity_id,
        };
        let known = if job.needs_lookup && !entity.created_now {
            match self.samples(&ids).await {
                Ok(found) => found,
                Err(halt) => {
                    return self.halt(
                        &job,
                        &job.images,
                        halt,
                        Some((ids.lib_id, Some(ids.entity_id))),
                    );
                }
            }
        } else {
            HashMap::new()
        };
        let to_send: Vec<ImageRecord> = job
            .images
            .iter()
            .filter(|image| !known.contains_key(&image.image_url))
            .map(|image| self.record(&job, image, Status::Pending, &ids))
            .collect();
        let total = job.images.len() as u64;
        if !to_send.is_empty() && !ctx.events.pending(to_send).await {
            ctx.stop.stop(StopReason::LedgerFailed);
            ctx.events.send(Event::Left(total));
            return;
        }
        for (done, image) in job.images.iter().enumerate() {
            if let Some(sample_id) = known.get(&image.image_url) {
                let created = Created {
                    id: sample_id.clone(),
                    recovered: true,
                    attempts: 0,
                };
                self.registered(&job, image, &ids, created);
                continue;
            }
            if ctx.stop.is_stopping() {
                ctx.events.send(Event::Left(total - done as u64));
                return;
            }
            if !self.sample(&job, image, &ids).await {
                ctx.events.send(Event::Left(total - done as u64 - 1));
                return;
            }
        }
    }

    /// Creates one sample, whose `pending` line is durable, exactly once. False: stop the person.
    async fn sample(&self, job: &PersonJob, image: &ImageWork, ids: &Ids<'_>) -> bool {
        let (client, algorithm) = (&self.ctx.client, self.algorithm);
        let url = image.image_url.as_str();
        let create = || async move {
            client
                .create_recognition_sample(algorithm, ids.lib_id, ids.entity_id, url, None)
                .await
                .map(|created| created.sample_id)
        };
        let look = || async move { Ok(self.samples(ids).await?.remove(url)) };
        match self.create_once(create, look).await {
            Ok(Ok(created)) => self.registered(job, image, ids, created),
            Ok(Err(error)) => {
                let mut record = worker::failed(&self.ctx, job, image, &error);
                self.stamp(&mut record, Some((ids.lib_id, Some(ids.entity_id))));
                self.ctx.events.send(Event::Outcome(record));
            }
            Err(Halt::Stopped) => {
                self.ctx.events.send(Event::Left(1));
                return false;
            }
            Err(halt) => self.halt(
                job,
                std::slice::from_ref(image),
                halt,
                Some((ids.lib_id, Some(ids.entity_id))),
            ),
        }
        true
    }

    fn registered(&self, job: &PersonJob, image: &ImageWork, ids: &Ids<'_>, created: Created) {
        let mut record = self.record(job, image, Status::Registered, ids);
        record.sample_id = Some(created.id);
        record.recovered = created.recovered.then_some(true);
        record.attempts = (created.attempts > 0).then_some(created.attempts);
        self.ctx.events.send(Event::Outcome(record));
    }

    /// The library named `name`, found by listing or created, once per run.
    async fn lib(&self, name: &str) -> Result<Arc<LibSlot>, Halt> {
        let cell = cell(&self.libs, name);
        let resolved = cell
            .get_or_try_init(|| self.find_or_create_lib(name))
            .await?;
        resolved.clone().map_err(Halt::Rejected)
    }

    async fn find_or_create_lib(&self, name: &str) -> Result<Result<Arc<LibSlot>, ApiError>, Halt> {
        let slot = |lib_id: String, created_now: bool| {
            Ok(Arc::new(LibSlot {
                lib_id,
                created_now,
                listed: OnceCell::new(),
                entities: Cells::default(),
            }))
        };
        if let Some(lib_id) = self.lib_named(name).await? {
            return Ok(slot(lib_id, false));
        }
        let (client, algorithm) = (&self.ctx.client, self.algorithm);
        let create = || async move {
            client
                .create_recognition_lib(algorithm, name, None)
                .await
                .map(|created| created.lib_id)
        };
        let look = || self.lib_named(name);
        let created = match self.create_once(create, look).await? {
            Ok(created) => created,
            Err(refused) => return Ok(Err(refused)),
        };
        self.created(ObjectKind::Lib, name, &created, &created.id, None);
        Ok(slot(created.id, !created.recovered))
    }

    async fn lib_named(&self, name: &str) -> Result<Option<String>, Halt> {
        let (client, algorithm) = (&self.ctx.client, self.algorithm);
        let libs = self
            .list(|page| client.list_recognition_libs(algorithm, None, page, PAGE_SIZE))
            .await?;
        let items = libs
            .iter()
            .map(|l| (l.lib_id.as_str(), l.lib_name.as_deref()));
        Ok(pick(items, name))
    }

    /// The entity of `job` in `lib`, found by listing or created, once per run.
    async fn entity(&self, lib: &LibSlot, job: &PersonJob) -> Result<Arc<EntitySlot>, Halt> {
        let cell = cell(&lib.entities, &job.person_id);
        let resolved = cell
            .get_or_try_init(|| self.find_or_create_entity(lib, job))
            .await?;
        resolved.clone().map_err(Halt::Rejected)
    }

    async fn find_or_create_entity(
        &self,
        lib: &LibSlot,
        job: &PersonJob,
    ) -> Result<Result<Arc<EntitySlot>, ApiError>, Halt> {
        let name = job.person_id.as_str();
        if !lib.created_now {
            let listed = lib
                .listed
                .get_or_try_init(|| self.entity_names(&lib.lib_id))
                .await?;
            if let Some(entity_id) = listed.get(&fold_id(name)) {
                return Ok(Ok(Arc::new(EntitySlot {
                    entity_id: entity_id.clone(),
                    created_now: false,
                })));
            }
        }
        let (client, algorithm, lib_id) = (&self.ctx.client, self.algorithm, lib.lib_id.as_str());
        let info = entity_info(job.person_name.as_deref());
        let info = info.as_deref();
        let create = || async move {
            client
                .create_recognition_entity(algorithm, lib_id, name, info)
                .await
                .map(|created| created.entity_id)
        };
        let look = || async move { Ok(self.entity_names(lib_id).await?.remove(&fold_id(name))) };
        let created = match self.create_once(create, look).await? {
            Ok(created) => created,
            Err(refused) => return Ok(Err(refused)),
        };
        self.created(
            ObjectKind::Entity,
            name,
            &created,
            lib_id,
            Some(&created.id),
        );
        Ok(Ok(Arc::new(EntitySlot {
            created_now: !created.recovered,
            entity_id: created.id,
        })))
    }

    /// Folded entity name → EntityId of every entity in the library (the first of a name wins).
    async fn entity_names(&self, lib_id: &str) -> Result<HashMap<String, String>, Halt> {
        let (client, algorithm) = (&self.ctx.client, self.algorithm);
        let entities = self
            .list(|page| client.list_recognition_entities(algorithm, lib_id, page, PAGE_SIZE))
            .await?;
        let mut names = HashMap::with_capacity(entities.len());
        for entity in entities {
            if let Some(name) = &entity.entity_name {
                names.entry(fold_id(name)).or_insert(entity.entity_id);
            }
        }
        Ok(names)
    }

    /// ImageUrl → SampleId of the entity's samples (the first of a URL wins).
    async fn samples(&self, ids: &Ids<'_>) -> Result<HashMap<String, String>, Halt> {
        let (client, algorithm) = (&self.ctx.client, self.algorithm);
        let samples = self
            .list(|page| {
                client.list_recognition_samples(
                    algorithm,
                    ids.lib_id,
                    ids.entity_id,
                    None,
                    page,
                    PAGE_SIZE,
                )
            })
            .await?;
        let mut urls = HashMap::with_capacity(samples.len());
        for sample in samples {
            if let Some(url) = sample.image_url {
                urls.entry(url).or_insert(sample.sample_id);
            }
        }
        Ok(urls)
    }

    /// Every item of a listing, each page paced and retried like any call.
    async fn list<T, F, Fut>(&self, fetch: F) -> Result<Vec<T>, Halt>
    where
        F: Fn(u32) -> Fut,
        Fut: Future<Output = Result<Page<T>, ApiError>>,
    {
        let fetch = &fetch;
        all_pages(|page| self.read(move || fetch(page))).await
    }

    /// One read, retried; a refusal of a read ends the person's work for this run.
    async fn read<T, F, Fut>(&self, attempt: F) -> Result<T, Halt>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let ctx = &self.ctx;
        let mut attempts = 0u32;
        loop {
            if ctx.stop.is_stopping() {
                return Err(Halt::Stopped);
            }
            ctx.pacer.acquire().await;
            attempts += 1;
            ctx.events.send(Event::Lookup);
            let error = match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let failure = match self.classify(error.clone())? {
                Some(failure) => failure,
                None => return Err(Halt::Exhausted(error)),
            };
            self.retry(failure, attempts, error).await?;
        }
    }

    /// A create that is not idempotent, made exactly once: after an unknown outcome `look` says
    /// whether it was applied before it is sent again. `Ok(Err(_))`: the service refused it.
    async fn create_once<C, CF, L, LF>(
        &self,
        create: C,
        look: L,
    ) -> Result<Result<Created, ApiError>, Halt>
    where
        C: Fn() -> CF,
        CF: Future<Output = Result<String, ApiError>>,
        L: Fn() -> LF,
        LF: Future<Output = Result<Option<String>, Halt>>,
    {
        let ctx = &self.ctx;
        let (mut attempts, mut unknown) = (0u32, false);
        loop {
            // The last attempt may have been applied: look before sending it again.
            if unknown && let Some(id) = look().await? {
                let recovered = true;
                return Ok(Ok(Created {
                    id,
                    recovered,
                    attempts,
                }));
            }
            if ctx.stop.is_stopping() {
                return Err(Halt::Stopped);
            }
            ctx.pacer.acquire().await;
            attempts += 1;
            let error = match create().await {
                Ok(id) => {
                    let recovered = false;
                    return Ok(Ok(Created {
                        id,
                        recovered,
                        attempts,
                    }));
                }
                Err(error) => error,
            };
            unknown = error.class() == ErrorClass::OutcomeUnknown;
            let failure = match self.classify(error.clone())? {
                Some(failure) => failure,
                None => return Ok(Err(error)),
            };
            self.retry(failure, attempts, error).await?;
        }
    }

    /// `None`: the service refused the request itself. A run-fatal answer stops the run.
    fn classify(&self, error: ApiError) -> Result<Option<Failure>, Halt> {
        let ctx = &self.ctx;
        Ok(Some(match error.class() {
            ErrorClass::RowRejected => return Ok(None),
            ErrorClass::RunFatal => {
                ctx.stop.fatal(error);
                return Err(Halt::Stopped);
            }
            ErrorClass::Throttled => {
                ctx.events.send(Event::Throttled);
                ctx.pacer.throttled(error.retry_after());
                Failure::Throttled
            }
            ErrorClass::OutcomeUnknown | ErrorClass::Transient => Failure::Retryable,
        }))
    }

    async fn retry(&self, failure: Failure, attempts: u32, error: ApiError) -> Result<(), Halt> {
        if worker::wait_to_retry(&self.ctx, failure, attempts, &error).await {
            return Ok(());
        }
        Err(if self.ctx.stop.is_stopping() {
            Halt::Stopped
        } else {
            Halt::Exhausted(error)
        })
    }

    /// Records what became of `images` when their person could not go on.
    fn halt(
        &self,
        job: &PersonJob,
        images: &[ImageWork],
        halt: Halt,
        ids: Option<(&str, Option<&str>)>,
    ) {
        let events = &self.ctx.events;
        let (error, retryable) = match halt {
            Halt::Stopped => return events.send(Event::Left(images.len() as u64)),
            Halt::Exhausted(error) => (error, true),
            Halt::Rejected(error) => (error, false),
        };
        for image in images {
            let mut record = worker::failed(&self.ctx, job, image, &error);
            self.stamp(&mut record, ids);
            if retryable {
                record.retryable = Some(true);
                events.send(Event::Left(1));
            }
            events.send(Event::Outcome(record));
        }
    }

    fn record(
        &self,
        job: &PersonJob,
        image: &ImageWork,
        status: Status,
        ids: &Ids<'_>,
    ) -> ImageRecord {
        let mut record = worker::record(&self.ctx, job, image, status);
        self.stamp(&mut record, Some((ids.lib_id, Some(ids.entity_id))));
        record
    }

    fn stamp(&self, record: &mut ImageRecord, ids: Option<(&str, Option<&str>)>) {
        stamp(record, self.algorithm);
        if let Some((lib_id, entity_id)) = ids {
            record.lib_id = Some(lib_id.to_string());
            record.entity_id = entity_id.map(str::to_string);
        }
    }

    fn created(
        &self,
        object: ObjectKind,
        name: &str,
        created: &Created,
        lib_id: &str,
        entity_id: Option<&str>,
    ) {
        let record = ObjectRecord {
            ts: crate::clock::now_rfc3339(),
            run: self.ctx.run_id.clone(),
            target: TargetName::Ice,
            algorithm: self.algorithm.to_string(),
            object,
            name: name.into(),
            lib_id: lib_id.into(),
            entity_id: entity_id.map(str::to_string),
            recovered: created.recovered.then_some(true),
        };
        self.ctx.events.send(Event::Record(Record::Created(record)));
    }
}

/// Marks an image record as belonging to an ICE import with `algorithm`.
pub(crate) fn stamp(record: &mut ImageRecord, algorithm: Algorithm) {
    record.target = Some(TargetName::Ice);
    record.algorithm = Some(algorithm.to_string());
}
