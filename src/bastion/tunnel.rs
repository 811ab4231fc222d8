//! A forwarded channel (`-L`, `-D`, `-W` to another port, `-R`, agent, X11) relayed as bytes
//! between the engineer's nested connection and the target's, inside the connection's flow
//! control (`flow`): the engineer's bytes are read into an `UpQueue`, which reads on while
//! output on any channel of the connection waits for the engineer, and a send to the engineer
//! that waits for window is such a stall. A plain byte pump stopped reading the engineer
//! whenever the target's window was shut, and so could hold the nested session behind a
//! paused download on the same connection.

use std::sync::Arc;

use bytes::Bytes;
use russh::{Channel, ChannelMsg, client, server};
use tokio::sync::mpsc;

use super::flow::{Stalls, UpQueue};

/// Relays `engineer` and `target` until either closes: data and EOF both ways, the
/// engineer's queued bytes forwarded before the target is closed.
pub async fn tunnel(
    engineer: Channel<server::Msg>,
    target: Channel<client::Msg>,
    stalls: Arc<Stalls>,
) {
    let (mut c_rx, c_tx) = engineer.split();
    let (mut t_rx, t_tx) = target.split();
    let input = UpQueue::new(stalls);
    // `None` is the engineer's EOF.
    let (q_tx, mut q_rx) = mpsc::unbounded_channel::<(Option<Bytes>, usize)>();
    let read = async {
        // `q_tx` moves in: the forwarder ends once what is queued is sent.
        let q_tx = q_tx;
        loop {
            if let Err(stuck) = input.room().await {
                tracing::info!(
                    queued = stuck.0,
                    "a forwarded channel's input is never read; closed"
                );
                return;
            }
            let queued = match c_rx.wait().await {
                Some(ChannelMsg::Data { data }) => {
                    let cost = input.add(data.len());
                    (Some(data), cost)
                }
                Some(ChannelMsg::Eof) => (None, input.add(0)),
                Some(ChannelMsg::Close) | None => return,
                Some(_) => continue,
            };
            if q_tx.send(queued).is_err() {
                return;
            }
        }
    };
    let forward = async {
        while let Some((data, cost)) = q_rx.recv().await {
            input.taken(cost);
            let sent = match data {
                Some(data) => t_tx.data_bytes(data).await,
                None => t_tx.eof().await,
            };
            if sent.is_err() {
                return;
            }
        }
    };
    let down = async {
        while let Some(msg) = t_rx.wait().await {
            let sent = match msg {
                ChannelMsg::Data { data } => input.to_engineer(c_tx.data_bytes(data)).await,
                ChannelMsg::Eof => c_tx.eof().await,
                ChannelMsg::Close => return,
                _ => Ok(()),
            };
            if sent.is_err() {
                return;
            }
        }
    };
    // Whichever side ends first, both are closed (closing a channel that is gone sends
    // nothing).
    tokio::select! {
        ((), ()) = async { tokio::join!(read, forward) } => {}
        () = down => {}
    }
    let _ = t_tx.close().await;
    let _ = c_tx.close().await;
}
