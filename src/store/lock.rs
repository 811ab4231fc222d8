//! One of each writer per store. `jitgate serve` closes, as it starts, every session the
//! store holds open (a crash cut them off), so a second server on the same store would seal
//! the first one's live sessions as cut off; two `recordings prune` would enter every removal
//! twice. Each takes an exclusive lock on a file beside the store, held while it runs and
//! released by the kernel however it ends (`kill -9` included).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::StoreError;

/// Who holds a store's lock: its file's suffix and the command, for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    Serve,
    Prune,
}

impl Holder {
    fn suffix(self) -> &'static str {
        match self {
            Holder::Serve => "serve.lock",
            Holder::Prune => "prune.lock",
        }
    }

    fn command(self) -> &'static str {
        match self {
            Holder::Serve => "jitgate serve",
            Holder::Prune => "jitgate recordings prune",
        }
    }
}

/// The lock, held until dropped. The file holds the holder's process id, for the message a
/// second one gets.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

/// `<db>.serve.lock` or `<db>.prune.lock`.
pub fn lock_path(db: &Path, holder: Holder) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".");
    name.push(holder.suffix());
    PathBuf::from(name)
}

/// Takes `holder`'s lock on the store at `db`, or says who has it.
pub fn hold(db: &Path, holder: Holder) -> Result<StoreLock, StoreError> {
    let path = lock_path(db, holder);
    // The store's folder: created private here when this is a first start.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        super::private::create_folder(dir)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| StoreError::Db(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = match pid.trim() {
                "" => String::new(),
                p => format!(" (process {p})"),
            };
            return Err(StoreError::Conflict(format!(
                "another {}{pid} is using the store {}: one runs per store (lock {})",
                holder.command(),
                db.display(),
                path.display()
            )));
        }
        Err(TryLockError::Error(e)) => {
            return Err(StoreError::Db(format!(
                "cannot lock {}: {e}",
                path.display()
            )));
        }
    }
    // Best effort: the id only improves the message.
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    Ok(StoreLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        // The store's folder need not exist yet (a first start).
        let db = dir.path().join("data/jitgate.db");
        let first = hold(&db, Holder::Serve).unwrap();
        let err = hold(&db, Holder::Serve).unwrap_err().to_string();
        let pid = std::process::id();
        assert!(
            err.contains(&format!(
                "another jitgate serve (process {pid}) is using the store"
            )),
            "{err}"
        );
        // The other kind of holder has a lock of its own.
        let prune = hold(&db, Holder::Prune).unwrap();
        drop(first);
        hold(&db, Holder::Serve).unwrap();
        drop(prune);
        let mode = std::fs::metadata(lock_path(&db, Holder::Serve))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let folder = std::fs::metadata(dir.path().join("data"))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&folder) & 0o777,
            0o700
        );
    }
}
