//! Destinations. One module per kind; each knows how to frame a record for its wire
//! ([`Encoder::encode`]) and how to hand a batch over and say what the destination accepted
//! ([`Sink::deliver`]). The retry loop, dead-lettering and acknowledgement live in
//! [`crate::omprog`]; a sink only reports. [`record`] (the per-record header) and [`route`] (key
//! templates) are shared by the two broker sinks, `amqp` and `kafka`.

pub mod amqp;
pub mod file;
pub mod http;
pub mod kafka;
pub mod record;
pub mod route;
pub mod syslog;

use crate::batch::Batch;
use crate::config::{Config, ConfigError, Destination};
use crate::event::Event;
use crate::format::Format;

/// What one delivery attempt of some records of a batch achieved. Records neither rejected
/// nor listed for retry were accepted by the destination.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Attempt {
    /// Records the destination refused for good (HTTP 400, bulk item 4xx): dead-letter them.
    pub rejected: Vec<(usize, String)>,
    /// Records to send again after a backoff.
    pub retry: Vec<usize>,
    /// Why records must be retried (connection refused, 503, ...).
    pub error: Option<String>,
    /// Records the destination returned as unroutable in this attempt (AMQP `basic.return`,
    /// Kafka's unknown topic or partition),
    /// whether they are retried or rejected; counted in the stats line.
    pub unroutable: u64,
}

impl Attempt {
    pub fn ok() -> Attempt {
        Attempt::default()
    }

    /// Adds another attempt's outcome (for other records of the same batch) to this one.
    pub fn merge(&mut self, other: Attempt) {
        self.rejected.extend(other.rejected);
        self.retry.extend(other.retry);
        if other.error.is_some() {
            self.error = other.error;
        }
        self.unroutable += other.unroutable;
    }

    /// Every record in `which` must be retried because of `error`.
    pub fn retry_all(which: &[usize], error: impl Into<String>) -> Attempt {
        Attempt { retry: which.to_vec(), error: Some(error.into()), ..Attempt::default() }
    }
}

/// Frames records for a destination's wire. Cheap to clone; used by the parsing stage while
/// the [`Sink`] itself lives in the delivery stage.
#[derive(Clone)]
pub enum Encoder {
    /// One record per line (file destination).
    Lines(Format),
    Http(http::HttpEncoder),
    Syslog(syslog::SyslogEncoder),
    Amqp(amqp::AmqpEncoder),
    Kafka(kafka::KafkaEncoder),
}

impl Encoder {
    pub fn from_config(cfg: &Config) -> Encoder {
        match &cfg.destination {
            Destination::File(d) => Encoder::Lines(d.format),
            Destination::Http(d) => Encoder::Http(http::HttpEncoder::new(d)),
            Destination::Syslog(d) => Encoder::Syslog(syslog::SyslogEncoder::new(d)),
            Destination::Amqp(d) => Encoder::Amqp(amqp::AmqpEncoder::new(d)),
            Destination::Kafka(d) => Encoder::Kafka(kafka::KafkaEncoder::new(d)),
        }
    }

    /// Appends one framed record for `ev` to `out` (`rendered` is scratch space).
    pub fn encode(&self, ev: &Event, rendered: &mut Vec<u8>, out: &mut Vec<u8>) {
        match self {
            Encoder::Lines(format) => {
                format.render(ev, out);
                out.push(b'\n');
            }
            Encoder::Http(e) => e.encode(ev, rendered, out),
            Encoder::Syslog(e) => e.encode(ev, rendered, out),
            Encoder::Amqp(e) => e.encode(ev, rendered, out),
            Encoder::Kafka(e) => e.encode(ev, rendered, out),
        }
    }

    /// Whether records are the input lines themselves (`pass_through`, the receiver tier).
    pub fn passes_lines_through(&self) -> bool {
        matches!(self, Encoder::Kafka(e) if e.pass_through) || matches!(self, Encoder::Amqp(e) if e.pass_through)
    }

    /// As [`Encoder::encode`], with the line `ev` was parsed from: a pass-through `kafka` or
    /// `amqp` destination forwards the line itself (the receiver tier), every other encoder renders.
    pub fn encode_from(&self, ev: &Event, line: &[u8], rendered: &mut Vec<u8>, out: &mut Vec<u8>) {
        match self {
            Encoder::Kafka(e) if e.pass_through => e.encode_line(ev, line, out),
            Encoder::Amqp(e) if e.pass_through => e.encode_line(ev, line, out),
            _ => self.encode(ev, rendered, out),
        }
    }
}

pub enum Sink {
    File(file::FileSink),
    Http(http::HttpSink),
    Syslog(syslog::SyslogSink),
    Amqp(amqp::AmqpSink),
    Kafka(kafka::KafkaSink),
}

impl Sink {
    /// Builds the destination from its config (reads secrets, loads CA files, opens files,
    /// creating the destination file and its directories).
    pub fn from_config(cfg: &Config) -> Result<Sink, ConfigError> {
        Ok(match &cfg.destination {
            Destination::File(d) => Sink::File(file::FileSink::new(d)?),
            Destination::Http(d) => Sink::Http(http::HttpSink::new(d)?),
            Destination::Syslog(d) => Sink::Syslog(syslog::SyslogSink::new(d)),
            Destination::Amqp(d) => Sink::Amqp(amqp::AmqpSink::new(d)?),
            Destination::Kafka(d) => Sink::Kafka(kafka::KafkaSink::new(d)?),
        })
    }

    /// Tries to deliver the records `which` of `batch`.
    pub fn deliver(&mut self, batch: &Batch, which: &[usize]) -> Attempt {
        match self {
            Sink::File(s) => s.deliver(batch, which),
            Sink::Http(s) => s.deliver(batch, which),
            Sink::Syslog(s) => s.deliver(batch, which),
            Sink::Amqp(s) => s.deliver(batch, which),
            Sink::Kafka(s) => s.deliver(batch, which),
        }
    }

    /// Makes what earlier batches of a transaction wrote durable, for a COMMIT whose last batch
    /// is empty (a file destination with `fsync` syncs once per transaction, with its last batch).
    pub fn sync_pending(&mut self) -> Result<(), String> {
        match self {
            Sink::File(s) => s.sync_pending(),
            _ => Ok(()),
        }
    }

    /// True when exiting in the middle of [`Sink::deliver`] could leave half a record at the
    /// destination (a file, a TCP stream); false where a cut delivery is simply not accepted
    /// (HTTP) or records are atomic (UDP datagrams).
    pub fn tears_when_cut(&self) -> bool {
        match self {
            Sink::File(_) => true,
            Sink::Http(_) => false,
            Sink::Syslog(s) => s.is_stream(),
            Sink::Amqp(_) => false, // a cut message is not confirmed, so it is published again
            Sink::Kafka(_) => false, // likewise: a record without its delivery report is produced again
        }
    }

    /// Reopens files and connections (SIGHUP, after logrotate).
    pub fn reopen(&mut self) {
        match self {
            Sink::File(s) => s.reopen(),
            Sink::Http(_) => {}
            Sink::Syslog(s) => s.disconnect(),
            Sink::Amqp(s) => s.disconnect(),
            Sink::Kafka(s) => s.disconnect(),
        }
    }

    /// Checks that the destination can be reached (`check --connect`).
    pub fn check_connect(&mut self) -> Result<String, String> {
        match self {
            Sink::File(s) => s.check(),
            Sink::Http(s) => s.check(),
            Sink::Syslog(s) => s.check(),
            Sink::Amqp(s) => s.check(),
            Sink::Kafka(s) => s.check(),
        }
    }

    /// The cluster and the bytes the dead-letter file shows for a rejected record (the broker
    /// record header of [`record`] is not part of the message).
    pub fn dead_letter_view<'a>(&self, record: &'a [u8]) -> (&'a str, &'a [u8]) {
        match self {
            Sink::Amqp(_) | Sink::Kafka(_) => record::dead_letter_view(record),
            _ => ("", record),
        }
    }
}
