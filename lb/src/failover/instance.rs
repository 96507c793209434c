//! One `[[vrrp]]` instance at run time: the pure [`Machine`] driven by real
//! time, a raw socket, netlink and the health view.
//!
//! The task is a single `select!` loop, so the machine is only ever touched
//! from one place and the actions of one event run to completion, in order,
//! before the next event is looked at. What could be slow is kept out of the
//! loop: notify commands go to a queue ([`super::notify`]), gratuitous ARP
//! bursts run in their own task (cancelled when the VIPs are removed, so a
//! node that lost mastership never advertises a VIP it no longer holds).
//!
//! Received adverts are checked in this order, each failure counted by
//! reason: [`packet::decode`] (TTL, checksum, lengths...), then the
//! configuration match that the decoder cannot know: VRID (another router's
//! adverts are normal on a shared segment: ignored, not counted), version,
//! unicast peer, v2 authentication, and the VIP list (RFC 5798 §7.1 lets a
//! router drop an advert whose addresses differ; keepalived does, and a
//! mismatch means two routers disagree about what they protect).

use std::io;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem_healthcheck::checker::HealthView;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::announce::Announce;
use super::notify::{Job, Queue};
use super::track::{TrackState, Verdict, verdict};
use super::{FailoverError, names};
use crate::config::{TrackTarget, VrrpConfig};
use crate::net::garp::GarpSender;
use crate::net::netlink::{Netlink, watch_link};
use crate::net::vrrp_socket::VrrpSocket;
use crate::runtime::status::VrrpStatus;
use crate::vrrp::machine::{Action, Event, Machine, Params, State};
use crate::vrrp::packet::{self, Advert, V2Auth};
use crate::vrrp::{AdvertInterval, Priority, Version, Vrid};

/// Extra rejection labels for checks against the configuration, beside
/// [`packet::Reject::LABELS`].
pub const CONFIG_REJECT_LABELS: &[&str] = &["peer", "addresses", "interval_mismatch"];

/// Everything the task reads from outside.
pub struct Ctx {
    pub health: watch::Receiver<Arc<HealthView>>,
    pub ready: watch::Receiver<bool>,
    pub stop: CancellationToken,
    pub notify: Queue,
    pub status: Arc<Mutex<VrrpStatus>>,
}

/// An instance with its kernel resources open, ready to run.
pub struct Instance {
    cfg: VrrpConfig,
    nl: Netlink,
    ifindex: u32,
    mac: Option<[u8; 6]>,
    primary: Ipv4Addr,
    sock: VrrpSocket,
    garp: Option<Arc<GarpSender>>,
    /// Pending gratuitous ARP bursts; cancelled with the VIPs.
    garp_stop: CancellationToken,
    link: watch::Receiver<bool>,
    /// One receiver per `track` entry that is an interface, by track index.
    iface_tracks: Vec<(usize, watch::Receiver<bool>)>,
    machine: Machine,
    advert: Advert,
    /// Last verdict applied to the machine.
    faulted: bool,
    priority: u8,
    tracks_down: Vec<String>,
    /// The start-up announcement (see [`super::announce`]).
    announce: Announce,
}

fn v2_auth(pass: &Option<String>) -> V2Auth {
    match pass {
        Some(p) => {
            let mut data = [0u8; 8];
            let b = p.as_bytes();
            let n = b.len().min(8);
            data[..n].copy_from_slice(&b[..n]);
            V2Auth { auth_type: 1, data }
        }
        None => V2Auth::NONE,
    }
}

impl Instance {
    /// Looks the interface up, removes VIPs a crashed predecessor left on
    /// it (before anything else: issue 4 item 7), and opens the sockets.
    pub async fn open(cfg: VrrpConfig, ready: bool) -> Result<Instance, FailoverError> {
        let name = cfg.name.clone();
        let iface_err = |source: io::Error| FailoverError::Interface {
            instance: name.clone(),
            interface: cfg.interface.clone(),
            source,
        };
        let nl = Netlink::connect().map_err(&iface_err)?;
        let link = nl.link(&cfg.interface).await.map_err(&iface_err)?;
        let addrs = nl.ipv4_addrs(link.index).await.map_err(&iface_err)?;
        let is_vip = |ip: &Ipv4Addr| cfg.virtual_ips.iter().any(|(v, _)| v == ip);
        let primary = match cfg.unicast_src_ip {
            Some(ip) => ip,
            None => addrs
                .iter()
                .map(|(ip, _)| *ip)
                .find(|ip| !is_vip(ip))
                .ok_or_else(|| FailoverError::NoAddress {
                    instance: name.clone(),
                    interface: cfg.interface.clone(),
                })?,
        };
        let mut stale = 0;
        for (ip, prefix) in &cfg.virtual_ips {
            if addrs.iter().any(|(a, _)| a == ip) {
                nl.del_addr(link.index, *ip, *prefix)
                    .await
                    .map_err(&iface_err)?;
                stale += 1;
            }
        }
        if stale > 0 {
            tracing::warn!(instance = %name, interface = %cfg.interface, stale,
                "removed VIPs left on the interface (a previous run did not exit cleanly)");
        }
        let sock = VrrpSocket::open(&cfg.interface, link.index, primary, !cfg.is_unicast())
            .map_err(|source| FailoverError::Socket {
                instance: name.clone(),
                source,
            })?;
        let garp = match GarpSender::open(link.index) {
            Ok(g) => Some(Arc::new(g)),
            Err(e) => {
                tracing::warn!(instance = %name, error = %e, "no gratuitous ARP (packet socket failed)");
                None
            }
        };
        let link_rx = watch_link(&cfg.interface).await.map_err(&iface_err)?;
        let mut iface_tracks = Vec::new();
        for (i, t) in cfg.track.iter().enumerate() {
            if let TrackTarget::Interface(ifname) = &t.target {
                let rx = watch_link(ifname)
                    .await
                    .map_err(|source| FailoverError::Interface {
                        instance: name.clone(),
                        interface: ifname.clone(),
                        source,
                    })?;
                iface_tracks.push((i, rx));
            }
        }
        let version = if cfg.version == 2 {
            Version::V2
        } else {
            Version::V3
        };
        let params_err = |source| FailoverError::Params {
            instance: name.clone(),
            source,
        };
        let params = Params {
            vrid: Vrid::new(cfg.vrid).map_err(params_err)?,
            version,
            priority: Priority::configured(cfg.priority).map_err(params_err)?,
            advert_interval: AdvertInterval::for_version(version, cfg.advert_interval)
                .map_err(params_err)?,
            preempt: cfg.preempt,
            preempt_delay: cfg.preempt_delay,
            primary_ip: primary,
            ready,
        };
        let advert = Advert {
            version,
            vrid: params.vrid,
            priority: params.priority,
            max_advert_int: params.advert_interval,
            addresses: cfg.virtual_ips.iter().map(|(ip, _)| *ip).collect(),
            auth: match version {
                Version::V2 => Some(v2_auth(&cfg.auth_pass)),
                Version::V3 => None,
            },
        };
        let machine = Machine::new(params).map_err(params_err)?;
        Ok(Instance {
            priority: cfg.priority,
            cfg,
            nl,
            ifindex: link.index,
            mac: link.mac,
            primary,
            sock,
            garp,
            garp_stop: CancellationToken::new(),
            link: link_rx,
            iface_tracks,
            machine,
            advert,
            faulted: false,
            tracks_down: Vec::new(),
            announce: Announce::idle(),
        })
    }

    /// Runs until `ctx.stop`, then resigns (priority-0 advert if master) and
    /// removes the VIPs.
    pub async fn run(mut self, mut ctx: Ctx) {
        let name = self.cfg.name.clone();
        tracing::info!(
            instance = %name,
            interface = %self.cfg.interface,
            vrid = self.cfg.vrid,
            version = self.cfg.version,
            priority = self.cfg.priority,
            primary = %self.primary,
            unicast = self.cfg.is_unicast(),
            advert_ms = self.cfg.advert_interval.as_millis() as u64,
            "vrrp instance starting"
        );
        // Link and interface-track changes all arrive on one channel; the
        // forwarders end with `fwd_stop`.
        let fwd_stop = CancellationToken::new();
        let (changed_tx, mut changed) = mpsc::channel::<()>(8);
        let mut watchers = vec![self.link.clone()];
        watchers.extend(self.iface_tracks.iter().map(|(_, rx)| rx.clone()));
        for mut rx in watchers {
            let tx = changed_tx.clone();
            let stop = fwd_stop.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        r = rx.changed() => {
                            if r.is_err() || tx.send(()).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
        drop(changed_tx);

        // Tracking before start-up, so the machine starts with the right
        // priority and a down interface starts in Fault.
        let v = self.verdict(&ctx);
        let now = Instant::now();
        if v.priority != self.cfg.priority {
            self.priority = v.priority;
            let a = self
                .machine
                .handle(Event::PriorityChanged(Priority(v.priority)), now);
            self.exec(a, &ctx).await;
        }
        if v.fault {
            self.faulted = true;
            let a = self.machine.handle(Event::LinkDown, now);
            self.exec(a, &ctx).await;
        }
        let a = self.machine.handle(Event::Startup, Instant::now());
        self.exec(a, &ctx).await;
        self.arm_announce();
        let mut ready_sent = *ctx.ready.borrow();
        let mut health_open = true;

        let mut buf = vec![0u8; 2048];
        loop {
            let deadline = self.machine.next_deadline();
            let sleep = async move {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            let announce_at = self.announce.deadline();
            let announce = async move {
                match announce_at {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = ctx.stop.cancelled() => break,
                _ = sleep => {
                    let a = self.machine.handle(Event::Timer, Instant::now());
                    self.exec(a, &ctx).await;
                }
                _ = announce => self.on_announce(&ctx).await,
                r = self.sock.recv(&mut buf) => match r {
                    Ok(n) => {
                        let pkt = buf[..n].to_vec();
                        self.on_packet(&pkt, &ctx).await;
                    }
                    Err(e) => {
                        tracing::warn!(instance = %name, error = %e, "vrrp receive failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                Some(()) = changed.recv() => self.retrack(&ctx).await,
                r = ctx.health.changed(), if health_open => {
                    if r.is_ok() {
                        self.retrack(&ctx).await;
                    } else {
                        // The checker stopped (shutdown in progress): its
                        // last view stays; stop polling a closed channel.
                        health_open = false;
                    }
                }
                r = ctx.ready.changed(), if !ready_sent => {
                    if r.is_ok() && *ctx.ready.borrow() {
                        ready_sent = true;
                        let a = self.machine.handle(Event::Ready, Instant::now());
                        self.exec(a, &ctx).await;
                    } else if r.is_err() {
                        ready_sent = true;
                    }
                }
            }
        }
        let a = self.machine.handle(Event::Shutdown, Instant::now());
        self.exec(a, &ctx).await;
        // Whatever the state was, leave no VIP behind.
        self.garp_stop.cancel();
        self.remove_vips().await;
        fwd_stop.cancel();
        tracing::info!(instance = %name, "vrrp instance stopped");
    }

    fn verdict(&mut self, ctx: &Ctx) -> Verdict {
        let view = ctx.health.borrow().clone();
        let mut downs = Vec::new();
        let states: Vec<TrackState> = self
            .cfg
            .track
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let down = match &t.target {
                    TrackTarget::Service(s) => {
                        let d = view.service(s).all_down();
                        if d {
                            downs.push(format!("service:{s}"));
                        }
                        d
                    }
                    TrackTarget::Interface(ifname) => {
                        let d = self
                            .iface_tracks
                            .iter()
                            .find(|(j, _)| *j == i)
                            .is_some_and(|(_, rx)| !*rx.borrow());
                        if d {
                            downs.push(format!("interface:{ifname}"));
                        }
                        d
                    }
                };
                TrackState {
                    down,
                    weight: t.weight,
                }
            })
            .collect();
        let mut v = verdict(self.cfg.priority, states);
        if !*self.link.borrow() {
            downs.push(format!("link:{}", self.cfg.interface));
            v.fault = true;
        }
        self.tracks_down = downs;
        v
    }

    /// Re-reads link and tracking state and tells the machine what changed.
    async fn retrack(&mut self, ctx: &Ctx) {
        let v = self.verdict(ctx);
        let name = self.cfg.name.clone();
        if v.fault && !self.faulted {
            tracing::info!(instance = %name, down = ?self.tracks_down, "fault: releasing the VIPs");
            self.faulted = true;
            // A master that faults through tracking (weight 0) while its VRRP
            // link still works resigns as on shutdown (RFC 5798 §6.4.3,
            // priority 0): the backup takes over after its skew time instead
            // of the whole Master_Down_Interval. Over a dead link an advert
            // could not arrive, so none is sent.
            if self.machine.state() == State::Master && *self.link.borrow() {
                self.send_advert(Priority(0)).await;
            }
            let a = self.machine.handle(Event::LinkDown, Instant::now());
            self.exec(a, ctx).await;
        }
        if v.priority != self.priority {
            tracing::info!(instance = %name, from = self.priority, to = v.priority,
                down = ?self.tracks_down, "tracking: priority changed");
            self.priority = v.priority;
            let a = self
                .machine
                .handle(Event::PriorityChanged(Priority(v.priority)), Instant::now());
            self.exec(a, ctx).await;
        }
        if !v.fault && self.faulted {
            tracing::info!(instance = %name, "fault cleared");
            self.faulted = false;
            let a = self.machine.handle(Event::LinkUp, Instant::now());
            self.exec(a, ctx).await;
            self.arm_announce();
        }
        self.publish(ctx);
    }

    fn reject(&self, reason: &'static str) {
        metrics::counter!(names::REJECTED, "vrrp_instance" => self.cfg.name.clone(), "reason" => reason)
            .increment(1);
    }

    async fn on_packet(&mut self, pkt: &[u8], ctx: &Ctx) {
        let rx = match packet::decode(pkt) {
            Ok(rx) => rx,
            Err(r) => {
                tracing::debug!(instance = %self.cfg.name, reason = %r, "advert rejected");
                self.reject(r.as_str());
                return;
            }
        };
        let a = &rx.advert;
        if a.vrid != self.advert.vrid {
            return;
        }
        if a.version != self.advert.version {
            self.reject("version");
            return;
        }
        if self.cfg.is_unicast() && !self.cfg.unicast_peers.contains(&rx.src) {
            self.reject("peer");
            return;
        }
        if a.version == Version::V2
            && a.auth.unwrap_or(V2Auth::NONE) != v2_auth(&self.cfg.auth_pass)
        {
            self.reject("auth");
            return;
        }
        let mut theirs = a.addresses.clone();
        let mut ours = self.advert.addresses.clone();
        theirs.sort();
        ours.sort();
        if theirs != ours {
            self.reject("addresses");
            return;
        }
        metrics::counter!(names::ADVERTS_RECEIVED, "vrrp_instance" => self.cfg.name.clone())
            .increment(1);
        if rx.src != self.primary {
            self.announce
                .heard(rx.src, a.priority.get(), self.machine.priority().get());
        }
        let ev = Event::AdvertReceived {
            src: rx.src,
            priority: a.priority,
            max_advert_int: a.max_advert_int,
        };
        let actions = self.machine.handle(ev, Instant::now());
        self.exec(actions, ctx).await;
    }

    async fn send_advert(&self, priority: Priority) {
        let mut adv = self.advert.clone();
        adv.priority = priority;
        let dsts: Vec<Ipv4Addr> = if self.cfg.is_unicast() {
            self.cfg.unicast_peers.clone()
        } else {
            vec![packet::MULTICAST_GROUP]
        };
        for dst in dsts {
            // v3's checksum covers the destination: one encode per peer.
            let bytes = packet::encode(&adv, self.primary, dst);
            match self.sock.send(&bytes, dst).await {
                Ok(()) => {
                    metrics::counter!(names::ADVERTS_SENT, "vrrp_instance" => self.cfg.name.clone())
                        .increment(1)
                }
                Err(e) => {
                    tracing::debug!(instance = %self.cfg.name, %dst, error = %e, "advert not sent")
                }
            }
        }
    }

    async fn add_vips(&self) {
        for (ip, prefix) in &self.cfg.virtual_ips {
            if let Err(e) = self.nl.add_addr(self.ifindex, *ip, *prefix).await {
                tracing::error!(instance = %self.cfg.name, vip = %ip, error = %e, "cannot add VIP");
            }
        }
    }

    async fn remove_vips(&self) {
        for (ip, prefix) in &self.cfg.virtual_ips {
            if let Err(e) = self.nl.del_addr(self.ifindex, *ip, *prefix).await {
                tracing::error!(instance = %self.cfg.name, vip = %ip, error = %e, "cannot remove VIP");
            }
        }
    }

    /// Starts a gratuitous ARP task: `repeat` ARPs per VIP spaced
    /// `interval`, again after `delay`, then every `refresh` if set.
    fn start_garp(&mut self) {
        self.garp_stop.cancel();
        self.garp_stop = CancellationToken::new();
        let (Some(sender), Some(mac)) = (self.garp.clone(), self.mac) else {
            return;
        };
        let stop = self.garp_stop.clone();
        let g = self.cfg.garp.clone();
        let vips: Vec<Ipv4Addr> = self.cfg.virtual_ips.iter().map(|(ip, _)| *ip).collect();
        let name = self.cfg.name.clone();
        tokio::spawn(async move {
            let burst = || async {
                for i in 0..g.repeat {
                    for vip in &vips {
                        if let Err(e) = sender.send(mac, *vip) {
                            tracing::debug!(instance = %name, %vip, error = %e, "gratuitous ARP not sent");
                        }
                    }
                    if i + 1 < g.repeat && !g.interval.is_zero() {
                        tokio::time::sleep(g.interval).await;
                    }
                }
            };
            let all = async {
                burst().await;
                if !g.delay.is_zero() {
                    tokio::time::sleep(g.delay).await;
                    burst().await;
                }
                if !g.refresh.is_zero() {
                    loop {
                        tokio::time::sleep(g.refresh).await;
                        burst().await;
                    }
                }
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = all => {}
            }
        });
    }

    async fn exec(&mut self, actions: Vec<Action>, ctx: &Ctx) {
        for a in actions {
            match a {
                Action::SendAdvert { priority } => self.send_advert(priority).await,
                Action::AddVips => self.add_vips().await,
                Action::RemoveVips => {
                    self.garp_stop.cancel();
                    self.remove_vips().await;
                }
                Action::SendGarp => self.start_garp(),
                Action::Notify(state) => self.on_transition(state, ctx),
                Action::OtherMasterSeen { src, priority } => {
                    metrics::counter!(names::OTHER_MASTER_SEEN, "vrrp_instance" => self.cfg.name.clone())
                        .increment(1);
                    tracing::warn!(instance = %self.cfg.name, other = %src, other_priority = priority.get(),
                        "another master heard while master (two masters): asserting ours");
                }
                Action::Discarded(d) => self.reject(d.as_str()),
            }
        }
        if self.machine.state() != State::Backup {
            self.announce.cancel();
        }
        self.publish(ctx);
    }

    /// Entering Backup at start-up or on leaving Fault arms the
    /// announcement; any other state has nothing to announce.
    fn arm_announce(&mut self) {
        self.announce = if self.machine.state() == State::Backup {
            Announce::after_start(Instant::now(), self.cfg.advert_interval)
        } else {
            Announce::idle()
        };
    }

    /// The announcement is due: sent only by a ready Backup. Not gated on
    /// the machine knowing no master: a nopreempt Backup accepts a lower
    /// starter's announcement as a master (RFC 5798 §6.4.2), and must still
    /// announce itself so that starter defers to it; a running master has
    /// cancelled the announcement by advertising twice.
    async fn on_announce(&mut self, ctx: &Ctx) {
        if !self.announce.fire(Instant::now()) {
            return;
        }
        if self.machine.state() == State::Backup && *ctx.ready.borrow() {
            tracing::debug!(instance = %self.cfg.name, priority = self.machine.priority().get(),
                "no master heard since start: announcing our priority");
            self.send_advert(self.machine.priority()).await;
        }
    }

    fn on_transition(&self, state: State, ctx: &Ctx) {
        let name = &self.cfg.name;
        let prio = self.machine.priority().get();
        tracing::info!(
            instance = %name,
            state = state.as_str(),
            priority = prio,
            master = ?self.machine.master(),
            "vrrp transition"
        );
        metrics::counter!(names::TRANSITIONS, "vrrp_instance" => name.clone(), "to" => state.as_str())
            .increment(1);
        for s in super::STATES {
            metrics::gauge!(names::STATE, "vrrp_instance" => name.clone(), "state" => s.as_str())
                .set(if s == state { 1.0 } else { 0.0 });
        }
        if let Some(cmd) = &self.cfg.notify {
            let _ = ctx.notify.send(Job {
                command: cmd.clone(),
                instance: name.clone(),
                state: state.keepalived_name(),
                priority: prio,
                timeout: self.cfg.notify_timeout,
            });
        }
    }

    /// Copies the machine's state into the shared status and the gauges.
    fn publish(&self, ctx: &Ctx) {
        let prio = self.machine.priority().get();
        metrics::gauge!(names::PRIORITY, "vrrp_instance" => self.cfg.name.clone())
            .set(f64::from(prio));
        let mut st = ctx.status.lock().unwrap_or_else(|e| e.into_inner());
        st.state = self.machine.state().as_str().into();
        st.priority = prio;
        st.master = self.machine.master().map(|m| m.to_string());
        st.tracks_down.clone_from(&self.tracks_down);
    }
}
