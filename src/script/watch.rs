//! Hot reload: watch the scripts directory, debounce, reload.
//!
//! Editors save by writing a temporary file and renaming it, or by deleting and recreating, so a
//! single save is a burst of events on several paths. Every event restarts a short quiet period;
//! when it passes, all paths seen are one reload. A file missing at that moment is a failed reload
//! (the running version stays), never "no scripts".

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::{mpsc, watch};

use super::host::ScriptHost;

/// Quiet time before a reload: longer than an editor's save burst (tens of ms), short enough that
/// a save is live well within a second.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// Starts watching; the returned task ends when `stop` changes.
pub fn spawn(host: Arc<ScriptHost>, mut stop: watch::Receiver<bool>) -> notify::Result<tokio::task::JoinHandle<()>> {
    let (events, mut received) = mpsc::unbounded_channel::<Vec<PathBuf>>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        // Reading the files (as every reload does) reports accesses and metadata changes: only
        // content and name changes mean an edit, or a reload would trigger the next one.
        Ok(event) if is_edit(&event.kind) => {
            let _ = events.send(event.paths);
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "file watcher error"),
    })?;
    watcher.watch(host.dir(), RecursiveMode::Recursive)?;
    Ok(tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            let mut changed = tokio::select! {
                paths = received.recv() => match paths { Some(paths) => paths, None => return },
                _ = stop.changed() => return,
            };
            loop {
                match tokio::time::timeout(DEBOUNCE, received.recv()).await {
                    Ok(Some(paths)) => changed.extend(paths),
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            // Any edit reloads (a directory renamed into place has no extension); reloading
            // unchanged files is cheap and answers "unchanged".
            changed.sort();
            changed.dedup();
            let paths: Vec<String> = changed.iter().map(|p| p.display().to_string()).collect();
            tracing::info!(?paths, "scripts changed on disk; reloading");
            let reloading = host.clone();
            // The host logs the outcome; a failed reload keeps the running version.
            if let Err(err) = tokio::task::spawn_blocking(move || reloading.reload()).await {
                tracing::error!(error = %err, "the reload task failed");
            }
        }
    }))
}

fn is_edit(kind: &notify::EventKind) -> bool {
    use notify::event::{EventKind, ModifyKind};
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Any => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(_) | EventKind::Other => false,
    }
}
