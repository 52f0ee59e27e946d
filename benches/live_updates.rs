//! Live-update load: 200 server-sent-event clients on one project's watch while
//! promotions run, on loopback, the server in this process.
//!
//! The service: one Warehouse over a `MemorySource` image repository and 20 Stages (4 dev
//! fed by the Warehouse, 8 staging fed by dev, 8 prod fed by staging), all auto-promoting
//! through two custom steps that succeed at once. 200 clients open
//! `/v1beta1/projects/live/watch?resourceVersion=0`; then, for `LIVE_SECONDS` (default 60)
//! seconds, a new image tag is pushed to the source every `LIVE_PUSH_MS` (default 500) ms
//! and the Warehouse is refreshed (`ServiceHandle::refresh`), so every push becomes
//! Freight that is promoted through all 20 Stages. Then the load stops, the service
//! settles, and every client must have received every event id from 1 to the hub's last
//! (a list's `resourceVersion`), in order, each once: ids must go up by exactly one,
//! no `reset` event, and every client's running hash of (id, event, data length) must be
//! the same.
//!
//! Reported: clients, events, events/s delivered in total, the delivery lag (from the first
//! client receiving an event to each client receiving it; p50, p99, max), the process's
//! RSS before the service and clients start, after, and its peak (the server runs in this
//! process; the clients keep only counters), and events lost. Exits non-zero when any
//! event was lost, duplicated or out of order.
//!
//! Run: `cargo bench --bench live_updates` (`LIVE_SECONDS=10` for a quick run,
//! `LIVE_CLIENTS`, `LIVE_PUSH_MS`).
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)] // a benchmark

#[path = "support/http_client.rs"]
mod http_client;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kargo::Controller;
use kargo::core::loader::ManifestSet;
use kargo::core::pipeline::MemoryStore;
use kargo::core::runner::Runner;
use kargo::core::source::SourceRegistry;
use kargo::core::step::{Step, StepContext, StepError, StepOutcome, StepRegistry};
use kargo::server::access::{AccessTable, hash_token};
use kargo::server::{ServerOptions, router};
use kargo::service::{Service, ServiceOptions};
use kargo::sources::memory::{MemorySource, image};
use kargo::sources::webhook::WebhookRouter;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

const PROJECT: &str = "live";
const REPO: &str = "registry.example/acme/app";
const TOKEN: &str = "live-admin-t0ken";
/// The most event ids the lag table holds.
const MAX_EVENTS: usize = 1 << 18;
/// Lag histogram: buckets of 50 µs up to 5 s (slower deliveries count in the max only).
const BUCKET_US: u64 = 50;
const BUCKETS: usize = 100_000;

fn env_or(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: expected a whole number")),
        Err(_) => default,
    }
}

fn manifests() -> String {
    let mut yaml = format!(
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: Project\nmetadata: {{name: {PROJECT}}}\n---\n\
         apiVersion: kargo.akuity.io/v1alpha1\nkind: ProjectConfig\n\
         metadata: {{name: {PROJECT}, namespace: {PROJECT}}}\nspec:\n  promotionPolicies:\n\
         \x20 - stageSelector: {{name: \"glob:*\"}}\n    autoPromotionEnabled: true\n---\n\
         apiVersion: kargo.akuity.io/v1alpha1\nkind: Warehouse\n\
         metadata: {{name: app, namespace: {PROJECT}}}\nspec:\n  interval: 24h\n\
         \x20 subscriptions:\n  - image: {{repoURL: {REPO}}}\n"
    );
    let mut stages: Vec<(String, Option<String>)> = Vec::new();
    for i in 0..4 {
        stages.push((format!("dev-{i}"), None));
    }
    for i in 0..8 {
        stages.push((format!("staging-{i}"), Some(format!("dev-{}", i / 2))));
    }
    for i in 0..8 {
        stages.push((format!("prod-{i}"), Some(format!("staging-{i}"))));
    }
    for (name, up) in stages {
        let sources = match up {
            None => "{direct: true}".to_owned(),
            Some(u) => format!("{{stages: [{u}]}}"),
        };
        yaml.push_str(&format!(
            "---\napiVersion: kargo.akuity.io/v1alpha1\nkind: Stage\n\
             metadata: {{name: {name}, namespace: {PROJECT}}}\nspec:\n  requestedFreight:\n\
             \x20 - origin: {{kind: Warehouse, name: app}}\n    sources: {sources}\n\
             \x20 promotionTemplate:\n    spec:\n      steps:\n\
             \x20     - as: render\n        uses: noop\n\
             \x20     - as: push\n        uses: noop\n"
        ));
    }
    yaml
}

/// A step that succeeds at once.
struct Noop;

#[derive(serde::Deserialize)]
struct NoConfig {}

#[async_trait]
impl Step for Noop {
    const KIND: &'static str = "noop";
    type Config = NoConfig;

    async fn run(&self, _ctx: &StepContext, _cfg: NoConfig) -> Result<StepOutcome, StepError> {
        Ok(StepOutcome::succeeded())
    }
}

fn kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(field)
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// What all clients share: when each event id was first received, the lag histogram.
struct Shared {
    start: Instant,
    first_seen_us: Vec<AtomicU64>,
    lag: Vec<AtomicU64>,
    max_lag_us: AtomicU64,
    deliveries: AtomicU64,
    /// Clients whose stream is open and past its headers.
    connected: AtomicUsize,
    /// Promotions seen finishing by the first client.
    promotions_finished: AtomicU64,
}

impl Shared {
    fn received(&self, id: u64) {
        let now = self.start.elapsed().as_micros() as u64 + 1;
        let slot = &self.first_seen_us[id as usize];
        let first = match slot.compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => now,
            Err(first) => first,
        };
        let lag = now.saturating_sub(first);
        self.lag[((lag / BUCKET_US) as usize).min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        self.max_lag_us.fetch_max(lag, Ordering::Relaxed);
        self.deliveries.fetch_add(1, Ordering::Relaxed);
    }

    fn percentile(&self, p: f64) -> u64 {
        let counts: Vec<u64> = self.lag.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        let want = ((total as f64) * p).ceil() as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= want.max(1) {
                return (i as u64 + 1) * BUCKET_US;
            }
        }
        0
    }
}

/// One client's view of its stream.
#[derive(Debug, Default)]
struct Seen {
    first: Option<u64>,
    last: u64,
    events: u64,
    /// Ids that did not follow the previous one by exactly one.
    out_of_order: u64,
    resets: u64,
    hash: u64,
    /// Why the stream ended early, if it did.
    error: Option<String>,
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Reads the stream until `stop` is set and the client has `until` (or the stream ends).
async fn client(
    observer: bool,
    addr: SocketAddr,
    shared: Arc<Shared>,
    seen: Arc<tokio::sync::Mutex<Seen>>,
) -> Result<(), String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let msg = format!(
        "GET /v1beta1/projects/{PROJECT}/watch?resourceVersion=0 HTTP/1.0\r\nHost: {addr}\r\n\
         Accept: text/event-stream\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    );
    s.write_all(msg.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .await
        .map_err(|e| e.to_string())?;
    if !line.contains(" 200 ") {
        return Err(format!("watch answered {line:?}"));
    }
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the stream closed in its headers".into());
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
    }
    shared.connected.fetch_add(1, Ordering::SeqCst);
    let (mut id, mut event, mut data_len) = (None::<u64>, String::new(), 0usize);
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the stream ended".into());
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            if event.is_empty() && id.is_none() {
                continue;
            }
            let mut st = seen.lock().await;
            if event == "reset" {
                st.resets += 1;
            }
            if let Some(i) = id {
                if i as usize >= MAX_EVENTS {
                    return Err(format!("event id {i} beyond the table ({MAX_EVENTS})"));
                }
                shared.received(i);
                if st.first.is_none() {
                    st.first = Some(i);
                } else if i != st.last + 1 {
                    st.out_of_order += 1;
                }
                st.last = i;
                st.events += 1;
                let mut h = fnv(st.hash, &i.to_le_bytes());
                h = fnv(h, event.as_bytes());
                st.hash = fnv(h, &data_len.to_le_bytes());
            }
            drop(st);
            (id, event, data_len) = (None, String::new(), 0);
            continue;
        }
        if l.starts_with(':') {
            continue;
        }
        let (field, value) = l.split_once(':').unwrap_or((l, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = value.parse().ok(),
            "event" => value.clone_into(&mut event),
            "data" => {
                data_len += value.len() + 1;
                if observer && event == "Promotion" && value.contains("\"finished\":true") {
                    shared.promotions_finished.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {}
        }
    }
}

/// The hub's last event id: a list's `resourceVersion`.
fn resource_version(addr: SocketAddr) -> u64 {
    let mut c = http_client::Client::connect(addr, &format!("Bearer {TOKEN}"));
    let (status, body) = c.get(&format!("/v1beta1/projects/{PROJECT}/stages?limit=1"));
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    json["resourceVersion"].as_str().unwrap().parse().unwrap()
}

fn main() {
    let seconds = env_or("LIVE_SECONDS", 60);
    let clients = env_or("LIVE_CLIENTS", 200) as usize;
    let push_ms = env_or("LIVE_PUSH_MS", 500);
    let rss_start = kib("VmRSS:");

    // The server's runtime and the clients' runtime: separate threads, the same 2 cores.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("server")
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("clients")
        .enable_all()
        .build()
        .unwrap();

    let set = ManifestSet::from_yaml_str("live.yaml", &manifests()).unwrap();
    let stages = set.stages(PROJECT).count();
    let memory = MemorySource::new();
    memory.set_images(REPO, vec![image("1.0.0", &format!("sha256:{:064x}", 0))]);
    let mut sources = SourceRegistry::new();
    memory.register_into(&mut sources).unwrap();
    let mut steps = StepRegistry::new();
    steps.register(Noop).unwrap();
    let controller = Controller::new(
        set,
        PROJECT,
        sources,
        Runner::new(steps),
        Arc::new(MemoryStore::new()),
    )
    .unwrap();
    let tokens = format!(
        "tokens:\n- {{name: ada, sha256: {}, roles: [{{role: admin, projects: [{PROJECT}]}}]}}\n",
        hash_token(TOKEN),
    );
    let access = AccessTable::from_yaml_str("tokens.yaml", &tokens).unwrap();
    let secrets: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let service = Service::new(controller, ServiceOptions::default());
    let handle = service.handle();
    let addr = server_rt.block_on(async {
        let app = router(
            handle.clone(),
            WebhookRouter::from_receivers(PROJECT, &[], &secrets),
            ServerOptions::default().with_access(access),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    });
    // The hub has read the (empty) state before the service changes it: every change
    // from here on is an event, and `resourceVersion=0` replays them all.
    assert_eq!(resource_version(addr), 0);
    // The load generator's tables (2.8 MiB) before the RSS is read, so the differences
    // are the server's and the connections'.
    let shared = Arc::new(Shared {
        start: Instant::now(),
        first_seen_us: (0..MAX_EVENTS).map(|_| AtomicU64::new(0)).collect(),
        lag: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        max_lag_us: AtomicU64::new(0),
        deliveries: AtomicU64::new(0),
        connected: AtomicUsize::new(0),
        promotions_finished: AtomicU64::new(0),
    });
    let rss_ready = kib("VmRSS:");

    let seen: Vec<Arc<tokio::sync::Mutex<Seen>>> = (0..clients).map(|_| Arc::default()).collect();
    let tasks: Vec<_> = seen
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let (shared, st) = (shared.clone(), st.clone());
            client_rt.spawn(async move {
                if let Err(e) = client(i == 0, addr, shared, st.clone()).await {
                    st.lock().await.error = Some(e);
                }
            })
        })
        .collect();
    let t = Instant::now();
    while shared.connected.load(Ordering::SeqCst) < clients {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "only {} of {clients} clients connected in 30 s",
            shared.connected.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let rss_connected = kib("VmRSS:");
    eprintln!(
        "{clients} clients connected in {:?}; load for {seconds} s, a new tag every {push_ms} ms",
        t.elapsed()
    );

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service_task = server_rt.spawn(service.run(async move {
        let _ = stopped.await;
    }));

    // The load: a new tag and a refresh at a steady rate.
    let load_start = Instant::now();
    let mut pushed = 0u64;
    while load_start.elapsed() < Duration::from_secs(seconds) {
        pushed += 1;
        memory.push_image(
            REPO,
            image(
                &format!("1.{}.{}", pushed / 1000, pushed % 1000),
                &format!("sha256:{pushed:064x}"),
            ),
        );
        handle.refresh("app", "load generator");
        let next = load_start + Duration::from_millis(push_ms * pushed);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let load = load_start.elapsed();

    // Settle: the service finishes the promotions, the hub stops publishing, every client
    // reaches the hub's last id.
    let settle = Instant::now();
    let mut last = resource_version(addr);
    let mut quiet_since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = resource_version(addr);
        if now != last {
            last = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() > Duration::from_secs(2) {
            break;
        }
        assert!(
            settle.elapsed() < Duration::from_secs(120),
            "the hub still publishes after 120 s"
        );
    }
    let caught_up = |seen: &[Arc<tokio::sync::Mutex<Seen>>]| {
        seen.iter().all(|s| {
            let s = s.blocking_lock();
            s.last >= last || s.error.is_some()
        })
    };
    let wait = Instant::now();
    while !caught_up(&seen) && wait.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let rss_end = kib("VmRSS:");
    let hwm = kib("VmHWM:");
    let state = server_rt.block_on(handle.controller().state()).unwrap();
    let freight = state.freight.len();
    let promotions_done: usize = state
        .stages
        .values()
        .filter_map(|s| s.last_promotion.as_ref())
        .count();

    // Every client: ids 1..=last, each once, in order, the same hash.
    let mut lost = 0u64;
    let mut bad_clients = Vec::new();
    let mut hashes = BTreeMap::new();
    for (i, s) in seen.iter().enumerate() {
        let s = s.blocking_lock();
        let missing = last.saturating_sub(s.events);
        let ok = s.first == Some(1)
            && s.last == last
            && s.events == last
            && s.out_of_order == 0
            && s.resets == 0
            && s.error.is_none();
        if !ok {
            lost += missing.max(1);
            bad_clients.push(format!(
                "client {i}: first {:?}, last {}, events {}, out of order {}, resets {}, error {:?}",
                s.first, s.last, s.events, s.out_of_order, s.resets, s.error
            ));
        }
        *hashes.entry(s.hash).or_insert(0usize) += 1;
    }
    let deliveries = shared.deliveries.load(Ordering::SeqCst);
    let ms = |us: u64| format!("{:.1} ms", us as f64 / 1000.0);
    println!(
        "live_updates: {stages} Stages, {clients} clients, one new tag every {push_ms} ms for {load:.1?}"
    );
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| tags pushed (refreshes) | {pushed} |");
    println!("| Freight at the end | {freight} |");
    println!("| Stages that finished a promotion | {promotions_done} of {stages} |");
    println!(
        "| promotions finished (Promotion events with `finished: true`, first client) | {} |",
        shared.promotions_finished.load(Ordering::SeqCst)
    );
    println!("| events published (hub's last id) | {last} |");
    println!("| events delivered (all clients) | {deliveries} |");
    println!(
        "| events/s delivered in total (over the load) | {:.0} |",
        deliveries as f64 / load.as_secs_f64()
    );
    println!(
        "| events/s published (over the load) | {:.1} |",
        last as f64 / load.as_secs_f64()
    );
    println!("| delivery lag p50 | {} |", ms(shared.percentile(0.50)));
    println!("| delivery lag p99 | {} |", ms(shared.percentile(0.99)));
    println!(
        "| delivery lag max | {} |",
        ms(shared.max_lag_us.load(Ordering::SeqCst))
    );
    println!(
        "| RSS: process start / server ready / {clients} clients connected / end / peak | {} / {} / {} / {} / {} MiB |",
        rss_start / 1024,
        rss_ready / 1024,
        rss_connected / 1024,
        rss_end / 1024,
        hwm / 1024
    );
    println!(
        "| distinct event sequences among clients | {} |",
        hashes.len()
    );
    println!("| events lost | {lost} |");
    drop(stop);
    let _ = server_rt.block_on(service_task);
    for t in tasks {
        t.abort();
    }
    if lost > 0 || hashes.len() != 1 {
        for b in bad_clients.iter().take(10) {
            eprintln!("{b}");
        }
        eprintln!(
            "FAILED: {} clients did not receive every event once in order",
            bad_clients.len()
        );
        std::process::exit(1);
    }
}
