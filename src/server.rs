//! The listeners: Kafka on TCP with a connection limit, HTTP beside it, and a graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::cluster::node::ClusterNode;
use crate::config::{Config, Listener};
use crate::connection;
use crate::coordinator::group::GroupCoordinator;
use crate::coordinator::group::GroupLimits;
use crate::coordinator::producer_ids::ProducerIdManager;
use crate::coordinator::txn::{TransactionCoordinator, TxnSettings};
use crate::handler::Broker;
use crate::http;
use crate::log::{Log, LogError};
use crate::security::tls::{Tls, TlsError};
use crate::unified::UnifiedLog;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {address}: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },
    #[error("cannot open the log: {0}")]
    Log(#[from] LogError),
    #[error("cannot join the cluster: {0}")]
    Cluster(#[from] crate::cluster::node::JoinError),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("--bootstrap-admin needs its password in {0}")]
    BootstrapAdmin(&'static str),
    #[error("--inter-broker-sasl-username needs its password in {0}")]
    InterBrokerPassword(&'static str),
    #[error("--oauthbearer-jwks-file: {0}")]
    Jwks(#[from] crate::security::jwt::JwtError),
    #[error("--oauthbearer-token-endpoint-url: this broker's token in {path}: {reason}")]
    InterBrokerToken { path: String, reason: String },
    #[error(
        "with --authorizer in a cluster, brokers reach each other on {listener} as {principal}, which must be one of --super-users"
    )]
    InterBrokerPrincipal { listener: String, principal: String },
}

/// Brokers forward to each other as the principal they have on the inter-broker listener; with
/// ACLs, the other brokers must let it do anything (as Kafka's brokers are super users).
/// `token_principal`: the principal of this broker's OAUTHBEARER token, when it has one.
fn check_inter_broker_principal(
    security: &crate::config::SecurityConfig,
    token_principal: Option<String>,
) -> Result<(), ServerError> {
    use crate::config::security::InterBrokerSasl;
    let listener = security.inter_broker();
    let principal = match (&security.inter_broker_sasl, listener.protocol.sasl(), listener.protocol.tls()) {
        (Some(InterBrokerSasl::Password { username, .. }), true, _) => username.clone(),
        (Some(InterBrokerSasl::TokenFile(_)), true, _) => token_principal.unwrap_or_default(),
        (_, _, true) => crate::security::tls::own_principal(security)?,
        _ => "ANONYMOUS".to_string(),
    };
    let principal = format!("User:{principal}");
    if security.super_users.contains(&principal) {
        return Ok(());
    }
    Err(ServerError::InterBrokerPrincipal { listener: listener.name.clone(), principal })
}

/// The principal of this broker's OAUTHBEARER token for the other brokers, checked by this
/// broker's own validator (the others share its settings): a broker whose token they would refuse
/// does not start.
async fn own_token_principal(
    path: &std::path::Path,
    validator: Option<&crate::security::jwt::JwtValidator>,
) -> Result<String, ServerError> {
    let refused = |reason: String| ServerError::InterBrokerToken { path: path.display().to_string(), reason };
    let token = tokio::fs::read_to_string(path).await.map_err(|e| refused(e.to_string()))?;
    let validator = validator.ok_or_else(|| refused("OAUTHBEARER is not one of --sasl-enabled-mechanisms".into()))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    validator.validate_fetching(token.trim(), now).await.map_err(|e| refused(e.to_string()))
}

/// How long a client gets to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long connections get to finish their in-flight requests at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens the log, serves Kafka and HTTP until `shutdown` resolves, then drains connections.
pub async fn run(mut config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    let tls = Tls::from_config(&config.security, config.http.tls)?;
    let validator = match &config.security.oauthbearer {
        Some(settings) => Some(crate::security::jwt::JwtValidator::new(settings.clone())?),
        None => None,
    };
    let mut token_principal = None;
    if config.coordinator.is_some() && config.security.inter_broker().protocol.sasl() {
        use crate::config::security::InterBrokerSasl;
        match &config.security.inter_broker_sasl {
            Some(InterBrokerSasl::Password { password: Some(_), .. }) => {}
            // The other brokers check this broker's token as this one would: check it now.
            Some(InterBrokerSasl::TokenFile(path)) => {
                token_principal = Some(own_token_principal(path, validator.as_ref()).await?);
            }
            _ => return Err(ServerError::InterBrokerPassword(crate::config::security::INTER_BROKER_SASL_PASSWORD_ENV)),
        }
    }
    if config.coordinator.is_some() && config.security.acls {
        check_inter_broker_principal(&config.security, token_principal)?;
    }
    let mut kafka = Vec::new();
    for spec in config.security.listeners.iter_mut() {
        let address = spec.bind;
        let listener = TcpListener::bind(address).await.map_err(|source| ServerError::Bind { address, source })?;
        let bound = listener.local_addr().map_err(|source| ServerError::Bind { address, source })?;
        if !spec.advertised_explicit {
            spec.advertised_port = i32::from(bound.port());
        }
        kafka.push((listener, spec.clone(), bound));
    }
    let kafka_address = kafka[0].2;
    if !config.kafka_advertised_explicit {
        config.kafka_advertised_port = i32::from(kafka_address.port());
    }
    let http = TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| ServerError::Bind { address: config.http.listen, source })?;
    let http_address = http.local_addr().map_err(|source| ServerError::Bind { address: config.http.listen, source })?;
    // In a cluster: register first (the cluster id comes from there), then open the log as a
    // cache of the cluster's.
    let cluster_node = match &config.coordinator {
        Some(_) => {
            let (host, port) = (config.kafka_advertised_host.clone(), config.kafka_advertised_port);
            Some(Arc::new(ClusterNode::join(&mut config, &host, port).await?))
        }
        None => None,
    };
    let unified = UnifiedLog::open_with(&config, cluster_node.as_ref().map(|node| node.metadata_wrapper())).await?;
    if let Some(node) = &cluster_node {
        node.sync_once(&unified).await?;
    }
    let log = unified.log().clone();
    let limits = GroupLimits::from(&config.groups);
    let offsets_retention_ms = config.groups.offsets_retention_ms();
    // A single broker coordinates every group from its own store; in a cluster, the groups of
    // the slots this broker is given, from PostgreSQL.
    let coordinator = match &cluster_node {
        Some(node) => GroupCoordinator::with_store(node.group_store(), limits, offsets_retention_ms),
        None => GroupCoordinator::open(log.clone(), limits, offsets_retention_ms).await?,
    };
    let config = Arc::new(config);
    let sink = crate::iceberg::IcebergSink::new(config.iceberg.clone());
    let cache = cluster_node.as_ref().map(|node| node.cache.clone() as Arc<dyn crate::cluster::MetadataCache>);
    let producer_ids = Arc::new(ProducerIdManager::new(log.metadata_store()));
    // A single broker coordinates every transaction from its own store; in a cluster, the ids of
    // the group slots this broker is given, from PostgreSQL, with markers to each leader.
    let txn_settings = TxnSettings::from(&config.groups);
    // One caller of the other brokers (its kept connections shared by the HTTP door's forwarding
    // and the transaction coordinator's markers and verifications).
    let forwarder = cache.as_ref().map(|_| crate::handler::inter_broker_forwarder(&config));
    let transactions = match (&cluster_node, &cache, &forwarder) {
        (Some(node), Some(cache), Some(forwarder)) => {
            let markers: Arc<dyn crate::coordinator::txn::MarkerWriter> =
                Arc::new(crate::cluster::txn::ClusterMarkers {
                    log: log.clone(),
                    groups: coordinator.clone(),
                    cache: cache.clone(),
                    forwarder: forwarder.clone(),
                });
            Some(TransactionCoordinator::with_seams(
                log.clone(),
                producer_ids.clone(),
                coordinator.clone(),
                txn_settings,
                node.txn_store(),
                markers,
                Some(crate::cluster::cache::GROUP_SLOTS),
            ))
        }
        _ => Some(
            TransactionCoordinator::open(log.clone(), producer_ids.clone(), coordinator.clone(), txn_settings).await?,
        ),
    };
    let broker = Arc::new(Broker::new(
        unified.clone(),
        coordinator.clone(),
        config.clone(),
        sink.clone(),
        cache,
        forwarder.clone(),
        producer_ids,
        transactions.clone(),
    ));
    if config.http.auth != "none" {
        broker.credentials.ensure_http_token_key().await?;
    }
    broker.credentials.prefetch_jwks().await;
    if let Some(name) = &config.security.bootstrap_admin {
        let env = crate::config::security::BOOTSTRAP_ADMIN_PASSWORD_ENV;
        let password = std::env::var(env).ok().filter(|p| !p.is_empty()).ok_or(ServerError::BootstrapAdmin(env))?;
        if broker.credentials.ensure_user(name, &password).await? {
            tracing::info!(user = %name, "bootstrap admin created (SCRAM-SHA-256 and SCRAM-SHA-512)");
        }
    }
    // Each subsystem reads its own state when /metrics is scraped.
    broker.metrics.register_collector(crate::log::metrics::LogCollector { log: log.clone() });
    broker.metrics.register_collector(crate::coordinator::group::metrics::GroupCollector {
        coordinator: coordinator.clone(),
        log: log.clone(),
    });
    broker.metrics.register_collector(crate::unified::metrics::TierCollector { unified: unified.clone() });
    if config.security.acls {
        let authorizer = broker.service.authorizer();
        broker.metrics.register_collector(crate::service::authorizer::AuthorizerCollector { authorizer });
    }
    if let Some(transactions) = transactions.clone() {
        broker
            .metrics
            .register_collector(crate::coordinator::txn::metrics::TxnCollector { transactions, log: log.clone() });
    }
    broker
        .metrics
        .register_collector(crate::iceberg::metrics::IcebergCollector { sink: sink.clone(), log: log.clone() });
    if let Some(forwarder) = forwarder {
        broker.metrics.register_collector(crate::cluster::forward::ForwarderCollector { forwarder });
    }
    let (stop, stopped) = watch::channel(false);
    if let Some(wal) = unified.wal() {
        // Another process claimed this node's write-ahead log, or a successor took its
        // partitions over: it acknowledges nothing more, and must not serve stale reads either.
        let mut fenced = wal.writer().fenced();
        tokio::spawn(async move {
            if fenced.wait_for(|fenced| *fenced).await.is_ok() {
                tracing::error!("another broker sealed this broker's write-ahead log; stopping");
                std::process::exit(3);
            }
        });
    }

    let mut background = JoinSet::new();
    let https = tls.clone().filter(|_| broker.config.http.tls);
    background.spawn(http::serve(http, https, broker.clone(), stopped.clone()));
    background.spawn(retention_loop(
        log.clone(),
        config.log.retention_check_interval_ms,
        config.log.producer_id_expiration_ms,
        stopped.clone(),
    ));
    background.spawn(crate::unified::remote_log_manager::run(unified.clone(), stopped.clone()));
    // The Iceberg sink has its own thread; it is awaited at shutdown so that the log outlives it.
    let sink_task = tokio::spawn(crate::iceberg::run(sink, unified.clone(), stopped.clone()));
    background.spawn(
        coordinator
            .clone()
            .run_timers(Duration::from_millis(config.groups.offsets_retention_check_interval_ms), stopped.clone()),
    );
    // The cluster loop hands every partition over when stopped, before connections drain.
    let cluster_task = cluster_node.map(|node| {
        tokio::spawn(node.run(unified.clone(), coordinator.clone(), transactions.clone(), stopped.clone()))
    });
    let listeners: Vec<String> = kafka.iter().map(|(_, spec, bound)| format!("{}://{bound}", spec.name)).collect();
    let listeners = listeners.join(",");
    tracing::info!(kafka = %kafka_address, http = %http_address, %listeners, "zombi is serving");
    println!("zombi listening kafka={kafka_address} http={http_address} listeners={listeners}");

    let (closing, closing_watch) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(broker.config.network.connections_max));
    let loops: Vec<_> = kafka
        .into_iter()
        .map(|(listener, spec, _)| {
            let accepting = Accepting {
                broker: broker.clone(),
                tls: tls.clone(),
                permits: permits.clone(),
                stopped: stopped.clone(),
                closing: closing_watch.clone(),
            };
            tokio::spawn(accept_loop(listener, spec, accepting))
        })
        .collect();
    shutdown.await;
    let _ = closing.send(true);
    let mut connections = Vec::new();
    for accepting in loops {
        if let Ok(set) = accepting.await {
            connections.push(set);
        }
    }
    let _ = stop.send(true);
    if let Some(task) = cluster_task {
        let _ = task.await;
    }
    drain(connections).await;
    background.shutdown().await;
    if tokio::time::timeout(DRAIN_TIMEOUT, sink_task).await.is_err() {
        tracing::warn!("the iceberg sink was still committing at the drain timeout");
    }
    log.close().await;
    tracing::info!("zombi stopped");
    Ok(())
}

/// What each listener's accept loop shares.
struct Accepting {
    broker: Arc<Broker>,
    tls: Option<Arc<Tls>>,
    /// At most `connections_max` connections over every listener.
    permits: Arc<Semaphore>,
    /// The broker is stopping: connections finish their requests and close.
    stopped: watch::Receiver<bool>,
    /// No more connections are accepted.
    closing: watch::Receiver<bool>,
}

async fn accept_loop(listener: TcpListener, spec: Listener, accepting: Accepting) -> JoinSet<()> {
    let Accepting { broker, tls, permits, stopped, mut closing } = accepting;
    let mut connections = JoinSet::new();
    let tls = if spec.protocol.tls() { tls } else { None };
    let name: Arc<str> = Arc::from(spec.name.as_str());
    let sasl = spec.protocol.sasl();
    loop {
        // Backpressure: a permit is taken before accepting, so at most connections_max are served.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
            _ = closing.wait_for(|closing| *closing) => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = closing.wait_for(|closing| *closing) => break,
        };
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((stream, peer)) => {
                let span = tracing::info_span!("connection", %peer, listener = %name);
                let broker = broker.clone();
                let stopped = stopped.clone();
                let name = name.clone();
                let acceptor = tls.as_ref().map(|tls| tls.acceptor());
                connections.spawn(
                    async move {
                        match acceptor {
                            None => connection::serve(stream, &name, sasl, broker, stopped).await,
                            Some(acceptor) => {
                                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                    Ok(Ok(stream)) => connection::serve(stream, &name, sasl, broker, stopped).await,
                                    Ok(Err(error)) => tracing::info!(%error, "TLS handshake failed"),
                                    Err(_) => tracing::info!("TLS handshake timed out"),
                                }
                            }
                        }
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
            Err(error) => {
                // Out of file descriptors and similar: wait a moment rather than spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    connections
}

async fn drain(connections: Vec<JoinSet<()>>) {
    let all_done = async {
        for mut set in connections {
            while set.join_next().await.is_some() {}
        }
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, all_done).await.is_err() {
        tracing::warn!("connections still open after the drain timeout");
    }
}

async fn retention_loop(log: Log, interval_ms: u64, producer_expiration_ms: i64, mut stopped: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(Duration::from_millis(interval_ms.max(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.changed() => return,
        }
        if let Err(error) = log.enforce_retention().await {
            tracing::warn!(%error, "retention pass failed");
        }
        match log.expire_producers(producer_expiration_ms).await {
            Ok(0) => {}
            Ok(expired) => tracing::debug!(expired, "idle producers' state expired"),
            Err(error) => tracing::warn!(%error, "cannot expire idle producers' state"),
        }
        if let Err(error) = log.expire_idempotency(http::IDEMPOTENCY_WINDOW_MS).await {
            tracing::warn!(%error, "cannot forget old idempotency keys yet");
        }
    }
}
