//! SQLite implementation of `Store` (being written on its own branch).

use std::path::Path;

use super::StoreError;

pub struct SqliteStore;

impl SqliteStore {
    pub fn open(_path: &Path) -> Result<SqliteStore, StoreError> {
        Err(StoreError::Db("not built yet".into()))
    }
}
