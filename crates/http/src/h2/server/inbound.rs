//! What the client sends: its preface, then frames parsed from the bytes fed in (whole: a
//! frame is at most 16 KiB, the size this server allows), header blocks decoded and judged,
//! bodies kept for their streams' readers within the windows, and the limits enforced.

use super::head::Builder;
use super::*;
use crate::h2::frame::Head;
use crate::h2::hpack::HpackError;

impl Server {
    /// Feeds bytes read from the client. An error is the server's GOAWAY (already queued):
    /// write what is left of [`Self::output`] and close.
    pub fn feed(&mut self, input: &[u8]) -> Result<(), ConnError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.carry.is_empty() {
            let used = self.frames(input).map_err(|code| self.fail(code))?;
            self.carry.extend_from_slice(&input[used..]);
        } else {
            let mut carry = std::mem::take(&mut self.carry);
            carry.extend_from_slice(input);
            let used = self.frames(&carry).map_err(|code| self.fail(code))?;
            carry.drain(..used);
            // A frame straddled two reads; a big carry is not kept for the next.
            if carry.is_empty() && carry.capacity() > 2 * frame::DEFAULT_MAX_FRAME {
                carry = Vec::new();
            }
            self.carry = carry;
        }
        if self.unwritten() > OUT_LIMIT {
            // Answers the client does not read (PING and SETTINGS acks, resets): bodies stop
            // at OUT_BUDGET, so only these take the output past this.
            return Err(self.fail(frame::ENHANCE_YOUR_CALM));
        }
        Ok(())
    }

    /// Handles the whole frames at the start of `buf`; returns how much was used. An error
    /// is a connection error's code.
    fn frames(&mut self, buf: &[u8]) -> Result<usize, u32> {
        let mut at = 0;
        if !self.preface {
            let n = buf.len().min(frame::PREFACE.len());
            if buf[..n] != frame::PREFACE[..n] {
                return Err(frame::PROTOCOL_ERROR);
            }
            if n < frame::PREFACE.len() {
                return Ok(0);
            }
            self.preface = true;
            at = n;
        }
        loop {
            let rest = &buf[at..];
            if rest.len() < frame::HEAD_LEN {
                return Ok(at);
            }
            let h = Head::parse(rest);
            if h.len > frame::DEFAULT_MAX_FRAME {
                return Err(frame::FRAME_SIZE_ERROR);
            }
            if rest.len() < frame::HEAD_LEN + h.len {
                return Ok(at);
            }
            if !self.settings_seen && (h.kind != frame::SETTINGS || h.flags & frame::ACK != 0) {
                return Err(frame::PROTOCOL_ERROR);
            }
            if self.block.is_some() && h.kind != frame::CONTINUATION {
                return Err(frame::PROTOCOL_ERROR);
            }
            self.idle_frames += 1;
            self.frame(&h, &rest[frame::HEAD_LEN..frame::HEAD_LEN + h.len])?;
            if self.idle_frames > IDLE_FRAMES {
                return Err(frame::ENHANCE_YOUR_CALM);
            }
            at += frame::HEAD_LEN + h.len;
            if self.failed.is_some() {
                return Ok(at);
            }
        }
    }

    fn frame(&mut self, h: &Head, p: &[u8]) -> Result<(), u32> {
        match h.kind {
            frame::DATA => self.data(h, p),
            frame::HEADERS => self.headers(h, p),
            frame::CONTINUATION => self.continuation(h, p),
            frame::PRIORITY => {
                if h.stream == 0 {
                    return Err(frame::PROTOCOL_ERROR);
                }
                if h.len != 5 {
                    return Err(frame::FRAME_SIZE_ERROR);
                }
                Ok(())
            }
            frame::RST_STREAM => self.rst_stream(h, p),
            frame::SETTINGS => self.settings(h, p),
            frame::PUSH_PROMISE => Err(frame::PROTOCOL_ERROR),
            frame::PING => {
                if h.stream != 0 {
                    return Err(frame::PROTOCOL_ERROR);
                }
                if h.len != 8 {
                    return Err(frame::FRAME_SIZE_ERROR);
                }
                if h.flags & frame::ACK == 0 {
                    frame::put_head(&mut self.out, 8, frame::PING, frame::ACK, 0);
                    self.out.extend_from_slice(p);
                    self.queued();
                }
                Ok(())
            }
            frame::GOAWAY => {
                if h.stream != 0 {
                    return Err(frame::PROTOCOL_ERROR);
                }
                if h.len < 8 {
                    return Err(frame::FRAME_SIZE_ERROR);
                }
                self.peer_gone = true;
                self.queued();
                Ok(())
            }
            frame::WINDOW_UPDATE => self.window_update(h, p),
            // Unknown types are ignored (RFC 9113 §4.1).
            _ => Ok(()),
        }
    }

    fn settings(&mut self, h: &Head, p: &[u8]) -> Result<(), u32> {
        if h.stream != 0 {
            return Err(frame::PROTOCOL_ERROR);
        }
        if h.flags & frame::ACK != 0 {
            return if h.len == 0 { Ok(()) } else { Err(frame::FRAME_SIZE_ERROR) };
        }
        if !h.len.is_multiple_of(6) {
            return Err(frame::FRAME_SIZE_ERROR);
        }
        self.settings_seen = true;
        for s in p.chunks(6) {
            let id = u16::from_be_bytes([s[0], s[1]]);
            let v = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
            match id {
                frame::ENABLE_PUSH if v > 1 => return Err(frame::PROTOCOL_ERROR),
                frame::INITIAL_WINDOW_SIZE => {
                    if v > frame::MAX_WINDOW {
                        return Err(frame::FLOW_CONTROL_ERROR);
                    }
                    let delta = i64::from(v) - self.peer_window;
                    self.peer_window = i64::from(v);
                    for s in &mut self.streams {
                        s.send_window += delta;
                        if s.send_window > i64::from(frame::MAX_WINDOW) {
                            return Err(frame::FLOW_CONTROL_ERROR);
                        }
                    }
                }
                frame::MAX_FRAME_SIZE => {
                    if !(frame::DEFAULT_MAX_FRAME as u32..=0xff_ffff).contains(&v) {
                        return Err(frame::PROTOCOL_ERROR);
                    }
                    self.peer_max_frame = v as usize;
                }
                // The server never indexes (no table to size), never pushes, and sends
                // small heads.
                _ => {}
            }
        }
        frame::put_head(&mut self.out, 0, frame::SETTINGS, frame::ACK, 0);
        self.queued();
        self.flush_all();
        Ok(())
    }

    fn window_update(&mut self, h: &Head, p: &[u8]) -> Result<(), u32> {
        if h.len != 4 {
            return Err(frame::FRAME_SIZE_ERROR);
        }
        let inc = i64::from(u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & frame::MAX_WINDOW);
        if h.stream == 0 {
            if inc == 0 {
                return Err(frame::PROTOCOL_ERROR);
            }
            self.send_window += inc;
            if self.send_window > i64::from(frame::MAX_WINDOW) {
                return Err(frame::FLOW_CONTROL_ERROR);
            }
            self.idle_frames = 0;
            self.flush_all();
            return Ok(());
        }
        if h.stream > self.last_id {
            return Err(frame::PROTOCOL_ERROR);
        }
        let Some(s) = self.find_mut(h.stream).filter(|s| !s.send_closed) else { return Ok(()) };
        if inc == 0 {
            return self.reset_stream(h.stream, frame::PROTOCOL_ERROR, true);
        }
        s.send_window += inc;
        if s.send_window > i64::from(frame::MAX_WINDOW) {
            return self.reset_stream(h.stream, frame::FLOW_CONTROL_ERROR, true);
        }
        self.idle_frames = 0;
        self.flush_all();
        Ok(())
    }

    fn rst_stream(&mut self, h: &Head, p: &[u8]) -> Result<(), u32> {
        if h.stream == 0 || h.stream > self.last_id {
            return Err(frame::PROTOCOL_ERROR);
        }
        if h.len != 4 {
            return Err(frame::FRAME_SIZE_ERROR);
        }
        let code = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
        let Some(s) = self.find_mut(h.stream) else { return Ok(()) };
        let untaken = s.head.is_some();
        s.reset.get_or_insert(code);
        s.recv_closed = true;
        s.send_closed = true;
        s.pending = Vec::new();
        s.pending_end = None;
        s.wake();
        if untaken {
            // Reset before anyone took it: it costs nothing more, but a flood of them is
            // the rapid-reset attack's cheap half.
            s.released = true;
            self.early_resets += 1;
            if self.early_resets > self.cfg.max_early_resets {
                return Err(frame::ENHANCE_YOUR_CALM);
            }
        } else {
            self.resets += 1;
        }
        self.sweep(h.stream);
        Ok(())
    }

    fn data(&mut self, h: &Head, p: &[u8]) -> Result<(), u32> {
        if h.stream == 0 || h.stream > self.last_id {
            return Err(frame::PROTOCOL_ERROR);
        }
        let (pad_len, body) = unpad(h, p)?;
        let len = h.len as u32;
        // The whole frame counts against the connection's window, taken or not.
        self.recv_used += len;
        if self.recv_used > self.cfg.connection_window {
            return Err(frame::FLOW_CONTROL_ERROR);
        }
        let end = h.flags & frame::END_STREAM != 0;
        let window = self.cfg.window;
        let Some(s) = self.find_mut(h.stream).filter(|s| !s.recv_closed) else {
            // A stream closed or reset: its window comes straight back.
            self.give_back_connection(len);
            // After the client's END_STREAM, more is its error; after a reset, frames
            // already on their way are expected.
            return if self.find(h.stream).is_some_and(|s| s.reset.is_none()) {
                self.reset_stream(h.stream, frame::STREAM_CLOSED, true)
            } else {
                Ok(())
            };
        };
        s.received += body.len() as u64;
        let over_window =
            s.recv.len() as u64 + u64::from(s.recv_unacked) + body.len() as u64 + pad_len as u64 > u64::from(window);
        let over_length = s.content_length.is_some_and(|c| s.received > c || (end && s.received != c));
        if over_window || over_length {
            self.give_back_connection(len);
            let code = if over_window { frame::FLOW_CONTROL_ERROR } else { frame::PROTOCOL_ERROR };
            return self.reset_stream(h.stream, code, true);
        }
        s.recv.extend_from_slice(body);
        // Padding is flow-controlled but never read: its window comes back with the body's.
        s.recv_unacked += (h.len - body.len()) as u32;
        if end {
            s.recv_closed = true;
        }
        if !body.is_empty() || end {
            s.wake();
            self.idle_frames = 0;
        }
        self.give_back_connection((h.len - body.len()) as u32);
        if end {
            self.sweep(h.stream);
        }
        Ok(())
    }

    fn headers(&mut self, h: &Head, p: &[u8]) -> Result<(), u32> {
        if h.stream == 0 || h.stream.is_multiple_of(2) {
            return Err(frame::PROTOCOL_ERROR);
        }
        let (_, mut fragment) = unpad(h, p)?;
        if h.flags & frame::PRIORITY_FLAG != 0 {
            if fragment.len() < 5 {
                return Err(frame::FRAME_SIZE_ERROR);
            }
            fragment = &fragment[5..];
        }
        self.block_buf.clear();
        self.block_buf.extend_from_slice(fragment);
        self.block = Some(Block { stream: h.stream, end_stream: h.flags & frame::END_STREAM != 0, frames: 1 });
        if h.flags & frame::END_HEADERS != 0 {
            return self.block_done();
        }
        Ok(())
    }

    fn continuation(&mut self, h: &Head, p: &[u8]) -> Result<(), u32> {
        let Some(b) = self.block.as_mut().filter(|b| b.stream == h.stream) else {
            return Err(frame::PROTOCOL_ERROR);
        };
        b.frames += 1;
        self.block_buf.extend_from_slice(p);
        // Encoded bytes can decode to more, never (much) less: a block past twice the list
        // limit, or in very many frames, is a flood.
        if b.frames > BLOCK_FRAMES || self.block_buf.len() > 2 * self.cfg.max_header_list as usize {
            return Err(frame::ENHANCE_YOUR_CALM);
        }
        if h.flags & frame::END_HEADERS != 0 {
            return self.block_done();
        }
        Ok(())
    }

    /// A whole header block: a new stream's request head, or a stream's trailers.
    fn block_done(&mut self) -> Result<(), u32> {
        let Block { stream: id, end_stream, .. } = self.block.take().expect("a block is open");
        let opens = id > self.last_id;
        let trailers = !opens && self.find(id).is_some_and(|s| !s.recv_closed);
        let mut b = Builder::new(!opens, self.cfg.max_header_list as usize);
        let block = std::mem::take(&mut self.block_buf);
        let decoded = self.hpack.decode::<HpackError>(&block, &mut self.scratch, |n, v| {
            b.field(n, v);
            Ok(())
        });
        self.block_buf = block;
        if decoded.is_err() {
            return Err(frame::COMPRESSION_ERROR);
        }
        if !opens {
            if !trailers {
                // A stream closed or reset: the block only kept the table in step.
                return Ok(());
            }
            if !end_stream {
                return self.reset_stream(id, frame::PROTOCOL_ERROR, true);
            }
            return match b.trailers() {
                Ok(t) => self.trailers_in(id, t),
                Err(_) => self.reset_stream(id, frame::PROTOCOL_ERROR, true),
            };
        }
        self.last_id = id;
        if self.goaway.is_some() {
            // Opened after the GOAWAY: ignored, the client may send it again elsewhere.
            return Ok(());
        }
        if self.streams.len() >= self.cfg.max_streams as usize {
            return self.reset_stream(id, frame::REFUSED_STREAM, false);
        }
        // Malformed (or a body shorter than its content-length, none at all): reset, and
        // never kept, so nothing of it reaches the caller.
        let Ok(head) = b.head() else {
            return self.reset_stream(id, frame::PROTOCOL_ERROR, true);
        };
        if end_stream && head.content_length.is_some_and(|c| c != 0) {
            return self.reset_stream(id, frame::PROTOCOL_ERROR, true);
        }
        let mut s = Stream::new(id, head.content_length, self.peer_window);
        s.recv_closed = end_stream;
        s.head = Some(head);
        self.streams.push(s);
        self.new.push_back(id);
        self.idle_frames = 0;
        self.queued();
        Ok(())
    }

    fn trailers_in(&mut self, id: u32, t: Fields) -> Result<(), u32> {
        let Some(s) = self.find_mut(id) else { return Ok(()) };
        if s.content_length.is_some_and(|c| s.received != c) {
            return self.reset_stream(id, frame::PROTOCOL_ERROR, true);
        }
        s.trailers = Some(t);
        s.recv_closed = true;
        s.wake();
        self.idle_frames = 0;
        self.sweep(id);
        Ok(())
    }
}

impl Stream {
    fn new(id: u32, content_length: Option<u64>, send_window: i64) -> Self {
        Stream {
            id,
            head: None,
            recv_closed: false,
            send_closed: false,
            reset: None,
            released: false,
            recv: Vec::new(),
            recv_unacked: 0,
            received: 0,
            content_length,
            trailers: None,
            send_window,
            pending: Vec::new(),
            pending_end: None,
            waker: None,
        }
    }
}

/// A DATA or HEADERS payload without its padding: the pad length's byte and the payload.
fn unpad<'a>(h: &Head, p: &'a [u8]) -> Result<(usize, &'a [u8]), u32> {
    if h.flags & frame::PADDED == 0 {
        return Ok((0, p));
    }
    let pad = usize::from(*p.first().ok_or(frame::FRAME_SIZE_ERROR)?);
    if pad + 1 > p.len() {
        return Err(frame::PROTOCOL_ERROR);
    }
    Ok((pad + 1, &p[1..p.len() - pad]))
}
