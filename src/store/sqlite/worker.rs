//! The thread that owns the SQLite connection and commits calls in groups.
//!
//! Callers send jobs over a channel and await a reply. The thread takes every job waiting
//! (up to `MAX_BATCH`) and runs them in one transaction, each inside its own savepoint: a job
//! that fails is rolled back alone, the others stay. One commit then covers the batch, and only
//! after it succeeds do callers hear their results, so a reply never reports a change that is
//! not on disk. Under load this turns many small commits into few larger ones; a lone caller
//! gets a batch of one.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::store::StoreError;

/// Most jobs per transaction: bounds how long one commit keeps early callers waiting.
const MAX_BATCH: usize = 64;

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
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Db("the store thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Db("the store thread has stopped".into()))?
    }
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
    match undone.and_then(|_| exec("RELEASE job")) {
        Ok(_) => (result, true),
        Err(e) => (Err(e.into()), false),
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
        let mut sound = true;
        let finishes: Vec<Finish> = batch
            .into_iter()
            .map(|job| {
                let (finish, ok) = job(Ok(&conn));
                sound &= ok;
                finish
            })
            .collect();
        let commit = if sound {
            conn.execute_batch("COMMIT").map_err(|e| e.to_string())
        } else {
            Err("a savepoint of the batch failed".to_string())
        };
        if let Err(e) = commit {
            if let Err(rb) = conn.execute_batch("ROLLBACK") {
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
}
