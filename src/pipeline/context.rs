//! What every worker of one command shares: the target, the caller, the recorder's events,
//! the libraries read whole once, and the persons owed a second read; and the small helpers
//! the worker and its removals both use.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::backend::{Backend, Held, Person};
use crate::caller::Caller;
use crate::image::Locator;
use crate::pipeline::recorder::Events;
use crate::plan::{ImageWork, PersonJob};

pub(crate) struct Context<T: Backend> {
    pub target: T,
    pub caller: Caller,
    pub events: Events,
    pub run_id: String,
    /// Libraries read whole, once per run: folded library name → folded person → images.
    pub libraries: Libraries,
    /// Persons whose requests may still land unseen, to be read again later in the run.
    /// With when its last request went out.
    pub owed: Mutex<Vec<(tokio::time::Instant, PersonJob)>>,
    /// Persons this run created images for, with each image and its id: read once more at
    /// the end, for a second id another writer (a run on another host) made meanwhile.
    pub made: Mutex<Vec<Made<T::Place>>>,
    /// Libraries and entities this run made (ICE): a closing read deletes one that is not the
    /// one every writer keeps once it has emptied it.
    pub objects: Mutex<Vec<crate::backend::Made>>,
    /// Images another writer registered too, found by that closing read.
    pub other_writer: AtomicU64,
    /// Where a person's local photos are waited for until they are uploaded (`--upload-to`).
    pub uploads: Option<Arc<crate::upload::Gate>>,
}

impl<T: Backend> Context<T> {
    pub fn new(target: T, caller: Caller, events: Events, run_id: String) -> Context<T> {
        Context {
            target,
            caller,
            events,
            run_id,
            libraries: Default::default(),
            owed: Default::default(),
            made: Default::default(),
            objects: Default::default(),
            other_writer: Default::default(),
            uploads: None,
        }
    }
}

/// A person this run created images for, where, and each image with its id.
pub(crate) type Made<P> = (PersonJob, P, Vec<(ImageWork, String)>);

/// Folded library name → the one cell that reads it.
pub(crate) type Libraries = Mutex<HashMap<String, Arc<OnceCell<HashMap<String, Vec<Held>>>>>>;

/// Canonical image URL → the server's id, as the server holds them for one person.
pub(crate) type Known = HashMap<String, String>;

pub(crate) fn known(held: &[Held]) -> Known {
    let mut known = Known::new();
    for image in held {
        if let Some(url) = &image.image_url {
            known
                .entry(Locator::listed(url).into_string())
                .or_insert_with(|| image.id.clone());
        }
    }
    known
}

pub(crate) fn person(job: &PersonJob) -> Person<'_> {
    Person {
        category_id: &job.category_id,
        person_id: &job.person_id,
        person_name: job.person_name.as_deref(),
    }
}
