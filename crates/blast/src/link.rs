//! One HTTP/2 connection of a shard, shared by its `--streams` slots: whichever slot finds it
//! closed opens it, the others wait and then send on it. A link that ALPN turned into
//! HTTP/1.1 carries one slot's requests at a time (the one that opened it); its other slots
//! wait for it to close. Nothing here is shared across shards.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::{Poll, Waker};

use engine_http::h2::Client;
use engine_results::stats::ErrorKind;
use futures_lite::future::poll_fn;
use glommio::task::JoinHandle;

/// How a connection broke under its streams, for each of them to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Broke {
    Kind(ErrorKind),
    /// A TLS failure, by reason (an index of `engine_results::stats::TLS_REASONS`).
    Tls(usize),
}

/// An HTTP/2 connection: its protocol state (the driver task and the slots sending on it
/// share it; one shard, no locks) and how it broke, if it did.
pub(crate) struct H2Conn {
    pub client: RefCell<Client>,
    pub generation: u32,
    pub broke: Cell<Option<Broke>>,
}

impl H2Conn {
    pub fn new(client: Client, generation: u32) -> Self {
        H2Conn { client: RefCell::new(client), generation, broke: Cell::new(None) }
    }
}

enum Held {
    Closed,
    Opening,
    H2(Rc<H2Conn>),
    /// The server chose HTTP/1.1: one slot's connection.
    H1,
}

/// What a slot finds when it looks at its link.
pub(crate) enum Found {
    /// Closed: the slot that found it opens it (it is `Opening` now).
    Open,
    /// Open for HTTP/2: the connection to send on.
    H2(Rc<H2Conn>),
    /// Being opened, or HTTP/1.1 held by another slot: wait for a change.
    Wait,
}

pub(crate) struct Link {
    held: RefCell<Held>,
    /// Bumped at each open: a stream that failed closes only the connection it used.
    generation: Cell<u32>,
    waiters: RefCell<Vec<Waker>>,
    /// The task driving the connection, cancelled at the end of the run.
    driver: RefCell<Option<JoinHandle<()>>>,
    /// The server's stream limit was compared with `--streams` once (a response came).
    limit_seen: Cell<bool>,
    /// Connections in a row that ended without one response (garbage, a GOAWAY at once): the
    /// next open waits a back-off, or a hostile server would get connections back to back.
    barren: Cell<u32>,
}

impl Link {
    pub fn new() -> Self {
        Link {
            held: RefCell::new(Held::Closed),
            generation: Cell::new(0),
            waiters: RefCell::new(Vec::new()),
            driver: RefCell::new(None),
            limit_seen: Cell::new(false),
            barren: Cell::new(0),
        }
    }

    /// Connections in a row that ended without a response, this one included if it has had
    /// none: how long the next open should wait is the caller's rule.
    pub fn barren(&self) -> u32 {
        let open_unanswered = self.generation.get() > 0 && !self.limit_seen.get();
        self.barren.get() + u32::from(open_unanswered)
    }

    /// What the slot should do; `Open` makes it the opener.
    pub fn find(&self) -> Found {
        let mut held = self.held.borrow_mut();
        match &*held {
            Held::Closed => {
                *held = Held::Opening;
                Found::Open
            }
            Held::H2(conn) => Found::H2(conn.clone()),
            Held::Opening | Held::H1 => Found::Wait,
        }
    }

    /// The opener's connection failed: another slot may try.
    pub fn failed(&self) {
        *self.held.borrow_mut() = Held::Closed;
        self.wake();
    }

    /// The generation the next open gets (its driver is told before it is stored).
    pub fn next_generation(&self) -> u32 {
        self.generation.get().wrapping_add(1)
    }

    /// The opener's connection speaks HTTP/2, driven by `driver` (its generation is
    /// [`Link::next_generation`]'s).
    pub fn opened_h2(&self, conn: Rc<H2Conn>, driver: JoinHandle<()>) {
        let g = conn.generation;
        let unanswered = g > 1 && !self.limit_seen.get();
        self.barren.set(if unanswered { self.barren.get().saturating_add(1) } else { 0 });
        self.generation.set(g);
        *self.held.borrow_mut() = Held::H2(conn);
        *self.driver.borrow_mut() = Some(driver);
        self.limit_seen.set(false);
        self.wake();
    }

    /// The opener's connection speaks HTTP/1.1 and is its own.
    pub fn opened_h1(&self) {
        *self.held.borrow_mut() = Held::H1;
    }

    /// The HTTP/1.1 connection closed, or the HTTP/2 one of `generation` failed or ended:
    /// the next slot to look opens another.
    pub fn close(&self, generation: Option<u32>) {
        let mut held = self.held.borrow_mut();
        let open = match (&*held, generation) {
            (Held::H2(_), Some(g)) => g == self.generation.get(),
            (Held::H1, None) => true,
            _ => false,
        };
        if open {
            // Its streams finish; it takes no new ones and closes after the last.
            if let Held::H2(conn) = &*held {
                conn.client.borrow_mut().release();
            }
            *held = Held::Closed;
            drop(held);
            self.wake();
        }
    }

    /// True the first time after an open: the server's stream limit is known once its
    /// SETTINGS arrived, which any completed stream proves.
    pub fn first_response(&self) -> bool {
        !self.limit_seen.replace(true)
    }

    /// Waits for the link to change (opened, closed); the caller looks again.
    pub async fn changed(&self) {
        let mut waited = false;
        poll_fn(|cx| {
            if std::mem::replace(&mut waited, true) {
                return Poll::Ready(());
            }
            self.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Ends the connection's driver (the run is over).
    pub fn cancel(&self) {
        if let Some(d) = self.driver.borrow_mut().take() {
            d.cancel();
        }
        *self.held.borrow_mut() = Held::Closed;
        self.wake();
    }

    fn wake(&self) {
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }
}
