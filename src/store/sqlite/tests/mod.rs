//! Tests of the SQLite store against a real database file in a temp dir.

mod records;
mod requests;

use std::path::Path;

use super::SqliteStore;
use super::schema::{MIGRATIONS, latest_version};
use crate::model::*;
use crate::store::audit::verify_chain;
use crate::store::{Store, StoreError};

type R = Result<(), Box<dyn std::error::Error>>;

const T: UnixTime = 1_800_000_000;

pub(super) fn ask(needed: u32) -> NewRequest {
    NewRequest::example(needed, T)
}

/// Everyone whose approval counts in these tests.
pub(super) fn approvers() -> Vec<String> {
    ["bob", "carol", "dave"].map(String::from).to_vec()
}

pub(super) fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
    SqliteStore::open(&dir.join("data").join("jitgate.db"))
}

/// Kinds of the audit events about request `id`, oldest first.
pub(super) async fn kinds(store: &SqliteStore, id: i64) -> Result<Vec<String>, StoreError> {
    Ok(store
        .audit_events(None)
        .await?
        .into_iter()
        .filter(|e| e.event.request_id == Some(id))
        .map(|e| e.event.kind)
        .collect())
}

pub(super) async fn audit_len(store: &SqliteStore) -> Result<usize, StoreError> {
    Ok(store.audit_events(None).await?.len())
}

#[tokio::test]
async fn open_creates_folder_and_file_in_wal_mode() -> R {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("a").join("b").join("jitgate.db");
    let store = SqliteStore::open(&path)?;
    assert!(path.is_file());
    let (mode, sync, fk): (String, i64, i64) = store
        .call(|c| {
            Ok(c.query_row(
                "SELECT (SELECT journal_mode FROM pragma_journal_mode), \
                 (SELECT synchronous FROM pragma_synchronous), \
                 (SELECT foreign_keys FROM pragma_foreign_keys)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?)
        })
        .await?;
    // synchronous = FULL (2): every commit is on disk before the caller hears of it.
    assert_eq!((mode.as_str(), sync, fk), ("wal", 2, 1));
    Ok(())
}

#[tokio::test]
async fn the_database_its_wal_and_shm_and_its_folder_are_private() -> R {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("data").join("jitgate.db");
    let store = SqliteStore::open(&path)?;
    store.create_request(ask(1)).await?;
    // SQLite gives the -wal and -shm it creates the database file's mode, whatever the umask.
    let mode = |suffix: &str| -> std::io::Result<u32> {
        let mut name = path.clone().into_os_string();
        name.push(suffix);
        Ok(std::fs::metadata(name)?.mode() & 0o777)
    };
    let modes = [mode("")?, mode("-wal")?, mode("-shm")?];
    assert_eq!(modes, [0o600; 3]);
    assert_eq!(
        std::fs::metadata(dir.path().join("data"))?.mode() & 0o777,
        0o700
    );
    Ok(())
}

#[tokio::test]
async fn migrations_run_once_across_reopen() -> R {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let id = store.create_request(ask(1)).await?.id;
    drop(store);
    let store = open(dir.path())?;
    assert_eq!(store.schema_version().await?, latest_version());
    let rows: i64 = store
        .call(|c| Ok(c.query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))?))
        .await?;
    assert_eq!(rows, MIGRATIONS.len() as i64);
    assert!(store.get_request(id).await?.is_some());
    Ok(())
}

#[tokio::test]
async fn open_readonly_never_creates_and_never_writes() -> R {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("missing").join("jitgate.db");
    let err = SqliteStore::open_readonly(&path)
        .err()
        .map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("no database at")));
    assert!(!dir.path().join("missing").exists());

    let store = open(dir.path())?;
    store.create_request(ask(0)).await?;
    drop(store);
    let ro = SqliteStore::open_readonly(&dir.path().join("data").join("jitgate.db"))?;
    assert_eq!(verify_chain(&ro.audit_events(None).await?), Ok(2));
    assert!(matches!(
        ro.create_request(ask(0)).await,
        Err(StoreError::Db(_))
    ));
    Ok(())
}

#[tokio::test]
async fn open_readonly_refuses_a_file_that_is_not_a_jitgate_database() -> R {
    let dir = tempfile::tempdir()?;
    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other)?.execute_batch("CREATE TABLE x (y)")?;
    let err = SqliteStore::open_readonly(&other)
        .err()
        .map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("not a jitgate database")));
    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "hello, this is not SQLite at all, not even close to it",
    )?;
    assert!(SqliteStore::open_readonly(&text).is_err());
    Ok(())
}
