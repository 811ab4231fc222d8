//! A nested connection's session and forwarded channels, each in a task of its own: the
//! upstream channel opened for it, and the relay or tunnel that carries it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use russh::server::{self, ChannelOpenHandle, Msg};
use russh::{Channel, ChannelOpenFailure};
use tokio::sync::watch;

use crate::bastion::Shared;
use crate::bastion::access::Grant;
use crate::bastion::dialer::{Dialled, upstream_of};
use crate::bastion::flow::Stalls;
use crate::bastion::guard::Guard;
use crate::bastion::record::SessionLog;
use crate::bastion::relay;
use crate::bastion::sessions::ControlHandle;
use crate::bastion::tunnel::tunnel;

/// Session channels' setups, by channel number.
pub(super) type Setups = Arc<Mutex<HashMap<u32, relay::Setup>>>;

/// An open session channel's entry in `Inner::setups`, removed when dropped.
pub(super) struct SetupEntry {
    setups: Setups,
    channel: u32,
}

impl SetupEntry {
    pub(super) fn open(setups: &Setups, channel: u32) -> SetupEntry {
        let mut map = setups.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(channel, relay::Setup::default());
        SetupEntry {
            setups: Arc::clone(setups),
            channel,
        }
    }
}

impl Drop for SetupEntry {
    fn drop(&mut self) {
        let mut map = self.setups.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&self.channel);
    }
}

pub(super) fn failure(code: u32, reason: String) -> ChannelOpenFailure {
    ChannelOpenFailure::Other { code, reason }
}

/// What a session channel's task needs from its connection.
pub(super) struct ChannelCtx {
    pub(super) shared: Arc<Shared>,
    pub(super) grant: Grant,
    pub(super) control: ControlHandle,
    pub(super) dialled: watch::Receiver<Dialled>,
    pub(super) handle: server::Handle,
    pub(super) stalls: Arc<Stalls>,
    pub(super) session_id: String,
}

/// One session channel: open upstream, record, relay, record the end.
pub(super) async fn session_channel(
    cx: ChannelCtx,
    channel: Channel<Msg>,
    reply: ChannelOpenHandle,
) {
    let ChannelCtx {
        shared,
        grant,
        control,
        dialled,
        handle,
        stalls,
        session_id,
    } = cx;
    let up = match upstream_of(dialled).await {
        Ok(up) => up,
        Err(msg) => {
            reply.reject(failure(2, msg)).await;
            return;
        }
    };
    let target = match up.channel_open_session().await {
        Ok(t) => t,
        Err(e) => {
            let msg = format!(
                "jitgate: {} refused a session channel: {e}",
                grant.host.name
            );
            reply.reject(failure(2, msg)).await;
            return;
        }
    };
    // Fails closed: without its guardrails, a session does not start.
    let checker = shared
        .guardrails
        .as_ref()
        .map_err(String::clone)
        .and_then(|g| g.checker(&grant.rule.guardrails).map_err(|e| e.to_string()));
    let tap = match checker {
        Ok(c) => Box::new(Guard::new(c)),
        Err(e) => {
            tracing::error!(error = %e, "guardrails unavailable");
            let _ = target.close().await;
            reply
                .reject(failure(2, "jitgate: guardrails are unavailable".into()))
                .await;
            return;
        }
    };
    reply.accept().await;
    let mut log = SessionLog::new(Arc::clone(&shared), grant.clone(), session_id);
    let engineer = relay::Engineer {
        channel,
        handle,
        stalls,
    };
    let outcome = relay::relay(
        engineer,
        target,
        &grant.rule,
        tap,
        &mut log,
        control.subscribe(),
    )
    .await;
    log.finish(&outcome).await;
}

/// A `-L` forward through the nested connection, when the rule allows it.
pub(super) async fn forward_channel(
    dialled: watch::Receiver<Dialled>,
    channel: Channel<Msg>,
    reply: ChannelOpenHandle,
    (host, port): (String, u32),
    from: (String, u32),
    stalls: Arc<Stalls>,
) {
    let up = match upstream_of(dialled).await {
        Ok(up) => up,
        Err(msg) => {
            reply.reject(failure(2, msg)).await;
            return;
        }
    };
    match up
        .channel_open_direct_tcpip(host, port, from.0, from.1)
        .await
    {
        Ok(target) => {
            reply.accept().await;
            tunnel(channel, target, stalls).await;
        }
        Err(e) => reply.reject(failure(2, format!("jitgate: {e}"))).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_channel_has_a_setup_from_its_open_to_the_end_of_its_task() {
        let setups = Setups::default();
        let entry = SetupEntry::open(&setups, 7);
        let start = |setups: &Setups| setups.lock().unwrap().get_mut(&7).map(|s| s.start());
        assert_eq!(start(&setups), Some(true), "the first start goes through");
        assert_eq!(start(&setups), Some(false), "a second does not");
        drop(entry);
        assert!(setups.lock().unwrap().is_empty(), "nothing stays behind");
    }
}
