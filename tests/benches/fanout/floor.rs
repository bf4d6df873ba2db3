//! Target C: the floor, the least any server can do to fan out on this machine. One thread
//! per CPU, the sockets dealt out in turn, each thread with its own epoll; per wake-up, one
//! non-blocking `write` to each of its sockets of the 200-byte SSE messages that arrived since
//! the last (one message at low rates; a thread that falls behind writes what queued up as
//! one batch, as any server would), and what a socket does not take is kept and written when
//! epoll says it is writable. No HTTP beyond reading the
//! request's head and writing a fixed answer head, no auth, no window, no coalescing: every
//! cost the streamer has on top is its own.
//!
//! The server is a child process (this binary run with [`SERVE_FLAG`]), so that its sockets do
//! not share the bench's open-file limit and its CPU time is told apart. Its events are
//! generated on a 1 ms tick at the rate the bench sets (`GET /rate/<n>`; a new rate starts a new
//! epoch), stamped with their creation time, and handed to every writer thread through a
//! channel and a `mio::Waker`.

use std::io::{BufRead as _, BufReader, ErrorKind, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};

/// Bytes of one SSE message, `data:` line and blank line included.
pub(crate) const MESSAGE_BYTES: usize = 200;
/// The answer to every request.
const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
    Cache-Control: no-cache\r\nConnection: close\r\n\r\n";
/// The answer to a rate change.
const CONTROL_ANSWER: &[u8] = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
/// The waker's token; sockets take the others.
const WAKE: Token = Token(usize::MAX);

/// The flag that makes the bench binary the floor's server.
pub(crate) const SERVE_FLAG: &str = "--serve-floor";

/// What a writer thread is told.
enum Order {
    Socket(std::net::TcpStream),
    Event(Arc<[u8]>),
}

/// A writer thread's handle.
struct Writer {
    commands: Sender<Order>,
    waker: Arc<Waker>,
}

impl Writer {
    fn send(&self, command: Order) {
        if self.commands.send(command).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// The floor's server, a child process (this binary with [`SERVE_FLAG`]), killed when dropped.
#[derive(Debug)]
pub(crate) struct Floor {
    child: Child,
    addr: SocketAddr,
}

impl Floor {
    /// Starts the server and waits for the port it listens on.
    pub(crate) fn start() -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--bench", SERVE_FLAG])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the floor's server")?;
        let mut line = String::new();
        let stdout = child
            .stdout
            .take()
            .context("the floor's server has no stdout")?;
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .parse()
            .with_context(|| format!("the floor's server said {line:?}, not its address"))?;
        Ok(Self { child, addr })
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where clients connect.
    pub(crate) fn url(&self) -> String {
        format!("http://{}/floor", self.addr)
    }

    /// Generates `rate` events a second to every client until the stream is dropped.
    pub(crate) fn stream(&self, rate: u32) -> anyhow::Result<FloorStream> {
        control(self.addr, rate)?;
        Ok(FloorStream { addr: self.addr })
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running event source of the floor, stopped when dropped.
#[derive(Debug)]
pub(crate) struct FloorStream {
    addr: SocketAddr,
}

impl Drop for FloorStream {
    fn drop(&mut self) {
        let _ = control(self.addr, 0);
    }
}

/// Sets the server's event rate (0: none) with a `GET /rate/<n>`.
fn control(addr: SocketAddr, rate: u32) -> anyhow::Result<()> {
    let mut socket = std::net::TcpStream::connect(addr)?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(socket, "GET /rate/{rate} HTTP/1.1\r\nHost: floor\r\n\r\n")?;
    let mut answer = String::new();
    socket.read_to_string(&mut answer)?;
    anyhow::ensure!(
        answer.starts_with("HTTP/1.1 204"),
        "the floor's server answered {answer:?} to a rate"
    );
    Ok(())
}

/// The server (in the child process): prints its address, then serves until killed.
pub(crate) fn serve() -> anyhow::Result<()> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    println!("{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let rate = Arc::new(AtomicU32::new(0));
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut writers = Vec::with_capacity(cpus);
    for n in 0..cpus {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let (commands, received) = mpsc::channel();
        let rate = Arc::clone(&rate);
        std::thread::Builder::new()
            .name(format!("srv-floor-{n}"))
            .spawn(move || write_loop(poll, &received, &rate))?;
        writers.push(Writer { commands, waker });
    }
    let writers = Arc::new(writers);
    let source = Arc::clone(&writers);
    let generating = Arc::clone(&rate);
    std::thread::Builder::new()
        .name("srv-floor-events".to_owned())
        .spawn(move || events(&source, &generating))?;
    for (n, socket) in listener.incoming().enumerate() {
        if let Ok(socket) = socket {
            writers[n % writers.len()].send(Order::Socket(socket));
        }
    }
    Ok(())
}

/// Generates the events at the rate in force, on a 1 ms tick; a new rate starts a new epoch.
fn events(writers: &[Writer], rate: &AtomicU32) {
    let (mut current, mut epoch, mut started, mut sequence) = (0, 0_u64, Instant::now(), 0_u64);
    loop {
        std::thread::sleep(Duration::from_millis(1));
        let wanted = rate.load(Ordering::Acquire);
        if wanted != current {
            (current, started, sequence) = (wanted, Instant::now(), 0);
            epoch += 1;
        }
        let due = (started.elapsed().as_secs_f64() * f64::from(current)) as u64;
        while sequence < due {
            sequence += 1;
            let message: Arc<[u8]> = message(epoch, sequence).into();
            for writer in writers {
                writer.send(Order::Event(Arc::clone(&message)));
            }
        }
    }
}

/// Event `sequence` of `epoch` as SSE, exactly [`MESSAGE_BYTES`] long, stamped now.
fn message(epoch: u64, sequence: u64) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut text = format!(
        "data: {{\"epoch\":{epoch},\"seq\":{sequence},\"emit_ns\":{now},\"symbol\":\"BTC-USD\",\"pad\":\""
    );
    let fill = MESSAGE_BYTES.saturating_sub(text.len() + 4);
    text.extend(std::iter::repeat_n('x', fill));
    text.push_str("\"}\n\n");
    text.into_bytes()
}

/// One client socket of a writer thread.
struct Conn {
    socket: TcpStream,
    /// Bytes of the request head read so far; `None` once answered (streaming).
    request: Option<Vec<u8>>,
    /// What the socket did not take yet.
    pending: Vec<u8>,
}

/// A writer thread: takes sockets and events from its channel, writes, and waits on epoll.
fn write_loop(mut poll: Poll, commands: &Receiver<Order>, rate: &AtomicU32) {
    let mut events = Events::with_capacity(1024);
    let mut conns: Vec<Option<Conn>> = Vec::new();
    loop {
        if poll.poll(&mut events, None).is_err() {
            continue;
        }
        for event in &events {
            if event.token() == WAKE {
                continue;
            }
            let slot = event.token().0;
            let Some(conn) = conns.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            let open = if conn.request.is_some() {
                read_request(conn, rate)
            } else {
                // Readable while streaming: the client closed (it sends nothing else).
                drain(conn) && flush(conn, poll.registry(), event.token())
            };
            if !open && let Some(mut conn) = conns[slot].take() {
                let _ = poll.registry().deregister(&mut conn.socket);
            }
        }
        let mut batch = Vec::new();
        while let Ok(command) = commands.try_recv() {
            match command {
                Order::Socket(socket) => {
                    if socket.set_nonblocking(true).is_err() || socket.set_nodelay(true).is_err() {
                        continue;
                    }
                    let mut socket = TcpStream::from_std(socket);
                    let slot = conns.iter().position(Option::is_none).unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    if poll
                        .registry()
                        .register(&mut socket, Token(slot), Interest::READABLE)
                        .is_ok()
                    {
                        conns[slot] = Some(Conn {
                            socket,
                            request: Some(Vec::new()),
                            pending: Vec::new(),
                        });
                    }
                }
                Order::Event(message) => batch.extend_from_slice(&message),
            }
        }
        if !batch.is_empty() {
            write_all_sockets(&mut conns, poll.registry(), &batch);
        }
    }
}

/// One `write` of `message` to every streaming socket; what a socket does not take is kept,
/// and epoll asked to say when it is writable.
fn write_all_sockets(conns: &mut [Option<Conn>], registry: &mio::Registry, message: &[u8]) {
    for (slot, entry) in conns.iter_mut().enumerate() {
        let Some(conn) = entry else { continue };
        if conn.request.is_some() {
            continue;
        }
        if !conn.pending.is_empty() {
            conn.pending.extend_from_slice(message);
            continue;
        }
        match conn.socket.write(message) {
            Ok(n) if n == message.len() => continue,
            Ok(n) => conn.pending.extend_from_slice(&message[n..]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => conn.pending.extend_from_slice(message),
            Err(_) => {
                let _ = registry.deregister(&mut conn.socket);
                *entry = None;
                continue;
            }
        }
        let _ = registry.reregister(
            &mut conn.socket,
            Token(slot),
            Interest::READABLE | Interest::WRITABLE,
        );
    }
}

/// Reads the request's head; once complete, answers with [`HEAD`]. False if the socket is done.
/// A `GET /rate/<n>` sets the event rate, is answered `204` and closed.
fn read_request(conn: &mut Conn, rate: &AtomicU32) -> bool {
    let Some(request) = conn.request.as_mut() else {
        return true;
    };
    let mut buf = [0_u8; 4096];
    loop {
        match conn.socket.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => request.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(_) => return false,
        }
    }
    if request.windows(4).any(|w| w == b"\r\n\r\n") {
        if let Some(rest) = request.strip_prefix(b"GET /rate/") {
            let digits: Vec<u8> = rest
                .iter()
                .copied()
                .take_while(u8::is_ascii_digit)
                .collect();
            if let Some(n) = std::str::from_utf8(&digits)
                .ok()
                .and_then(|d| d.parse().ok())
            {
                rate.store(n, Ordering::Release);
            }
            let _ = conn.socket.write_all(CONTROL_ANSWER);
            return false;
        }
        conn.request = None;
        // A fresh socket's buffer takes the head whole.
        return conn.socket.write_all(HEAD).is_ok();
    }
    true
}

/// Reads and drops what the client sent; false once it closed.
fn drain(conn: &mut Conn) -> bool {
    let mut buf = [0_u8; 512];
    loop {
        match conn.socket.read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

/// Writes what is pending; back to read interest only once all is out. False on error.
fn flush(conn: &mut Conn, registry: &mio::Registry, token: Token) -> bool {
    while !conn.pending.is_empty() {
        match conn.socket.write(&conn.pending) {
            Ok(n) => {
                conn.pending.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
    registry
        .reregister(&mut conn.socket, token, Interest::READABLE)
        .is_ok()
}
