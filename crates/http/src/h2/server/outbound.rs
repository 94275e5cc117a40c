//! What a stream sends: its response head, body within the client's windows (the rest held,
//! up to `max_send_buffer`, until WINDOW_UPDATEs come), trailers, or a reset.

use super::*;
use crate::h2::hpack;

/// The stream is gone (reset by either side, or the connection ended): nothing more can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

/// Appends a field block: `:status` when given, then `fields` as literals without indexing,
/// names lower-cased (an HTTP/1.1 upstream may send `Content-Type`).
fn block(out: &mut Vec<u8>, status: Option<u16>, fields: &mut dyn Iterator<Item = (&[u8], &[u8])>) {
    if let Some(status) = status {
        match status {
            200 => out.push(0x88),
            204 => out.push(0x89),
            206 => out.push(0x8a),
            304 => out.push(0x8b),
            400 => out.push(0x8c),
            404 => out.push(0x8d),
            500 => out.push(0x8e),
            _ => {
                let mut b = itoa::Buffer::new();
                hpack::encode_field(out, b":status", b.format(status).as_bytes());
            }
        }
    }
    let mut lower = Vec::new();
    for (name, value) in fields {
        let name = if name.iter().any(u8::is_ascii_uppercase) {
            lower.clear();
            lower.extend(name.iter().map(u8::to_ascii_lowercase));
            &lower[..]
        } else {
            name
        };
        hpack::encode_field(out, name, value);
    }
}

impl Server {
    fn open_to_send(&mut self, id: u32) -> Result<&mut Stream, Gone> {
        if self.failed.is_some() {
            return Err(Gone);
        }
        self.find_mut(id).filter(|s| !s.send_closed).ok_or(Gone)
    }

    /// Sends stream `id`'s response head (`end`: with no body). A 1xx head may come first.
    pub fn send_head<'f>(
        &mut self,
        id: u32,
        status: u16,
        fields: impl IntoIterator<Item = (&'f [u8], &'f [u8])>,
        end: bool,
    ) -> Result<(), Gone> {
        self.open_to_send(id)?;
        let mut b = std::mem::take(&mut self.block_out);
        b.clear();
        block(&mut b, Some(status), &mut fields.into_iter());
        frame::put_headers(&mut self.out, id, &b, end, self.peer_max_frame);
        self.block_out = b;
        if end {
            self.sent_end(id);
        }
        self.queued();
        Ok(())
    }

    /// How much more of a body stream `id` may be handed now (`Pending` while its held bytes
    /// are at `max_send_buffer`, or the connection's unwritten output is at its budget).
    pub fn poll_capacity(&mut self, id: u32, cx: &mut Context<'_>) -> Poll<Result<usize, Gone>> {
        let max = self.cfg.max_send_buffer;
        let out_room = OUT_BUDGET.saturating_sub(self.unwritten());
        if out_room == 0 {
            self.out_full = true;
        }
        let s = match self.open_to_send(id) {
            Ok(s) => s,
            Err(g) => return Poll::Ready(Err(g)),
        };
        let room = max.saturating_sub(s.pending.len()).min(out_room);
        if room > 0 {
            return Poll::Ready(Ok(room));
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Sends body bytes on stream `id` (`end`: the last); what the windows do not take now is
    /// held, so the caller should hand over no more than [`Self::poll_capacity`] allows.
    pub fn send_data(&mut self, id: u32, data: &[u8], end: bool) -> Result<(), Gone> {
        let s = self.open_to_send(id)?;
        if !s.pending.is_empty() {
            s.pending.extend_from_slice(data);
            if end {
                s.pending_end = Some(End::Stream);
            }
            self.flush_stream(id);
        } else if self.write_data(id, data, end) {
            self.sent_end(id);
        } else if end {
            if let Some(s) = self.find_mut(id) {
                s.pending_end = Some(End::Stream);
            }
        }
        self.queued();
        Ok(())
    }

    /// Ends stream `id`'s response with trailers (after any body still held).
    pub fn send_trailers<'f>(
        &mut self,
        id: u32,
        fields: impl IntoIterator<Item = (&'f [u8], &'f [u8])>,
    ) -> Result<(), Gone> {
        self.open_to_send(id)?;
        let mut b = Vec::new();
        block(&mut b, None, &mut fields.into_iter());
        if let Some(s) = self.find_mut(id) {
            s.pending_end = Some(End::Trailers(b));
        }
        self.flush_stream(id);
        self.queued();
        Ok(())
    }

    /// Resets stream `id` (RST_STREAM `code`): the upstream failed, a fault says so.
    pub fn reset(&mut self, id: u32, code: u32) {
        if self.failed.is_none() && self.find(id).is_some_and(|s| !(s.send_closed && s.recv_closed)) {
            let _ = self.reset_stream(id, code, false);
        }
    }

    /// Writes what of `data` the windows take as DATA frames, the last with END_STREAM when
    /// `end` and all of it went (then `true`); the rest is held.
    fn write_data(&mut self, id: u32, data: &[u8], end: bool) -> bool {
        let max_frame = self.peer_max_frame;
        let Some(i) = self.streams.iter().position(|s| s.id == id) else { return false };
        let s = &mut self.streams[i];
        let room = self.send_window.min(s.send_window).max(0) as usize;
        let n = room.min(data.len());
        let ends = end && n == data.len();
        if n == 0 && ends {
            frame::put_head(&mut self.out, 0, frame::DATA, frame::END_STREAM, id);
        }
        let mut at = 0;
        for chunk in data[..n].chunks(max_frame) {
            at += chunk.len();
            let flags = if ends && at == n { frame::END_STREAM } else { 0 };
            frame::put_head(&mut self.out, chunk.len(), frame::DATA, flags, id);
            self.out.extend_from_slice(chunk);
        }
        self.send_window -= n as i64;
        s.send_window -= n as i64;
        s.pending.extend_from_slice(&data[n..]);
        ends
    }

    /// Sends what stream `id` holds as far as the windows let it, then its end when nothing
    /// is left before it.
    fn flush_stream(&mut self, id: u32) {
        let Some(s) = self.find_mut(id) else { return };
        let end_stream = matches!(s.pending_end, Some(End::Stream));
        if !s.pending.is_empty() || end_stream {
            let held = std::mem::take(&mut s.pending);
            let ended = self.write_data(id, &held, end_stream);
            if ended {
                if let Some(s) = self.find_mut(id) {
                    s.pending_end = None;
                }
                self.sent_end(id);
                return;
            }
        }
        let Some(s) = self.find_mut(id) else { return };
        if s.pending.is_empty() {
            if let Some(End::Trailers(b)) = s.pending_end.take() {
                frame::put_headers(&mut self.out, id, &b, true, self.peer_max_frame);
                self.sent_end(id);
            }
        }
    }

    /// Every stream's held body, as far as the windows opened (after a WINDOW_UPDATE or
    /// SETTINGS): the streams that gained room are woken.
    pub(super) fn flush_all(&mut self) {
        let ids: Vec<u32> =
            self.streams.iter().filter(|s| !s.pending.is_empty() || s.pending_end.is_some()).map(|s| s.id).collect();
        for id in ids {
            if self.send_window <= 0 {
                break;
            }
            if self.unwritten() >= OUT_BUDGET {
                // The rest when the output drains ([`Server::wrote`]).
                self.out_full = true;
                break;
            }
            self.flush_stream(id);
            if let Some(s) = self.find_mut(id) {
                s.wake();
            }
            self.queued();
        }
    }

    /// Stream `id`'s response is whole.
    fn sent_end(&mut self, id: u32) {
        if let Some(s) = self.find_mut(id) {
            s.send_closed = true;
        }
        // A stream answered whole: the client is not only resetting streams.
        self.early_resets = 0;
        self.sweep(id);
    }
}
