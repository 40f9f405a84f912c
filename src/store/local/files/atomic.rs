//! Crash-safe file primitives: a file is replaced whole or not at all, and what was written
//! is on disk (data and directory entry) before the caller is told so.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::StoreError;

/// Replaces `path` with `bytes`: temp file in the same folder, fsync, rename, fsync the folder.
/// A reader sees the old file or the new one, never a mix; so does a crash.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    replace(path, bytes, true).map(drop)
}

/// Like [`write_atomic`] but leaves flushing to the caller (a group sync): for a file that did
/// not exist, whose loss in a crash before the sync loses nothing acknowledged.
/// Returns the file, so the caller can flush it later.
pub(crate) fn create_unsynced(path: &Path, bytes: &[u8]) -> Result<File, StoreError> {
    replace(path, bytes, false)
}

fn replace(path: &Path, bytes: &[u8], sync: bool) -> Result<File, StoreError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = parent(path);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // Hidden and not ending in `.json`, so a reader globbing `*.json` never picks it up.
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| -> Result<File, StoreError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(StoreError::io("create", &tmp))?;
        file.write_all(bytes)
            .map_err(StoreError::io("write", &tmp))?;
        if sync {
            file.sync_all().map_err(StoreError::io("sync", &tmp))?;
        }
        fs::rename(&tmp, path).map_err(StoreError::io("replace", path))?;
        Ok(file)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    let file = result?;
    if sync {
        sync_dir(dir)?;
    }
    Ok(file)
}

/// Removes the temp files that [`replace`] left in `dir` in a process that is gone (killed
/// between creating one and renaming it); returns how many. Those of a live process, which
/// may be about to rename them (a `salesbot poll` beside the server), stay.
pub(crate) fn remove_stale_temp_files(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_file_owner) else {
            continue;
        };
        let alive = Path::new("/proc").join(pid.to_string()).exists();
        if !alive && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The process that made a temp file named by [`replace`] (`.<name>.tmp-<pid>-<n>`).
fn temp_file_owner(name: &str) -> Option<u32> {
    let (_, suffix) = name.strip_prefix('.')?.rsplit_once(".tmp-")?;
    let (pid, n) = suffix.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Creates `dir` and any missing parents, syncing each parent whose entries changed, so a
/// folder created for a new page survives a crash together with the file put in it.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    let up = parent(dir);
    ensure_dir(up)?;
    match fs::create_dir(dir) {
        Ok(()) => sync_dir(up),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(StoreError::io("create folder", dir)(err)),
    }
}

/// Flushes files written earlier without a sync (a file gone since was replaced by a rewrite,
/// which flushed its own), then the folders of the new ones.
pub(crate) fn flush_paths<'a>(
    files: impl IntoIterator<Item = &'a PathBuf>,
    new_dirs: impl IntoIterator<Item = &'a PathBuf>,
) -> Result<(), StoreError> {
    files.into_iter().try_for_each(|path| flush_file(path))?;
    new_dirs.into_iter().try_for_each(|dir| sync_dir(dir))
}

/// Flushes one file written earlier without a sync; one gone since is skipped (see
/// [`flush_paths`]).
pub(crate) fn flush_file(path: &Path) -> Result<(), StoreError> {
    #[cfg(test)]
    FLUSHED.lock().unwrap().push(path.to_path_buf());
    match File::open(path) {
        Ok(file) => file.sync_data().map_err(StoreError::io("sync", path)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(StoreError::io("open", path)(err)),
    }
}

/// Every path [`flush_file`] was asked to flush, for tests to see that a flush happened.
#[cfg(test)]
pub(crate) static FLUSHED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

#[cfg(test)]
pub(crate) fn times_flushed(path: &Path) -> usize {
    FLUSHED
        .lock()
        .unwrap()
        .iter()
        .filter(|p| *p == path)
        .count()
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io("sync folder", dir))
}

pub(crate) fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_files_of_a_gone_process_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        // Above any pid Linux hands out (at most 2^22).
        let gone = ".123.json.tmp-4294967-7";
        let ours = format!(".123.json.tmp-{}-8", std::process::id());
        let others = [
            "123.json",
            ".123.json.tmp-x-1",
            ".notes.tmp-12",
            "a.tmp-4294967-7",
        ];
        for name in [gone, ours.as_str()].iter().chain(&others) {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        assert_eq!(remove_stale_temp_files(dir.path()), 1);
        assert!(!dir.path().join(gone).exists());
        assert!(
            dir.path().join(&ours).exists(),
            "a live process's temp file stays"
        );
        for name in others {
            assert!(
                dir.path().join(name).exists(),
                "{name} is not a temp file of ours"
            );
        }
        assert_eq!(remove_stale_temp_files(&dir.path().join("missing")), 0);
    }

    #[test]
    fn write_atomic_replaces_whole_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b/c");
        ensure_dir(&nested).unwrap();
        let path = nested.join("x.json");
        write_atomic(&path, b"[1]").unwrap();
        write_atomic(&path, b"[1,2]").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"[1,2]");
        let names: Vec<_> = fs::read_dir(&nested)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x.json")]);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        write_atomic(&path, b"old").unwrap();
        // Renaming onto a non-empty directory fails: the old content must survive elsewhere.
        let blocked = dir.path().join("blocked");
        ensure_dir(&blocked.join("inner")).unwrap();
        assert!(write_atomic(&blocked, b"new").is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "temp file cleaned up"
        );
    }
}
