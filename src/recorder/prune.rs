//! Retention: removing recordings older than `recordings.retention`.
//!
//! Only files laid out by the recorder are considered, `YYYY/MM/DD/*.cast`, regular files
//! (symbolic links are never followed or removed). A recording's age comes from the later of
//! its folder's date and its header's timestamp, so neither a moved file nor an edited header
//! makes a young recording look old; a header that cannot be read counts as the end of its
//! folder's day, the latest the recording can have started, so nothing goes early
//! (`counted_start`). `jitgate recordings prune` then counts each listed recording again as
//! `audit verify` will, from its session's start in the audit chain (or the end of its day
//! when the chain has none), and keeps it while that count says it is too young.
//!
//! Two steps, so that the audit chain hears of a removal before it happens: `expired` lists
//! the recordings due with their SHA-256; the caller appends a `recording.pruned` event for
//! one, then `remove`s it, which re-hashes the file first and refuses if it changed since it
//! was listed. A crash between the two leaves a file the chain already calls pruned (harmless,
//! pruned again next time), never a file gone that the chain still expects. Day, month and
//! year folders left empty are removed too. `prune` does both steps for one-shot callers.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::Duration;

use chrono::NaiveDate;

use super::cast::parse_header;
use super::{RecorderError, sha256_file};
use crate::model::UnixTime;

const DAY: i64 = 86_400;
/// The most of a recording's first line read for its header: an exec command is kept whole
/// there, and SSH packets (so commands) are far smaller than this.
const MAX_HEADER: u64 = 8 << 20;

/// A recording due for removal, or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// Relative to the recordings folder, with `/`.
    pub path: String,
    /// Hex SHA-256 of the file when listed (and so when removed).
    pub sha256: String,
    /// When the recording started (as used for its age).
    pub started_at: UnixTime,
}

/// What `prune` did: every removal, and every file it could not list or remove.
#[derive(Debug, Default)]
pub struct PruneReport {
    pub pruned: Vec<Pruned>,
    pub errors: Vec<RecorderError>,
}

/// Lists, oldest first, the recordings under `root` that started more than `retention`
/// before `now`, with their SHA-256. Removes nothing. A missing `root` lists nothing.
pub fn expired(
    root: &Path,
    retention: Duration,
    now: UnixTime,
) -> Result<Vec<Pruned>, RecorderError> {
    let cutoff = now.saturating_sub(i64::try_from(retention.as_secs()).unwrap_or(i64::MAX));
    let mut due = Vec::new();
    if !root.is_dir() {
        return Ok(due);
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
                if day_start <= cutoff {
                    let rel_dir = format!("{year:04}/{month:02}/{day:02}");
                    list_day(&ddir, &rel_dir, day_start, cutoff, &mut due)?;
                }
            }
        }
    }
    Ok(due)
}

/// Removes one listed recording if it still has the listed SHA-256, then the folders it
/// leaves empty.
pub fn remove(root: &Path, p: &Pruned) -> Result<(), RecorderError> {
    let path = root.join(&p.path);
    let now = sha256_file(&path)?;
    if now != p.sha256 {
        return Err(RecorderError::Changed {
            path: p.path.clone(),
        });
    }
    fs::remove_file(&path).map_err(|e| RecorderError::io(&path, e))?;
    let mut dir = path.parent();
    for _ in 0..3 {
        match dir {
            Some(d) if d != root => {
                remove_if_empty(d)?;
                dir = d.parent();
            }
            _ => break,
        }
    }
    Ok(())
}

/// `expired`, then `remove` for each: for callers that audit removals afterwards.
pub fn prune(root: &Path, retention: Duration, now: UnixTime) -> PruneReport {
    let mut report = PruneReport::default();
    match expired(root, retention, now) {
        Ok(due) => {
            for p in due {
                match remove(root, &p) {
                    Ok(()) => report.pruned.push(p),
                    Err(e) => report.errors.push(e),
                }
            }
        }
        Err(e) => report.errors.push(e),
    }
    report
}

fn list_day(
    dir: &Path,
    rel_dir: &str,
    day_start: UnixTime,
    cutoff: UnixTime,
    due: &mut Vec<Pruned>,
) -> Result<(), RecorderError> {
    let mut files: Vec<(UnixTime, String)> = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| RecorderError::io(dir, e))? {
        let entry = entry.map_err(|e| RecorderError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if !is_file || !name.ends_with(".cast") {
            continue;
        }
        let started = counted_start(day_start, header_time(&entry.path()));
        if started <= cutoff {
            files.push((started, name));
        }
    }
    files.sort();
    for (started_at, name) in files {
        due.push(Pruned {
            sha256: sha256_file(&dir.join(&name))?,
            path: format!("{rel_dir}/{name}"),
            started_at,
        });
    }
    Ok(())
}

/// When a recording in the folder of the day starting at `day_start` counts as started, for
/// its age: its header's timestamp, or without one the end of that day (the latest it can
/// have started); never before the day began.
pub fn counted_start(day_start: UnixTime, header: Option<UnixTime>) -> UnixTime {
    header
        .unwrap_or(day_start.saturating_add(DAY - 1))
        .max(day_start)
}

/// The start (00:00 UTC) of the day a recording's path names, `YYYY/MM/DD/<name>`.
pub fn day_of(rel: &str) -> Option<UnixTime> {
    let mut parts = rel.split('/');
    let mut next = |digits: usize| {
        let p = parts.next().filter(|p| p.len() == digits)?;
        p.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| p.parse::<u32>().ok())?
    };
    let (year, month, day) = (next(4)?, next(2)?, next(2)?);
    NaiveDate::from_ymd_opt(year as i32, month, day)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp())
}

/// The header's timestamp, if the first line (at most `MAX_HEADER`) is a header with one.
fn header_time(path: &Path) -> Option<UnixTime> {
    let f = fs::File::open(path).ok()?;
    let mut first = Vec::new();
    BufReader::new(f.take(MAX_HEADER))
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
        let listed = expired(root, retention, now).expect("list");
        assert_eq!(listed.len(), 3);
        assert!(
            root.join("2026/10/01/old.cast").exists(),
            "listing removes nothing"
        );
        let report = prune(root, retention, now);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let got = report.pruned;
        assert_eq!(got, listed);
        let paths: Vec<&str> = got.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "2026/10/01/old.cast",
                // No timestamp: counted from the end of its day.
                "2026/10/01/old-2.cast",
                "2026/11/01/edge.cast"
            ]
        );
        assert_eq!(got[0].sha256, expected_hash);
        assert_eq!(got[0].started_at, NOV22 - 52 * DAY + 3600);

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
        assert!(prune(root, retention, now).pruned.is_empty());
        // Everything goes when the retention is short enough; empty years go too.
        let all = prune(root, Duration::ZERO, now);
        assert_eq!(all.pruned.len(), 2);
        assert!(!root.join("2026/11").exists());
    }

    #[test]
    fn a_long_header_is_read_whole_and_an_unreadable_one_counts_from_the_day_s_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        // An exec of an 80 KB script at 15:00, its command kept whole in the header.
        let at = NOV22 + 15 * 3600;
        let command = "x".repeat(80 * 1024);
        let header = format!(
            "{{\"version\":2,\"width\":80,\"height\":24,\"timestamp\":{at},\"command\":\"{command}\"}}\n"
        );
        fs::create_dir_all(root.join("2026/11/22")).expect("mkdir");
        fs::write(root.join("2026/11/22/long.cast"), header).expect("write");
        fs::write(root.join("2026/11/22/junk.cast"), "not a header\n").expect("write");
        let retention = Duration::from_secs(30 * DAY as u64);
        // At 00:05 thirty days on, neither is 30 days old yet.
        assert!(
            expired(root, retention, NOV22 + 30 * DAY + 300)
                .expect("list")
                .is_empty()
        );
        let due = expired(root, retention, at + 30 * DAY).expect("list");
        let paths: Vec<&str> = due.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["2026/11/22/long.cast"]);
        assert_eq!(due[0].started_at, at);
        let due = expired(root, retention, NOV22 + 31 * DAY).expect("list");
        assert_eq!(due.len(), 2);
        assert_eq!(due[1].started_at, NOV22 + DAY - 1);
    }

    #[test]
    fn the_counted_start_is_never_before_the_day_nor_guessed_early() {
        assert_eq!(day_of("2026/11/22/s.cast"), Some(NOV22));
        for bad in [
            "2026/11/32/s.cast",
            "26/11/22/s.cast",
            "2026/1/22/s.cast",
            "x",
        ] {
            assert_eq!(day_of(bad), None, "{bad}");
        }
        let cases = [
            (Some(NOV22 + 60), NOV22 + 60),
            (Some(1), NOV22),
            (None, NOV22 + DAY - 1),
        ];
        for (header, want) in cases {
            assert_eq!(counted_start(NOV22, header), want, "{header:?}");
        }
    }

    #[test]
    fn a_missing_root_prunes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let got = prune(&dir.path().join("none"), Duration::ZERO, NOV22);
        assert!(got.pruned.is_empty() && got.errors.is_empty());
    }

    #[test]
    fn a_recording_changed_after_listing_is_not_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, "2020/01/01/a.cast", None);
        let due = expired(root, Duration::ZERO, NOV22).expect("list");
        fs::write(root.join("2020/01/01/a.cast"), "changed\n").expect("edit");
        let err = remove(root, &due[0]).expect_err("changed");
        assert!(matches!(err, RecorderError::Changed { .. }), "{err}");
        assert!(root.join("2020/01/01/a.cast").exists());
    }
}
