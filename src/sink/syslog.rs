//! Syslog destination: TCP (RFC 6587 octet counting or newline framing) or UDP (one datagram
//! per record), with an RFC 5424 or RFC 3164 header and the record (CEF, LEEF, JSON, ...) as the
//! message. CEF and LEEF over syslog are what ArcSight and QRadar expect.
//!
//! Plain syslog has no application-level acknowledgement: a batch counts as delivered once the
//! kernel accepted every byte. Before each batch the connection is checked for a close by the
//! peer (as rsyslog's omfwd does), and on any error the connection is rebuilt and the whole
//! batch re-sent; duplicates are possible, loss only if the peer dies after accepting bytes
//! (use an HTTP destination, or RELP via rsyslog, where that matters).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use super::Attempt;
use crate::batch::Batch;
use crate::config::{Framing, Header, Protocol, SyslogDestination};
use crate::event::Event;
use crate::format::{write_int, Format};
use crate::time::{civil_from_days, Timestamp};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Udp,
}

/// Frames events as syslog messages (header, record, TCP framing).
#[derive(Clone)]
pub struct SyslogEncoder {
    format: Format,
    transport: Transport,
    octet_counting: bool,
    rfc5424: bool,
    app_name: String,
    facility: u8,
}

pub struct SyslogSink {
    address: String,
    transport: Transport,
    tcp: Option<TcpStream>,
    udp: Option<UdpSocket>,
    scratch: Vec<u8>,
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

impl SyslogSink {
    pub fn new(d: &SyslogDestination) -> SyslogSink {
        // Resolved at each connect, not here: a DNS outage at start-up must not stop the
        // program from starting (rsyslog would restart it in a loop); deliveries retry instead.
        SyslogSink { address: d.address.clone(), transport: transport_of(d.protocol), tcp: None, udp: None, scratch: Vec::new() }
    }

}

fn transport_of(p: Protocol) -> Transport {
    match p {
        Protocol::Tcp => Transport::Tcp,
        Protocol::Udp => Transport::Udp,
    }
}

impl SyslogEncoder {
    pub fn new(d: &SyslogDestination) -> SyslogEncoder {
        SyslogEncoder {
            format: d.format,
            transport: transport_of(d.protocol),
            octet_counting: d.framing == Framing::OctetCounting,
            rfc5424: d.header == Header::Rfc5424,
            app_name: d.app_name.clone(),
            facility: d.facility,
        }
    }

    /// Frames one record: header, message, and TCP framing (UDP records are sent one per datagram).
    ///
    /// Header rules (docs/formats.md, "Syslog headers"): HOSTNAME is the node, else the cluster,
    /// else `-`; it and APP-NAME / TAG hold only printable US-ASCII without spaces (33..126;
    /// anything else becomes `_`, one per character) and are cut at the RFC's length (HOSTNAME
    /// 255, APP-NAME 48, RFC 3164 TAG 32, which also excludes `:`, `[` and `]`). RFC 5424: PROCID
    /// and STRUCTURED-DATA are always `-`; MSGID is the operation when it is 1 to 32 printable
    /// US-ASCII characters, else `-` (every record format carries the operation anyway);
    /// TIME-SECFRAC has at most 6 digits (truncated). Nothing in an event can add a header field,
    /// shift one or add structured data.
    pub fn encode(&self, ev: &Event, rendered: &mut Vec<u8>, out: &mut Vec<u8>) {
        let format = self.format;
        rendered.clear();
        let severity = if ev.is_success() { 6 } else { 5 };
        let pri = self.facility as i64 * 8 + severity;
        let t = ev.time.unwrap_or_else(Timestamp::now);
        let host = if !ev.node.is_empty() { ev.node.as_str() } else { ev.cluster.as_str() };
        rendered.push(b'<');
        write_int(rendered, pri);
        if self.rfc5424 {
            rendered.extend_from_slice(b">1 ");
            Timestamp { frac_digits: t.frac_digits.min(6), ..t }.write_rfc3339(rendered);
            rendered.push(b' ');
            write_header_token(rendered, host, 255, b"");
            rendered.push(b' ');
            write_header_token(rendered, &self.app_name, 48, b"");
            rendered.extend_from_slice(b" - ");
            let op = ev.operation.as_bytes();
            if !op.is_empty() && op.len() <= 32 && op.iter().all(|&c| is_print_us_ascii(c)) {
                rendered.extend_from_slice(op);
            } else {
                rendered.push(b'-');
            }
            rendered.extend_from_slice(b" - ");
        } else {
            let days = t.secs.div_euclid(86_400);
            let sod = t.secs.rem_euclid(86_400);
            let (_, m, d) = civil_from_days(days);
            rendered.push(b'>');
            rendered.extend_from_slice(MONTHS[(m - 1) as usize].as_bytes());
            rendered.push(b' ');
            rendered.push(if d < 10 { b' ' } else { b'0' + (d / 10) as u8 });
            rendered.push(b'0' + (d % 10) as u8);
            for (sep, v) in [(b' ', sod / 3600), (b':', sod / 60 % 60), (b':', sod % 60)] {
                rendered.extend_from_slice(&[sep, b'0' + (v / 10) as u8, b'0' + (v % 10) as u8]);
            }
            rendered.push(b' ');
            write_header_token(rendered, host, 255, b"");
            rendered.push(b' ');
            write_header_token(rendered, &self.app_name, 32, b":[]");
            rendered.extend_from_slice(b": ");
        }
        let message_start = rendered.len();
        format.render(ev, rendered);
        // A record must never contain a line break (every format escapes them; this is a guard).
        if memchr::memchr2(b'\n', b'\r', &rendered[message_start..]).is_some() {
            for b in &mut rendered[message_start..] {
                if *b == b'\n' || *b == b'\r' {
                    *b = b' ';
                }
            }
        }
        if self.transport == Transport::Tcp && self.octet_counting {
            write_int(out, rendered.len() as i64);
            out.push(b' ');
            out.extend_from_slice(rendered);
        } else {
            out.extend_from_slice(rendered);
            if self.transport == Transport::Tcp {
                out.push(b'\n');
            }
        }
    }
}

/// PRINTUSASCII (RFC 5424): `!` to `~`, no space, no control character.
fn is_print_us_ascii(c: u8) -> bool {
    (33..=126).contains(&c)
}

/// Appends a header token: `-` when `s` is empty; otherwise `s` with each character that is not
/// printable US-ASCII, or is one of `forbidden`, written as `_`, cut at `max` bytes.
fn write_header_token(out: &mut Vec<u8>, s: &str, max: usize, forbidden: &[u8]) {
    let b = s.as_bytes();
    if b.is_empty() {
        out.push(b'-');
    } else if b.len() <= max && b.iter().all(|c| is_print_us_ascii(*c) && !forbidden.contains(c)) {
        out.extend_from_slice(b);
    } else {
        for c in s.chars().take(max) {
            let ok = c.is_ascii() && is_print_us_ascii(c as u8) && !forbidden.contains(&(c as u8));
            out.push(if ok { c as u8 } else { b'_' });
        }
    }
}

impl SyslogSink {
    /// TCP (a byte stream) rather than UDP (one datagram per record).
    pub fn is_stream(&self) -> bool {
        self.transport == Transport::Tcp
    }

    pub fn disconnect(&mut self) {
        self.tcp = None;
        self.udp = None;
    }

    fn connect_tcp(&mut self) -> std::io::Result<&mut TcpStream> {
        if let Some(s) = &mut self.tcp {
            if peer_closed(s) {
                log::warn!("syslog peer {} closed the connection; reconnecting", self.address);
                self.tcp = None;
            }
        }
        if self.tcp.is_none() {
            let mut last = None;
            for addr in self.address.to_socket_addrs()? {
                match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
                    Ok(s) => {
                        s.set_write_timeout(Some(Duration::from_secs(30)))?;
                        s.set_nodelay(true)?;
                        self.tcp = Some(s);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            if self.tcp.is_none() {
                return Err(last.unwrap_or_else(|| std::io::Error::other("address resolved to nothing")));
            }
        }
        Ok(self.tcp.as_mut().expect("connected"))
    }

    pub fn deliver(&mut self, batch: &Batch, which: &[usize]) -> Attempt {
        match self.transport {
            Transport::Tcp => {
                let mut scratch = std::mem::take(&mut self.scratch);
                let body = batch.body(which, &mut scratch);
                let result = self.connect_tcp().and_then(|s| s.write_all(body).and_then(|_| s.flush()));
                self.scratch = scratch;
                match result {
                    Ok(()) => Attempt::ok(),
                    Err(e) => {
                        self.tcp = None;
                        Attempt::retry_all(which, format!("destination unavailable: syslog tcp {}: {e}", self.address))
                    }
                }
            }
            Transport::Udp => {
                if self.udp.is_none() {
                    let bind = if self.address.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" };
                    match UdpSocket::bind(bind).and_then(|s| s.connect(&self.address).map(|_| s)) {
                        Ok(s) => self.udp = Some(s),
                        Err(e) => return Attempt::retry_all(which, format!("destination unavailable: syslog udp {}: {e}", self.address)),
                    }
                }
                let sock = self.udp.as_ref().expect("bound");
                let mut attempt = Attempt::ok();
                for (k, &i) in which.iter().enumerate() {
                    let record = batch.record(i);
                    match sock.send(record) {
                        Ok(_) => {}
                        // Larger than a datagram can be: it never will fit, so retrying would
                        // block the queue forever. Refuse it for good (dead letter).
                        Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => attempt.rejected.push((
                            i,
                            format!("record of {} bytes does not fit in a UDP datagram ({e}); use protocol = \"tcp\"", record.len()),
                        )),
                        Err(e) => {
                            self.udp = None;
                            attempt.merge(Attempt::retry_all(
                                &which[k..],
                                format!("destination unavailable: syslog udp {}: {e}", self.address),
                            ));
                            return attempt;
                        }
                    }
                }
                attempt
            }
        }
    }

    pub fn check(&mut self) -> Result<String, String> {
        match self.transport {
            Transport::Tcp => {
                let address = self.address.clone();
                self.connect_tcp().map(|_| format!("connected to {address} (tcp)")).map_err(|e| format!("{address}: {e}"))
            }
            Transport::Udp => Ok(format!("{} resolves (udp has no connection to test)", self.address)),
        }
    }
}

/// True when the peer has closed the connection (a non-blocking read sees EOF or an error).
fn peer_closed(s: &mut TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return true;
    }
    let mut buf = [0u8; 64];
    let closed = match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false, // the receiver talked back; ignore
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    };
    let _ = s.set_nonblocking(false);
    closed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Destination};

    #[test]
    fn udp_record_too_big_for_a_datagram_is_rejected_the_rest_sent() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let text = format!(
            "[destination]\ntype = \"syslog\"\naddress = \"{}\"\nprotocol = \"udp\"\n",
            rx.local_addr().unwrap()
        );
        let cfg = Config::parse(&text).unwrap();
        let Destination::Syslog(d) = &cfg.destination else { panic!("{cfg:?}") };
        let mut sink = SyslogSink::new(d);
        let mut batch = Batch::default();
        for rec in [vec![b'a'; 70_000], b"<110>small".to_vec()] {
            let st = batch.begin_record();
            batch.buf.extend_from_slice(&rec);
            batch.end_record(st);
        }
        let a = sink.deliver(&batch, &[0, 1]);
        assert!(a.retry.is_empty(), "{a:?}");
        assert_eq!(a.rejected.len(), 1);
        assert_eq!(a.rejected[0].0, 0);
        assert!(a.rejected[0].1.contains("70000 bytes"), "{}", a.rejected[0].1);
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"<110>small");
    }
}
