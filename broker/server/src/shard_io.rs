//! The I/O side of one shard: sockets, tasks and channels around the core's [`Shard`].
//!
//! Ownership of a connection's socket: while the connection is *active*, its glommio task owns
//! the `TcpStream` and the table here keeps only the raw fd (for vectored sends and shutdown);
//! while it is *parked*, the table owns the fd and the epoll set watches it. So a connection
//! holds one file descriptor at all times, which matters under a per-process fd limit.
//!
//! Output is written by the flusher: every core entry point marks connections dirty, and one
//! flush per scheduling round writes each of them with a single vectored send. A connection
//! whose socket is full is handed to its own task, which waits for it to drain.

use std::cell::{Cell, RefCell};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use glommio::channels::channel_mesh::Senders;
use glommio::net::TcpStream;
use glommio::{GlommioError, ResourceType};
use ironsight_core::conn::ConnId;
use ironsight_core::routing::{ShardId, ShardMsg};
use ironsight_core::{Event, Shard};

use crate::linger::{self, Lingering};
use crate::overflow::Overflow;
use crate::parking::{self, Parking};
use crate::send::{send_all, Sent};

/// Bytes read from a socket at once, into one buffer the shard shares.
pub const READ_CHUNK: usize = 64 * 1024;
/// Reads one connection may do before yielding to the others.
pub const READS_PER_POLL: u32 = 8;
/// Seconds without traffic before a connection gives up its task and waits in epoll.
pub const PARK_AFTER_S: u64 = 2;
/// Seconds a closing connection may take to accept its last bytes before it is cut off.
pub const CLOSE_GRACE_S: u32 = 5;
/// Messages waiting for full channels to other shards before connections stop reading.
pub const OVERFLOW_HIGH: usize = 4096;

/// What travels between shards: a core message, and the socket for a handed-off connection.
pub struct Envelope {
    pub msg: ShardMsg,
    pub fd: Option<OwnedFd>,
}

enum Socket {
    /// The connection's task owns the stream; this is its fd number.
    Active { fd: RawFd, waker: Option<Waker> },
    /// No task: the fd waits in the epoll set.
    Parked { fd: OwnedFd },
}

struct ConnIo {
    generation: u32,
    socket: Socket,
    write_blocked: bool,
    park_requested: bool,
    closing_since_s: Option<u32>,
}

impl ConnIo {
    fn fd(&self) -> RawFd {
        match &self.socket {
            Socket::Active { fd, .. } => *fd,
            Socket::Parked { fd } => fd.as_raw_fd(),
        }
    }

    fn wake(&mut self) {
        if let Socket::Active {
            waker: Some(waker), ..
        } = &self.socket
        {
            waker.wake_by_ref();
        }
    }
}

pub struct ShardIo {
    pub id: ShardId,
    core: RefCell<Shard>,
    conns: RefCell<Vec<Option<ConnIo>>>,
    scratch: RefCell<Box<[u8]>>,
    senders: Senders<Envelope>,
    overflow: RefCell<Overflow<Envelope>>,
    drainer: RefCell<Option<Waker>>,
    throttled: RefCell<Vec<Waker>>,
    flusher: RefCell<Option<Waker>>,
    flush_scheduled: Cell<bool>,
    parking: Parking,
    lingering: Lingering,
    clock_s: Cell<u32>,
    /// Connections parked since the allocator last gave memory back.
    parked_since_collect: Cell<u32>,
    dirty: RefCell<Vec<ConnId>>,
    outbox: RefCell<Vec<(ShardId, ShardMsg)>>,
    events: RefCell<Vec<Event>>,
}

fn shutdown_socket(fd: RawFd) {
    // SAFETY: shutdown on an fd number this shard still owns; errors (already closed by the
    // peer) are harmless.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

impl ShardIo {
    pub fn new(core: Shard, senders: Senders<Envelope>, parking: Parking) -> Rc<ShardIo> {
        let peers = senders.nr_consumers();
        Rc::new(ShardIo {
            id: core.id,
            core: RefCell::new(core),
            conns: RefCell::new(Vec::new()),
            scratch: RefCell::new(vec![0; READ_CHUNK].into_boxed_slice()),
            senders,
            overflow: RefCell::new(Overflow::new(peers)),
            drainer: RefCell::new(None),
            throttled: RefCell::new(Vec::new()),
            flusher: RefCell::new(None),
            flush_scheduled: Cell::new(false),
            parking,
            lingering: Lingering::default(),
            clock_s: Cell::new(0),
            parked_since_collect: Cell::new(0),
            dirty: RefCell::new(Vec::new()),
            outbox: RefCell::new(Vec::new()),
            events: RefCell::new(Vec::new()),
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
        let mut conns = self.conns.borrow_mut();
        let entry = conns.get_mut(conn as usize)?.as_mut()?;
        (entry.generation == generation).then(|| f(entry))
    }

    fn insert(&self, conn: ConnId, io: ConnIo) {
        let mut conns = self.conns.borrow_mut();
        let at = conn as usize;
        if conns.len() <= at {
            conns.resize_with(at + 1, || None);
        }
        assert!(
            conns[at].is_none(),
            "connection slot {conn} is still in use"
        );
        conns[at] = Some(io);
    }

    // ----- connections arriving -----

    /// A connection accepted on this shard's listener for `endpoint`.
    pub fn accepted(self: &Rc<Self>, endpoint: u16, stream: TcpStream) {
        let peer = match stream.peer_addr() {
            Ok(peer) => peer,
            Err(_) => return, // already gone
        };
        let (conn, generation) = self.core().open(Instant::now(), endpoint, peer);
        self.start_task(conn, generation, stream);
    }

    /// Enters a connection's socket in the table and starts its task, which owns the stream.
    fn start_task(self: &Rc<Self>, conn: ConnId, generation: u32, stream: TcpStream) {
        let socket = Socket::Active {
            fd: stream.as_raw_fd(),
            waker: None,
        };
        let io = ConnIo {
            generation,
            socket,
            write_blocked: false,
            park_requested: false,
            closing_since_s: None,
        };
        self.insert(conn, io);
        glommio::spawn_local(crate::connection::serve(
            self.clone(),
            conn,
            generation,
            stream,
        ))
        .detach();
    }

    /// A message from another shard.
    pub fn received(self: &Rc<Self>, envelope: Envelope) {
        let now = Instant::now();
        match (envelope.msg, envelope.fd) {
            (ShardMsg::Adopt(adopt), Some(fd)) => {
                let (conn, generation) = self.core().open(now, adopt.endpoint, adopt.peer);
                // SAFETY: the fd came over the channel with ownership, and is passed on once.
                let stream = unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) };
                self.start_task(conn, generation, stream);
                let mut core = self.core();
                core.input(conn, now, &adopt.connect);
                core.input(conn, now, &adopt.rest);
            }
            (msg, _) => self.core().remote(now, msg),
        }
        self.schedule_flush();
    }

    // ----- the connection task's side -----

    /// One poll of a connection task: write what is pending if the socket was full, read and
    /// process input, park when idle. `Ready` ends the task.
    pub fn poll_connection(
        self: &Rc<Self>,
        conn: ConnId,
        generation: u32,
        stream: &mut TcpStream,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<()> {
        use futures_lite::{AsyncRead, AsyncWrite};
        let mut reads = 0;
        loop {
            let Some((write_blocked, park)) =
                self.with_conn(conn, generation, |c| (c.write_blocked, c.park_requested))
            else {
                return Poll::Ready(()); // closed or handed off: dropping the stream closes our fd
            };
            if park && self.try_park(conn, generation, stream) {
                return Poll::Ready(());
            }
            if write_blocked {
                match self.write_own(conn, generation) {
                    Ok(Sent::All) => continue,
                    Ok(Sent::Blocked) => {
                        // Arm write readiness: glommio tries the send once more, then polls.
                        let polled = {
                            let mut core = self.core();
                            let Some(out) = core.output(conn) else {
                                continue;
                            };
                            let polled =
                                std::pin::Pin::new(&mut *stream).poll_write(cx, out.first_chunk());
                            if let Poll::Ready(Ok(n)) = polled {
                                out.advance(n);
                            }
                            polled
                        };
                        match polled {
                            Poll::Ready(Ok(_)) => continue,
                            Poll::Ready(Err(_)) => {
                                self.lost(conn);
                                continue;
                            }
                            Poll::Pending => {}
                        }
                    }
                    Err(_) => {
                        self.lost(conn);
                        continue;
                    }
                }
            }
            // A peer that does not read its answers (its socket is full and so is the send
            // buffer) gets no more: its requests wait in its socket until it reads.
            let answers_full = write_blocked && self.core.borrow().output_full(conn);
            if !answers_full && self.core().wants_input(conn) && !self.is_throttled(cx) {
                if reads == READS_PER_POLL {
                    cx.waker().wake_by_ref(); // fairness: let the other connections run
                    break;
                }
                reads += 1;
                let mut scratch = self.scratch.borrow_mut();
                match std::pin::Pin::new(&mut *stream).poll_read(cx, &mut scratch) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        drop(scratch);
                        self.lost(conn);
                        continue;
                    }
                    Poll::Ready(Ok(n)) => {
                        self.core().input(conn, Instant::now(), &scratch[..n]);
                        drop(scratch);
                        // A handoff must happen before this task reads on.
                        self.handle_events();
                        self.schedule_flush();
                        continue;
                    }
                    Poll::Pending => {}
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

    /// Writes a blocked connection's output from its own task.
    fn write_own(&self, conn: ConnId, generation: u32) -> std::io::Result<Sent> {
        let Some(fd) = self.with_conn(conn, generation, |c| c.fd()) else {
            return Ok(Sent::All);
        };
        let sent = {
            let mut core = self.core();
            let Some(out) = core.output(conn) else {
                return Ok(Sent::All);
            };
            send_all(fd, out)?
        };
        if let Sent::All = sent {
            self.with_conn(conn, generation, |c| c.write_blocked = false);
            if self.core.borrow().is_closing(conn) {
                self.close_after_last_bytes(conn);
            } else {
                // Room again: queued messages move into the output, for the flusher to write.
                self.after_written(conn);
                self.schedule_flush();
            }
        }
        Ok(sent)
    }

    /// Parks an idle connection: the socket moves to the epoll set and the task ends.
    fn try_park(&self, conn: ConnId, generation: u32, stream: &TcpStream) -> bool {
        let idle = {
            let core = self.core.borrow();
            core.wants_input(conn) && !core.has_output(conn) && !core.is_closing(conn)
        };
        let blocked = self.with_conn(conn, generation, |c| {
            c.park_requested = false;
            c.write_blocked
        });
        if !idle || blocked != Some(false) {
            return false;
        }
        let Ok(fd) = nix::unistd::dup(stream.as_raw_fd()) else {
            return false;
        };
        // SAFETY: dup returned a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if let Err(error) = self
            .parking
            .park(fd.as_fd(), parking::token(conn, generation), false)
        {
            tracing::warn!(conn, %error, "cannot park connection; it stays active");
            return false;
        }
        self.core().release_buffers(conn);
        self.with_conn(conn, generation, |c| c.socket = Socket::Parked { fd });
        self.parked_since_collect
            .set(self.parked_since_collect.get() + 1);
        true
    }

    /// A parked connection has input (a relay token) or output that did not fit the socket:
    /// it gets a task again.
    pub fn unpark(self: &Rc<Self>, token: parking::Token) {
        let (conn, generation) = parking::untoken(token);
        let stream = self.with_conn(conn, generation, |c| {
            let placeholder = Socket::Active {
                fd: -1,
                waker: None,
            };
            match std::mem::replace(&mut c.socket, placeholder) {
                Socket::Parked { fd } => {
                    let _ = self.parking.unwatch(fd.as_fd());
                    let raw = fd.into_raw_fd();
                    c.socket = Socket::Active {
                        fd: raw,
                        waker: None,
                    };
                    // SAFETY: ownership of the fd moves into the stream.
                    Some(unsafe { TcpStream::from_raw_fd(raw) })
                }
                active => {
                    c.socket = active; // already has a task (a stale relay token)
                    None
                }
            }
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

    /// Asks for a flush at the end of this scheduling round.
    pub fn schedule_flush(&self) {
        if !self.flush_scheduled.replace(true) {
            if let Some(waker) = self.flusher.borrow_mut().take() {
                waker.wake();
            }
        }
    }

    /// The flusher task's poll: flushes when scheduled.
    pub fn poll_flusher(self: &Rc<Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.flush_scheduled.replace(false) {
            self.flush();
        }
        *self.flusher.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Writes every dirty connection, sends the outbox to the other shards, performs handoffs.
    pub fn flush(self: &Rc<Self>) {
        loop {
            let mut dirty = std::mem::take(&mut *self.dirty.borrow_mut());
            self.core().take_dirty(&mut dirty);
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
    }

    fn flush_conn(self: &Rc<Self>, conn: ConnId) {
        let now = Instant::now();
        let (fd, blocked) = {
            let conns = self.conns.borrow();
            match conns.get(conn as usize).and_then(Option::as_ref) {
                Some(c) => (c.fd(), c.write_blocked),
                None => return,
            }
        };
        if blocked {
            // Its task writes when the socket drains. A closing connection whose peer does not
            // read gets CLOSE_GRACE_S from now, then the tick cuts it off.
            if self.core.borrow().is_closing(conn) {
                let clock = self.clock_s.get();
                if let Some(c) = self.conns.borrow_mut()[conn as usize].as_mut() {
                    c.closing_since_s.get_or_insert(clock);
                }
            }
            return;
        }
        let (sent, closing) = {
            let mut core = self.core();
            let closing = core.is_closing(conn);
            let Some(out) = core.output(conn) else { return };
            (send_all(fd, out), closing)
        };
        match sent {
            Ok(Sent::All) if closing => self.close_after_last_bytes(conn),
            Ok(Sent::All) => self.after_written(conn),
            Ok(Sent::Blocked) => {
                let clock = self.clock_s.get();
                let parked = {
                    let mut conns = self.conns.borrow_mut();
                    let c = conns[conn as usize].as_mut().expect("present above");
                    c.write_blocked = true;
                    if closing {
                        c.closing_since_s.get_or_insert(clock);
                    }
                    c.wake();
                    matches!(c.socket, Socket::Parked { .. })
                };
                if parked {
                    let generation = self.conns.borrow()[conn as usize]
                        .as_ref()
                        .expect("present")
                        .generation;
                    self.unpark(parking::token(conn, generation));
                }
            }
            Err(_) => {
                self.core().lost(conn, now);
                self.close_now(conn);
            }
        }
    }

    fn after_written(&self, conn: ConnId) {
        self.core().written(conn, Instant::now());
    }

    /// The peer is gone (EOF or error): the core ends the connection, the socket closes now.
    fn lost(self: &Rc<Self>, conn: ConnId) {
        self.core().lost(conn, Instant::now());
        self.close_now(conn);
        self.schedule_flush();
    }

    /// Closes the socket and forgets the connection. An active task notices and ends.
    fn close_now(&self, conn: ConnId) {
        self.close(conn, false);
    }

    /// Closes a closing connection whose last bytes are in the kernel, so that they reach the
    /// peer even if it sent input that was never read (see [`crate::linger`]).
    fn close_after_last_bytes(&self, conn: ConnId) {
        self.close(conn, true);
    }

    fn close(&self, conn: ConnId, keep_last_bytes: bool) {
        let entry = self
            .conns
            .borrow_mut()
            .get_mut(conn as usize)
            .and_then(Option::take);
        if let Some(mut c) = entry {
            c.wake(); // an active task drops its stream, which closes its fd
            let fd = c.fd();
            let socket = if keep_last_bytes && linger::has_unread_input(fd) {
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
            Socket::Active { fd, .. } => match nix::unistd::dup(fd) {
                // SAFETY: dup returned a new fd that nothing else owns.
                Ok(new) => unsafe { OwnedFd::from_raw_fd(new) },
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
                Event::Handoff { conn, to, msg } => self.hand_off(conn, to, msg),
                Event::Resumed { conn } => {
                    if let Some(c) = self
                        .conns
                        .borrow_mut()
                        .get_mut(conn as usize)
                        .and_then(Option::as_mut)
                    {
                        c.wake();
                    }
                }
            }
        }
        *self.events.borrow_mut() = events;
    }

    /// Sends a connection and its socket to the shard that owns its client id.
    fn hand_off(&self, conn: ConnId, to: ShardId, msg: ShardMsg) {
        let Some(mut c) = self
            .conns
            .borrow_mut()
            .get_mut(conn as usize)
            .and_then(Option::take)
        else {
            return;
        };
        c.wake(); // an active task finds its connection gone, and ends
        let fd = match c.socket {
            Socket::Parked { fd } => Ok(fd),
            // The task keeps its stream (and closes it when it ends); the other shard gets a dup.
            // SAFETY: dup returned a new fd that nothing else owns.
            Socket::Active { fd, .. } => {
                nix::unistd::dup(fd).map(|new| unsafe { OwnedFd::from_raw_fd(new) })
            }
        };
        match fd {
            Ok(fd) => self.send_remote(to, Envelope { msg, fd: Some(fd) }),
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
            self.send_remote(to, Envelope { msg, fd: None });
        }
        *self.outbox.borrow_mut() = outbox;
    }

    /// Sends without waiting: a full channel keeps the message in order in the overflow, which
    /// the drainer task empties; meanwhile connections stop reading once it grows too long.
    fn send_remote(&self, to: ShardId, envelope: Envelope) {
        let peer = usize::from(to);
        let mut overflow = self.overflow.borrow_mut();
        let envelope = if overflow.may_send_directly(peer) {
            match self.senders.try_send_to(peer, envelope) {
                Ok(()) => return,
                Err(GlommioError::WouldBlock(ResourceType::Channel(envelope))) => envelope,
                Err(_) => return, // the other shard is stopping
            }
        } else {
            envelope
        };
        overflow.push(peer, envelope);
        if let Some(waker) = self.drainer.borrow_mut().take() {
            waker.wake();
        }
    }

    fn is_throttled(&self, cx: &std::task::Context<'_>) -> bool {
        if self.overflow.borrow().waiting() < OVERFLOW_HIGH {
            return false;
        }
        self.throttled.borrow_mut().push(cx.waker().clone());
        true
    }

    /// The drainer task: waits on full channels so that nothing else has to.
    pub async fn drain_overflow(self: Rc<Self>) {
        loop {
            let next = futures_lite::future::poll_fn(|cx| {
                if let Some(next) = self.overflow.borrow_mut().take_next() {
                    return Poll::Ready(next);
                }
                *self.drainer.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            })
            .await;
            let (peer, envelope) = next;
            // A peer that is stopping takes nothing more; its messages are dropped, as in
            // send_remote, and the others' keep flowing.
            let _ = self.senders.send_to(peer, envelope).await;
            let left = self.overflow.borrow_mut().sent();
            if left < OVERFLOW_HIGH / 2 {
                for waker in self.throttled.borrow_mut().drain(..) {
                    waker.wake();
                }
            }
        }
    }

    // ----- time -----

    /// Once a second: the core's timers, idle connections parked, stuck closes cut off.
    pub fn tick(self: &Rc<Self>) {
        let clock = self.clock_s.get() + 1;
        self.clock_s.set(clock);
        self.core().tick(Instant::now());
        let mut cut = Vec::new();
        let idle_since = Instant::now() - Duration::from_secs(PARK_AFTER_S);
        let core = self.core.borrow();
        for (conn, c) in self.conns.borrow_mut().iter_mut().enumerate() {
            let Some(c) = c else { continue };
            if c.closing_since_s
                .is_some_and(|since| clock - since >= CLOSE_GRACE_S)
            {
                cut.push(conn as ConnId);
            } else if matches!(c.socket, Socket::Active { .. })
                && core
                    .last_packet_at(conn as ConnId)
                    .is_some_and(|at| at <= idle_since)
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
        }
    }

    /// The broker stops: v5 clients are told, every socket closes.
    pub fn shutdown(self: &Rc<Self>) {
        self.core().shutdown(Instant::now());
        self.flush();
        let open: Vec<ConnId> = self
            .conns
            .borrow()
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_some())
            .map(|(i, _)| i as ConnId)
            .collect();
        for conn in open {
            self.close_now(conn);
        }
    }
}
