//! Live updates over server-sent events, Kargo's pattern: a list answers its
//! `resourceVersion`; the same path with `?watch=true&resourceVersion=N` streams every
//! change after N as an event, each with an `id:` (its sequence number) so a client that
//! reconnects with `Last-Event-ID` misses nothing.
//!
//! One [`WatchHub`] per router computes the changes once for every client: it waits on
//! the controller's [`ChangeFeed`](kargo_core::pipeline::ChangeFeed), loads the state,
//! compares it with the previous one, and publishes one event per Stage, Warehouse,
//! Freight or promotion that changed. The last [`REPLAY`] events are kept for clients that
//! fall behind or reconnect; one that falls further behind gets an `event: reset` (list
//! again). An event's data:
//!
//! ```json
//! {"type": "ADDED|MODIFIED|DELETED", "kind": "Stage|Warehouse|Freight|Promotion",
//!  "name": "...", "stage": "... (promotions)", "object": { ...as the API reads it... }}
//! ```

use std::collections::{BTreeSet, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use axum::http::{HeaderMap, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use kargo_core::pipeline::ProjectState;
use kargo_core::runner::plan_stage;
use serde_json::Value as Json;
use tokio::sync::broadcast;

use super::query::query_value;
use super::views::{self, resource, to_json};
use crate::service::ServiceHandle;

/// How many recent events a hub keeps for clients that fall behind or reconnect.
pub const REPLAY: usize = 4096;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Kind {
    /// A Stage (its manifest and state).
    Stage,
    /// A Warehouse.
    Warehouse,
    /// A Freight.
    Freight,
    /// A promotion, queued, running or finished.
    Promotion,
}

/// One change.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WatchEvent {
    /// `ADDED`, `MODIFIED` or `DELETED`.
    #[serde(rename = "type")]
    pub action: &'static str,
    /// What kind of thing changed.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// For a promotion: its Stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// The thing as the API reads it now (`null` when deleted).
    pub object: Json,
}

/// An event as published: what the filters need, and its data serialised once for every
/// client (and kept small in the replay buffer).
#[derive(Debug)]
struct Published {
    seq: u64,
    kind: Kind,
    name: String,
    stage: Option<String>,
    data: String,
}

impl Published {
    fn of(e: &WatchEvent, seq: u64) -> Self {
        Self {
            seq,
            kind: e.kind,
            name: e.name.clone(),
            stage: e.stage.clone(),
            data: serde_json::to_string(e).unwrap_or_default(),
        }
    }
}

/// Which events a client wants.
#[derive(Debug, Clone, Default)]
pub struct WatchFilter {
    /// The kinds (all when empty).
    pub kinds: Vec<Kind>,
    /// Only this name (of the kinds above).
    pub name: Option<String>,
    /// Only promotions of this Stage.
    pub stage: Option<String>,
}

impl WatchFilter {
    fn wants(&self, e: &Published) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&e.kind))
            && self.name.as_ref().is_none_or(|n| *n == e.name)
            && self
                .stage
                .as_ref()
                .is_none_or(|s| e.kind != Kind::Promotion || e.stage.as_ref() == Some(s))
    }
}

struct Shared {
    events: broadcast::Sender<Arc<Published>>,
    recent: Mutex<VecDeque<Arc<Published>>>,
    /// The sequence number of the last event published.
    seq: AtomicU64,
    /// Whether the hub has read the state it diffs the first change against.
    ready: tokio::sync::watch::Sender<bool>,
}

/// Computes the changes of one service's state once for all its watchers.
pub struct WatchHub {
    handle: ServiceHandle,
    shared: Arc<Shared>,
    started: OnceLock<()>,
}

impl std::fmt::Debug for WatchHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchHub")
            .field("seq", &self.shared.seq.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl WatchHub {
    /// A hub for the service behind `handle`; it starts watching with its first client.
    pub fn new(handle: ServiceHandle) -> Self {
        Self {
            handle,
            shared: Arc::new(Shared {
                events: broadcast::channel(REPLAY).0,
                recent: Mutex::new(VecDeque::with_capacity(REPLAY)),
                seq: AtomicU64::new(0),
                ready: tokio::sync::watch::channel(false).0,
            }),
            started: OnceLock::new(),
        }
    }

    /// The sequence number of the last change published: a list's `resourceVersion`.
    /// Read it before the state, so nothing between is missed; it waits, the first time,
    /// until the hub has read the state it compares the next change with.
    pub async fn version(&self) -> u64 {
        self.start();
        let mut ready = self.shared.ready.subscribe();
        // An error means the hub stopped (the store is gone): answer what it published.
        let _ = ready.wait_for(|r| *r).await;
        self.shared.seq.load(Ordering::SeqCst)
    }

    /// Starts watching the service's state (at the first client otherwise).
    pub fn start(&self) {
        self.started.get_or_init(|| {
            let weak = Arc::downgrade(&self.shared);
            let handle = self.handle.clone();
            tokio::spawn(run(handle, weak));
        });
    }

    /// The events after `since` that `filter` wants, then every new one, as long as the
    /// client listens.
    pub fn stream(
        &self,
        since: u64,
        filter: WatchFilter,
    ) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
        self.start();
        // Subscribe before reading the backlog: an event published between is in both
        // and is sent once (sequence numbers only go up).
        let rx = self.shared.events.subscribe();
        let shared = self.shared.clone();
        let kept = backlog(&shared, since);
        let start = StreamState {
            rx,
            shared,
            filter,
            last: since,
            pending: kept.map_or_else(
                || VecDeque::from([None]),
                |b| b.into_iter().map(Some).collect(),
            ),
        };
        futures::stream::unfold(start, |mut st| async move {
            loop {
                if let Some(next) = st.pending.pop_front() {
                    match next {
                        None => return Some((Ok(reset_event()), st)),
                        Some(e) if e.seq <= st.last => continue,
                        Some(e) => {
                            st.last = e.seq;
                            if st.filter.wants(&e) {
                                return Some((Ok(sse_event(&e)), st));
                            }
                            continue;
                        }
                    }
                }
                match st.rx.recv().await {
                    Ok(e) => st.pending.push_back(Some(e)),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        match backlog(&st.shared, st.last) {
                            Some(b) => st.pending.extend(b.into_iter().map(Some)),
                            None => {
                                st.last = st.shared.seq.load(Ordering::SeqCst);
                                st.pending.push_back(None);
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }

    /// The SSE response of a watch request: events after the request's
    /// `resourceVersion` (or `Last-Event-ID`) that `filter` wants.
    pub async fn respond(&self, uri: &Uri, headers: &HeaderMap, filter: WatchFilter) -> Response {
        let given = headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .or_else(|| query_value(uri, "resourceVersion").and_then(|v| v.trim().parse().ok()));
        let since = match given {
            Some(v) => v,
            None => self.version().await,
        };
        Sse::new(self.stream(since, filter))
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response()
    }
}

struct StreamState {
    rx: broadcast::Receiver<Arc<Published>>,
    shared: Arc<Shared>,
    filter: WatchFilter,
    last: u64,
    /// Events to send (after filtering); `None` is a reset.
    pending: VecDeque<Option<Arc<Published>>>,
}

/// The kept events after `since`; `None` when some of them are no longer kept.
fn backlog(shared: &Shared, since: u64) -> Option<Vec<Arc<Published>>> {
    let recent = shared
        .recent
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let newest = shared.seq.load(Ordering::SeqCst);
    if since >= newest {
        return Some(Vec::new());
    }
    let oldest = recent.front().map_or(newest + 1, |e| e.seq);
    if since + 1 < oldest {
        return None;
    }
    Some(recent.iter().filter(|e| e.seq > since).cloned().collect())
}

fn sse_event(e: &Published) -> Event {
    let kind = match e.kind {
        Kind::Stage => "Stage",
        Kind::Warehouse => "Warehouse",
        Kind::Freight => "Freight",
        Kind::Promotion => "Promotion",
    };
    Event::default()
        .id(e.seq.to_string())
        .event(kind)
        .data(&e.data)
}

fn reset_event() -> Event {
    Event::default()
        .event("reset")
        .data(r#"{"reason":"too many changes were missed: list again"}"#)
}

/// Whether the request asks to watch (`?watch=true`).
pub fn wants_watch(uri: &Uri) -> bool {
    query_value(uri, "watch").as_deref() == Some("true")
}

/// The hub's loop: one diff per change, published to every client, until the hub is
/// dropped or the store stops.
async fn run(handle: ServiceHandle, shared: Weak<Shared>) {
    let controller = handle.controller().clone();
    let mut feed = controller.change_feed();
    let mut prev = match controller.snapshot().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "live updates: cannot read the state; starting empty");
            Arc::new(ProjectState::default())
        }
    };
    match shared.upgrade() {
        Some(s) => s.ready.send_replace(true),
        None => return,
    };
    tracing::debug!("live updates: watching");
    loop {
        if !feed.changed().await {
            return;
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = match controller.snapshot().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "live updates: cannot read the state");
                continue;
            }
        };
        let changes = diff(&controller, &prev, &now);
        prev = now;
        if changes.is_empty() {
            continue;
        }
        tracing::debug!(events = changes.len(), "live updates: publishing");
        // Serialised once here, not once per client.
        let first = shared.seq.load(Ordering::SeqCst) + 1;
        let published: Vec<Published> = changes
            .iter()
            .zip(first..)
            .map(|(e, seq)| Published::of(e, seq))
            .collect();
        let mut recent = shared
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for e in published {
            let e = Arc::new(e);
            if recent.len() == REPLAY {
                recent.pop_front();
            }
            recent.push_back(e.clone());
            shared.seq.store(e.seq, Ordering::SeqCst);
            // No receiver is not an error: nobody is watching now.
            let _ = shared.events.send(e);
        }
    }
}

fn event(action: &'static str, kind: Kind, name: &str, object: Json) -> WatchEvent {
    WatchEvent {
        action,
        kind,
        name: name.to_owned(),
        stage: None,
        object,
    }
}

/// The events that take `prev` to `now`.
fn diff(c: &crate::Controller, prev: &ProjectState, now: &ProjectState) -> Vec<WatchEvent> {
    let project = c.project();
    let mut out = Vec::new();
    for s in c.manifests().stages(project) {
        let name = &s.metadata.name;
        let (a, b) = (prev.stages.get(name), now.stages.get(name));
        if a != b {
            let action = if a.is_none() { "ADDED" } else { "MODIFIED" };
            out.push(event(
                action,
                Kind::Stage,
                name,
                resource(name, &s.spec, &b),
            ));
        }
    }
    for w in c.manifests().warehouses(project) {
        let name = &w.metadata.name;
        let (a, b) = (prev.warehouses.get(name), now.warehouses.get(name));
        if a != b {
            let action = if a.is_none() { "ADDED" } else { "MODIFIED" };
            out.push(event(
                action,
                Kind::Warehouse,
                name,
                resource(name, &w.spec, &b),
            ));
        }
    }
    for (id, record) in &now.freight {
        match prev.freight.get(id) {
            Some(old) if old == record => {}
            old => out.push(event(
                if old.is_none() { "ADDED" } else { "MODIFIED" },
                Kind::Freight,
                id.as_str(),
                to_json(record),
            )),
        }
    }
    for id in prev.freight.keys() {
        if !now.freight.contains_key(id) {
            out.push(event("DELETED", Kind::Freight, id.as_str(), Json::Null));
        }
    }
    out.extend(promotion_changes(c, prev, now));
    out
}

/// The promotions queued, running or finished since `prev`, or whose progress moved.
fn promotion_changes(
    c: &crate::Controller,
    prev: &ProjectState,
    now: &ProjectState,
) -> Vec<WatchEvent> {
    let pending = |s: &ProjectState| -> BTreeSet<(String, String)> {
        s.stages
            .iter()
            .flat_map(|(stage, st)| st.pending().map(|r| (r.name.clone(), stage.clone())))
            .collect()
    };
    let (was, is) = (pending(prev), pending(now));
    let finished_before: BTreeSet<&str> = prev.promotions.iter().map(|r| r.name.as_str()).collect();
    let mut touched: BTreeSet<(String, String)> = BTreeSet::new();
    for (name, stage) in &is {
        let running_changed = prev.stages.get(stage).map(|st| {
            (
                st.current_promotion.as_ref().map(|r| &r.name),
                &st.abort_requested,
            )
        }) != now.stages.get(stage).map(|st| {
            (
                st.current_promotion.as_ref().map(|r| &r.name),
                &st.abort_requested,
            )
        });
        if !was.contains(&(name.clone(), stage.clone()))
            || prev.progress.get(name) != now.progress.get(name)
            || running_changed
        {
            touched.insert((name.clone(), stage.clone()));
        }
    }
    for r in &now.promotions {
        if !finished_before.contains(r.name.as_str()) {
            touched.insert((r.name.clone(), r.stage.clone()));
        }
    }
    touched
        .into_iter()
        .map(|(name, stage)| {
            let plan = plan_stage(c.manifests(), c.project(), &stage).ok();
            let object = views::promotion(now, &name, plan.as_ref()).unwrap_or(Json::Null);
            let action = if was.iter().any(|(n, _)| *n == name) {
                "MODIFIED"
            } else {
                "ADDED"
            };
            let mut e = event(action, Kind::Promotion, &name, object);
            e.stage = Some(stage);
            e
        })
        .collect()
}

/// The `kind` a watch of everything asks for, parsed from `?kinds=Stage,Freight`.
pub fn kinds_param(uri: &Uri) -> Vec<Kind> {
    query_value(uri, "kinds")
        .unwrap_or_default()
        .split(',')
        .filter_map(|k| match k {
            "Stage" => Some(Kind::Stage),
            "Warehouse" => Some(Kind::Warehouse),
            "Freight" => Some(Kind::Freight),
            "Promotion" => Some(Kind::Promotion),
            _ => None,
        })
        .collect()
}
