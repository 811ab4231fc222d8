//! Folders that are jitgate's alone: the data folder, the CA keys' folder, the store's and
//! the recordings' folders hold keys, every command typed and every session. Each is
//! created 0700, whatever the umask; one that exists is left as it is.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

/// Creates `dir` and any missing parents, 0700.
pub fn create_folder(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}
