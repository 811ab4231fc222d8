//! Retention: removing recordings older than `recordings.retention`.
//!
//! Only files laid out by the recorder are considered, `YYYY/MM/DD/*.cast`, regular files
//! (symbolic links are never followed or removed). A recording's age comes from the later of
//! its folder's date and its header's timestamp, so neither a moved file nor an edited header
//! makes a young recording look old. Each removal is returned with the file's SHA-256 taken
//! just before, for the caller's `recording.pruned` audit event. Day, month and year folders
//! left empty are removed too.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::Duration;

use chrono::NaiveDate;

use super::cast::parse_header;
use super::{RecorderError, sha256_file};
use crate::model::UnixTime;

/// A removed recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// Relative to the recordings folder, with `/`.
    pub path: String,
    /// Hex SHA-256 of the file as it was removed.
    pub sha256: String,
    /// When the recording started (as used for its age).
    pub started_at: UnixTime,
}

/// Removes recordings under `root` that started more than `retention` before `now`, oldest
/// first; returns what was removed. A missing `root` prunes nothing.
pub fn prune(
    root: &Path,
    retention: Duration,
    now: UnixTime,
) -> Result<Vec<Pruned>, RecorderError> {
    let cutoff = now.saturating_sub(i64::try_from(retention.as_secs()).unwrap_or(i64::MAX));
    let mut pruned = Vec::new();
    if !root.is_dir() {
        return Ok(pruned);
    }
    for (year, ydir) in numbered(root, 4)? {
        for (month, mdir) in numbered(&ydir, 2)? {
            for (day, ddir) in numbered(&mdir, 2)? {
                let Some(day_start) = NaiveDate::from_ymd_opt(year as i32, month, day)
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|d| d.and_utc().timestamp())
                else {
                    continue;
                };
                if day_start > cutoff {
                    continue;
                }
                prune_day(
                    &ddir,
                    &format!("{year:04}/{month:02}/{day:02}"),
                    day_start,
                    cutoff,
                    &mut pruned,
                )?;
                remove_if_empty(&ddir)?;
            }
            remove_if_empty(&mdir)?;
        }
        remove_if_empty(&ydir)?;
    }
    Ok(pruned)
}

fn prune_day(
    dir: &Path,
    rel_dir: &str,
    day_start: UnixTime,
    cutoff: UnixTime,
    pruned: &mut Vec<Pruned>,
) -> Result<(), RecorderError> {
    let mut files: Vec<(UnixTime, String)> = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| RecorderError::io(dir, e))? {
        let entry = entry.map_err(|e| RecorderError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if !is_file || !name.ends_with(".cast") {
            continue;
        }
        let started = header_time(&entry.path())
            .unwrap_or(day_start)
            .max(day_start);
        if started <= cutoff {
            files.push((started, name));
        }
    }
    files.sort();
    for (started_at, name) in files {
        let path = dir.join(&name);
        let sha256 = sha256_file(&path)?;
        fs::remove_file(&path).map_err(|e| RecorderError::io(&path, e))?;
        pruned.push(Pruned {
            path: format!("{rel_dir}/{name}"),
            sha256,
            started_at,
        });
    }
    Ok(())
}

/// The header's timestamp, if the first line (at most 64 KiB) is a header with one.
fn header_time(path: &Path) -> Option<UnixTime> {
    let f = fs::File::open(path).ok()?;
    let mut first = Vec::new();
    BufReader::new(f.take(64 * 1024))
        .read_until(b'\n', &mut first)
        .ok()?;
    parse_header(std::str::from_utf8(&first).ok()?.trim_end())
        .ok()?
        .timestamp
}

/// Sub-folders whose names are exactly `digits` digits, with their number, sorted.
fn numbered(dir: &Path, digits: usize) -> Result<Vec<(u32, std::path::PathBuf)>, RecorderError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| RecorderError::io(dir, e))? {
        let entry = entry.map_err(|e| RecorderError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.len() != digits || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if let Ok(n) = name.parse() {
            out.push((n, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn remove_if_empty(dir: &Path) -> Result<(), RecorderError> {
    let empty = fs::read_dir(dir)
        .map_err(|e| RecorderError::io(dir, e))?
        .next()
        .is_none();
    if empty {
        fs::remove_dir(dir).map_err(|e| RecorderError::io(dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;
    /// 2026-11-22 00:00:00 UTC.
    const NOV22: i64 = 1_795_305_600;

    fn write(root: &Path, rel: &str, timestamp: Option<i64>) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        let ts = timestamp.map_or(String::new(), |t| format!(",\"timestamp\":{t}"));
        fs::write(
            &p,
            format!("{{\"version\":2,\"width\":80,\"height\":24{ts}}}\n"),
        )
        .expect("write");
    }

    #[test]
    fn removes_expired_recordings_with_their_hashes_and_empty_folders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, "2026/10/01/old.cast", Some(NOV22 - 52 * DAY + 3600));
        write(root, "2026/10/01/old-2.cast", None);
        write(root, "2026/11/01/edge.cast", Some(NOV22 - 21 * DAY + 10));
        write(root, "2026/11/20/new.cast", Some(NOV22 - 2 * DAY));
        // Header claims old, folder says new: kept.
        write(root, "2026/11/21/lying.cast", Some(1));
        write(root, "2026/10/01/notes.txt", None);
        write(root, "misc/2020.cast", None);
        let expected_hash = sha256_file(&root.join("2026/10/01/old.cast")).expect("hash");

        let now = NOV22 + 12 * 3600;
        let retention = Duration::from_secs(21 * DAY as u64);
        let got = prune(root, retention, now).expect("prune");
        let paths: Vec<&str> = got.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "2026/10/01/old-2.cast",
                "2026/10/01/old.cast",
                "2026/11/01/edge.cast"
            ]
        );
        assert_eq!(got[1].sha256, expected_hash);
        assert_eq!(got[1].started_at, NOV22 - 52 * DAY + 3600);

        assert!(!root.join("2026/10/01/old.cast").exists());
        assert!(
            root.join("2026/10/01/notes.txt").exists(),
            "only .cast files"
        );
        assert!(
            !root.join("2026/11/01").exists(),
            "empty day folder removed"
        );
        assert!(root.join("2026/11/20/new.cast").exists());
        assert!(root.join("2026/11/21/lying.cast").exists());
        assert!(root.join("misc/2020.cast").exists());

        // Nothing left to prune.
        assert!(prune(root, retention, now).expect("again").is_empty());
        // Everything goes when the retention is short enough; empty years go too.
        let all = prune(root, Duration::ZERO, now).expect("all");
        assert_eq!(all.len(), 2);
        assert!(!root.join("2026/11").exists());
    }

    #[test]
    fn a_missing_root_prunes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let got = prune(&dir.path().join("none"), Duration::ZERO, NOV22).expect("ok");
        assert!(got.is_empty());
    }
}
