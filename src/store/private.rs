//! The store's files are for jitgate's user alone: they hold every command typed and the
//! audit trail. A folder jitgate creates for them is 0700 and the database file 0600 (as the
//! recordings are); SQLite gives its `-wal` and `-shm` files the database file's mode.
//! Existing files of ours that are wider are tightened, and the log says so.

use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::StoreError;

/// Creates `dir` and any missing parents (`crate::private`).
pub(super) fn create_folder(dir: &Path) -> Result<(), StoreError> {
    crate::private::create_folder(dir)
        .map_err(|e| StoreError::Db(format!("cannot create folder {}: {e}", dir.display())))
}

/// Makes the database at `db` ready to open: its folder (see `create_folder`), the file
/// itself created 0600 when absent, and it and its `-wal`/`-shm` (left by an earlier run)
/// tightened when group or others may read them.
pub(super) fn prepare_database(db: &Path) -> Result<(), StoreError> {
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_folder(dir)?;
    }
    // Created here rather than by SQLite, which would take the umask's 0644.
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(db)
        .map_err(|e| {
            let next = if e.kind() == std::io::ErrorKind::PermissionDenied {
                "; run jitgate as the user that owns it"
            } else {
                ""
            };
            StoreError::Db(format!(
                "cannot open {} for writing: {e}{next}",
                db.display()
            ))
        })?;
    for file in [db.to_path_buf(), beside(db, "-wal"), beside(db, "-shm")] {
        tighten(&file)?;
    }
    Ok(())
}

/// `db` with `suffix` appended to its name, as SQLite names its side files.
fn beside(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Takes group and others' permissions off `file` when it exists and is ours.
fn tighten(file: &Path) -> Result<(), StoreError> {
    let Ok(meta) = std::fs::metadata(file) else {
        return Ok(());
    };
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid {
        tracing::warn!(
            file = %file.display(),
            mode = format!("{mode:o}"),
            "the store's file is open to others than its owner, who is not this process's \
             user; make jitgate's user its owner (then jitgate keeps it 0600), or take the \
             others' access away (chmod o-rwx)"
        );
        return Ok(());
    }
    let tight = mode & 0o700;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(tight))
        .map_err(|e| StoreError::Db(format!("cannot chmod {}: {e}", file.display())))?;
    tracing::warn!(
        file = %file.display(),
        from = format!("{mode:o}"),
        to = format!("{tight:o}"),
        "tightened the store's file: it holds every command typed and the audit trail"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o777
    }

    #[test]
    fn a_new_database_and_its_folder_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a/b/jitgate.db");
        prepare_database(&db).unwrap();
        let modes = [&db, &dir.path().join("a/b"), &dir.path().join("a")].map(|p| mode(p));
        assert_eq!(modes, [0o600, 0o700, 0o700]);
        // A folder that was there is not ours to change.
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare_database(&shared.join("jitgate.db")).unwrap();
        assert_eq!(mode(&shared), 0o755);
    }

    #[test]
    fn existing_files_that_are_too_open_are_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("jitgate.db");
        let table = [
            (db.clone(), 0o644, 0o600),
            (beside(&db, "-wal"), 0o664, 0o600),
            (beside(&db, "-shm"), 0o640, 0o600),
        ];
        for (file, before, _) in &table {
            std::fs::write(file, b"").unwrap();
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(*before)).unwrap();
        }
        prepare_database(&db).unwrap();
        for (file, _, after) in &table {
            assert_eq!(mode(file), *after, "{}", file.display());
        }
    }
}
