//! One `[[vrrp]]` instance at run time: the pure [`Machine`] driven by
//! tokio's clock, an [`Edge`] (raw socket, netlink, packet socket) and the
//! health view.
//!
//! The loop decides nothing the machine could: state, timers, the start-up
//! announcement and resigning on a tracking fault live in the machine, and
//! the loop turns the world into events and actions into I/O. Readiness is
//! read where it is used: at the top of every turn, the channel's *current*
//! value (held back while the health view catches up after a fault, see
//! [`super::settle`]) is compared with [`Machine::is_ready`] (issue 11: the
//! flag the loop once copied at start could say "delivered" while the
//! machine had been built not ready, and a priority-150 node waited in
//! Backup forever).
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

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tandem_healthcheck::checker::HealthView;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::edge::{Edge, Opened};
use super::garp;
use super::notify::Queue;
use super::settle;
use super::track::{TrackState, Verdict, verdict};
use super::{FailoverError, names};
use crate::config::{TrackTarget, VrrpConfig};
use crate::vrrp::machine::{Action, Event, Machine, Params};
use crate::vrrp::packet::{self, Advert, V2Auth};
use crate::vrrp::status::VrrpStatus;
use crate::vrrp::{Priority, Version};

mod publish;

/// Extra rejection labels for checks against the configuration, beside
/// [`packet::Reject::LABELS`].
pub const CONFIG_REJECT_LABELS: &[&str] = &["peer", "addresses", "interval_mismatch"];

/// Everything the task reads from outside.
pub struct Ctx {
    pub health: watch::Receiver<Arc<HealthView>>,
    pub ready: watch::Receiver<bool>,
    pub stop: CancellationToken,
    pub notify: Queue,
    /// Every instance's status; this one updates only its own entry.
    pub status: watch::Sender<Vec<VrrpStatus>>,
}

/// The machine's clock: tokio's, so tests can pause it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Sleeps until `at`, or forever when there is none.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// An instance with its kernel resources open, ready to run.
pub struct Instance<E> {
    cfg: VrrpConfig,
    edge: Arc<E>,
    primary: Ipv4Addr,
    /// Pending gratuitous ARP bursts; cancelled with the VIPs.
    garp_stop: CancellationToken,
    link: watch::Receiver<bool>,
    /// One receiver per `track` entry that is an interface, by track index.
    iface_tracks: Vec<(usize, watch::Receiver<bool>)>,
    machine: Machine,
    advert: Advert,
    /// The priority of the last tracking verdict (before the machine's
    /// clamping), to log changes once.
    priority: u8,
    tracks_down: Vec<String>,
    /// When the current (or last) fault began, wall clock (probe times are),
    /// and the backends up then.
    fault_began: SystemTime,
    up_before_fault: Vec<tandem_healthcheck::checker::TargetId>,
    /// A fault cleared: wall-clock time, and the latest instant to wait
    /// for health to settle before readiness returns (see [`settle`]).
    settling: Option<(SystemTime, Instant)>,
}

fn v2_auth(pass: &Option<String>) -> V2Auth {
    match pass {
        Some(p) => {
            let (mut data, b) = ([0u8; 8], p.as_bytes());
            let n = b.len().min(8);
            data[..n].copy_from_slice(&b[..n]);
            V2Auth { auth_type: 1, data }
        }
        None => V2Auth::NONE,
    }
}

impl<E: Edge> Instance<E> {
    /// An instance on opened resources. The machine starts not ready,
    /// whatever the readiness channel says: `run` tells it from the
    /// channel's current value (see [`Instance::sync_ready`]).
    pub fn new(cfg: VrrpConfig, opened: Opened<E>) -> Result<Instance<E>, FailoverError> {
        let params_err = |source| FailoverError::Params {
            instance: cfg.name.clone(),
            source,
        };
        // VrrpConfig holds the protocol's own types, checked by the parser.
        let version = cfg.version;
        let params = Params {
            vrid: cfg.vrid,
            version,
            priority: cfg.priority,
            advert_interval: cfg.advert_interval,
            preempt: cfg.preempt,
            preempt_delay: cfg.preempt_delay,
            primary_ip: opened.primary,
            ready: false,
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
            priority: cfg.priority.get(),
            cfg,
            edge: Arc::new(opened.edge),
            primary: opened.primary,
            garp_stop: CancellationToken::new(),
            link: opened.link,
            iface_tracks: opened.iface_tracks,
            machine,
            advert,
            tracks_down: Vec::new(),
            fault_began: SystemTime::UNIX_EPOCH,
            up_before_fault: Vec::new(),
            settling: None,
        })
    }

    /// Runs until `ctx.stop`, then resigns (priority-0 advert if master) and
    /// removes the VIPs.
    pub async fn run(mut self, mut ctx: Ctx) {
        let name = self.cfg.name.clone();
        tracing::info!(
            instance = %name,
            interface = %self.cfg.interface,
            vrid = self.cfg.vrid.get(),
            version = self.cfg.version.number(),
            priority = self.cfg.priority.get(),
            primary = %self.primary,
            unicast = self.cfg.is_unicast(),
            advert_ms = self.cfg.advert_interval.as_duration().as_millis() as u64,
            "vrrp instance starting"
        );
        let (fwd_stop, mut changed) = self.forward_link_changes();
        self.start_up(&mut ctx).await;
        let mut health_open = true;
        let mut ready_open = true;

        let mut buf = vec![0u8; 2048];
        loop {
            self.sync_ready(&mut ctx).await;
            let sleep = sleep_until(self.machine.next_deadline());
            let waiting_ready = ready_open && !self.machine.is_ready();
            // `sync_ready` clears `settling` once its deadline has passed, so
            // this never fires twice for one deadline.
            let settle_deadline = sleep_until(self.settling.map(|(_, by)| by));
            tokio::select! {
                biased;
                _ = ctx.stop.cancelled() => break,
                _ = sleep => self.feed(Event::Timer, &ctx).await,
                r = self.edge.recv(&mut buf) => match r {
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
                // Only wake-ups: `sync_ready` at the top of the loop acts.
                r = ctx.ready.changed(), if waiting_ready => {
                    if r.is_err() {
                        ready_open = false;
                    }
                }
                _ = settle_deadline => {}
            }
        }
        self.feed(Event::Shutdown, &ctx).await;
        // Whatever the state was, leave no VIP behind.
        self.garp_stop.cancel();
        self.remove_vips().await;
        fwd_stop.cancel();
        tracing::info!(instance = %name, "vrrp instance stopped");
    }

    /// Link and interface-track changes, all on one channel; the forwarders
    /// end when the returned token is cancelled.
    fn forward_link_changes(&self) -> (CancellationToken, mpsc::Receiver<()>) {
        let fwd_stop = CancellationToken::new();
        let (changed_tx, changed) = mpsc::channel::<()>(8);
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
        (fwd_stop, changed)
    }

    /// Readiness and tracking before start-up, so the machine starts with
    /// the right priority, an owner that is ready goes straight to Master,
    /// and a down interface starts in Fault.
    async fn start_up(&mut self, ctx: &mut Ctx) {
        self.sync_ready(ctx).await;
        let v = self.verdict(ctx);
        if v.priority != self.cfg.priority.get() {
            self.priority = v.priority;
            self.feed(Event::PriorityChanged(Priority(v.priority)), ctx)
                .await;
        }
        if v.fault {
            self.begin_fault(ctx);
            self.feed(Event::LinkDown, ctx).await;
        }
        self.feed(Event::Startup, ctx).await;
    }

    /// One event to the machine at the current time, its actions executed.
    async fn feed(&mut self, event: Event, ctx: &Ctx) {
        let actions = self.machine.handle(event, now());
        self.exec(actions, ctx).await;
    }

    /// Tells the machine it is ready when the readiness channel's current
    /// value says so and the machine does not know yet. The one place
    /// readiness crosses from the balancer into the machine: called before
    /// start-up and at the top of every turn of the loop, it reads the value
    /// there and then — never a copy taken earlier, never "seen" state of the
    /// receiver (a value sent before the receiver was made counts too).
    ///
    /// After a fault, readiness also waits for the health view to settle
    /// again ([`settle`]), at most [`super::SETTLE_MAX`].
    async fn sync_ready(&mut self, ctx: &mut Ctx) {
        // The settle wait ends on its own terms (caught up, or deadline),
        // whatever the balancer's readiness says meanwhile.
        if let Some((cleared, by)) = self.settling {
            let done = settle::settled(
                &ctx.health.borrow(),
                self.fault_began,
                cleared,
                &self.up_before_fault,
            );
            if done {
                self.settling = None;
                tracing::info!(instance = %self.cfg.name,
                    "health checks caught up after the fault: VRRP may claim the VIPs");
            } else if now() >= by {
                self.settling = None;
                tracing::warn!(instance = %self.cfg.name, wait_ms = super::SETTLE_MAX.as_millis() as u64,
                    "health checks did not catch up after the fault in time: VRRP may claim the VIPs anyway");
            }
        }
        if self.settling.is_some() || self.machine.is_ready() || !*ctx.ready.borrow_and_update() {
            return;
        }
        self.feed(Event::Ready, ctx).await;
    }

    /// Notes what the settle gate needs when a fault begins: when, and which
    /// backends were up. A fault that begins while the last one's settle
    /// wait is still running keeps that fault's start and adds to its set:
    /// the backends it took down are still coming back.
    fn begin_fault(&mut self, ctx: &Ctx) {
        let up = settle::up_now(&ctx.health.borrow());
        if self.settling.take().is_some() {
            for id in up {
                if !self.up_before_fault.contains(&id) {
                    self.up_before_fault.push(id);
                }
            }
        } else {
            self.fault_began = SystemTime::now();
            self.up_before_fault = up;
        }
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
        let mut v = verdict(self.cfg.priority.get(), states);
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
        if v.fault && !self.machine.in_fault() {
            tracing::info!(instance = %name, down = ?self.tracks_down, "fault: releasing the VIPs");
            self.begin_fault(ctx);
            // Over a working link a master resigns first (the machine sends
            // priority 0 on TrackFault); over a dead one nothing could arrive.
            let ev = if *self.link.borrow() {
                Event::TrackFault
            } else {
                Event::LinkDown
            };
            self.feed(ev, ctx).await;
        }
        if v.priority != self.priority {
            tracing::info!(instance = %name, from = self.priority, to = v.priority,
                down = ?self.tracks_down, "tracking: priority changed");
            self.priority = v.priority;
            self.feed(Event::PriorityChanged(Priority(v.priority)), ctx)
                .await;
        }
        if !v.fault && self.machine.in_fault() {
            tracing::info!(instance = %name, "fault cleared: waiting for health checks to catch up");
            // Not ready until the health view has caught up (`settle`);
            // `sync_ready` gives readiness back.
            self.settling = Some((SystemTime::now(), now() + super::SETTLE_MAX));
            if *self.link.borrow() {
                // The link came back: drop the ARP entries the cut left
                // half-resolved (`Netlink::flush_neighbours`).
                match self.edge.flush_neighbours().await {
                    Ok(n) => {
                        tracing::debug!(instance = %name, flushed = n, "neighbour entries flushed")
                    }
                    Err(e) => {
                        tracing::warn!(instance = %name, error = %e, "cannot flush neighbour entries")
                    }
                }
            }
            self.feed(Event::Unready, ctx).await;
            self.feed(Event::LinkUp, ctx).await;
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
        let ev = Event::AdvertReceived {
            src: rx.src,
            priority: a.priority,
            max_advert_int: a.max_advert_int,
        };
        self.feed(ev, ctx).await;
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
            match self.edge.send(&bytes, dst).await {
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
            if let Err(e) = self.edge.add_vip(*ip, *prefix).await {
                tracing::error!(instance = %self.cfg.name, vip = %ip, error = %e, "cannot add VIP");
            }
        }
    }

    async fn remove_vips(&self) {
        for (ip, prefix) in &self.cfg.virtual_ips {
            if let Err(e) = self.edge.del_vip(*ip, *prefix).await {
                tracing::error!(instance = %self.cfg.name, vip = %ip, error = %e, "cannot remove VIP");
            }
        }
    }

    /// Starts the gratuitous ARP bursts of a new master (see [`garp`]),
    /// cancelling any still running.
    fn start_garp(&mut self) {
        self.garp_stop.cancel();
        self.garp_stop = CancellationToken::new();
        let vips = self.cfg.virtual_ips.iter().map(|(ip, _)| *ip).collect();
        garp::spawn(
            self.edge.clone(),
            self.cfg.garp.clone(),
            vips,
            self.cfg.name.clone(),
            self.garp_stop.clone(),
        );
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
                Action::OtherMasterSeen {
                    src,
                    priority,
                    new_contest,
                } => {
                    metrics::counter!(names::OTHER_MASTER_SEEN, "vrrp_instance" => self.cfg.name.clone())
                        .increment(1);
                    if new_contest {
                        tracing::warn!(instance = %self.cfg.name, other = %src, other_priority = priority.get(),
                            "another master heard while master (two masters): asserting ours");
                    }
                }
                Action::IntervalNotAdopted { src, advertised } => {
                    tracing::warn!(instance = %self.cfg.name, master = %src,
                        advertised_ms = advertised.as_duration().as_millis() as u64,
                        ours_ms = self.cfg.advert_interval.as_duration().as_millis() as u64,
                        "master advertises a longer interval than ours: keeping ours as the ceiling \
                         (check advert_interval on every node)");
                }
                Action::Discarded(d) => self.reject(d.as_str()),
            }
        }
        self.publish(ctx);
    }
}
