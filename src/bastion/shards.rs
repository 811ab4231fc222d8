//! SSH connections run on shards: one single-threaded runtime per core, and each connection,
//! with every task it spawns (its nested servers, relays, upstream clients, russh's own
//! session loops), stays on one of them.
//!
//! A byte of output passes five tasks on its way through the bastion. On a work-stealing
//! runtime each hand-over can wake a parked worker on another core, and the scheduling cost
//! was a fifth of the bastion's CPU in bulk transfers. On a shard the hand-overs are calls on
//! one thread; connections still spread over every core, each new one to the shard with the
//! fewest. The control plane stays on the main runtime; a recording's per-byte work runs on
//! the blocking pool, beside its session.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// The shard runtimes; dropping this stops them (tasks still on them are cancelled).
pub struct Shards {
    shards: Vec<Shard>,
    stops: Vec<oneshot::Sender<()>>,
}

struct Shard {
    handle: Handle,
    /// Connections running on it.
    live: Arc<AtomicUsize>,
}

impl Shards {
    /// Starts `n` (at least one) shard threads.
    pub fn start(n: usize) -> io::Result<Shards> {
        let mut shards = Vec::new();
        let mut stops = Vec::new();
        for i in 0..n.max(1) {
            let runtime = Builder::new_current_thread().enable_all().build()?;
            shards.push(Shard {
                handle: runtime.handle().clone(),
                live: Arc::new(AtomicUsize::new(0)),
            });
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            std::thread::Builder::new()
                .name(format!("jitgate-ssh-{i}"))
                .spawn(move || {
                    runtime.block_on(async {
                        let _ = stopped.await;
                    });
                    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
                })?;
        }
        Ok(Shards { shards, stops })
    }

    /// One shard per core the process may use.
    pub fn per_core() -> io::Result<Shards> {
        Shards::start(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Runs `task` on the shard with the fewest connections (a busy session's shard gets the
    /// next connection last).
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Some(shard) = self
            .shards
            .iter()
            .min_by_key(|s| s.live.load(Ordering::Relaxed))
        else {
            return;
        };
        let live = Arc::clone(&shard.live);
        live.fetch_add(1, Ordering::Relaxed);
        shard.handle.spawn(async move {
            let _done = Leaves(live);
            task.await;
        });
    }
}

/// Counts a connection out of its shard however its task ends.
struct Leaves(Arc<AtomicUsize>);

impl Drop for Leaves {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_and_what_it_spawns_run_on_one_shard_thread() {
        let shards = Shards::start(2).expect("shards start");
        let (tx, rx) = oneshot::channel();
        shards.spawn(async move {
            let outer = std::thread::current().id();
            let inner = tokio::spawn(async { std::thread::current().id() })
                .await
                .expect("inner task");
            let name = std::thread::current().name().map(str::to_string);
            let _ = tx.send((outer, inner, name));
        });
        let (outer, inner, name) = rx.await.expect("the shard ran the task");
        assert_eq!(outer, inner);
        assert!(name.is_some_and(|n| n.starts_with("jitgate-ssh-")));
        assert_ne!(outer, std::thread::current().id());
    }

    #[tokio::test]
    async fn a_new_connection_goes_to_the_shard_with_the_fewest() {
        let shards = Shards::start(2).expect("shards start");
        // Starts a connection that lasts until its `end` is dropped.
        let start = || {
            let (ran, on) = oneshot::channel();
            let (end, ended) = oneshot::channel::<()>();
            shards.spawn(async move {
                let _ = ran.send(std::thread::current().id());
                let _ = ended.await;
            });
            (on, end)
        };
        let (a_on, _a_end) = start();
        let a = a_on.await.expect("a ran");
        let (b_on, b_end) = start();
        let b = b_on.await.expect("b ran");
        assert_ne!(a, b, "two connections, two shards");
        drop(b_end);
        while shards
            .shards
            .iter()
            .map(|s| s.live.load(Ordering::Relaxed))
            .sum::<usize>()
            > 1
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // In turn it would be a's shard; b's is the emptier one.
        let (c_on, _c_end) = start();
        assert_eq!(c_on.await.expect("c ran"), b);
    }
}
