//! A client's stream as its exchange sees it: a handle on the connection's codec
//! (`engine_http::h2::server`, shared by the connection's driver and its streams' tasks; no
//! borrow is held across an await) naming one stream. Reading its body gives the window back
//! as the bytes are taken, so a slow upstream slows this stream's client and nothing else;
//! writing waits while the stream holds its limit of unsent response bytes. Dropping the
//! handle lets the stream go (reset, CANCEL, if its response was not ended).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;

use engine_http::h2::server::{Fields, Gone, Recv, Server};

pub(crate) type Conn = Rc<RefCell<Server>>;

/// `via` as the proxy adds it to every HTTP/2 head it sends.
pub(crate) const VIA: (&[u8], &[u8]) = (b"via", b"2 engine-proxy");

/// One stream of a client's connection.
pub(crate) struct Down {
    conn: Conn,
    id: u32,
    /// A buffer for the codec to swap a stream's received bytes into.
    buf: Cell<Vec<u8>>,
    trailers: Cell<Option<Fields>>,
}

impl Down {
    pub fn new(conn: Conn, id: u32) -> Self {
        Down { conn, id, buf: Cell::new(Vec::new()), trailers: Cell::new(None) }
    }

    /// The next piece of the request body (`Ok(Some)`), its end (`Ok(None)`, trailers kept
    /// for [`Self::trailers`]), or the client's reset (`Err`, its code).
    pub async fn data(&self) -> Result<Option<Vec<u8>>, u32> {
        let mut buf = self.buf.take();
        let got = poll_fn(|cx| self.conn.borrow_mut().poll_recv(self.id, &mut buf, cx)).await;
        if got == Recv::Data {
            return Ok(Some(buf));
        }
        self.buf.set(buf);
        match got {
            Recv::Data | Recv::End => Ok(None),
            Recv::Trailers(t) => {
                self.trailers.set(Some(t));
                Ok(None)
            }
            Recv::Reset(code) => Err(code),
        }
    }

    /// The request's trailers, once [`Self::data`] has said the body ended.
    pub fn trailers(&self) -> Option<Fields> {
        self.trailers.take()
    }

    /// Resolves with the code once the client resets the stream (0: its connection ended).
    pub async fn reset_by_client(&self) -> u32 {
        poll_fn(|cx| self.conn.borrow_mut().poll_reset(self.id, cx)).await
    }

    pub fn send_head<'f>(
        &self,
        status: u16,
        fields: impl IntoIterator<Item = (&'f [u8], &'f [u8])>,
        end: bool,
    ) -> Result<(), Gone> {
        self.conn.borrow_mut().send_head(self.id, status, fields, end)
    }

    /// Sends `data` as the stream's limit of unsent bytes allows (`end`: the body's last).
    pub async fn send(&self, mut data: &[u8], end: bool) -> Result<(), Gone> {
        loop {
            let room = poll_fn(|cx| self.conn.borrow_mut().poll_capacity(self.id, cx)).await?;
            let n = room.min(data.len());
            let last = n == data.len();
            self.conn.borrow_mut().send_data(self.id, &data[..n], end && last)?;
            if last {
                return Ok(());
            }
            data = &data[n..];
        }
    }

    pub fn send_trailers<'f>(&self, fields: impl IntoIterator<Item = (&'f [u8], &'f [u8])>) -> Result<(), Gone> {
        self.conn.borrow_mut().send_trailers(self.id, fields)
    }

    /// Resets the stream (RST_STREAM `code`).
    pub fn reset(&self, code: u32) {
        self.conn.borrow_mut().reset(self.id, code);
    }
}

impl Drop for Down {
    fn drop(&mut self) {
        self.conn.borrow_mut().release(self.id);
    }
}
