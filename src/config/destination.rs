//! `[destination]`: one struct per destination type, chosen by the `type` key.
//!
//! The table is read in two passes so that every error still cites its line: first `type` alone
//! (and the keys present, with their spans), then the whole document with the `[destination]`
//! struct of that type, which denies unknown keys. A serde internally tagged enum
//! (`#[serde(tag = "type")]`) would do this in one pass, but it buffers the table and toml then
//! reports every error inside it at the `[destination]` header instead of the key's line.
//!
//! Adding a destination type: a variant of [`DestinationType`] and [`Destination`], its table
//! struct implementing [`DestinationTable`], and a `sink/` module; the compiler points at every
//! match that needs an arm.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::de::{self, DeserializeOwned, IgnoredAny, Visitor};
use serde::Deserialize;

use super::amqp::{AmqpDestination, ExchangeType, QueueType};
use super::kafka::{Compression, KafkaDestination, SaslMechanism};
use super::ConfigError;
use crate::format::Format;

/// The `type` of a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DestinationType {
    /// Append records to a file.
    File,
    /// POST batches to an HTTP endpoint (NDJSON, Splunk HEC, Elasticsearch bulk).
    Http,
    /// Send syslog messages over TCP or UDP.
    Syslog,
    /// Publish to a RabbitMQ exchange (AMQP 0-9-1, publisher confirms).
    Amqp,
    /// Produce to a Kafka topic (idempotent producer, acks=all).
    Kafka,
}

/// A destination, with the settings of its type (defaults applied, values validated).
#[derive(Debug, Clone)]
pub enum Destination {
    File(FileDestination),
    Http(HttpDestination),
    Syslog(SyslogDestination),
    Amqp(AmqpDestination),
    Kafka(KafkaDestination),
}

impl Destination {
    pub fn kind(&self) -> DestinationType {
        match self {
            Destination::File(_) => DestinationType::File,
            Destination::Http(_) => DestinationType::Http,
            Destination::Syslog(_) => DestinationType::Syslog,
            Destination::Amqp(_) => DestinationType::Amqp,
            Destination::Kafka(_) => DestinationType::Kafka,
        }
    }

    pub fn format(&self) -> Format {
        match self {
            Destination::File(d) => d.format,
            Destination::Http(d) => d.format,
            Destination::Syslog(d) => d.format,
            Destination::Amqp(d) => d.format,
            Destination::Kafka(d) => d.format,
        }
    }
}

/// A type's `[destination]` table.
pub(super) trait DestinationTable: DeserializeOwned + Into<Destination> {
    /// Keys that must be present, each with a hint for the error message (checked against
    /// serde's own idea of required fields by a unit test).
    const REQUIRED: &'static [(&'static str, &'static str)];
}

/// `type = "file"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDestination {
    #[serde(rename = "type", default)]
    _type: IgnoredAny,
    #[serde(default = "default_format")]
    pub format: Format,
    /// The file to append to (its directories are created at start-up).
    pub path: PathBuf,
    /// fsync after each batch, before rsyslog is told `OK`.
    #[serde(default = "yes")]
    pub fsync: bool,
}

/// `type = "http"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpDestination {
    #[serde(rename = "type", default)]
    _type: IgnoredAny,
    #[serde(default = "default_format")]
    pub format: Format,
    pub url: String,
    #[serde(default = "default_preset")]
    pub preset: HttpPreset,
    pub token_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    #[serde(default = "default_index")]
    pub index: String,
    #[serde(default = "default_sourcetype")]
    pub sourcetype: String,
    /// HEC `source`; `qumulo:<cluster>` when unset.
    pub source: Option<String>,
    pub ca_file: Option<PathBuf>,
    #[serde(default = "yes")]
    pub tls_verify: bool,
    #[serde(default)]
    pub gzip: bool,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

/// `type = "syslog"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogDestination {
    #[serde(rename = "type", default)]
    _type: IgnoredAny,
    #[serde(default = "default_format")]
    pub format: Format,
    /// `host:port` (`[v6addr]:port`); resolved at each connect.
    pub address: String,
    #[serde(default = "default_protocol")]
    pub protocol: Protocol,
    #[serde(default = "default_framing")]
    pub framing: Framing,
    #[serde(default = "default_header")]
    pub header: Header,
    #[serde(default = "default_app_name")]
    pub app_name: String,
    #[serde(default = "default_facility")]
    pub facility: u8,
}

impl DestinationTable for FileDestination {
    const REQUIRED: &'static [(&'static str, &'static str)] = &[("path", "")];
}
impl DestinationTable for HttpDestination {
    const REQUIRED: &'static [(&'static str, &'static str)] = &[("url", "")];
}
impl DestinationTable for SyslogDestination {
    const REQUIRED: &'static [(&'static str, &'static str)] = &[("address", " (host:port)")];
}

impl From<FileDestination> for Destination {
    fn from(d: FileDestination) -> Destination {
        Destination::File(d)
    }
}
impl From<HttpDestination> for Destination {
    fn from(d: HttpDestination) -> Destination {
        Destination::Http(d)
    }
}
impl From<SyslogDestination> for Destination {
    fn from(d: SyslogDestination) -> Destination {
        Destination::Syslog(d)
    }
}

/// HTTP presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HttpPreset {
    /// One record per line.
    Ndjson,
    /// Splunk HTTP Event Collector.
    SplunkHec,
    /// Elasticsearch `_bulk` with `create` actions.
    ElasticsearchBulk,
}

/// Syslog transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// Syslog TCP framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Framing {
    /// RFC 6587 octet counting.
    OctetCounting,
    /// One message per line.
    Newline,
}

/// Syslog header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Header {
    Rfc5424,
    Rfc3164,
}

fn yes() -> bool {
    true
}
fn default_format() -> Format {
    Format::Json
}
fn default_preset() -> HttpPreset {
    HttpPreset::Ndjson
}
fn default_index() -> String {
    "qumulo-audit".into()
}
fn default_sourcetype() -> String {
    "qumulo:audit".into()
}
fn default_timeout_secs() -> u64 {
    30
}
fn default_protocol() -> Protocol {
    Protocol::Tcp
}
fn default_framing() -> Framing {
    Framing::OctetCounting
}
fn default_header() -> Header {
    Header::Rfc5424
}
fn default_app_name() -> String {
    "qumulo-audit".into()
}
fn default_facility() -> u8 {
    13
}

/// The name of a [`clap::ValueEnum`] value (its kebab-case variant name).
pub fn name_of<E: clap::ValueEnum>(v: &E) -> String {
    v.to_possible_value().map(|p| p.get_name().to_string()).unwrap_or_default()
}

/// `"a", "b" or "c"`: the names an enum accepts, for error messages.
pub fn expected_names<E: clap::ValueEnum>() -> String {
    let names: Vec<String> = E::value_variants().iter().map(|v| format!("{:?}", name_of(v))).collect();
    match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Deserializes a [`clap::ValueEnum`] from its name, with an error listing the accepted names
/// (toml attaches the value's line to it).
macro_rules! deserialize_by_name {
    ($($ty:ty => $key:literal),* $(,)?) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                <$ty as clap::ValueEnum>::from_str(&s, false).map_err(|_| {
                    de::Error::custom(format!("{} = {s:?}: expected {}", $key, expected_names::<$ty>()))
                })
            }
        }
    )*};
}

deserialize_by_name! {
    DestinationType => "[destination] type",
    Format => "[destination] format",
    HttpPreset => "[destination] preset",
    Protocol => "[destination] protocol",
    Framing => "[destination] framing",
    Header => "[destination] header",
    ExchangeType => "[destination] exchange_type",
    QueueType => "[destination] queue_type",
    Compression => "[destination] compression",
    SaslMechanism => "[destination] sasl_mechanism",
    super::ClusterSourceKind => "[cluster] source",
}

/// The names of a table struct's keys, as its derived `Deserialize` declares them (so the lists
/// of keys per type are never written by hand).
pub(super) fn keys_of<T: DestinationTable>() -> &'static [&'static str] {
    struct Probe(Option<&'static [&'static str]>);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> de::Deserializer<'de> for &mut Probe {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0 = Some(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut probe = Probe(None);
    let _ = T::deserialize(&mut probe);
    probe.0.unwrap_or(&[])
}

/// The keys each destination type accepts.
fn keys_of_type(t: DestinationType) -> &'static [&'static str] {
    match t {
        DestinationType::File => keys_of::<FileDestination>(),
        DestinationType::Http => keys_of::<HttpDestination>(),
        DestinationType::Syslog => keys_of::<SyslogDestination>(),
        DestinationType::Amqp => keys_of::<AmqpDestination>(),
        DestinationType::Kafka => keys_of::<KafkaDestination>(),
    }
}

fn required_of_type(t: DestinationType) -> &'static [(&'static str, &'static str)] {
    match t {
        DestinationType::File => FileDestination::REQUIRED,
        DestinationType::Http => HttpDestination::REQUIRED,
        DestinationType::Syslog => SyslogDestination::REQUIRED,
        DestinationType::Amqp => AmqpDestination::REQUIRED,
        DestinationType::Kafka => KafkaDestination::REQUIRED,
    }
}

/// First pass: the destination's type, with errors at the key's line.
pub(super) fn destination_type(text: &str) -> Result<DestinationType, ConfigError> {
    #[derive(Deserialize)]
    struct TypeOnly {
        #[serde(rename = "type")]
        kind: DestinationType,
    }
    #[derive(Deserialize)]
    struct Doc {
        destination: TypeOnly,
    }
    let doc: Doc = toml::from_str(text).map_err(|e| ConfigError::from_toml(text, &e))?;
    Ok(doc.destination.kind)
}

/// Still in the first pass: keys that belong to another type, and missing required keys, get
/// their own messages (serde would only say "unknown field" and "missing field").
pub(super) fn check_keys(text: &str, kind: DestinationType) -> Result<(), ConfigError> {
    #[derive(Deserialize)]
    struct Doc {
        destination: BTreeMap<toml::Spanned<String>, IgnoredAny>,
    }
    let doc: Doc = toml::from_str(text).map_err(|e| ConfigError::from_toml(text, &e))?;
    let own = keys_of_type(kind);
    let type_name = name_of(&kind);
    for key in doc.destination.keys() {
        let k = key.get_ref().as_str();
        if own.contains(&k) {
            continue;
        }
        let owner = DestinationType::value_variants_iter().find(|t| keys_of_type(*t).contains(&k));
        if let Some(owner) = owner {
            let line = super::line_at(text, key.span().start);
            return Err(ConfigError::new(format!(
                "[destination] key `{k}` does not apply to type = {type_name:?} (it is a key of type = {:?})",
                name_of(&owner)
            ))
            .with_key(format!("destination.{k}"))
            .with_line(Some(line)));
        }
    }
    let type_line = doc.destination.keys().find(|k| k.get_ref() == "type").map(|k| super::line_at(text, k.span().start));
    for (key, hint) in required_of_type(kind) {
        if !doc.destination.keys().any(|k| k.get_ref() == key) {
            return Err(ConfigError::new(format!("[destination] type = {type_name:?} needs `{key}`{hint}"))
                .with_key(format!("destination.{key}"))
                .with_line(type_line));
        }
    }
    Ok(())
}

impl DestinationType {
    fn value_variants_iter() -> impl Iterator<Item = DestinationType> {
        <DestinationType as clap::ValueEnum>::value_variants().iter().copied()
    }

    /// Second pass: the whole document, with this type's `[destination]` struct.
    pub(super) fn parse_document(self, text: &str) -> Result<super::Config, ConfigError> {
        match self {
            DestinationType::File => super::parse_document::<FileDestination>(text),
            DestinationType::Http => super::parse_document::<HttpDestination>(text),
            DestinationType::Syslog => super::parse_document::<SyslogDestination>(text),
            DestinationType::Amqp => super::parse_document::<AmqpDestination>(text),
            DestinationType::Kafka => super::parse_document::<KafkaDestination>(text),
        }
    }
}

impl std::fmt::Display for DestinationType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&name_of(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `REQUIRED` lists exactly the keys serde requires: a table with only them parses, and one
    /// without any of them does not.
    fn required_matches_serde<T: DestinationTable>(values: &[(&str, &str)]) {
        let table = |skip: Option<&str>| {
            let mut t = toml::Table::new();
            for (k, v) in values {
                if Some(*k) != skip {
                    t.insert(k.to_string(), toml::Value::String(v.to_string()));
                }
            }
            toml::Value::Table(t)
        };
        assert_eq!(T::REQUIRED.len(), values.len());
        for (k, _) in T::REQUIRED {
            assert!(values.iter().any(|(v, _)| v == k), "{k} is given a value");
            assert!(T::deserialize(table(Some(k))).is_err(), "{k} is required by serde");
        }
        assert!(T::deserialize(table(None)).is_ok(), "nothing else is required");
    }

    #[test]
    fn required_keys_are_what_serde_requires() {
        required_matches_serde::<FileDestination>(&[("path", "/x")]);
        required_matches_serde::<HttpDestination>(&[("url", "http://h")]);
        required_matches_serde::<SyslogDestination>(&[("address", "h:514")]);
        required_matches_serde::<AmqpDestination>(&[("server", "rabbit"), ("exchange", "audit")]);
    }

    #[test]
    fn keys_come_from_the_structs() {
        assert_eq!(keys_of::<FileDestination>(), ["type", "format", "path", "fsync"]);
        assert!(keys_of::<HttpDestination>().contains(&"timeout_secs"));
        assert!(keys_of::<SyslogDestination>().contains(&"app_name"));
    }

    #[test]
    fn enum_names_and_messages() {
        assert_eq!(name_of(&HttpPreset::ElasticsearchBulk), "elasticsearch-bulk");
        assert_eq!(name_of(&Framing::OctetCounting), "octet-counting");
        let types = expected_names::<DestinationType>();
        assert!(types.starts_with("\"file\", \"http\", \"syslog\"") && types.contains("\"amqp\"") && types.ends_with("\"kafka\""), "{types}");
        assert_eq!(expected_names::<Protocol>(), "\"tcp\" or \"udp\"");
    }
}
