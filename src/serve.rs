//! `mxhook serve`: opens the store, binds the listeners, runs SMTP, HTTP and delivery side by side
//! on one tokio runtime, and on SIGTERM/SIGINT stops accepting, lets sessions and attempts finish,
//! and returns.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{Notify, watch};

use crate::config::Settings;
use crate::deliver::{self, Deliverer};
use crate::http::links::UrlSigner;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::smtp::tls::Tls;
use crate::store::Store;
use crate::{http, smtp};

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    // Signal handlers first: a SIGTERM that arrives while we start must stop us cleanly, not kill
    // us by its default action after the listeners are announced.
    let stop_signal = shutdown_signal()?;
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    // Declared before the lock and the store, so that on an early return it is dropped after them.
    let fresh = FreshDir::create(&settings.data_dir)
        .with_context(|| format!("creating data_dir {}", settings.data_dir.display()))?;
    // Two servers on one queue would each deliver everything: refuse the second.
    let lock_path = settings.data_dir.join("serve.lock");
    let lock = File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        // Another serve made the same data_dir at the same moment and holds it: it is theirs.
        fresh.keep();
        anyhow::bail!(
            "another `mxhook serve` is running on {} (lock: {})",
            settings.data_dir.display(),
            lock_path.display()
        );
    }

    let store = Arc::new(Store::open_configured(&settings.data_dir, settings.database.as_ref(), settings.lease)?);
    let resumed = store.release_in_flight()?;
    if resumed > 0 {
        tracing::warn!(deliveries = resumed, "resuming deliveries left in flight by the last run");
    }
    let key_file = settings.url_secret_file.clone().unwrap_or_else(|| settings.data_dir.join("url.key"));
    let key = UrlSigner::key_for(&store, settings.url_secret_file.as_deref(), &key_file)?;
    let signer = Arc::new(UrlSigner::new(&key, &settings.public_url, settings.link_ttl.as_secs() as i64));

    let metrics = Arc::new(Metrics::new());
    let (stop, stopped) = watch::channel(false);
    let wake = Arc::new(Notify::new());
    // Shared with other gateways: their new deliveries wake this scheduler at once (LISTEN/NOTIFY),
    // not at its next look at the queue.
    if let Some(mut due) = store.due_watch() {
        let wake = wake.clone();
        tokio::spawn(async move {
            while due.changed().await.is_ok() {
                wake.notify_one();
            }
        });
    }
    let forwarder = match &settings.forward {
        Some(f) => Some(deliver::forward::Forwarder::new(f, &settings.routes, &settings.smtp.hostname)?),
        None => None,
    };
    let deliverer =
        Arc::new(Deliverer::new(store.clone(), &settings.endpoints, metrics.clone()).with_forwarder(forwarder));
    // One authenticator for every session: its record cache is what makes repeat senders free.
    // Built before the listeners are announced, so it adds nothing to the start after that.
    let ingest = Arc::new(Ingest::new(
        &settings,
        store.clone(),
        signer.clone(),
        deliverer.clone(),
        metrics.clone(),
        wake.clone(),
    )?);
    let mut listeners: Vec<smtp::Listener> =
        smtp::bind(&settings.listen).await?.into_iter().map(smtp::Listener::from).collect();
    if let Some(lmtp) = &settings.lmtp {
        listeners.extend(smtp::bind_lmtp(lmtp).await?);
    }
    let http_listener = http::bind(settings.http_listen).await?;

    let mut limits = smtp::Limits::from(&settings.smtp);
    if let Some(t) = &settings.smtp.tls {
        limits.tls = Some(Arc::new(Tls::load(&t.cert, &t.key, t.require)?));
        tracing::info!(cert = %t.cert.display(), require = t.require, "STARTTLS offered");
    }
    // Always handled: SIGHUP's default action would end the process (systemd's ExecReload sends it).
    tokio::spawn(reload_on_sighup(hangup, limits.tls.clone()));
    // The reply patterns compile once; at start, not in the first message's DATA.
    std::thread::spawn(crate::extract::warm);
    let smtp_task = tokio::spawn(smtp::serve(
        listeners,
        limits,
        settings.smtp.max_sessions,
        ingest,
        metrics.clone(),
        stopped.clone(),
    ));
    let http_task = tokio::spawn(http::serve(
        http_listener,
        Arc::new(http::App {
            store: store.clone(),
            signer,
            metrics: metrics.clone(),
            api: settings
                .api
                .clone()
                .map(|a| http::api::Api::new(a).with_streams(settings.streams.keys().cloned(), stopped.clone())),
        }),
        stopped.clone(),
    ));
    let deliver_task = tokio::spawn(deliver::run(deliverer.clone(), wake, stopped.clone()));
    let stream_retention: Vec<(String, Duration)> =
        settings.streams.values().map(|s| (s.name.clone(), s.retention)).collect();
    if !stream_retention.is_empty() {
        tokio::spawn(streams_tip(store.clone(), stopped.clone()));
    }
    tokio::spawn(crate::memory::trim_when_quiet(metrics.clone(), store.clone(), stopped.clone()));
    let janitor_task =
        tokio::spawn(janitor(store.clone(), settings.retention, settings.keep_metadata, stream_retention, stopped));
    fresh.keep();
    tracing::info!(
        config = %settings.file.display(),
        data_dir = %settings.data_dir.display(),
        store = %store.describe(),
        "mxhook started"
    );

    stop_signal.await;
    tracing::info!("shutting down: no new sessions; finishing open sessions and attempts in flight");
    let _ = stop.send(true);
    smtp_task.await?;
    deliver_task.await?;
    http_task.await??;
    janitor_task.await?;
    tracing::info!("stopped");
    drop(lock);
    Ok(())
}

/// The directories `serve` made for data_dir: removed again if the start fails (a port already taken),
/// so that a failed first start leaves nothing behind. A data_dir that was there before is never touched.
struct FreshDir(Option<PathBuf>);

impl FreshDir {
    fn create(dir: &Path) -> std::io::Result<FreshDir> {
        // The outermost ancestor that is missing is what create_dir_all makes.
        let outermost = dir.ancestors().take_while(|a| !a.as_os_str().is_empty() && !a.exists()).last();
        let fresh = FreshDir(outermost.map(Path::to_path_buf));
        std::fs::create_dir_all(dir)?; // a failure half-way: `fresh` removes the half
        Ok(fresh)
    }

    /// The start succeeded: whatever was made stays.
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for FreshDir {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Ok(()) => tracing::info!(dir = %dir.display(), "start failed: removed the data_dir it had created"),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "start failed: cannot remove the data_dir it created")
                }
            }
        }
    }
}

/// Once a second, wakes the stream readers if another process (`mxhook deliver`) added stream
/// events: this process's own commits wake them at once (`Store::streams_watch`).
async fn streams_tip(store: Arc<Store>, mut stop: watch::Receiver<bool>) {
    loop {
        let s = store.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.check_streams_tip()).await {
            tracing::warn!(error = %format!("{e:#}"), "reading the streams' newest cursor failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Applies retention at start and then hourly: messages' files and records, and each stream's
/// events older than its own `retention`.
async fn janitor(
    store: Arc<Store>,
    retention: Duration,
    keep_metadata: Duration,
    streams: Vec<(String, Duration)>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        for (name, keep) in &streams {
            let (s, n) = (store.clone(), name.clone());
            let cutoff = crate::time::now_ms() - keep.as_millis() as i64;
            match tokio::task::spawn_blocking(move || s.purge_stream(&n, cutoff)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(stream = %name, events = n, "stream retention applied"),
                Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "stream retention failed"),
                Err(e) => tracing::error!(error = %e, "stream retention task failed"),
            }
        }
        let s = store.clone();
        let (r, k) = (retention.as_millis() as i64, keep_metadata.as_millis() as i64);
        match tokio::task::spawn_blocking(move || s.apply_retention(crate::time::now_ms(), r, k)).await {
            Ok(Ok(p)) if p.files + p.records > 0 => {
                tracing::info!(files = p.files, records = p.records, kept_pending = p.kept_pending, "retention applied")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "retention failed"),
            Err(e) => tracing::error!(error = %e, "retention task failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// SIGHUP re-reads the STARTTLS certificate; sessions already in TLS keep theirs.
async fn reload_on_sighup(mut hup: tokio::signal::unix::Signal, tls: Option<Arc<Tls>>) {
    while hup.recv().await.is_some() {
        let Some(tls) = &tls else {
            tracing::info!("SIGHUP: nothing to reload (no [smtp.tls])");
            continue;
        };
        match tls.reload() {
            Ok(()) => tracing::info!("SIGHUP: STARTTLS certificate reloaded"),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "SIGHUP: reload failed; keeping the previous certificate")
            }
        }
    }
}

/// Installs the SIGTERM and SIGINT handlers now; the future resolves at the first of them.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
