//! One broker connection ([`Link`]): connect (TCP or TLS, heartbeat, connect timeout), open a
//! channel in confirm mode, declare what the config asks for, publish messages and wait for
//! the broker's confirms, all behind blocking calls with a deadline.
//!
//! Connecting itself is [`Endpoint`] (the resolved target, its password and TLS settings read
//! once, heartbeat, deadline): the sink's [`Link`] and `consume`'s AMQP source
//! (`crate::consume::amqp`) open their connections with it, so both tiers speak to RabbitMQ
//! with the same TLS, credentials and timeouts.
//!
//! The async client is contained here: every call is `async_io::block_on` over lapin's futures
//! raced against an `async_io::Timer`, so the rest of the program stays threads and channels.
//! lapin runs its own I/O thread per connection (and its default executor's threads); nothing
//! here spawns tasks of its own.
//!
//! A connection that failed in any way (an error, a timeout, a close by the broker) is dropped;
//! the next delivery opens a new one, so the delivery stage's backoff is the reconnect backoff.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::tcp::{HandshakeResult, RustlsConnector, TcpStream};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::sink::record::Record;
use crate::config::{AmqpDestination, AmqpTarget, ConfigError, ExchangeType, QueueType};

/// What the broker said about one published message.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `basic.ack`: the broker has it (persisted, for a durable queue).
    Acked,
    /// `basic.nack`, a closed channel or no answer in time: send it again.
    Failed(String),
}

/// A message the broker returned (`basic.return`: no queue bound for its routing key).
#[derive(Debug, PartialEq, Eq)]
pub struct Returned {
    pub message_id: String,
    pub reason: String,
}

/// What to declare at each connect.
#[derive(Debug, Clone)]
struct Declare {
    exchange: Option<ExchangeType>,
    queue: Option<(String, QueueType, String)>,
}

/// Where and how to connect: one resolved [`AmqpTarget`] with its password and TLS
/// configuration (read at construction), the heartbeat and the deadline of every call.
pub struct Endpoint {
    pub target: AmqpTarget,
    password: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    heartbeat: u16,
    pub timeout: Duration,
}

pub struct Link {
    pub target: AmqpTarget,
    endpoint: Endpoint,
    declare: Declare,
    content_type: &'static str,
    open: Option<(Connection, Channel)>,
}

/// Runs `fut` to completion on this thread, or gives up after `timeout`.
pub fn within<T>(timeout: Duration, what: &str, fut: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    async_io::block_on(futures_lite::future::or(fut, async move {
        async_io::Timer::after(timeout).await;
        Err(format!("{what}: no answer from the broker within {}s", timeout.as_secs()))
    }))
}

impl Endpoint {
    /// Reads the password file and builds the TLS configuration; connects nothing.
    pub fn new(target: AmqpTarget, heartbeat_secs: u64, timeout_secs: u64) -> Result<Endpoint, ConfigError> {
        let password = match &target.password_file {
            Some(pf) => crate::config::read_secret(pf)
                .map_err(|e| ConfigError::new(format!("[{}] password_file: {}", target.section, e.message)).with_key(format!("{}.password_file", target.section)))?,
            None => "guest".to_string(),
        };
        let tls = if target.tls {
            Some(super::tls::client_config(&target).map_err(|e| ConfigError::new(format!("[{}] {}", target.section, e.message)))?)
        } else {
            None
        };
        Ok(Endpoint { target, password, tls, heartbeat: heartbeat_secs.min(u16::MAX as u64) as u16, timeout: Duration::from_secs(timeout_secs) })
    }

    fn uri(&self) -> AMQPUri {
        let host = self.target.server.trim_start_matches('[').trim_end_matches(']').to_string();
        AMQPUri {
            scheme: if self.target.tls { AMQPScheme::AMQPS } else { AMQPScheme::AMQP },
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo {
                    username: self.target.user.clone().unwrap_or_else(|| "guest".into()),
                    password: self.password.clone(),
                },
                host,
                port: self.target.port,
            },
            vhost: self.target.vhost.clone(),
            query: AMQPQueryString {
                heartbeat: Some(self.heartbeat),
                connection_timeout: Some(self.timeout.as_millis() as u64),
                ..AMQPQueryString::default()
            },
        }
    }

    /// Connects (TCP or TLS, within the timeout) and opens one channel. `role` names the
    /// connection in the broker's management views (`qumulo-audit-broker <role> pid N`); a
    /// connection error later is logged with `describe`.
    // The connect closure's type (returning tcp-stream's large `HandshakeError`) is lapin's.
    #[allow(clippy::result_large_err)]
    pub fn open(&self, role: &str, describe: &str) -> Result<(Connection, Channel), String> {
        let uri = self.uri();
        let host = uri.authority.host.clone();
        let port = uri.authority.port;
        let tls = self.tls.clone();
        let timeout = self.timeout;
        let connect = Box::new(move |_: &AMQPUri| -> HandshakeResult {
            let stream = TcpStream::connect_timeout((host.as_str(), port), timeout)?;
            let stream = match tls {
                Some(cfg) => stream.into_rustls(&RustlsConnector::from(cfg), &host)?,
                None => stream,
            };
            stream.set_nonblocking(true)?;
            Ok(stream)
        });
        let name = format!("qumulo-audit-broker {role}pid {}", std::process::id());
        let props = ConnectionProperties::default().with_connection_name(LongString::from(name));
        let opened = within(self.timeout, "connect", async move {
            let conn = Connection::connector(uri, connect, props).await.map_err(|err| format!("connect: {err}"))?;
            let ch = conn.create_channel().await.map_err(|err| format!("open channel: {err}"))?;
            Ok((conn, ch))
        })
        .map_err(|err| format!("{describe}: {err}"))?;
        let describe = describe.to_string();
        opened.0.on_error(move |err| log::warn!("{describe}: connection error: {err}"));
        Ok(opened)
    }
}

impl Link {
    /// Reads the password file and builds the TLS configuration; connects nothing.
    pub fn new(d: &AmqpDestination, target: AmqpTarget, content_type: &'static str) -> Result<Link, ConfigError> {
        let declare = Declare {
            exchange: d.declare_exchange.then_some(d.exchange_type),
            queue: d.queue.clone().map(|q| (q, d.queue_type, d.binding_key.clone())),
        };
        let endpoint = Endpoint::new(target.clone(), d.heartbeat_secs, d.timeout_secs)?;
        Ok(Link { target, endpoint, declare, content_type, open: None })
    }

    /// Drops the connection (the next delivery reconnects).
    pub fn disconnect(&mut self) {
        if let Some((conn, _)) = self.open.take() {
            // A polite close, briefly; a dead broker must not hold us up.
            let _ = within(Duration::from_secs(2), "close", async move { conn.close(200, "bye").await.map_err(|e| e.to_string()) });
        }
    }

    /// Opens the connection and the confirm-mode channel (and declares) unless already open.
    fn channel(&mut self) -> Result<Channel, String> {
        if let Some((conn, ch)) = &self.open {
            if conn.status().connected() && ch.status().connected() {
                return Ok(ch.clone());
            }
            log::info!("{}: connection lost ({:?}); reconnecting", self.target.describe(), conn.status().state());
            self.open = None;
        }
        let (conn, ch) = self.endpoint.open("", &self.target.describe())?;
        let declare = self.declare.clone();
        let exchange = self.target.exchange.clone();
        let target = self.target.describe();
        let declared = within(self.endpoint.timeout, "connect", async {
            let e = |what: &str, err: lapin::Error| format!("{what}: {err}");
            ch.confirm_select(ConfirmSelectOptions::default()).await.map_err(|err| e("confirm.select", err))?;
            if let Some(kind) = declare.exchange {
                let opts = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
                ch.exchange_declare(&exchange, exchange_kind(kind), opts, FieldTable::default())
                    .await
                    .map_err(|err| e(&format!("declare exchange {exchange:?}"), err))?;
            }
            if let Some((queue, qtype, binding)) = &declare.queue {
                let mut args = FieldTable::default();
                let t = match qtype {
                    QueueType::Quorum => "quorum",
                    QueueType::Classic => "classic",
                };
                args.insert("x-queue-type".into(), AMQPValue::LongString(t.into()));
                let opts = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
                ch.queue_declare(queue, opts, args).await.map_err(|err| e(&format!("declare queue {queue:?}"), err))?;
                ch.queue_bind(queue, &exchange, binding, QueueBindOptions::default(), FieldTable::default())
                    .await
                    .map_err(|err| e(&format!("bind queue {queue:?}"), err))?;
            }
            Ok(())
        });
        declared.map_err(|err| format!("{target}: {err}"))?;
        log::info!("connected to {}", self.target.describe());
        self.open = Some((conn, ch.clone()));
        Ok(ch)
    }

    /// Publishes `records` (mandatory, persistent) and waits for every confirm. Returns one
    /// outcome per record, in order, and the messages the broker returned as unroutable (a
    /// returned message is also acked: the caller matches returns by message id).
    pub fn publish(&mut self, records: &[Record<'_>]) -> (Vec<Outcome>, Vec<Returned>) {
        let ch = match self.channel() {
            Ok(ch) => ch,
            Err(e) => return (records.iter().map(|_| Outcome::Failed(e.clone())).collect(), Vec::new()),
        };
        let exchange = self.target.exchange.clone();
        let content_type = self.content_type;
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(records.len());
        let mut returned = Vec::new();
        let result = within(self.endpoint.timeout, "publisher confirms", async {
            let mut confirms = Vec::with_capacity(records.len());
            for r in records {
                let props = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type(content_type.into())
                    .with_message_id(r.message_id.into())
                    .with_timestamp(r.timestamp)
                    .with_app_id("qumulo-audit-broker".into());
                let opts = BasicPublishOptions { mandatory: true, immediate: false };
                match ch.basic_publish(&exchange, r.routing_key, opts, r.body, props).await {
                    Ok(c) => confirms.push(c),
                    Err(e) => return Err(format!("publish: {e}")),
                }
            }
            for c in confirms {
                let outcome = match c.await {
                    Ok(Confirmation::Ack(ret)) => {
                        if let Some(m) = ret {
                            returned.push(returned_of(&m));
                        }
                        Outcome::Acked
                    }
                    Ok(Confirmation::Nack(ret)) => {
                        if let Some(m) = ret {
                            returned.push(returned_of(&m));
                        }
                        Outcome::Failed("the broker refused the message (basic.nack)".into())
                    }
                    Ok(Confirmation::NotRequested) => Outcome::Failed("channel not in confirm mode".into()),
                    Err(e) => Outcome::Failed(format!("confirm: {e}")),
                };
                outcomes.push(outcome);
            }
            Ok(())
        });
        if let Err(e) = result {
            let e = format!("{}: {e}", self.target.describe());
            outcomes.resize_with(records.len(), || Outcome::Failed(e.clone()));
        }
        if outcomes.iter().any(|o| matches!(o, Outcome::Failed(_))) {
            // The channel's state is unknown (or closed by the broker): start afresh.
            self.open = None;
        }
        if !returned.is_empty() && self.declare.queue.is_some() {
            // The queue this destination declares and binds is gone (deleted, expired by a
            // policy): reconnect, so the retry declares and binds it again instead of counting
            // returns towards the dead-letter file.
            self.open = None;
        }
        (outcomes, returned)
    }

    /// `check --connect`: connect, open a channel, and check the exchange exists (passive declare).
    pub fn check(&mut self) -> Result<String, String> {
        let declare = std::mem::replace(&mut self.declare, Declare { exchange: None, queue: None });
        let opened = self.channel();
        self.declare = declare;
        let ch = opened?;
        let exchange = self.target.exchange.clone();
        let passive = ExchangeDeclareOptions { passive: true, ..ExchangeDeclareOptions::default() };
        let exists = within(self.endpoint.timeout, "exchange check", async {
            ch.exchange_declare(&exchange, ExchangeKind::Topic, passive, FieldTable::default()).await.map_err(|e| e.to_string())
        });
        let what = self.target.describe();
        self.disconnect();
        match exists {
            Ok(()) => Ok(format!("{what}: connected; the exchange exists")),
            Err(_) if self.declare.exchange.is_some() => {
                Ok(format!("{what}: connected; the exchange does not exist yet (declare_exchange = true creates it)"))
            }
            Err(e) => Err(format!("{what}: connected, but the exchange cannot be used: {e}")),
        }
    }
}

fn returned_of(m: &lapin::message::BasicReturnMessage) -> Returned {
    let d = &m.delivery;
    Returned {
        message_id: d.properties.message_id().as_ref().map(|s| s.as_str().to_string()).unwrap_or_default(),
        reason: format!(
            "unroutable: the broker returned the message ({} {}) from exchange {:?} with routing key {:?}",
            m.reply_code,
            m.reply_text.as_str(),
            d.exchange.as_str(),
            d.routing_key.as_str()
        ),
    }
}

fn exchange_kind(t: ExchangeType) -> ExchangeKind {
    match t {
        ExchangeType::Direct => ExchangeKind::Direct,
        ExchangeType::Fanout => ExchangeKind::Fanout,
        ExchangeType::Topic => ExchangeKind::Topic,
        ExchangeType::Headers => ExchangeKind::Headers,
    }
}
