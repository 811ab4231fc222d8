//! The thread that owns the SQLite connection and commits calls in groups.
//!
//! Callers send jobs over a channel and await a reply. The thread takes every job waiting
//! (up to `MAX_BATCH`) and runs them in one transaction, each inside its own savepoint: a job
//! that fails is rolled back alone, the others stay. One commit then covers the batch, and only
//! after it succeeds do callers hear their results, so a reply never reports a change that is
//! not on disk. Under load this turns many small commits into few larger ones; a lone caller
//! gets a batch of one.
//!
//! On some errors (an interrupt, a full disk, an I/O error, no memory) SQLite rolls back the
//! whole transaction, not the statement. The jobs after it are then not run, since each would
//! commit on its own; every job of the batch is told it failed, which is the truth.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::store::StoreError;

/// Most jobs per transaction: bounds how long one commit keeps early callers waiting.
const MAX_BATCH: usize = 64;

/// Why a batch failed when SQLite rolled its transaction back on its own.
const TRANSACTION_LOST: &str = "SQLite rolled back the batch's transaction (an interrupt, a \
                                full disk, an I/O error or no memory); nothing in it committed";

/// Why a batch failed when a savepoint could not be set, undone or released.
const SAVEPOINT_FAILED: &str = "a savepoint of the batch failed; nothing in it committed";

/// Delivers a job's result once the batch's fate is known: `Ok` when it committed.
type Finish = Box<dyn FnOnce(Result<(), &str>) + Send>;

/// Runs against the connection (or learns why it could not) and returns how to reply, and
/// whether the transaction is still sound (false when its savepoint could not be undone).
type Job = Box<dyn FnOnce(Result<&Connection, &str>) -> (Finish, bool) + Send>;

/// The sending side; the thread stops when the last clone is dropped.
#[derive(Clone)]
pub(super) struct Worker {
    jobs: mpsc::Sender<Job>,
}

impl Worker {
    /// Moves `conn` to a new thread. `begin` opens each batch's transaction.
    pub(super) fn start(conn: Connection, begin: &'static str) -> Result<Worker, StoreError> {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("jitgate-sqlite".into())
            .spawn(move || serve(conn, rx, begin))
            .map_err(|e| StoreError::Db(format!("cannot start the store thread: {e}")))?;
        Ok(Worker { jobs })
    }

    /// Runs `f` on the store thread in its own savepoint and returns its result once
    /// committed.
    pub(super) async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (job, answer) = job(f);
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Db("the store thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Db("the store thread has stopped".into()))?
    }
}

/// `f` as a job for the store thread, and where its result will arrive.
fn job<T, F>(f: F) -> (Job, oneshot::Receiver<Result<T, StoreError>>)
where
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    let job: Job = Box::new(move |conn| {
        let (own, sound) = match conn {
            Ok(conn) => in_savepoint(conn, f),
            Err(e) => (Err(StoreError::Db(e.to_string())), true),
        };
        let finish: Finish = Box::new(move |commit: Result<(), &str>| {
            let result = match (own, commit) {
                (Ok(_), Err(e)) => Err(StoreError::Db(format!("commit failed: {e}"))),
                (own, _) => own,
            };
            // The caller may have gone away; its change stands either way.
            let _ = reply.send(result);
        });
        (finish, sound)
    });
    (job, answer)
}

/// Runs `f` in a savepoint, undone when `f` fails or panics. The flag is false when the
/// savepoint itself failed: the batch's transaction can then no longer be trusted.
fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> (Result<T, StoreError>, bool) {
    let exec = |sql: &str| conn.prepare_cached(sql).and_then(|mut st| st.execute([]));
    if let Err(e) = exec("SAVEPOINT job") {
        return (Err(e.into()), false);
    }
    let result = catch_unwind(AssertUnwindSafe(|| f(conn)))
        .unwrap_or_else(|_| Err(StoreError::Db("a store call panicked".into())));
    let undone = if result.is_err() {
        exec("ROLLBACK TO job")
    } else {
        Ok(0)
    };
    match (undone.and_then(|_| exec("RELEASE job")), result) {
        (Ok(_), result) => (result, true),
        // The job's own error says why (e.g. an interrupt that took the transaction with it,
        // so there was no savepoint left to undo).
        (Err(_), Err(own)) => (Err(own), false),
        (Err(e), Ok(_)) => (Err(e.into()), false),
    }
}

fn serve(conn: Connection, rx: mpsc::Receiver<Job>, begin: &'static str) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch(begin) {
            let e = e.to_string();
            for job in batch {
                job(Err(&e)).0(Err(&e));
            }
            continue;
        }
        let mut finishes: Vec<Finish> = Vec::with_capacity(batch.len());
        let mut lost: Option<&str> = None;
        for job in batch {
            if let Some(why) = lost {
                // Outside the transaction each statement would commit on its own while the
                // batch reports failure: the job is not run.
                finishes.push(job(Err(&format!("not run: {why}"))).0);
                continue;
            }
            let (finish, sound) = job(Ok(&conn));
            finishes.push(finish);
            lost = if conn.is_autocommit() {
                Some(TRANSACTION_LOST)
            } else if !sound {
                Some(SAVEPOINT_FAILED)
            } else {
                None
            };
        }
        let commit = match lost {
            Some(why) => Err(why.to_string()),
            None => conn.execute_batch("COMMIT").map_err(|e| e.to_string()),
        };
        if let Err(e) = commit {
            // A transaction SQLite has already rolled back has nothing left to undo.
            if !conn.is_autocommit()
                && let Err(rb) = conn.execute_batch("ROLLBACK")
            {
                tracing::error!(error = %rb, "store rollback after a failed batch failed");
            }
            finishes.into_iter().for_each(|f| f(Err(&e)));
        } else {
            finishes.into_iter().for_each(|f| f(Ok(())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type R = Result<(), Box<dyn std::error::Error>>;

    fn worker() -> Result<Worker, StoreError> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY)")?;
        Worker::start(conn, "BEGIN IMMEDIATE")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failing_or_panicking_call_is_undone_alone() -> Result<(), StoreError> {
        let w = worker()?;
        // Many calls at once land in shared batches; every third fails after writing, every
        // fifth panics after writing.
        let calls: Vec<_> = (1..=200i64)
            .map(|n| {
                let w = w.clone();
                tokio::spawn(async move {
                    w.call(move |c| {
                        c.execute("INSERT INTO t (n) VALUES (?1)", [n])?;
                        if n % 5 == 0 {
                            panic!("call {n} panics");
                        }
                        if n % 3 == 0 {
                            return Err(StoreError::Db(format!("call {n} fails")));
                        }
                        Ok(n)
                    })
                    .await
                })
            })
            .collect();
        let mut ok = Vec::new();
        for (n, call) in (1..=200i64).zip(calls) {
            let result = call.await.map_err(|e| StoreError::Db(e.to_string()))?;
            assert_eq!(result.is_ok(), n % 3 != 0 && n % 5 != 0, "call {n}");
            if let Ok(n) = result {
                ok.push(n);
            }
        }
        let stored: Vec<i64> = w
            .call(|c| {
                let mut st = c.prepare("SELECT n FROM t ORDER BY n")?;
                let rows = st.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await?;
        assert_eq!(stored, ok);
        Ok(())
    }

    #[test]
    fn a_batch_whose_transaction_sqlite_rolls_back_tells_every_caller_the_truth() -> R {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path)?;
        conn.execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY)")?;
        let insert = |n: i64| {
            job(move |c| {
                c.execute("INSERT INTO t (n) VALUES (?1)", [n])?;
                Ok(n)
            })
        };
        // SQLite rolls back the whole transaction when a write is interrupted; a statement
        // started while another runs is interrupted as if it had been running.
        let lose = job(|c| {
            let mut write = c.prepare("INSERT INTO t (n) VALUES (2)")?;
            let mut read = c.prepare("SELECT 1 UNION ALL SELECT 2")?;
            let mut rows = read.query([])?;
            rows.next()?;
            c.get_interrupt_handle().interrupt();
            write.execute([])?;
            Ok(2)
        });
        // All are waiting before the thread starts: one batch.
        let (tx, rx) = mpsc::channel();
        let mut answers = Vec::new();
        for (job, answer) in [insert(1), lose, insert(3)] {
            tx.send(job).map_err(|e| e.to_string())?;
            answers.push(answer);
        }
        drop(tx);
        serve(conn, rx, "BEGIN IMMEDIATE");

        let stored: Vec<i64> = Connection::open(&path)?
            .prepare("SELECT n FROM t ORDER BY n")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut told = Vec::new();
        for (n, answer) in (1..=3).zip(answers) {
            let reply = answer.blocking_recv()?;
            assert_eq!(reply.is_ok(), stored.contains(&n), "call {n}: {reply:?}");
            told.push(reply.map_err(|e| e.to_string()));
        }
        // Nothing committed: the call before the interrupt went with the transaction, and
        // the call after it never ran.
        assert_eq!(stored, Vec::<i64>::new());
        let says = |i: usize, part: &str| told[i].as_ref().is_err_and(|e| e.contains(part));
        assert!(
            says(0, "SQLite rolled back the batch's transaction"),
            "{told:?}"
        );
        assert!(says(1, "interrupt"), "{told:?}");
        assert!(says(2, "not run: SQLite rolled back"), "{told:?}");
        Ok(())
    }
}
