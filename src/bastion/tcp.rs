//! The outer connection's TCP socket, tuned for an SSH handshake with a stock client.
//!
//! `ssh -J` runs its hop to the bastion as `ssh -W`, which leaves Nagle's algorithm on: a
//! small packet it writes waits until its previous one is acknowledged. russh sends its
//! KEXINIT as soon as the client's banner arrives, so the client's KEXINIT is answered by
//! nothing, and Linux, having seen the bastion write first, delays that ACK by 40 ms; the
//! client's key exchange message waits for it. Every `ssh -J` paid those 40 ms before
//! `Handshake` sent its acknowledgements at once.
//!
//! Both TCP connections of a session (the engineer's and the target's) are also read through
//! a small buffer: see `buffered`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, BufReader, ReadBuf};
use tokio::net::TcpStream;

/// Reads that acknowledge at once: a handshake through to the first channel takes about 20.
const QUICK_READS: u8 = 32;

/// An accepted connection, made ready for its shard.
///
/// - `TCP_NODELAY`: russh sets it only on sockets it accepts itself. Without it, each small
///   packet the bastion writes (a keystroke's echo) waits for the previous one's ACK.
/// - The socket moves to the runtime that serves it (as a std socket, registered again
///   there), so that its readiness wakes that runtime directly rather than through this one.
pub fn hand_over(socket: TcpStream) -> io::Result<std::net::TcpStream> {
    socket.set_nodelay(true)?;
    socket.into_std()
}

/// What `buffered` holds: a keystroke's packet, or the head of a bulk one.
pub const READ_BUFFER: usize = 8 * 1024;

/// A connection read through a `READ_BUFFER` buffer (writes pass straight through).
///
/// russh reads each packet with two exact reads on the stream it is given: the first block
/// (for the length), then the rest, so on a bare socket each packet costs at least two
/// `recvfrom` calls (a typed character and its echo: six, under `strace`). Buffered, a small
/// packet takes one (two for the round trip). A packet larger than the buffer still takes
/// two, and most of its body is not copied twice: once the buffer is drained, a read of at
/// least its size goes straight into russh's buffer. The cost is `READ_BUFFER` per
/// connection.
pub fn buffered<S: AsyncRead>(stream: S) -> BufReader<S> {
    BufReader::with_capacity(READ_BUFFER, stream)
}

/// A socket whose first `QUICK_READS` reads that bring data are acknowledged at once.
pub struct Handshake {
    socket: TcpStream,
    quick_reads: u8,
}

impl Handshake {
    pub fn new(socket: TcpStream) -> Handshake {
        Handshake {
            socket,
            quick_reads: QUICK_READS,
        }
    }
}

/// Sends the ACK for what has been read now, rather than when Linux's delayed-ACK timer
/// fires (best effort: the option is advisory and the connection works without it).
fn ack_now(socket: &TcpStream) {
    #[cfg(target_os = "linux")]
    let _ = socket2::SockRef::from(socket).set_tcp_quickack(true);
    #[cfg(not(target_os = "linux"))]
    let _ = socket;
}

impl AsyncRead for Handshake {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.socket).poll_read(cx, buf);
        if self.quick_reads > 0 && buf.filled().len() > before {
            self.quick_reads -= 1;
            ack_now(&self.socket);
        }
        polled
    }
}

impl AsyncWrite for Handshake {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (client, server)
    }

    /// Whether the socket acknowledges at once (Linux: not in its delayed-ACK mode).
    fn quickack(socket: &TcpStream) -> bool {
        socket2::SockRef::from(socket)
            .tcp_quickack()
            .expect("TCP_QUICKACK")
    }

    /// What an SSH server and a client under Nagle do first: the client's banner, the
    /// server's banner and KEXINIT, the client's KEXINIT. Returns the server side.
    async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        mut server: S,
        client: &mut TcpStream,
    ) -> S {
        let mut buf = [0u8; 23];
        client
            .write_all(b"SSH-2.0-client\r\n")
            .await
            .expect("write");
        server.read_exact(&mut buf[..16]).await.expect("read");
        server
            .write_all(b"SSH-2.0-server\r\nKEXINIT")
            .await
            .expect("write");
        client.read_exact(&mut buf).await.expect("read");
        client.write_all(b"KEXINIT").await.expect("write");
        server.read_exact(&mut buf[..7]).await.expect("read");
        server
    }

    #[tokio::test]
    async fn accepted_connections_send_small_packets_at_once() {
        let (_client, server) = pair().await;
        assert!(!server.nodelay().expect("nodelay"), "the kernel's default");
        let server = hand_over(server).expect("hand over");
        assert!(server.nodelay().expect("nodelay"));
    }

    /// A stream that counts the reads that reach it.
    struct Counted<S> {
        inner: S,
        reads: usize,
    }

    impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            self.reads += 1;
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    /// Reads one packet as russh does: its first block, then the rest.
    async fn read_packet<R: AsyncRead + Unpin>(stream: &mut R, len: usize) -> Vec<u8> {
        let mut packet = vec![0; len];
        stream.read_exact(&mut packet[..16]).await.expect("block");
        stream.read_exact(&mut packet[16..]).await.expect("rest");
        packet
    }

    #[tokio::test]
    async fn a_small_packet_is_read_in_one_go() {
        let keystroke: Vec<u8> = (0..64).collect();
        let bare = &mut Counted {
            inner: &keystroke[..],
            reads: 0,
        };
        assert_eq!(read_packet(bare, 64).await, keystroke);
        assert_eq!(bare.reads, 2, "a bare stream is read twice");

        let mut buffered = buffered(Counted {
            inner: &keystroke[..],
            reads: 0,
        });
        assert_eq!(read_packet(&mut buffered, 64).await, keystroke);
        assert_eq!(buffered.get_ref().reads, 1);
    }

    #[tokio::test]
    async fn a_large_packet_passes_the_buffer_by() {
        let bulk: Vec<u8> = (0..4 * READ_BUFFER).map(|i| i as u8).collect();
        let mut buffered = buffered(Counted {
            inner: &bulk[..],
            reads: 0,
        });
        assert_eq!(read_packet(&mut buffered, bulk.len()).await, bulk);
        // One read fills the buffer; the rest of the body goes straight to the caller.
        assert_eq!(buffered.get_ref().reads, 2);
    }

    #[tokio::test]
    async fn the_handshake_is_acknowledged_at_once() {
        let (mut client, server) = pair().await;
        let server = handshake(server, &mut client).await;
        assert!(
            !quickack(&server),
            "a plain socket here delays this ACK (else this test shows nothing)"
        );
        let (mut client, server) = pair().await;
        let server = handshake(Handshake::new(server), &mut client).await;
        assert!(quickack(&server.socket));
        assert!(server.quick_reads < QUICK_READS);
    }
}
