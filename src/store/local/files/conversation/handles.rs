//! Files the conversation cache keeps open between appends, within a budget of descriptors.

use std::fs::{self, File};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The conversation's `flock`, taken by the fast path: released when dropped, the file
/// going back to its slot for the next update.
pub(super) struct HeldLock<'a> {
    pub home: &'a mut Option<Kept>,
    pub file: Option<Kept>,
}

impl Drop for HeldLock<'_> {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            // Should unlocking fail, closing the file releases the lock.
            if file.unlock().is_ok() && file.counted {
                *self.home = Some(file);
            }
        }
    }
}

/// Descriptors the conversation cache keeps open, process-wide.
static KEPT_OPEN: AtomicUsize = AtomicUsize::new(0);

/// A file the cache may keep open: `counted` when it fits in [`fd_budget`], otherwise it is
/// closed after use like any other.
#[derive(Debug)]
pub(super) struct Kept {
    file: File,
    pub counted: bool,
}

impl Kept {
    pub(super) fn new(file: File) -> Kept {
        let counted = KEPT_OPEN.fetch_add(1, Ordering::Relaxed) < fd_budget();
        if !counted {
            KEPT_OPEN.fetch_sub(1, Ordering::Relaxed);
        }
        Kept { file, counted }
    }
}

impl std::ops::Deref for Kept {
    type Target = File;

    fn deref(&self) -> &File {
        &self.file
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        if self.counted {
            KEPT_OPEN.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Half the process's limit on open files (`RLIMIT_NOFILE`, soft): the other half stays for
/// sockets, databases and the rest. A systemd service gets 1,024 by default.
fn fd_budget() -> usize {
    static BUDGET: OnceLock<usize> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        let limits = fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let soft = limits
            .lines()
            .find(|line| line.starts_with("Max open files"))
            .and_then(|line| line.split_whitespace().nth(3))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(1024);
        soft / 2
    })
}
