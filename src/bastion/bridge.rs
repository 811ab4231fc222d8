//! The nested server's byte stream: its outer `direct-tcpip` channel, moved in owned chunks.
//!
//! The nested server must never keep the outer session from reading: a session loop that
//! blocks handing a message to a full channel queue also stops reading the engineer's window
//! adjustments behind it (`flow.rs` describes the circle that closes). So each direction has
//! its own task and a queue of its own:
//!
//! - **In**: one task drains the channel into a queue, whatever the nested server is doing.
//! - **Out**: what the nested server writes is queued; another task sends it, and it alone
//!   waits for the engineer's window.
//!
//! Each queue holds at most `PIPE` bytes (plus one write), more than the window either side
//! grants, so neither the nested server's writes nor the drain wait in a healthy session.
//! Chunks move as `Bytes`: a byte is copied once on its way through (into the queue, or out
//! of it into the nested server's read buffer), where a pipe and a copying pump took three.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes};
use russh::server::Msg;
use russh::{Channel, ChannelMsg, ChannelWriteHalf};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;

/// Bytes queued each way between the jump channel and the nested server: more than the
/// window the outer server grants (2 MiB), so the outer session always reaches the
/// engineer's next window adjustment.
pub const PIPE: usize = 4 << 20;

/// How long the last bytes the nested server wrote (its goodbye) may take to leave once it
/// has finished, before the channel is closed regardless.
const LINGER: Duration = Duration::from_millis(250);

/// The nested server's end: reads what the engineer sent, writes what goes back.
pub struct Bridge {
    input: Arc<Chunks>,
    output: Arc<Chunks>,
}

/// The two tasks moving bytes for one `Bridge`.
pub struct Moving {
    drain: JoinHandle<()>,
    send: JoinHandle<()>,
    tx: Arc<ChannelWriteHalf<Msg>>,
}

/// Starts moving bytes between `channel` and the returned stream.
pub fn open(channel: Channel<Msg>) -> (Bridge, Moving) {
    let (mut rx, tx) = channel.split();
    let tx = Arc::new(tx);
    let input = Arc::new(Chunks::default());
    let output = Arc::new(Chunks::default());
    let drain = tokio::spawn({
        let input = Arc::clone(&input);
        async move {
            while let Some(msg) = rx.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        if std::future::poll_fn(|cx| input.poll_room(cx))
                            .await
                            .is_err()
                        {
                            break;
                        }
                        input.push(data);
                    }
                    ChannelMsg::Eof | ChannelMsg::Close => break,
                    _ => {}
                }
            }
            input.close();
        }
    });
    let send = tokio::spawn({
        let output = Arc::clone(&output);
        let tx = Arc::clone(&tx);
        async move {
            while let Some(chunk) = std::future::poll_fn(|cx| output.poll_pop(cx)).await {
                if tx.data_bytes(chunk).await.is_err() {
                    output.close();
                    return;
                }
            }
            let _ = tx.eof().await;
        }
    });
    (Bridge { input, output }, Moving { drain, send, tx })
}

impl Moving {
    /// The nested server is done: lets its last bytes leave (for at most `LINGER`), then
    /// closes the channel.
    pub async fn close(self) {
        self.drain.abort();
        let mut send = self.send;
        if tokio::time::timeout(LINGER, &mut send).await.is_err() {
            send.abort();
        }
        let _ = self.tx.close().await;
    }
}

impl AsyncRead for Bridge {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.input.poll_read_into(cx, buf).map(Ok)
    }
}

impl AsyncWrite for Bridge {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.output.poll_room(cx)?.is_pending() {
            return Poll::Pending;
        }
        self.output.push(Bytes::copy_from_slice(buf));
        Poll::Ready(Ok(buf.len()))
    }

    /// Written bytes are queued for the sending task: nothing to wait for here.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.output.close();
        Poll::Ready(Ok(()))
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.input.close();
        self.output.close();
    }
}

/// A queue of chunks between one producer and one consumer, bounded at `PIPE` bytes.
#[derive(Default)]
struct Chunks {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    chunks: VecDeque<Bytes>,
    len: usize,
    /// No more chunks will come (the producer ended), or none will be taken (the consumer
    /// ended): what is queued may still be taken.
    closed: bool,
    consumer: Option<Waker>,
    producer: Option<Waker>,
}

impl Chunks {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ready once the queue has room for another chunk; an error once it is closed.
    fn poll_room(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.lock();
        if s.closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if s.len < PIPE {
            return Poll::Ready(Ok(()));
        }
        register(&mut s.producer, cx);
        Poll::Pending
    }

    /// Queues `chunk` (after `poll_room` said there is room).
    fn push(&self, chunk: Bytes) {
        let mut s = self.lock();
        s.len += chunk.len();
        s.chunks.push_back(chunk);
        let wake = s.consumer.take();
        drop(s);
        if let Some(w) = wake {
            w.wake();
        }
    }

    /// The next whole chunk; `None` once the queue is closed and empty.
    fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let mut s = self.lock();
        match s.chunks.pop_front() {
            Some(chunk) => {
                s.len -= chunk.len();
                let wake = s.producer.take();
                drop(s);
                if let Some(w) = wake {
                    w.wake();
                }
                Poll::Ready(Some(chunk))
            }
            None if s.closed => Poll::Ready(None),
            None => {
                register(&mut s.consumer, cx);
                Poll::Pending
            }
        }
    }

    /// Copies queued bytes into `buf`; leaves it empty (end of stream) once closed and
    /// drained.
    fn poll_read_into(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<()> {
        if buf.remaining() == 0 {
            return Poll::Ready(());
        }
        let mut s = self.lock();
        let mut copied = 0;
        while buf.remaining() > 0 {
            let Some(front) = s.chunks.front_mut() else {
                break;
            };
            let n = front.len().min(buf.remaining());
            buf.put_slice(&front[..n]);
            front.advance(n);
            if front.is_empty() {
                s.chunks.pop_front();
            }
            copied += n;
        }
        if copied == 0 && !s.closed {
            register(&mut s.consumer, cx);
            return Poll::Pending;
        }
        s.len -= copied;
        let wake = s.producer.take();
        drop(s);
        if let Some(w) = wake {
            w.wake();
        }
        Poll::Ready(())
    }

    fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        let wakes = [s.consumer.take(), s.producer.take()];
        drop(s);
        for w in wakes.into_iter().flatten() {
            w.wake();
        }
    }
}

fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    #[test]
    fn a_full_queue_waits_until_something_is_taken() {
        let q = Chunks::default();
        let mut cx = cx();
        q.push(Bytes::from(vec![7u8; PIPE]));
        assert!(q.poll_room(&mut cx).is_pending());
        let mut space = [0u8; 1024];
        let mut buf = ReadBuf::new(&mut space);
        assert!(q.poll_read_into(&mut cx, &mut buf).is_ready());
        assert_eq!(buf.filled().len(), 1024);
        assert!(matches!(q.poll_room(&mut cx), Poll::Ready(Ok(()))));
    }

    #[test]
    fn reads_span_chunks_and_keep_their_order() {
        let q = Chunks::default();
        let mut cx = cx();
        q.push(Bytes::from_static(b"abc"));
        q.push(Bytes::from_static(b"defgh"));
        let mut space = [0u8; 4];
        let mut buf = ReadBuf::new(&mut space);
        assert!(q.poll_read_into(&mut cx, &mut buf).is_ready());
        assert_eq!(buf.filled(), b"abcd");
        let mut space = [0u8; 16];
        let mut buf = ReadBuf::new(&mut space);
        assert!(q.poll_read_into(&mut cx, &mut buf).is_ready());
        assert_eq!(buf.filled(), b"efgh");
        assert_eq!(q.lock().len, 0);
        assert!(q.poll_read_into(&mut cx, &mut buf).is_pending());
    }

    #[test]
    fn a_closed_queue_yields_what_it_holds_then_ends() {
        let q = Chunks::default();
        let mut cx = cx();
        q.push(Bytes::from_static(b"last words"));
        q.close();
        assert!(matches!(q.poll_room(&mut cx), Poll::Ready(Err(_))));
        assert_eq!(
            q.poll_pop(&mut cx),
            Poll::Ready(Some(Bytes::from_static(b"last words")))
        );
        assert_eq!(q.poll_pop(&mut cx), Poll::Ready(None));
        let mut space = [0u8; 4];
        let mut buf = ReadBuf::new(&mut space);
        assert!(q.poll_read_into(&mut cx, &mut buf).is_ready());
        assert!(buf.filled().is_empty());
    }
}
