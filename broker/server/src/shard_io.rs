//! The I/O side of one shard: the core's [`Shard`] and the rooms around it, each holding its
//! own state: the connection table ([`ConnTable`]), the link to the other shards
//! ([`ShardLink`]), the flusher ([`Flusher`]), parking and lingering. The methods here are the
//! ones that need several rooms at once: a connection's task reading, the flusher writing,
//! parking, handoff, close, and the shard's tick.
//!
//! Every read, write, park and close of a connection goes through its transport
//! ([`crate::transport`]); none of the code here knows whether bytes are encrypted or framed.

use std::cell::{Cell, RefCell};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use glommio::channels::channel_mesh::Senders;
use glommio::net::TcpStream;
use ironsight_auth::{Answer, AuthService};
use ironsight_codec::{BytesMut, ReasonCode};
use ironsight_core::auth::{AuthRequest, Refusal};
use ironsight_core::conn::{ClientCertificate, ConnId, Identity};
use ironsight_core::outbuf::OutBuf;
use ironsight_core::routing::{ShardId, ShardMsg};
use ironsight_core::shard::Reconfigured;
use ironsight_core::{Event, Handoff, Shard};

use crate::conns::{ConnIo, ConnTable, Socket};
use crate::flusher::Flusher;
use crate::link::{Adopted, Envelope, ShardLink};
use crate::live_config::generation::Generation;
use crate::log_budget::LogBudget;
use crate::transport::layered::Learnt;
use crate::transport::linger::{self, Lingering};
use crate::transport::park::{self, Parking};
use crate::transport::send::{send_all, Sent};
use crate::transport::{EndpointTransport, Transport, TransportError, Upward, CARRY_MAX};

/// Bytes read from a socket at once, into one buffer the shard shares.
pub const READ_CHUNK: usize = 64 * 1024;
/// Reads one connection may do before yielding to the others.
pub const READS_PER_POLL: u32 = 8;
/// Seconds without traffic before a connection gives up its task and waits in epoll.
pub const PARK_AFTER_S: u64 = 2;
/// Seconds a closing connection may take to accept its last bytes before it is cut off.
pub const CLOSE_GRACE_S: u32 = 5;
/// Refused connections logged one by one a second, per shard; the rest are counted.
pub const REFUSALS_LOGGED_PER_S: u32 = 20;

/// The slices task's pause between two slices of a SUBSCRIBE in progress.
const SLICE_PAUSE: Duration = Duration::from_micros(50);
/// The least pause between two turns of a paced notification round: a few notifications a
/// turn rather than a timer per notification.
const PACED_PAUSE: Duration = Duration::from_millis(5);

pub struct ShardIo {
    pub id: ShardId,
    core: RefCell<Shard>,
    conns: RefCell<ConnTable>,
    link: ShardLink,
    flusher: Flusher,
    /// Wakes the slices task (the same once-a-round wake-up as the flusher's).
    slicer: Flusher,
    parking: Parking,
    lingering: Lingering,
    /// What each endpoint accepts, by endpoint number.
    endpoints: RefCell<Vec<EndpointTransport>>,
    /// The read buffer every connection of the shard shares: room for a read, and in front of
    /// it for the bytes a transport carried over from the last one.
    scratch: RefCell<Box<[u8]>>,
    clock_s: Cell<u32>,
    /// Refused connections logged a second; a flood of them must not stall the shard.
    refusals_logged: LogBudget,
    /// Connections parked since the allocator last gave memory back.
    parked_since_collect: Cell<u32>,
    /// Reused between flushes, so that a flush allocates nothing.
    dirty: RefCell<Vec<ConnId>>,
    /// Connections whose transport has bytes of its own to write (a handshake flight, a pong).
    transport_dirty: RefCell<Vec<ConnId>>,
    outbox: RefCell<Vec<(ShardId, ShardMsg)>>,
    events: RefCell<Vec<Event>>,
    /// Where CONNECTs of authenticating endpoints are checked; `None` when no endpoint
    /// authenticates.
    auth: Option<Arc<AuthService>>,
}

fn shutdown_socket(fd: RawFd) {
    // SAFETY: shutdown on an fd number this shard still owns; errors (already closed by the
    // peer) are harmless.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// A second fd for the same socket, for a task that keeps its stream while the socket goes
/// elsewhere (another shard, a lingering task).
fn dup(fd: RawFd) -> std::io::Result<OwnedFd> {
    let new = nix::unistd::dup(fd)?;
    // SAFETY: dup returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

impl ShardIo {
    pub fn new(
        core: Shard,
        senders: Senders<Envelope>,
        parking: Parking,
        endpoints: Vec<EndpointTransport>,
        auth: Option<Arc<AuthService>>,
    ) -> Rc<ShardIo> {
        Rc::new(ShardIo {
            id: core.id,
            core: RefCell::new(core),
            conns: RefCell::new(ConnTable::default()),
            link: ShardLink::new(senders),
            flusher: Flusher::default(),
            slicer: Flusher::default(),
            parking,
            lingering: Lingering::default(),
            endpoints: RefCell::new(endpoints),
            scratch: RefCell::new(vec![0; CARRY_MAX + READ_CHUNK].into_boxed_slice()),
            clock_s: Cell::new(0),
            refusals_logged: LogBudget::new(REFUSALS_LOGGED_PER_S),
            parked_since_collect: Cell::new(0),
            dirty: RefCell::new(Vec::new()),
            transport_dirty: RefCell::new(Vec::new()),
            outbox: RefCell::new(Vec::new()),
            events: RefCell::new(Vec::new()),
            auth,
        })
    }

    pub fn core(&self) -> std::cell::RefMut<'_, Shard> {
        self.core.borrow_mut()
    }

    fn with_conn<T>(
        &self,
        conn: ConnId,
        generation: u32,
        f: impl FnOnce(&mut ConnIo) -> T,
    ) -> Option<T> {
        self.conns.borrow_mut().get(conn, generation).map(f)
    }

    // ----- connections arriving -----

    /// A connection accepted on this shard's listener for `endpoint`.
    pub fn accepted(self: &Rc<Self>, endpoint: u16, stream: TcpStream) {
        let peer = match stream.peer_addr() {
            Ok(peer) => peer,
            Err(_) => return, // already gone
        };
        let (conn, generation) = self.core().open(Instant::now(), endpoint, peer);
        let transport = Transport::accept(&self.endpoints.borrow()[usize::from(endpoint)]);
        self.start_task(conn, generation, endpoint, stream, transport);
    }

    /// Enters a connection in the table and starts its task, which owns the stream.
    fn start_task(
        self: &Rc<Self>,
        conn: ConnId,
        generation: u32,
        endpoint: u16,
        stream: TcpStream,
        transport: Transport,
    ) {
        let io = ConnIo::new(generation, endpoint, stream.as_raw_fd(), transport);
        self.conns.borrow_mut().insert(conn, io);
        glommio::spawn_local(crate::connection::serve(
            self.clone(),
            conn,
            generation,
            stream,
        ))
        .detach();
    }

    /// An envelope from another shard.
    pub fn from_shard(self: &Rc<Self>, envelope: Envelope) {
        let now = Instant::now();
        match envelope {
            Envelope::Adopt(adopted) => {
                let Adopted {
                    handoff,
                    fd,
                    transport,
                } = *adopted;
                let (conn, generation) = self.core().adopt(now, &handoff);
                // SAFETY: the fd came over the channel with ownership, and is passed on once.
                let stream = unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) };
                self.start_task(conn, generation, handoff.endpoint, stream, transport);
            }
            Envelope::Core(msg) => self.core().remote(now, msg),
        }
        self.flusher.schedule();
    }

    // ----- the connection task's side -----

    /// One poll of a connection task: write what is pending if the socket was full, read and
    /// process input, park when idle. `Ready` ends the task.
    pub fn poll_connection(
        self: &Rc<Self>,
        conn: ConnId,
        generation: u32,
        stream: &mut TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        use futures_lite::AsyncRead;
        let mut reads = 0;
        let mut read_any = false;
        loop {
            let Some((write_blocked, park)) =
                self.with_conn(conn, generation, |c| (c.write_blocked, c.park_requested))
            else {
                return Poll::Ready(()); // closed or handed off: dropping the stream closes our fd
            };
            if write_blocked {
                match self.write_own(conn, generation, stream, cx) {
                    Poll::Ready(()) => continue,
                    Poll::Pending => {}
                }
            }
            // A peer that does not read its answers (its socket is full and so is the send
            // buffer) gets no more: its requests wait in its socket until it reads.
            let answers_full = write_blocked && self.core.borrow().output_full(conn);
            if !answers_full && self.core().wants_input(conn) && !self.link.is_throttled(cx) {
                if reads == READS_PER_POLL {
                    cx.waker().wake_by_ref(); // fairness: let the other connections run
                    break;
                }
                reads += 1;
                let mut scratch = self.scratch.borrow_mut();
                let carried = self.with_conn(conn, generation, |c| {
                    let carried = c.transport.carried();
                    scratch[..carried.len()].copy_from_slice(carried);
                    carried.len()
                });
                let carried = carried.unwrap_or(0);
                let into = &mut scratch[carried..carried + READ_CHUNK];
                match std::pin::Pin::new(&mut *stream).poll_read(cx, into) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        drop(scratch);
                        self.lost(conn);
                        continue;
                    }
                    Poll::Ready(Ok(n)) => {
                        read_any = true;
                        self.conns.borrow_mut().count(conn, n, 0);
                        self.bytes_read(conn, generation, &mut scratch[..carried + n]);
                        drop(scratch);
                        // A handoff must happen before this task reads on.
                        self.handle_events();
                        self.flusher.schedule();
                        continue;
                    }
                    // Parked only when its socket has nothing to read. A connection unparked
                    // for its input is idle by its last packet until it reads that input, so a
                    // tick between the unpark and its task's first run asks it to park; parked
                    // unread, its socket is readable at once and the relay unparks it again.
                    // With many unparked together (a million clients disconnecting) the tasks
                    // wait longer than a tick to run, and each tick sent them round again.
                    Poll::Pending => {
                        drop(scratch);
                        if park && !read_any && self.try_park(conn, generation, stream) {
                            return Poll::Ready(());
                        }
                    }
                }
            }
            break;
        }
        self.with_conn(conn, generation, |c| {
            if let Socket::Active { waker, .. } = &mut c.socket {
                if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *waker = Some(cx.waker().clone());
                }
            }
        });
        Poll::Pending
    }

    /// Bytes read from `conn`'s socket (after what its transport carried over): through the
    /// transport, into the core.
    fn bytes_read(&self, conn: ConnId, generation: u32, data: &mut [u8]) {
        let now = Instant::now();
        let mut conns = self.conns.borrow_mut();
        let Some(c) = conns.get(conn, generation) else {
            return;
        };
        if let Transport::Plain = c.transport {
            drop(conns);
            self.core().input(conn, now, data);
            return;
        }
        let endpoints = self.endpoints.borrow();
        let mut up = CoreUp {
            core: &self.core,
            conn,
            generation,
            now,
            after_handoff: None,
        };
        let result = c
            .transport
            .read(data, &endpoints[usize::from(c.endpoint)], &mut up);
        let pending = c.transport.has_pending();
        let after_handoff = up.after_handoff;
        drop(conns);
        if let Some(rest) = after_handoff {
            self.complete_handoff(conn, rest);
        }
        match result {
            Ok(()) if pending => self.transport_dirty.borrow_mut().push(conn),
            Ok(()) => {}
            Err(error) => self.refused(conn, &error),
        }
    }

    /// Adds what the transport passed up after the CONNECT that moved `conn` to another shard
    /// (a TLS read holds several records) to the handoff, which carries it there.
    fn complete_handoff(&self, conn: ConnId, rest: BytesMut) {
        let mut events = self.events.borrow_mut();
        self.core().take_events(&mut events);
        for event in events.iter_mut() {
            let Event::Handoff {
                conn: moving,
                handoff,
                ..
            } = event
            else {
                continue;
            };
            if *moving == conn {
                let mut all = BytesMut::from(&handoff.rest[..]);
                all.extend_from_slice(&rest);
                handoff.rest = all.freeze();
            }
        }
    }

    /// The transport ends the connection (a failed handshake, a WebSocket violation, a PROXY
    /// header missing): the core forgets it, the transport's last words go out, the socket
    /// closes.
    fn refused(&self, conn: ConnId, error: &TransportError) {
        let peer = self.core.borrow().peer(conn);
        if error.peer_closed() {
            tracing::debug!(conn, ?peer, %error, "transport closed by the client");
        } else if self.refusals_logged.allow(self.clock_s.get()) {
            let peer = peer.map_or_else(|| "unknown".into(), |p| p.to_string());
            tracing::info!(%peer, %error, "connection refused");
        }
        self.end_below_mqtt(conn);
    }

    /// Ends a connection for a reason below MQTT (its transport failed, its certificate was
    /// revoked): the core ends it as if the socket broke, the transport says its goodbye.
    fn end_below_mqtt(&self, conn: ConnId) {
        self.core().lost(conn, Instant::now());
        self.close_after_last_bytes(conn);
    }

    /// Queues the transport's goodbye (close frame, close_notify) and tries once to write it
    /// with anything else still pending; a peer that does not read is not waited for. Returns
    /// whether a goodbye went out, to which the peer will answer.
    fn say_goodbye(&self, conn: ConnId) -> bool {
        let mut conns = self.conns.borrow_mut();
        let Some(c) = conns.any(conn) else {
            return false;
        };
        let goodbye = c.transport.goodbye();
        if goodbye || c.transport.has_pending() {
            let mut nothing = OutBuf::default();
            let mut sent = 0;
            let _ = send_all(c.fd(), &mut c.transport, &mut nothing, &mut sent);
            conns.count(conn, 0, sent);
        }
        goodbye
    }

    /// Writes a blocked connection's output from its own task. `Ready` when it made progress
    /// (the caller looks again), `Pending` when the socket is still full; glommio then wakes the
    /// task once it drains.
    fn write_own(
        self: &Rc<Self>,
        conn: ConnId,
        generation: u32,
        stream: &mut TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        match self.write(conn) {
            Ok(sent @ (Sent::All | Sent::Held)) => {
                self.with_conn(conn, generation, |c| c.write_blocked = false);
                if self.core.borrow().is_closing(conn) {
                    // Held bytes go when the journal reports, and the flusher closes it then.
                    if matches!(sent, Sent::All) {
                        self.close_after_last_bytes(conn);
                    }
                } else {
                    // Room again: queued messages move into the output, for the flusher to write.
                    self.core().written(conn, Instant::now());
                    self.flusher.schedule();
                }
                Poll::Ready(())
            }
            Ok(Sent::Blocked) => match self.arm_writable(conn, stream, cx) {
                Poll::Ready(Ok(())) => Poll::Ready(()),
                Poll::Ready(Err(_)) => {
                    self.lost(conn);
                    Poll::Ready(())
                }
                Poll::Pending => Poll::Pending,
            },
            Err(_) => {
                self.lost(conn);
                Poll::Ready(())
            }
        }
    }

    /// Waits for a full socket to drain: glommio's write tries the next bytes once more and
    /// otherwise polls the socket for room, waking this task.
    fn arm_writable(
        &self,
        conn: ConnId,
        stream: &mut TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        use futures_lite::AsyncWrite;
        let mut conns = self.conns.borrow_mut();
        let mut core = self.core();
        let (Some(c), Some(out)) = (conns.any(conn), core.output(conn)) else {
            return Poll::Ready(Ok(()));
        };
        if let Err(e) = c.transport.prepare(out) {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                e,
            )));
        }
        let mut slices = [std::io::IoSlice::new(&[])];
        if c.transport.io_slices(out, &mut slices) == 0 {
            return Poll::Ready(Ok(()));
        }
        match std::pin::Pin::new(&mut *stream).poll_write(cx, &slices[0]) {
            Poll::Ready(Ok(n)) => {
                c.transport.advance(out, n);
                conns.count(conn, 0, n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Parks an idle connection: the socket moves to the epoll set and the task ends.
    fn try_park(&self, conn: ConnId, generation: u32, stream: &TcpStream) -> bool {
        let idle = {
            let core = self.core.borrow();
            core.wants_input(conn) && !core.has_output(conn) && !core.is_closing(conn)
        };
        let busy = self.with_conn(conn, generation, |c| {
            c.park_requested = false;
            c.write_blocked || c.transport.has_pending()
        });
        if !idle || busy != Some(false) {
            return false;
        }
        let Ok(fd) = dup(stream.as_raw_fd()) else {
            return false;
        };
        if let Err(error) = self
            .parking
            .park(fd.as_fd(), park::token(conn, generation), false)
        {
            tracing::warn!(conn, %error, "cannot park connection; it stays active");
            return false;
        }
        self.core().release_buffers(conn);
        self.with_conn(conn, generation, |c| {
            c.transport.release_buffers();
            c.socket = Socket::Parked { fd };
        });
        self.parked_since_collect
            .set(self.parked_since_collect.get() + 1);
        tracing::debug!(conn, "parked");
        true
    }

    /// A parked connection has input (a relay token) or output that did not fit the socket:
    /// it gets a task again.
    pub fn unpark(self: &Rc<Self>, token: park::Token) {
        let (conn, generation) = park::untoken(token);
        let stream = self.with_conn(conn, generation, |c| {
            let Socket::Parked { fd } = &c.socket else {
                return None; // already has a task (a stale relay token)
            };
            let _ = self.parking.unwatch(fd.as_fd());
            let placeholder = Socket::Active {
                fd: -1,
                waker: None,
            };
            let Socket::Parked { fd } = std::mem::replace(&mut c.socket, placeholder) else {
                unreachable!("matched above")
            };
            let raw = fd.into_raw_fd();
            c.socket = Socket::Active {
                fd: raw,
                waker: None,
            };
            // SAFETY: ownership of the fd moves into the stream.
            Some(unsafe { TcpStream::from_raw_fd(raw) })
        });
        if let Some(Some(stream)) = stream {
            glommio::spawn_local(crate::connection::serve(
                self.clone(),
                conn,
                generation,
                stream,
            ))
            .detach();
        }
    }

    // ----- output -----

    /// The flusher task's poll: flushes when scheduled.
    pub fn poll_flusher(self: &Rc<Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.flusher.due(cx) {
            self.flush();
        }
        Poll::Pending
    }

    /// Writes every dirty connection, sends the outbox to the other shards, performs handoffs.
    pub fn flush(self: &Rc<Self>) {
        loop {
            let mut dirty = std::mem::take(&mut *self.dirty.borrow_mut());
            self.core().take_dirty(&mut dirty);
            dirty.append(&mut self.transport_dirty.borrow_mut());
            if dirty.is_empty() {
                *self.dirty.borrow_mut() = dirty;
                break;
            }
            for &conn in &dirty {
                self.flush_conn(conn);
            }
            dirty.clear();
            *self.dirty.borrow_mut() = dirty;
            self.handle_events();
        }
        self.route_outbox();
        self.handle_events();
        // Only work due now: a paced notification round has the slices task wait for its
        // next turn, which every flush would otherwise cut short.
        let now = Instant::now();
        if self
            .core
            .borrow()
            .next_work(now)
            .is_some_and(|at| at <= now)
        {
            self.slicer.schedule();
        }
    }

    /// Writes what `conn` has pending, through its transport.
    fn write(&self, conn: ConnId) -> std::io::Result<Sent> {
        let mut conns = self.conns.borrow_mut();
        let mut core = self.core();
        let (Some(c), Some(out)) = (conns.any(conn), core.output(conn)) else {
            return Ok(Sent::All);
        };
        let mut sent = 0;
        let result = send_all(c.fd(), &mut c.transport, out, &mut sent);
        conns.count(conn, 0, sent);
        result
    }

    fn flush_conn(self: &Rc<Self>, conn: ConnId) {
        let Some(blocked) = self.conns.borrow_mut().any(conn).map(|c| c.write_blocked) else {
            return;
        };
        let closing = self.core.borrow().is_closing(conn);
        if blocked {
            // Its task writes when the socket drains. A closing connection whose peer does not
            // read gets CLOSE_GRACE_S from now, then the tick cuts it off.
            if closing {
                self.start_close_grace(conn);
            }
            return;
        }
        match self.write(conn) {
            Ok(Sent::All) if closing => {
                self.close_after_last_bytes(conn);
            }
            // The rest waits for the journal; its report lists the connection again.
            Ok(Sent::Held) if closing => {}
            Ok(Sent::All | Sent::Held) => self.core().written(conn, Instant::now()),
            Ok(Sent::Blocked) => {
                if closing {
                    self.start_close_grace(conn);
                }
                let parked = {
                    let mut conns = self.conns.borrow_mut();
                    let c = conns.any(conn).expect("present above");
                    c.write_blocked = true;
                    c.wake();
                    c.is_parked().then_some(c.generation)
                };
                // Its task waits for the socket to drain; a parked connection needs one again.
                if let Some(generation) = parked {
                    self.unpark(park::token(conn, generation));
                }
            }
            Err(_) => {
                self.core().lost(conn, Instant::now());
                self.close_now(conn);
            }
        }
    }

    fn start_close_grace(&self, conn: ConnId) {
        let clock = self.clock_s.get();
        if let Some(c) = self.conns.borrow_mut().any(conn) {
            c.closing_since_s.get_or_insert(clock);
        }
    }

    /// The peer is gone (EOF or error): the core ends the connection, the socket closes now.
    fn lost(self: &Rc<Self>, conn: ConnId) {
        self.core().lost(conn, Instant::now());
        self.close_now(conn);
        self.flusher.schedule();
    }

    /// Closes the socket and forgets the connection. An active task notices and ends.
    fn close_now(&self, conn: ConnId) {
        self.close(conn, Linger::Never);
    }

    /// Closes a closing connection whose last bytes are in the kernel, with its transport's
    /// goodbye after them. The socket lingers (see [`crate::transport::linger`]) while the peer
    /// still has something to say: input it sent that was never read, or will send because
    /// the broker, not the peer, ended the connection (closing would reset the connection on
    /// its next bytes and destroy our last ones, the DISCONNECT telling it why), or its answer
    /// to our goodbye (a WebSocket close frame, a TLS close_notify).
    fn close_after_last_bytes(&self, conn: ConnId) {
        let answer_expected = self.say_goodbye(conn);
        let peer_talking = self.core.borrow().peer_may_still_send(conn);
        self.close(
            conn,
            if answer_expected || peer_talking {
                Linger::Always
            } else {
                Linger::IfUnreadInput
            },
        );
    }

    fn close(&self, conn: ConnId, linger: Linger) {
        let entry = self.conns.borrow_mut().take(conn);
        if let Some(c) = entry {
            c.wake(); // an active task drops its stream, which closes its fd
            let fd = c.fd();
            let lingers = match linger {
                Linger::Never => false,
                Linger::IfUnreadInput => linger::has_unread_input(fd),
                Linger::Always => true,
            };
            let socket = if lingers {
                self.linger(c.socket)
            } else {
                Some(c.socket)
            };
            if let Some(socket) = socket {
                shutdown_socket(fd);
                drop(socket); // a parked socket's fd closes here
            }
        }
        self.core().release(conn, Instant::now());
    }

    /// Hands a socket to a lingering task; gives it back when that cannot be done.
    fn linger(&self, socket: Socket) -> Option<Socket> {
        let fd = match socket {
            Socket::Parked { fd } => {
                let _ = self.parking.unwatch(fd.as_fd());
                fd
            }
            // The task closes its own fd when it ends; the lingering task gets a dup.
            Socket::Active { fd, .. } => match dup(fd) {
                Ok(fd) => fd,
                Err(_) => return Some(Socket::Active { fd, waker: None }),
            },
        };
        self.lingering
            .start(fd)
            .err()
            .map(|fd| Socket::Parked { fd })
    }

    fn handle_events(&self) {
        let mut events = std::mem::take(&mut *self.events.borrow_mut());
        self.core().take_events(&mut events);
        for event in events.drain(..) {
            match event {
                Event::Handoff { conn, to, handoff } => self.hand_off(conn, to, handoff),
                Event::Authenticate(request) => self.ask_auth(*request),
                Event::Refused {
                    peer,
                    client_id,
                    why,
                } => {
                    if self.refusals_logged.allow(self.clock_s.get()) {
                        let client_id = client_id.as_deref().unwrap_or("");
                        tracing::info!(%peer, client_id, error = %why, "connection refused");
                    }
                }
            }
        }
        *self.events.borrow_mut() = events;
    }

    /// Hands a CONNECT to the auth service. Without one (no endpoint was configured to
    /// authenticate, so the core should not have asked), the client is told the server is
    /// unavailable rather than left waiting.
    fn ask_auth(&self, request: AuthRequest) {
        match &self.auth {
            Some(auth) => auth.submit(request),
            None => {
                tracing::error!(
                    conn = request.conn,
                    "authentication asked, but no auth service runs"
                );
                let answer = Answer {
                    shard: request.shard,
                    conn: request.conn,
                    ticket: request.ticket,
                    answer: Err(Refusal::Unavailable).into(),
                };
                self.verdicts(vec![answer]);
            }
        }
    }

    /// The journal's first `records` records are on disk: the output that waited for them
    /// goes out (`ironsight_core::shard` holds it until then).
    pub fn durable(&self, records: u64) {
        self.core().durable(records);
        self.flusher.schedule();
    }

    /// Verdicts of the auth service: each CONNECT is accepted or refused; an accepted
    /// connection's task reads again.
    pub fn verdicts(&self, mut answers: Vec<Answer>) {
        let now = Instant::now();
        let mut resumed = Vec::new();
        {
            let mut core = self.core();
            for answer in answers.drain(..) {
                core.authenticated(answer.conn, answer.ticket, now, answer.answer, &mut resumed);
            }
        }
        let mut conns = self.conns.borrow_mut();
        for conn in resumed {
            if let Some(c) = conns.any(conn) {
                c.wake();
            }
        }
        drop(conns);
        self.flusher.schedule();
    }

    /// Sends a connection, its socket and its transport to the shard that owns its client id.
    fn hand_off(&self, conn: ConnId, to: ShardId, handoff: Box<Handoff>) {
        let Some(c) = self.conns.borrow_mut().take(conn) else {
            return;
        };
        c.wake(); // an active task finds its connection gone, and ends
        let fd = match c.socket {
            Socket::Parked { fd } => Ok(fd),
            // The task keeps its stream (and closes it when it ends); the other shard gets a dup.
            Socket::Active { fd, .. } => dup(fd),
        };
        match fd {
            Ok(fd) => {
                let adopted = Adopted {
                    handoff,
                    fd,
                    transport: c.transport,
                };
                tracing::debug!(conn, to, "handed over to the shard that owns the client id");
                self.link.send(to, Envelope::Adopt(Box::new(adopted)));
            }
            Err(error) => {
                tracing::warn!(conn, %error, "cannot hand the connection over; it is dropped")
            }
        }
    }

    // ----- other shards -----

    fn route_outbox(&self) {
        let mut outbox = std::mem::take(&mut *self.outbox.borrow_mut());
        self.core().take_outbox(&mut outbox);
        for (to, msg) in outbox.drain(..) {
            self.link.send(to, Envelope::Core(msg));
        }
        *self.outbox.borrow_mut() = outbox;
    }

    /// The slices task: one slice of the longest-waiting SUBSCRIBE in progress per turn, and a
    /// pause between turns in which the shard polls its sockets and runs the other
    /// connections, so that a SUBSCRIBE with half a million filters delays them by one slice
    /// at a time (`ironsight_core::shard::SUBSCRIBE_SLICE` filters), not by the whole packet.
    /// A notification round goes at its pace: between its turns the task sleeps until the
    /// next is due (at least [`PACED_PAUSE`]), or until a SUBSCRIBE needs a slice.
    pub async fn slices(self: Rc<Self>) {
        let mut resumed = Vec::new();
        let slicer_due = || {
            futures_lite::future::poll_fn(|cx| match self.slicer.due(cx) {
                true => Poll::Ready(()),
                false => Poll::Pending,
            })
        };
        loop {
            slicer_due().await;
            loop {
                let now = Instant::now();
                let Some(at) = self.core.borrow().next_work(now) else {
                    break;
                };
                if at > now {
                    let pause = (at - now).max(PACED_PAUSE);
                    futures_lite::future::or(glommio::timer::sleep(pause), slicer_due()).await;
                    continue;
                }
                self.core().work(now, &mut resumed);
                for conn in resumed.drain(..) {
                    if let Some(c) = self.conns.borrow_mut().any(conn) {
                        c.wake(); // its task reads again
                    }
                }
                self.flusher.schedule();
                // A timer, not a yield: glommio runs ready tasks without polling the sockets
                // until its preemption timer (100 ms) fires, so yielding would keep them waiting.
                glommio::timer::sleep(SLICE_PAUSE).await;
            }
        }
    }

    /// The drainer task: waits on full channels to other shards so that nothing else has to.
    pub async fn drain_overflow(self: Rc<Self>) {
        self.link.drain().await
    }

    // ----- configuration -----

    /// A new generation of the configuration: the core takes up its settings (connections on
    /// endpoints disabled close, connected clients whose policies changed are judged again:
    /// `ironsight_core::shard::reconfigure`), new connections use its endpoint transports
    /// (reloaded certificates, keys, CAs, revocation lists), and connections whose client
    /// certificate a revocation list now names are closed where the profile revalidates.
    pub fn reconfigure(&self, generation: &Generation) -> Reconfigured {
        let done = self
            .core()
            .reconfigure(Instant::now(), generation.settings.clone());
        let endpoints = generation.endpoints.clone();
        let revoked: Vec<ConnId> = self
            .conns
            .borrow_mut()
            .iter_mut()
            .filter(|(_, c)| {
                let revalidate = endpoints
                    .get(usize::from(c.endpoint))
                    .and_then(|ep| ep.tls.as_ref())
                    .and_then(|tls| tls.revalidate.as_ref());
                matches!((revalidate, c.transport.revocation()), (Some(set), Some(key)) if set.contains(key))
            })
            .map(|(conn, _)| conn)
            .collect();
        *self.endpoints.borrow_mut() = endpoints;
        for conn in revoked {
            let peer = self.core.borrow().peer(conn);
            tracing::info!(conn, ?peer, "client certificate revoked; connection closed");
            // v5 clients learn why (0x87 Not authorized); the close follows the flush.
            self.core()
                .disconnect(conn, Instant::now(), ReasonCode::NotAuthorized);
        }
        self.flusher.schedule();
        done
    }

    // ----- the admin API (`control`) -----

    /// Bytes on each endpoint's sockets, by endpoint number.
    pub fn traffic(&self) -> Vec<crate::conns::Traffic> {
        self.conns.borrow().traffic().to_vec()
    }

    /// Bytes read from and written to `conn`'s socket.
    pub fn socket_bytes(&self, conn: ConnId) -> (u64, u64) {
        self.conns
            .borrow_mut()
            .any(conn)
            .map_or((0, 0), |c| (c.bytes_read, c.bytes_written))
    }

    /// The core changed outside a connection's task (an administrator closed connections):
    /// the flusher writes and closes what it must on its next round.
    pub fn flush_soon(&self) {
        self.flusher.schedule();
    }

    // ----- time -----

    /// Once a second: the core's timers, idle connections parked, stuck closes cut off.
    pub fn tick(self: &Rc<Self>) {
        let clock = self.clock_s.get() + 1;
        self.clock_s.set(clock);
        let suppressed = self.refusals_logged.take_suppressed();
        if suppressed > 0 {
            tracing::info!(
                count = suppressed,
                "more connections refused (not logged one by one)"
            );
        }
        self.core().tick(Instant::now());
        let mut cut = Vec::new();
        let idle_since = Instant::now() - Duration::from_secs(PARK_AFTER_S);
        let core = self.core.borrow();
        for (conn, c) in self.conns.borrow_mut().iter_mut() {
            if c.closing_since_s
                .is_some_and(|since| clock - since >= CLOSE_GRACE_S)
            {
                cut.push(conn);
            } else if !c.is_parked() && core.last_packet_at(conn).is_some_and(|at| at <= idle_since)
            {
                c.park_requested = true;
                c.wake();
            }
        }
        drop(core);
        for conn in cut {
            tracing::debug!(conn, "closing connection did not drain its output in time");
            self.close_now(conn);
        }
        self.flush();
        if self.parked_since_collect.replace(0) > 0 {
            // Parked connections freed their tasks and poll sources, but mimalloc purges freed
            // pages only on later allocator activity, which an idle shard does not have: without
            // this, a connection storm's peak would stay resident.
            // SAFETY: mi_collect only reorganises this thread's heap.
            unsafe { libmimalloc_sys::mi_collect(true) };
            // The TLS crypto (aws-lc, C) allocates with glibc's malloc, not mimalloc: a storm of
            // handshakes leaves its arenas full of free memory that glibc keeps unless asked.
            // Measured: 5,000 TLS connections in a storm held 2.5 KB each without this, 1.3 KB
            // with it.
            // SAFETY: malloc_trim only returns free memory of glibc's arenas to the system.
            unsafe { libc::malloc_trim(0) };
        }
    }

    /// The broker stops: v5 clients are told, every socket closes.
    pub fn shutdown(self: &Rc<Self>) {
        self.core().shutdown(Instant::now());
        self.flush();
        let open = self.conns.borrow().ids();
        for conn in open {
            self.close_now(conn);
        }
    }
}

/// Whether a closed socket waits for the peer before it goes (see `close_after_last_bytes`).
enum Linger {
    Never,
    IfUnreadInput,
    Always,
}

/// The core's side of a transport read: identity first, then MQTT bytes. Bytes that arrive
/// after a CONNECT moved the connection to another shard are kept for the handoff.
struct CoreUp<'a> {
    core: &'a RefCell<Shard>,
    conn: ConnId,
    generation: u32,
    now: Instant,
    after_handoff: Option<BytesMut>,
}

impl Upward for CoreUp<'_> {
    fn identify(&mut self, learnt: Learnt) {
        let mut core = self.core.borrow_mut();
        let Some(socket_peer) = core.peer(self.conn) else {
            return;
        };
        let identity = Identity {
            peer: learnt.proxied_peer.unwrap_or(socket_peer),
            secure: learnt.secure,
            certificate: learnt.certificate.map(|c| {
                Box::new(ClientCertificate {
                    common_name: c.common_name,
                })
            }),
        };
        core.identify(self.conn, identity);
    }

    fn deliver(&mut self, mqtt: &[u8]) {
        if let Some(rest) = &mut self.after_handoff {
            rest.extend_from_slice(mqtt);
            return;
        }
        let mut core = self.core.borrow_mut();
        core.input(self.conn, self.now, mqtt);
        if !core.is_current(self.conn, self.generation) {
            self.after_handoff = Some(BytesMut::new());
        }
    }
}
