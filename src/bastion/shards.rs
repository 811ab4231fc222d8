//! SSH connections run on shards: one single-threaded runtime per core, and each connection,
//! with every task it spawns (its nested servers, relays, upstream clients, russh's own
//! session loops), stays on one of them.
//!
//! A byte of output passes five tasks on its way through the bastion. On a work-stealing
//! runtime each hand-over can wake a parked worker on another core, and the scheduling cost
//! was a fifth of the bastion's CPU in bulk transfers. On a shard the hand-overs are calls on
//! one thread; connections still spread over every core. The control plane stays on the main
//! runtime; a recording's per-byte work runs on the blocking pool, beside its session.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// The shard runtimes; dropping this stops them (tasks still on them are cancelled).
pub struct Shards {
    handles: Vec<Handle>,
    stops: Vec<oneshot::Sender<()>>,
    next: AtomicUsize,
}

impl Shards {
    /// Starts `n` (at least one) shard threads.
    pub fn start(n: usize) -> io::Result<Shards> {
        let mut handles = Vec::new();
        let mut stops = Vec::new();
        for i in 0..n.max(1) {
            let runtime = Builder::new_current_thread().enable_all().build()?;
            handles.push(runtime.handle().clone());
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
        Ok(Shards {
            handles,
            stops,
            next: AtomicUsize::new(0),
        })
    }

    /// One shard per core the process may use.
    pub fn per_core() -> io::Result<Shards> {
        Shards::start(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Runs `task` on the next shard, in turn.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[i].spawn(task);
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
}
