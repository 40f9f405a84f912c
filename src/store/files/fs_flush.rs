//! Making a journal segment's worth of files durable with one device flush.
//!
//! A retired segment names ~1,000 conversation files; an `fdatasync` each is a device cache
//! flush each, ~0.5 s of them on this kind of disk, and every journal round waiting behind
//! them (the webhook's slowest requests came in those windows; BENCHMARKS.md). `syncfs` writes
//! out everything of one filesystem and flushes the device once. Files on another filesystem
//! (a folder mounted or linked elsewhere) are still flushed one by one.
//!
//! Errors: since Linux 5.8, `syncfs` reports every writeback error of the filesystem since the
//! descriptor was opened, so the descriptor is opened when the journal starts, before any of
//! the writes it vouches for. An error may belong to files of a later segment too, and is
//! reported once per descriptor: after one, every later flush fails as well, so no segment is
//! deleted on the strength of a flush that may have lost data (they are replayed next start).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::atomic::flush_paths;
use crate::store::StoreError;

#[derive(Debug)]
pub(crate) struct FsFlush {
    /// A folder of the filesystem, opened before the writes this flushes.
    anchor: File,
    path: PathBuf,
    dev: u64,
    /// A flush failed: the filesystem may have lost writes of files not flushed since.
    failed: bool,
}

impl FsFlush {
    /// For the filesystem `dir` is on.
    pub(crate) fn open(dir: &Path) -> Result<FsFlush, StoreError> {
        let anchor = File::open(dir).map_err(StoreError::io("open", dir))?;
        let dev = anchor
            .metadata()
            .map_err(StoreError::io("inspect", dir))?
            .dev();
        Ok(FsFlush {
            anchor,
            path: dir.to_path_buf(),
            dev,
            failed: false,
        })
    }

    /// Makes `files` (written earlier without a sync; a file gone since was replaced by a
    /// rewrite, which flushed its own) and the folders that gained entries durable.
    pub(crate) fn flush(
        &mut self,
        files: &HashSet<PathBuf>,
        dirs: &HashSet<PathBuf>,
    ) -> Result<(), StoreError> {
        if self.failed {
            return Err(self.error(std::io::Error::other(
                "an earlier flush of this filesystem failed; restart to replay the journal",
            )));
        }
        let (ours, others) = self.split(files.iter().chain(dirs));
        let (other_files, other_dirs): (Vec<_>, Vec<_>) =
            others.into_iter().partition(|p| files.contains(*p));
        flush_paths(other_files, other_dirs)?;
        if ours > 0 {
            let synced = rustix::fs::syncfs(&self.anchor).map_err(std::io::Error::from);
            self.failed = synced.is_err();
            synced.map_err(|err| self.error(err))?;
        }
        Ok(())
    }

    /// How many of `paths` are on this filesystem, and the others. A path's folder decides
    /// (the file itself may be gone); folders are looked at once each.
    fn split<'a>(&self, paths: impl Iterator<Item = &'a PathBuf>) -> (usize, Vec<&'a PathBuf>) {
        let mut folder_dev: HashMap<&Path, Option<u64>> = HashMap::new();
        let (mut ours, mut others) = (0, Vec::new());
        for path in paths {
            let folder = path.parent().unwrap_or(path);
            let dev = *folder_dev
                .entry(folder)
                .or_insert_with(|| std::fs::metadata(folder).ok().map(|m| m.dev()));
            match dev {
                Some(dev) if dev == self.dev => ours += 1,
                _ => others.push(path),
            }
        }
        (ours, others)
    }

    fn error(&self, err: std::io::Error) -> StoreError {
        StoreError::io("flush the filesystem of", &self.path)(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(paths: &[&Path]) -> HashSet<PathBuf> {
        paths.iter().map(|p| p.to_path_buf()).collect()
    }

    #[test]
    fn files_of_the_same_filesystem_share_one_flush_and_others_are_flushed_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut flush = FsFlush::open(dir.path()).unwrap();
        let here = dir.path().join("a.json");
        std::fs::write(&here, b"[]").unwrap();
        let gone = dir.path().join("replaced-since.json");

        // A folder of another filesystem, when this machine has one at hand.
        let elsewhere = ["/dev/shm", "/proc/self"]
            .map(PathBuf::from)
            .into_iter()
            .find(|p| std::fs::metadata(p).is_ok_and(|m| m.dev() != flush.dev));
        let mut paths = vec![here.clone(), gone.clone()];
        if let Some(other) = &elsewhere {
            paths.push(other.join("x.json"));
        }
        let (ours, others) = flush.split(paths.iter());
        assert_eq!(ours, 2, "both named in the journal's folder");
        assert_eq!(others.len(), usize::from(elsewhere.is_some()));

        flush
            .flush(&set(&[&here, &gone]), &set(&[dir.path()]))
            .unwrap();
        assert!(!flush.failed);
    }

    #[test]
    fn after_a_failed_flush_every_later_one_fails_too() {
        let dir = tempfile::tempdir().unwrap();
        let mut flush = FsFlush::open(dir.path()).unwrap();
        let file = dir.path().join("a.json");
        std::fs::write(&file, b"[]").unwrap();
        flush.flush(&set(&[&file]), &HashSet::new()).unwrap();

        // As `flush` leaves it when `syncfs` reports a writeback error.
        flush.failed = true;
        let err = flush.flush(&set(&[&file]), &HashSet::new()).unwrap_err();
        let cause = std::error::Error::source(&err).map(ToString::to_string);
        assert!(cause.is_some_and(|c| c.contains("restart")), "{err}");
        assert!(flush.flush(&HashSet::new(), &HashSet::new()).is_err());
    }
}
