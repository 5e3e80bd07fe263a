//! Syslog receivers: in-process TCP and UDP listeners, and a real rsyslogd writing what it
//! receives to a file.
//!
//! [`SyslogTcpReceiver`] accepts RFC 6587 framing per message: a frame starting with a digit is
//! octet-counted (`<len> <msg>`), anything else is newline-terminated (non-transparent framing;
//! the `\n` is removed, a `\r` before it is kept). Bytes left without a `\n` when the peer closes
//! are recorded as [`RxFraming::Unterminated`]. [`SyslogUdpReceiver`] records one message per
//! datagram (one trailing `\n` removed). [`RsyslogReceiver`] starts an [`Rsyslogd`] with imtcp and
//! an omfile action writing `%msg%`, `%rawmsg%` or a template of the caller's choice per line.

use std::io::Read;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::rsyslog::Rsyslogd;
use super::try_wait_for;

/// How a received message was delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxFraming {
    Newline,
    OctetCounted,
    /// Newline framing, but the connection closed before the `\n`.
    Unterminated,
    Datagram,
}

/// One received message.
#[derive(Debug, Clone)]
pub struct RxMessage {
    pub bytes: Vec<u8>,
    pub framing: RxFraming,
    /// Connection number (1, 2, ...) for TCP; 0 for UDP.
    pub connection: u64,
}

impl RxMessage {
    /// The message as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

struct Shared {
    msgs: Mutex<Vec<RxMessage>>,
    errors: Mutex<Vec<String>>,
    shutdown: AtomicBool,
    conns: AtomicU64,
}

impl Shared {
    fn new() -> Arc<Shared> {
        Arc::new(Shared {
            msgs: Mutex::new(Vec::new()),
            errors: Mutex::new(Vec::new()),
            shutdown: AtomicBool::new(false),
            conns: AtomicU64::new(0),
        })
    }
    fn push(&self, m: RxMessage) {
        self.msgs.lock().unwrap_or_else(|e| e.into_inner()).push(m);
    }
    fn messages(&self) -> Vec<RxMessage> {
        self.msgs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    fn wait(&self, who: &str, n: usize, timeout: Duration) -> Vec<RxMessage> {
        match try_wait_for(timeout, || {
            let m = self.messages();
            (m.len() >= n).then_some(m)
        }) {
            Some(m) => m,
            None => {
                let m = self.messages();
                let tail: Vec<String> = m.iter().rev().take(5).map(RxMessage::text).collect();
                panic!(
                    "{who}: timed out after {timeout:?} waiting for {n} messages; have {} (last: {tail:?}); \
                     framing errors: {:?}",
                    m.len(),
                    self.errors.lock().unwrap()
                )
            }
        }
    }
}

/// A TCP syslog receiver on `127.0.0.1:<free port>`, thread per connection.
pub struct SyslogTcpReceiver {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

impl SyslogTcpReceiver {
    /// Starts on a free port.
    pub fn start() -> SyslogTcpReceiver {
        SyslogTcpReceiver::start_on(0)
    }

    /// Starts on `127.0.0.1:port` (e.g. a port a forwarding config already names), retrying the
    /// bind for up to 10 s.
    pub fn start_on(port: u16) -> SyslogTcpReceiver {
        let mut last = None;
        let listener = try_wait_for(Duration::from_secs(10), || match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            Ok(l) => Some(l),
            Err(e) => {
                last = Some(e);
                None
            }
        })
        .unwrap_or_else(|| panic!("syslog rx: cannot bind 127.0.0.1:{port}: {last:?}"));
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let shared = Shared::new();
        let s2 = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name("syslog-rx-accept".into())
            .spawn(move || {
                while !s2.shutdown.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = stream.set_nonblocking(false);
                            let id = s2.conns.fetch_add(1, Ordering::SeqCst) + 1;
                            let s3 = s2.clone();
                            let _ = std::thread::Builder::new()
                                .name(format!("syslog-rx-{id}"))
                                .spawn(move || read_tcp(&s3, stream, id));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
            .expect("spawn acceptor");
        SyslogTcpReceiver { shared, addr, acceptor: Some(acceptor) }
    }
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
    /// All messages so far.
    pub fn messages(&self) -> Vec<RxMessage> {
        self.shared.messages()
    }
    /// All messages so far, as text.
    pub fn texts(&self) -> Vec<String> {
        self.messages().iter().map(RxMessage::text).collect()
    }
    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.conns.load(Ordering::SeqCst)
    }
    /// Framing errors seen (a bad octet count, ...).
    pub fn errors(&self) -> Vec<String> {
        self.shared.errors.lock().unwrap().clone()
    }
    /// Waits for at least `n` messages and returns them all; panics after `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<RxMessage> {
        self.shared.wait("SyslogTcpReceiver", n, timeout)
    }
}

impl Drop for SyslogTcpReceiver {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

fn read_tcp(shared: &Shared, mut stream: TcpStream, id: u64) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    let mut eof = false;
    loop {
        // Take every complete frame from the buffer.
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            if rest.is_empty() {
                break;
            }
            if rest[0].is_ascii_digit() {
                let Some(sp) = rest.iter().position(|&b| b == b' ') else {
                    if eof || rest.len() > 10 {
                        shared.errors.lock().unwrap().push(format!("conn {id}: octet count without a space"));
                        let _ = stream.shutdown(Shutdown::Both);
                        return;
                    }
                    break;
                };
                let len: usize = match std::str::from_utf8(&rest[..sp]).ok().and_then(|s| s.parse().ok()) {
                    Some(l) => l,
                    None => {
                        shared.errors.lock().unwrap().push(format!(
                            "conn {id}: bad octet count {:?}",
                            String::from_utf8_lossy(&rest[..sp])
                        ));
                        let _ = stream.shutdown(Shutdown::Both);
                        return;
                    }
                };
                if rest.len() < sp + 1 + len {
                    break;
                }
                shared.push(RxMessage {
                    bytes: rest[sp + 1..sp + 1 + len].to_vec(),
                    framing: RxFraming::OctetCounted,
                    connection: id,
                });
                pos += sp + 1 + len;
            } else {
                let Some(nl) = rest.iter().position(|&b| b == b'\n') else { break };
                shared.push(RxMessage { bytes: rest[..nl].to_vec(), framing: RxFraming::Newline, connection: id });
                pos += nl + 1;
            }
        }
        buf.drain(..pos);
        if eof {
            if !buf.is_empty() {
                shared.push(RxMessage { bytes: std::mem::take(&mut buf), framing: RxFraming::Unterminated, connection: id });
            }
            return;
        }
        loop {
            if shared.shutdown.load(Ordering::SeqCst) {
                return;
            }
            match stream.read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    break;
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
    }
}

/// A UDP syslog receiver on `127.0.0.1:<free port>`: one message per datagram.
pub struct SyslogUdpReceiver {
    shared: Arc<Shared>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl SyslogUdpReceiver {
    pub fn start() -> SyslogUdpReceiver {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("udp rx: bind");
        let addr = sock.local_addr().unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let shared = Shared::new();
        let s2 = shared.clone();
        let thread = std::thread::Builder::new()
            .name("syslog-rx-udp".into())
            .spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !s2.shutdown.load(Ordering::SeqCst) {
                    if let Ok((n, _)) = sock.recv_from(&mut buf) {
                        let mut b = buf[..n].to_vec();
                        if b.last() == Some(&b'\n') {
                            b.pop();
                        }
                        s2.push(RxMessage { bytes: b, framing: RxFraming::Datagram, connection: 0 });
                    }
                }
            })
            .expect("spawn udp rx");
        SyslogUdpReceiver { shared, addr, thread: Some(thread) }
    }
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
    pub fn messages(&self) -> Vec<RxMessage> {
        self.shared.messages()
    }
    pub fn texts(&self) -> Vec<String> {
        self.messages().iter().map(RxMessage::text).collect()
    }
    /// Waits for at least `n` datagrams and returns them all; panics after `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<RxMessage> {
        self.shared.wait("SyslogUdpReceiver", n, timeout)
    }
}

impl Drop for SyslogUdpReceiver {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}

/// What [`RsyslogReceiver`] writes per received message (one line each).
#[derive(Debug, Clone)]
pub enum RxFormat {
    /// `%msg%`: the message part after the tag (rsyslog keeps its leading space).
    Msg,
    /// `%rawmsg%`: the message exactly as received (without the framing newline).
    Raw,
    /// A template string of the caller's (e.g. `"%hostname% %syslogtag%%msg%\n"`); must end with `\n`.
    Template(String),
}

/// A second real rsyslogd acting as a syslog receiver: imtcp on a free port, omfile to
/// `received.log` in its work dir.
pub struct RsyslogReceiver {
    pub rsyslogd: Rsyslogd,
}

impl RsyslogReceiver {
    /// Starts it; `extra` is appended to its config (e.g. an imudp input).
    pub fn start(format: RxFormat, extra: &str) -> RsyslogReceiver {
        let tpl = match &format {
            RxFormat::Msg => "%msg%\\n".to_string(),
            RxFormat::Raw => "%rawmsg%\\n".to_string(),
            RxFormat::Template(t) => t.replace('\n', "\\n").replace('"', "\\\""),
        };
        let body = format!(
            "template(name=\"testkit_rx\" type=\"string\" string=\"{tpl}\")\n\
             action(type=\"omfile\" file=\"{{WORKDIR}}/received.log\" template=\"testkit_rx\")\n{extra}\n"
        );
        RsyslogReceiver { rsyslogd: Rsyslogd::start(&body) }
    }
    pub fn port(&self) -> u16 {
        self.rsyslogd.port()
    }
    pub fn addr(&self) -> SocketAddr {
        self.rsyslogd.addr()
    }
    /// The lines written so far.
    pub fn lines(&self) -> Vec<String> {
        super::read_complete_lines(&self.rsyslogd.path("received.log"))
    }
    /// Waits for at least `n` lines and returns them; panics with rsyslogd's diagnostics.
    pub fn wait_for_lines(&mut self, n: usize, timeout: Duration) -> Vec<String> {
        self.rsyslogd.wait_for_lines("received.log", n, timeout)
    }
}
