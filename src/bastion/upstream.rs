//! The bastion's own SSH client towards a target: dial the inventory address, verify the
//! target's host key (pinned key, or a host certificate from the host CA; never blind trust),
//! and log in with a fresh ephemeral key and a short target-CA certificate.

use std::borrow::Cow;
use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

use std::time::Duration;

use russh::keys::PublicKeyOrCertificate;
use russh::{Channel, ChannelOpenFailure, Preferred, client, server};
use ssh_key::PublicKey;

use super::Shared;
use super::flow::Stalls;
use super::keys::{CLIENT_CIPHERS, random_serial};
use super::requests::{Request, allows};
use super::tunnel::tunnel;
use crate::ca::{CaKeys, generate_ed25519, target_extensions};
use crate::config::{AccessRule, Host};

const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// A logged-in connection to a target.
pub type Upstream = client::Handle<TargetKey>;

/// Checks the target's host key; remembers why it refused, for the engineer's error.
pub struct TargetKey {
    host: String,
    pinned: Option<PublicKey>,
    host_ca: Arc<CaKeys>,
    refusal: Arc<Mutex<Option<String>>>,
    /// Where channels the target opens go, when the rule allows them.
    back: Back,
}

/// The engineer's nested connection, as the channels a target opens reach it.
#[derive(Default)]
pub struct ToEngineer {
    /// Set once the nested connection runs.
    pub handle: OnceLock<server::Handle>,
    /// The remote forwards (`ssh -R`) the target granted: the address as the engineer asked
    /// for it, and the port bound. A forwarded connection for any other is refused.
    forwards: Mutex<HashSet<(String, u32)>>,
    /// Output stalls on the nested connection, shared by all its channels (`flow`).
    pub stalls: Arc<Stalls>,
}

impl ToEngineer {
    pub fn forwarded(&self, address: &str, port: u32) {
        self.forwards().insert((address.to_string(), port));
    }

    pub fn unforwarded(&self, address: &str, port: u32) {
        self.forwards().remove(&(address.to_string(), port));
    }

    fn is_forwarded(&self, address: &str, port: u32) -> bool {
        self.forwards().contains(&(address.to_string(), port))
    }

    fn forwards(&self) -> std::sync::MutexGuard<'_, HashSet<(String, u32)>> {
        self.forwards.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Which channels a target opens are passed back to the engineer (what the rule allows),
/// and the connection they go to.
pub struct Back {
    engineer: Arc<ToEngineer>,
    agent: bool,
    /// Connections to a remote forward (`ssh -R`).
    forwarded: bool,
    x11: bool,
}

impl Back {
    pub fn new(engineer: Arc<ToEngineer>, rule: &AccessRule) -> Back {
        Back {
            engineer,
            agent: allows(rule, Request::Agent),
            forwarded: allows(rule, Request::PortForwarding),
            x11: allows(rule, Request::X11),
        }
    }
}

impl TargetKey {
    fn decide(&self, offered: &PublicKeyOrCertificate) -> Result<(), String> {
        let now = crate::model::now().max(0) as u64;
        match (offered, &self.pinned) {
            (PublicKeyOrCertificate::PublicKey { key, .. }, Some(pin)) => {
                if key.key_data() == pin.key_data() {
                    Ok(())
                } else {
                    Err(format!(
                        "host key of {} is {}, not the pinned {}",
                        self.host,
                        key.fingerprint(ssh_key::HashAlg::Sha256),
                        pin.fingerprint(ssh_key::HashAlg::Sha256)
                    ))
                }
            }
            (PublicKeyOrCertificate::PublicKey { .. }, None) => Err(format!(
                "{} offered a bare host key; without a pinned host_key only a host-CA certificate is trusted",
                self.host
            )),
            (PublicKeyOrCertificate::Certificate(cert), pin) => {
                if pin
                    .as_ref()
                    .is_some_and(|p| p.key_data() == cert.public_key())
                {
                    return Ok(());
                }
                self.host_ca.validate_host_cert(cert, &self.host, now)
            }
        }
    }

    /// Opens a channel on the engineer's nested connection with `open` and relays the
    /// target's channel to it, in its own task; refuses it unless `allowed` and that
    /// connection runs.
    async fn pass_back<F, Fut>(
        &self,
        allowed: bool,
        channel: Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        open: F,
    ) -> Result<(), russh::Error>
    where
        F: FnOnce(server::Handle) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Channel<server::Msg>, russh::Error>> + Send + 'static,
    {
        let engineer = self.back.engineer.handle.get().filter(|_| allowed).cloned();
        let Some(engineer) = engineer else {
            return refuse(reply).await;
        };
        let stalls = Arc::clone(&self.back.engineer.stalls);
        tokio::spawn(async move {
            match open(engineer).await {
                Ok(theirs) => {
                    reply.accept().await;
                    tunnel(theirs, channel, stalls).await;
                }
                Err(_) => reply.reject(ChannelOpenFailure::ConnectFailed).await,
            }
        });
        Ok(())
    }
}

impl client::Handler for TargetKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        match self.decide(offered) {
            Ok(()) => Ok(true),
            Err(reason) => {
                tracing::warn!(host = %self.host, %reason, "target host key refused");
                *self.refusal.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
                Ok(false)
            }
        }
    }

    // Channels the target opens go back to the engineer only as the rule allows (and for a
    // remote forward, only one the engineer asked for); others are refused, where russh
    // would accept them by default.

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: Channel<client::Msg>,
        connected_address: &str,
        connected_port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let allowed = self.back.forwarded
            && self
                .back
                .engineer
                .is_forwarded(connected_address, connected_port);
        let (connected, originator) = (
            connected_address.to_string(),
            originator_address.to_string(),
        );
        self.pass_back(allowed, channel, reply, move |engineer| async move {
            engineer
                .channel_open_forwarded_tcpip(
                    connected,
                    connected_port,
                    originator,
                    originator_port,
                )
                .await
        })
        .await
    }

    async fn server_channel_open_forwarded_streamlocal(
        &mut self,
        _channel: Channel<client::Msg>,
        _socket_path: &str,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        refuse(reply).await
    }

    async fn server_channel_open_agent_forward(
        &mut self,
        channel: Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.pass_back(self.back.agent, channel, reply, |engineer| async move {
            engineer.channel_open_agent().await
        })
        .await
    }

    async fn server_channel_open_session(
        &mut self,
        _channel: Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        refuse(reply).await
    }

    async fn server_channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<client::Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        refuse(reply).await
    }

    async fn server_channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<client::Msg>,
        _socket_path: &str,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        refuse(reply).await
    }

    async fn server_channel_open_x11(
        &mut self,
        channel: Channel<client::Msg>,
        originator_address: &str,
        originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let originator = originator_address.to_string();
        self.pass_back(self.back.x11, channel, reply, move |engineer| async move {
            engineer.channel_open_x11(originator, originator_port).await
        })
        .await
    }
}

/// Client configurations: one for pinned keys, one asking for host certificates.
pub struct ClientConfigs {
    pinned: Arc<client::Config>,
    certified: Arc<client::Config>,
}

impl ClientConfigs {
    pub fn new() -> ClientConfigs {
        let base = || client::Config {
            client_id: russh::SshId::Standard("SSH-2.0-jitgate".into()),
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_max: 3,
            maximum_packet_size: 65535,
            preferred: Preferred {
                cipher: CLIENT_CIPHERS.into(),
                ..Preferred::DEFAULT
            },
            ..Default::default()
        };
        let mut certified = base();
        certified.preferred.host_key_certificates =
            Cow::Owned(certified.preferred.key.iter().cloned().collect());
        ClientConfigs {
            pinned: Arc::new(base()),
            certified: Arc::new(certified),
        }
    }
}

impl Default for ClientConfigs {
    fn default() -> Self {
        ClientConfigs::new()
    }
}

/// Dials `host` and logs in as `login` with a certificate named `key_id` that carries only
/// what `rule` allows (`ca::target_extensions`). The error is one line for the engineer.
pub async fn connect(
    shared: &Shared,
    host: &Host,
    login: &str,
    key_id: &str,
    rule: &AccessRule,
    back: Back,
) -> Result<Upstream, String> {
    let (config, ca, configs) = (shared.config(), &shared.ctx.ca, &shared.clients);
    let refusal = Arc::new(Mutex::new(None));
    let checker = TargetKey {
        host: host.name.clone(),
        pinned: host.host_key.clone(),
        host_ca: Arc::clone(ca),
        refusal: Arc::clone(&refusal),
        back,
    };
    let client_config = if host.host_key.is_some() {
        Arc::clone(&configs.pinned)
    } else {
        Arc::clone(&configs.certified)
    };
    let unreachable = |e: &dyn std::fmt::Display| {
        format!(
            "jitgate: cannot reach {} at {}: {e}",
            host.name, host.address
        )
    };
    // `client::connect`, but read through a buffer (see `tcp::buffered`).
    let dial = async {
        let socket = tokio::net::TcpStream::connect(host.address.as_str())
            .await
            .map_err(russh::Error::IO)?;
        socket.set_nodelay(true).map_err(russh::Error::IO)?;
        client::connect_stream(client_config, super::tcp::buffered(socket), checker).await
    };
    let mut handle = match tokio::time::timeout(DIAL_TIMEOUT, dial).await {
        Err(_) => return Err(unreachable(&"timed out")),
        Ok(Err(e)) => {
            let why = refusal.lock().unwrap_or_else(|e| e.into_inner()).take();
            return Err(match why {
                Some(why) => format!("jitgate: refusing {}: {why}", host.name),
                None => match e {
                    russh::Error::IO(io) => unreachable(&io),
                    other => unreachable(&other),
                },
            });
        }
        Ok(Ok(h)) => h,
    };
    let key = generate_ed25519();
    let now = crate::model::now().max(0) as u64;
    let cert = ca
        .sign_target(
            key.public_key(),
            login,
            key_id,
            &target_extensions(rule),
            random_serial(),
            now.saturating_sub(config.ca.clock_skew.as_secs()),
            now.saturating_add(config.ca.upstream_cert_ttl.as_secs()),
        )
        .map_err(|e| format!("jitgate: cannot sign a certificate for {}: {e}", host.name))?;
    let auth = tokio::time::timeout(
        DIAL_TIMEOUT,
        handle.authenticate_openssh_cert(login, Arc::new(key), cert),
    )
    .await
    .map_err(|_| unreachable(&"login timed out"))?
    .map_err(|e| unreachable(&e))?;
    if !auth.success() {
        return Err(format!(
            "jitgate: {} refused the bastion's certificate for {login:?} \
             (does its sshd trust the target CA with TrustedUserCAKeys, and does {login:?} exist?)",
            host.name
        ));
    }
    Ok(handle)
}

/// Refuses a channel a target tried to open towards the bastion.
async fn refuse(reply: client::ChannelOpenHandle) -> Result<(), russh::Error> {
    reply
        .reject(ChannelOpenFailure::AdministrativelyProhibited)
        .await;
    Ok(())
}

/// Longest the nested session waits for the target to answer a remote forward (`-R`) or its
/// cancellation; past it the engineer's request fails.
pub const FORWARD_REPLY_WAIT: Duration = Duration::from_secs(10);

/// Asks the target to listen on `address:port` (`ssh -R`); returns the port it listens on.
/// An answer that has not come within `FORWARD_REPLY_WAIT` is a failure, and a late yes is
/// taken back, so the target does not listen for nobody.
pub async fn remote_forward(up: Arc<Upstream>, address: &str, port: u32) -> Result<u32, String> {
    let address = address.to_string();
    let mut asked = tokio::spawn({
        let (up, address) = (Arc::clone(&up), address.clone());
        async move { up.tcpip_forward(address, port).await }
    });
    match tokio::time::timeout(FORWARD_REPLY_WAIT, &mut asked).await {
        Ok(Ok(answer)) => answer.map_err(|e| format!("the target refused: {e}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => {
            tokio::spawn(async move {
                if let Ok(Ok(bound)) = asked.await {
                    let port = if port == 0 { bound } else { port };
                    let _ = up.cancel_tcpip_forward(address, port).await;
                }
            });
            Err(format!(
                "the target did not answer within {}s",
                FORWARD_REPLY_WAIT.as_secs()
            ))
        }
    }
}
