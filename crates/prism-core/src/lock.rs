//! One writer per output directory: a run holds an exclusive lock on the directory it writes,
//! so a second run started on the same directory stops with an error instead of interleaving
//! its writes with the first's (two `--resume` runs of one job would truncate each other's logs).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use crate::{PrismError, Result};

/// The lock file inside a locked directory (empty; kept after the run, like Git's index lock
/// it only matters while a process holds it).
pub const LOCK_FILE: &str = ".prism.lock";

/// An exclusive lock on a directory, held until it is dropped (or the process ends, however it
/// ends: the operating system releases it, so a killed run leaves nothing to clean up).
///
/// ```
/// use prism_core::{DirLock, PrismError};
/// let dir = tempfile::tempdir().unwrap();
/// let held = DirLock::acquire(dir.path())?;
/// let second = DirLock::acquire(dir.path());
/// assert!(matches!(second, Err(PrismError::Busy { .. })));
/// drop(held);
/// DirLock::acquire(dir.path())?; // free again
/// # Ok::<(), PrismError>(())
/// ```
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Creates `dir` if needed and locks it; [`PrismError::Busy`] when another holder (another
    /// process, or another lock in this one) has it. On a file system without locks the
    /// directory is used unlocked.
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        std::fs::create_dir_all(dir).map_err(|e| PrismError::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| PrismError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(PrismError::Busy {
                    path: dir.to_path_buf(),
                });
            }
            Err(TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {}
            Err(TryLockError::Error(e)) => return Err(PrismError::io(&path, e)),
        }
        Ok(DirLock { _file: file })
    }
}
