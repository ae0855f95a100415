//! When the schema folders are reloaded: on SIGHUP (every folder, at once), and, with
//! `contract.watch`, when something in a folder changes on disk (that folder, once the changes
//! have been quiet for `contract.reload_debounce_ms`, and at the latest ten of those after the
//! first change).
//!
//! One watcher (inotify, through `notify`) watches every folder in use, each folder itself and not
//! recursively: an edited, added, removed or renamed file is an event, and so is a Kubernetes
//! ConfigMap update, which swaps the folder's `..data` symlink to a new `..<timestamp>` folder (the
//! `*.json` entries are symlinks through `..data`). Read-only access (the reload's own reads) is
//! not. One task does every reload, one after the other ([`Schemas::reload`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::Notify;

use super::{ContractConfig, Schemas};

/// A reload waits for quiet at most this many debounce periods after the first change.
const MAX_DEBOUNCES: u32 = 10;

/// The running reloader; stops (task and watcher) when dropped.
pub struct Reloader {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Reloader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the watcher's thread tells the reload task: which folders changed.
struct Changes {
    /// One flag per schema set (index into [`Schemas::sets`]).
    dirty: Vec<AtomicBool>,
    /// Wakes the reload task (a permit is kept when it is busy).
    wake: Notify,
}

/// Starts listening for SIGHUP and, with `config.watch`, watching every schema folder. Must run
/// inside the runtime. A folder that cannot be watched (no inotify instance left, say) is logged:
/// SIGHUP still reloads it.
pub fn spawn(schemas: Arc<Schemas>, config: &ContractConfig) -> Reloader {
    schemas.publish_failing();
    let folders: Vec<Option<PathBuf>> = schemas.sets().iter().map(|set| set.folder().map(absolute)).collect();
    let changes = Arc::new(Changes {
        dirty: folders.iter().map(|_| AtomicBool::new(false)).collect(),
        wake: Notify::new(),
    });
    let watcher = if config.watch && folders.iter().any(Option::is_some) {
        start_watcher(&folders, &changes)
    } else {
        None
    };
    let debounce = config.reload_debounce();
    let task = tokio::spawn(reload_loop(schemas, folders, changes, watcher, debounce));
    Reloader { task }
}

/// The path as the watcher reports it (relative paths are taken from the working directory).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

fn start_watcher(folders: &[Option<PathBuf>], changes: &Arc<Changes>) -> Option<notify::RecommendedWatcher> {
    let handler = {
        let changes = Arc::clone(changes);
        let folders = folders.to_vec();
        move |event: notify::Result<notify::Event>| match event {
            Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
            Ok(event) => {
                let mut matched = false;
                for (index, folder) in folders.iter().enumerate() {
                    let Some(folder) = folder else { continue };
                    if event.paths.iter().any(|path| path.starts_with(folder)) {
                        changes.dirty[index].store(true, Ordering::Release);
                        matched = true;
                    }
                }
                if !matched {
                    // An event the watcher could not place (a queue overflow has no path): every
                    // folder is read again; unchanged ones are not swapped.
                    for (index, folder) in folders.iter().enumerate() {
                        if folder.is_some() {
                            changes.dirty[index].store(true, Ordering::Release);
                        }
                    }
                }
                changes.wake.notify_one();
            }
            Err(err) => tracing::warn!(error = %err, "schema folder watcher error"),
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(err) => {
            tracing::error!(error = %err, "cannot watch the schema folders: only SIGHUP reloads them");
            return None;
        }
    };
    for folder in folders.iter().flatten() {
        watch(&mut watcher, folder);
    }
    Some(watcher)
}

/// Watches `folder` itself (not recursively); again after a reload, in case the folder was
/// replaced (a new inode needs a new watch).
fn watch(watcher: &mut notify::RecommendedWatcher, folder: &Path) {
    if let Err(err) = watcher.watch(folder, RecursiveMode::NonRecursive) {
        tracing::error!(folder = %folder.display(), error = %err,
            "cannot watch the schema folder: only SIGHUP reloads it");
    }
}

async fn reload_loop(
    schemas: Arc<Schemas>,
    folders: Vec<Option<PathBuf>>,
    changes: Arc<Changes>,
    mut watcher: Option<notify::RecommendedWatcher>,
    debounce: Duration,
) {
    let mut hangup = hangup_signals();
    loop {
        tokio::select! {
            () = next_hangup(&mut hangup) => mark_all(&folders, &changes, "SIGHUP"),
            () = changes.wake.notified() => {
                // Debounce: wait until the folder has been quiet for `debounce`, but no longer than
                // `MAX_DEBOUNCES` of them in all (a folder that never stops changing is still read);
                // a SIGHUP cuts it short.
                let latest = tokio::time::Instant::now() + debounce * MAX_DEBOUNCES;
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(debounce) => break,
                        () = tokio::time::sleep_until(latest) => break,
                        () = changes.wake.notified() => {}
                        () = next_hangup(&mut hangup) => {
                            mark_all(&folders, &changes, "SIGHUP");
                            break;
                        }
                    }
                }
            }
        }
        let chosen: Vec<usize> = changes
            .dirty
            .iter()
            .enumerate()
            .filter_map(|(index, dirty)| dirty.swap(false, Ordering::AcqRel).then_some(index))
            .collect();
        if chosen.is_empty() {
            continue;
        }
        let reloading = Arc::clone(&schemas);
        let chosen_too = chosen.clone();
        // File reads and schema compilation are blocking: off the request threads.
        if let Err(err) = tokio::task::spawn_blocking(move || reloading.reload(Some(&chosen_too))).await {
            tracing::error!(error = %err, "schema reload task failed");
        }
        if let Some(watcher) = &mut watcher {
            for folder in chosen.iter().filter_map(|index| folders[*index].as_deref()) {
                watch(watcher, folder);
            }
        }
    }
}

fn mark_all(folders: &[Option<PathBuf>], changes: &Changes, why: &str) {
    let mut any = false;
    for (index, folder) in folders.iter().enumerate() {
        if folder.is_some() {
            changes.dirty[index].store(true, Ordering::Release);
            any = true;
        }
    }
    if any {
        tracing::info!(trigger = why, "reloading every schema folder");
    } else {
        tracing::info!(trigger = why, "no schema folder to reload: the built-in schemas are in use");
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

/// SIGHUP from now on (instead of its default, ending the process).
#[cfg(unix)]
fn hangup_signals() -> Hangup {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signals) => Some(signals),
        Err(err) => {
            tracing::error!(error = %err, "cannot listen for SIGHUP: schema folders reload only when they change");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signals() -> Hangup {}

/// The next SIGHUP (never, without them).
#[cfg(unix)]
async fn next_hangup(hangup: &mut Hangup) {
    match hangup {
        Some(signals) => {
            if signals.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_hangup: &mut Hangup) {
    std::future::pending::<()>().await
}
