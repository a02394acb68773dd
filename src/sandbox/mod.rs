//! The sandbox: a local emulator of the MTS custom-face and ICE recognition-library APIs.
//!
//! A real HTTP/1.1 server that authenticates like the gateway (RPC v1 and ACS3-HMAC-SHA256
//! signatures, timestamp window, nonces, STS tokens and their expiry), issues temporary
//! credentials like STS and the ECS metadata service do (same listener: routed by path and
//! `Action`), paces like it (per key and action, one-second sliding window), keeps the
//! libraries' state, and injects faults reproducibly from a seed. It also serves OSS objects
//! path-style on the same address ([`oss`]: `/BUCKET/KEY` without an `Action`), and its
//! `RegisterCustomFace` and `CreateRecognitionSample` download an `ImageUrl` that names one. Tests talk to it over TCP and
//! assert on [`Sandbox::snapshot`]; users rehearse imports on it with `face-enroll sandbox`.
//!
//! Which faults apply where: random faults are drawn for every admitted call, reads included
//! (for a list, the "after" kinds change nothing, since nothing was changed). Scripted faults
//! ([`Sandbox::script`]) take precedence for their action. Faults never hit a request that
//! failed authentication or flow control.

// An emulated server with its own clocks (request windows, token expiry, rate limits): it
// reads the system clock itself, outside the tool's seam.
#![allow(clippy::disallowed_methods)]

mod action;
mod auth;
mod config;
mod engine;
mod faults;
mod ice;
mod ids;
mod mts;
mod ordered;
mod oss;
mod params;
pub mod photos;
mod ratelimit;
mod response;
mod server;
mod snapshot;
mod state;
mod sts;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub use config::{
    DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, DEFAULT_ECS_ROLE_NAME,
    DEFAULT_OIDC_PROVIDER_ARN, DEFAULT_ROLE_ARN, DEFAULT_STS_LIFETIME, Fault, FaultRates,
    OssConfig, OssFault, OssFaultRates, SandboxConfig,
};
pub use mts::{CATEGORY_NOT_FOUND, FACE_NOT_FOUND, PERSON_NOT_FOUND};
pub use snapshot::{
    Applied, CategorySnapshot, EntitySnapshot, FaceSnapshot, FetchSnapshot, IceSnapshot,
    LibSnapshot, MtsSnapshot, ObjectSnapshot, OssRequests, OssSnapshot, PersonSnapshot,
    SampleSnapshot, StateSnapshot, Stats,
};

use engine::Engine;

/// What a running sandbox offers its owner: its address, its state, and knobs to script faults
/// and drift. [`Sandbox`] and [`SandboxThread`] both dereference to it.
pub struct Handle {
    addr: SocketAddr,
    engine: Arc<Engine>,
}

impl Handle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn snapshot(&self) -> StateSnapshot {
        self.engine.snapshot()
    }

    /// The next calls of `action` take these faults, in order, before any random one.
    pub fn script(&self, action: &str, faults: Vec<Fault>) {
        self.engine.script(action, faults);
    }

    pub fn set_fault_rates(&self, rates: FaultRates) {
        self.engine.set_fault_rates(rates);
    }

    /// The next OSS object requests of `method` (`GET`, `HEAD`, `PUT`) take these faults, in
    /// order, before any random one.
    pub fn script_oss(&self, method: &str, faults: Vec<OssFault>) {
        self.engine.script_oss(method, faults);
    }

    pub fn set_oss_fault_rates(&self, rates: OssFaultRates) {
        self.engine.set_oss_fault_rates(rates);
    }

    /// New per-action limits for MTS and ICE actions (0 = unlimited), effective at once.
    pub fn set_qps(&self, mts_qps: u32, ice_qps: u32) {
        self.engine.set_qps(mts_qps, ice_qps);
    }

    /// Registers a face behind the client's back (no checks, no stats); returns its FaceId.
    pub fn admin_register_face(
        &self,
        category_id: &str,
        person_id: &str,
        image_url: &str,
    ) -> String {
        self.engine
            .admin_register_face(category_id, person_id, image_url)
    }

    /// Every temporary credential handed out so far, as (key id, secret, token): for tests that
    /// search outputs for them.
    pub fn issued_credentials(&self) -> Vec<(String, String, String)> {
        self.engine.issued_credentials()
    }

    /// Puts an object in the sandbox's OSS behind the client's back (no signature, not
    /// counted as a request); an existing one is replaced.
    pub fn admin_put_object(
        &self,
        bucket: &str,
        key: &str,
        body: &[u8],
    ) -> Result<(), oss::StoreError> {
        self.engine
            .admin_put_object(bucket, key, bytes::Bytes::copy_from_slice(body))
    }

    /// Removes a face behind the client's back; false when no person has it.
    pub fn admin_remove_face(&self, face_id: &str) -> bool {
        self.engine.admin_remove_face(face_id)
    }
}

/// A running sandbox on the current tokio runtime. Dropping it stops accepting (in-flight
/// requests finish on the runtime); [`Sandbox::shutdown`] also waits for them.
pub struct Sandbox {
    handle: Handle,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Sandbox {
    /// Binds `config.listen` and starts serving; fails on a bad address, invalid fault rates or
    /// an OSS folder that cannot be created.
    pub async fn start(mut config: SandboxConfig) -> io::Result<Sandbox> {
        let invalid =
            |message: config::InvalidRates| io::Error::new(io::ErrorKind::InvalidInput, message);
        config.faults.validate().map_err(invalid)?;
        config.oss.faults.validate().map_err(invalid)?;
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        // The bound address (port 0 resolved): an ImageUrl on it names one of its objects.
        config.listen = addr;
        let (stop, stopped) = watch::channel(false);
        let engine = Arc::new(Engine::new(config, stopped.clone())?);
        let task = tokio::spawn(server::serve(listener, Arc::clone(&engine), stopped));
        tracing::debug!(%addr, "sandbox listening");
        Ok(Sandbox {
            handle: Handle { addr, engine },
            stop,
            task: Some(task),
        })
    }

    /// Stops accepting, lets in-flight requests finish (stalls are cut short), then returns.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// [`Sandbox::shutdown`], then the final state, in-flight requests included.
    pub(crate) async fn shutdown_and_snapshot(self) -> StateSnapshot {
        let engine = Arc::clone(&self.handle.engine);
        self.shutdown().await;
        engine.snapshot()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// The same server on its own OS thread and runtime, for synchronous tests. Drop stops it.
pub struct SandboxThread {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SandboxThread {
    pub fn spawn(config: SandboxConfig) -> io::Result<SandboxThread> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sandbox".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build();
                let runtime = match runtime {
                    Ok(runtime) => runtime,
                    Err(error) => return drop(ready_tx.send(Err(error))),
                };
                runtime.block_on(async move {
                    match Sandbox::start(config).await {
                        Ok(sandbox) => {
                            let _ = ready_tx
                                .send(Ok((sandbox.addr, Arc::clone(&sandbox.handle.engine))));
                            let _ = stopped.await;
                            sandbox.shutdown().await;
                        }
                        Err(error) => drop(ready_tx.send(Err(error))),
                    }
                });
            })?;
        let started = ready_rx
            .recv()
            .map_err(|_| io::Error::other("the sandbox thread died while starting"));
        match started.and_then(|result| result) {
            Ok((addr, engine)) => Ok(SandboxThread {
                handle: Handle { addr, engine },
                stop: Some(stop),
                thread: Some(thread),
            }),
            Err(error) => {
                let _ = thread.join();
                Err(error)
            }
        }
    }
}

impl std::ops::Deref for Sandbox {
    type Target = Handle;
    fn deref(&self) -> &Handle {
        &self.handle
    }
}

impl std::ops::Deref for SandboxThread {
    type Target = Handle;
    fn deref(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for SandboxThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests;
