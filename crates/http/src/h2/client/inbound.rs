//! What the server sends: frames parsed from the bytes fed in (a DATA payload as it streams
//! past, other frames whole), header blocks decoded for what is read of them, flow control
//! counted and given back, and the protocol's limits enforced.

use super::*;

impl Client {
    /// Feeds bytes read from the server. An error is the client's GOAWAY (already queued):
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
        Ok(())
    }

    /// Handles the whole frames at the start of `buf` (and a DATA payload as far as it
    /// goes); returns how much was used. An error is a connection error's code.
    fn frames(&mut self, buf: &[u8]) -> Result<usize, u32> {
        let mut at = 0;
        loop {
            if let Some(d) = self.data.as_mut() {
                let n = d.left.min(buf.len() - at);
                let body = n.min(d.left.saturating_sub(d.pad));
                d.left -= n;
                let (entry, done, end) = (d.entry, d.left == 0, d.end_stream);
                if let Some(k) = entry {
                    let e = &mut self.entries[k];
                    e.body_bytes += body as u64;
                    if let Some(c) = e.capture.as_deref_mut() {
                        c.keep_body(&buf[at..at + body]);
                    }
                }
                at += n;
                if !done {
                    return Ok(at);
                }
                self.data = None;
                if let (Some(k), true) = (entry, end) {
                    self.respond(k);
                }
                continue;
            }
            let rest = &buf[at..];
            if rest.len() < frame::HEAD_LEN {
                return Ok(at);
            }
            let h = Head::parse(rest);
            if h.len > frame::DEFAULT_MAX_FRAME {
                return Err(frame::FRAME_SIZE_ERROR);
            }
            if !self.peer_seen && h.kind != frame::SETTINGS {
                return Err(frame::PROTOCOL_ERROR);
            }
            if self.block.is_some() && h.kind != frame::CONTINUATION {
                return Err(frame::PROTOCOL_ERROR);
            }
            if h.kind == frame::DATA {
                let padded = h.flags & frame::PADDED != 0;
                if rest.len() < frame::HEAD_LEN + usize::from(padded) {
                    return Ok(at);
                }
                let pad = if padded { usize::from(rest[frame::HEAD_LEN]) } else { 0 };
                self.data_begins(&h, pad)?;
                at += frame::HEAD_LEN + usize::from(padded);
                continue;
            }
            if rest.len() < frame::HEAD_LEN + h.len {
                return Ok(at);
            }
            self.frame(&h, &rest[frame::HEAD_LEN..frame::HEAD_LEN + h.len])?;
            at += frame::HEAD_LEN + h.len;
        }
    }

    /// A DATA frame's header (and pad length): flow control is counted for the whole frame
    /// here, its payload as it arrives.
    fn data_begins(&mut self, h: &Head, pad: usize) -> Result<(), u32> {
        if h.stream == 0 {
            return Err(frame::PROTOCOL_ERROR);
        }
        if h.stream >= self.next_id {
            return Err(frame::PROTOCOL_ERROR);
        }
        let padded = usize::from(h.flags & frame::PADDED != 0);
        if pad + padded > h.len {
            return Err(frame::PROTOCOL_ERROR);
        }
        let len = h.len as u32;
        self.recv_unacked += len;
        if self.recv_unacked > self.cfg.connection_window {
            return Err(frame::FLOW_CONTROL_ERROR);
        }
        if self.recv_unacked >= self.cfg.connection_window / 2 {
            frame::put_u32(&mut self.out, frame::WINDOW_UPDATE, 0, self.recv_unacked);
            self.recv_unacked = 0;
            self.queued();
        }
        let entry = self.find(h.stream);
        let end_stream = h.flags & frame::END_STREAM != 0;
        if let Some(k) = entry {
            let window = self.cfg.window;
            let e = &mut self.entries[k];
            e.recv_unacked += len;
            if e.recv_unacked > window || e.status == 0 {
                // Over the stream's window, or a body before any response head.
                frame::put_u32(&mut self.out, frame::RST_STREAM, h.stream, frame::PROTOCOL_ERROR);
                self.queued();
                self.end(k, Ended::Malformed);
                self.data = Some(Data { entry: None, left: h.len - padded, pad, end_stream: false });
                return Ok(());
            }
            if !end_stream && e.recv_unacked >= window / 2 {
                frame::put_u32(&mut self.out, frame::WINDOW_UPDATE, h.stream, e.recv_unacked);
                e.recv_unacked = 0;
                self.queued();
            }
        }
        self.data = Some(Data { entry, left: h.len - padded, pad, end_stream });
        if h.len - padded == 0 {
            // An empty frame ends here (the loop reads no payload for it).
            let d = self.data.take().expect("just set");
            if let (Some(k), true) = (d.entry, d.end_stream) {
                self.respond(k);
            }
        }
        Ok(())
    }

    /// A whole frame other than DATA.
    fn frame(&mut self, h: &Head, payload: &[u8]) -> Result<(), u32> {
        match h.kind {
            frame::HEADERS => self.headers(h, payload),
            frame::CONTINUATION => self.continuation(h, payload),
            frame::SETTINGS => self.settings(h, payload),
            frame::RST_STREAM => {
                if payload.len() != 4 {
                    return Err(frame::FRAME_SIZE_ERROR);
                }
                if h.stream == 0 || h.stream >= self.next_id {
                    return Err(frame::PROTOCOL_ERROR);
                }
                if let Some(k) = self.find(h.stream) {
                    let code = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    self.end(k, Ended::Reset(code));
                }
                Ok(())
            }
            frame::WINDOW_UPDATE => self.window_update(h, payload),
            frame::PING => {
                if payload.len() != 8 {
                    return Err(frame::FRAME_SIZE_ERROR);
                }
                if h.stream != 0 {
                    return Err(frame::PROTOCOL_ERROR);
                }
                if h.flags & frame::ACK == 0 && self.out.len() < OUT_LIMIT {
                    frame::put_head(&mut self.out, 8, frame::PING, frame::ACK, 0);
                    self.out.extend_from_slice(payload);
                    self.queued();
                }
                Ok(())
            }
            frame::GOAWAY => {
                if h.stream != 0 {
                    return Err(frame::PROTOCOL_ERROR);
                }
                if payload.len() < 8 {
                    return Err(frame::FRAME_SIZE_ERROR);
                }
                let last = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & frame::MAX_WINDOW;
                let last = self.goaway.map_or(last, |g| g.min(last));
                self.goaway = Some(last);
                // Streams above `last` were never processed; those at or below it go on.
                for k in 0..self.entries.len() {
                    if self.entries[k].st == St::Open && self.entries[k].id > last {
                        self.end(k, Ended::Refused);
                    }
                }
                self.wake_waiting();
                self.queued();
                Ok(())
            }
            // The client disabled push.
            frame::PUSH_PROMISE => Err(frame::PROTOCOL_ERROR),
            // PRIORITY and frame types this client does not know: ignored (RFC 9113 §5.5).
            _ => Ok(()),
        }
    }

    fn settings(&mut self, h: &Head, payload: &[u8]) -> Result<(), u32> {
        if h.stream != 0 {
            return Err(frame::PROTOCOL_ERROR);
        }
        if h.flags & frame::ACK != 0 {
            return if payload.is_empty() { Ok(()) } else { Err(frame::FRAME_SIZE_ERROR) };
        }
        if !payload.len().is_multiple_of(6) {
            return Err(frame::FRAME_SIZE_ERROR);
        }
        for s in payload.chunks(6) {
            let id = u16::from_be_bytes([s[0], s[1]]);
            let v = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
            match id {
                frame::MAX_CONCURRENT_STREAMS => self.peer_max_streams = v,
                frame::INITIAL_WINDOW_SIZE => {
                    if v > frame::MAX_WINDOW {
                        return Err(frame::FLOW_CONTROL_ERROR);
                    }
                    let delta = i64::from(v) - self.peer_window;
                    self.peer_window = i64::from(v);
                    for e in self.entries.iter_mut().filter(|e| e.st == St::Open) {
                        e.send_window += delta;
                        if e.send_window > i64::from(frame::MAX_WINDOW) {
                            return Err(frame::FLOW_CONTROL_ERROR);
                        }
                    }
                }
                frame::MAX_FRAME_SIZE => {
                    if !(frame::DEFAULT_MAX_FRAME as u32..=(1 << 24) - 1).contains(&v) {
                        return Err(frame::PROTOCOL_ERROR);
                    }
                    self.peer_max_frame = v as usize;
                }
                // The table the server decodes with is unused (the client never indexes); push
                // and the server's header list limit concern what the client does not send.
                _ => {}
            }
        }
        self.peer_seen = true;
        frame::put_head(&mut self.out, 0, frame::SETTINGS, frame::ACK, 0);
        self.queued();
        self.flush_pending();
        self.wake_waiting();
        Ok(())
    }

    fn window_update(&mut self, h: &Head, payload: &[u8]) -> Result<(), u32> {
        if payload.len() != 4 {
            return Err(frame::FRAME_SIZE_ERROR);
        }
        let inc = i64::from(u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & frame::MAX_WINDOW);
        if h.stream == 0 {
            if inc == 0 {
                return Err(frame::PROTOCOL_ERROR);
            }
            self.send_window += inc;
            if self.send_window > i64::from(frame::MAX_WINDOW) {
                return Err(frame::FLOW_CONTROL_ERROR);
            }
        } else if let Some(k) = self.find(h.stream) {
            let e = &mut self.entries[k];
            e.send_window += inc;
            if inc == 0 || e.send_window > i64::from(frame::MAX_WINDOW) {
                let code = if inc == 0 { frame::PROTOCOL_ERROR } else { frame::FLOW_CONTROL_ERROR };
                frame::put_u32(&mut self.out, frame::RST_STREAM, h.stream, code);
                self.end(k, Ended::Malformed);
                self.queued();
                return Ok(());
            }
        }
        self.flush_pending();
        Ok(())
    }

    fn headers(&mut self, h: &Head, payload: &[u8]) -> Result<(), u32> {
        if h.stream == 0 || h.stream.is_multiple_of(2) || h.stream >= self.next_id {
            return Err(frame::PROTOCOL_ERROR);
        }
        let mut p = payload;
        if h.flags & frame::PADDED != 0 {
            let pad = usize::from(*p.first().ok_or(frame::FRAME_SIZE_ERROR)?);
            p = &p[1..];
            if pad > p.len() {
                return Err(frame::PROTOCOL_ERROR);
            }
            p = &p[..p.len() - pad];
        }
        if h.flags & frame::PRIORITY_FLAG != 0 {
            p = p.get(5..).ok_or(frame::FRAME_SIZE_ERROR)?;
        }
        let end_stream = h.flags & frame::END_STREAM != 0;
        if h.flags & frame::END_HEADERS != 0 {
            return self.block_done(h.stream, p, end_stream, p.len() > self.cfg.max_header_list as usize);
        }
        let oversized = p.len() > self.cfg.max_header_list as usize;
        self.block = Some(Block { stream: h.stream, end_stream, frames: 1, oversized });
        self.block_buf.clear();
        if !oversized {
            self.block_buf.extend_from_slice(p);
        }
        Ok(())
    }

    fn continuation(&mut self, h: &Head, payload: &[u8]) -> Result<(), u32> {
        let max_frames = self.cfg.max_header_list as usize / frame::DEFAULT_MAX_FRAME + 16;
        let Some(b) = self.block.as_mut() else { return Err(frame::PROTOCOL_ERROR) };
        if b.stream != h.stream {
            return Err(frame::PROTOCOL_ERROR);
        }
        b.frames += 1;
        if b.frames > max_frames {
            return Err(frame::ENHANCE_YOUR_CALM);
        }
        if !b.oversized {
            if self.block_buf.len() + payload.len() > self.cfg.max_header_list as usize {
                // Kept no longer: a table of 0 bytes needs no decoding to stay in step.
                b.oversized = true;
                self.block_buf = Vec::new();
            } else {
                self.block_buf.extend_from_slice(payload);
            }
        }
        if h.flags & frame::END_HEADERS == 0 {
            return Ok(());
        }
        let b = self.block.take().expect("checked above");
        let block = std::mem::take(&mut self.block_buf);
        let r = self.block_done(b.stream, &block, b.end_stream, b.oversized);
        self.block_buf = block;
        if self.block_buf.capacity() > frame::DEFAULT_MAX_FRAME {
            self.block_buf = Vec::new();
        }
        r
    }

    /// A whole header block for `stream`: a response head (1xx ones skipped) or trailers.
    fn block_done(&mut self, stream: u32, block: &[u8], end_stream: bool, oversized: bool) -> Result<(), u32> {
        let entry = self.find(stream);
        let Some(k) = entry else {
            // A stream given up on: a table of 0 bytes keeps no state to update, but the block
            // must still be valid HPACK.
            return hpack::decode::<HpackError>(block, |_| Ok(())).map_err(|_| frame::COMPRESSION_ERROR);
        };
        let malformed = |c: &mut Client| {
            if !end_stream {
                frame::put_u32(&mut c.out, frame::RST_STREAM, stream, frame::PROTOCOL_ERROR);
                c.queued();
            }
            c.end(k, Ended::Malformed);
            Ok(())
        };
        if oversized {
            return malformed(self);
        }
        let (grpc, max) = (self.cfg.grpc, self.cfg.max_header_list as usize);
        let Client { entries, names, values, .. } = self;
        let e = &mut entries[k];
        let trailers = e.status != 0;
        let mut status = 0u16;
        let mut size = 0usize;
        let mut bad = false;
        let decoded = hpack::decode::<HpackError>(block, |f| {
            size += f.list_size();
            if size > max {
                bad = true;
                return Ok(());
            }
            if !trailers && f.name.is(":status", names) {
                let v = f.value.get(values)?;
                status = match v {
                    [a, b, c] if v.iter().all(u8::is_ascii_digit) => {
                        u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
                    }
                    _ => 0,
                };
                if status == 0 {
                    bad = true;
                }
                return Ok(());
            }
            if grpc && f.name.is("grpc-status", names) {
                let v = f.value.get(values)?;
                let code = std::str::from_utf8(v).ok().and_then(|s| s.parse::<u32>().ok());
                e.grpc = code.map(|c| c.min(u32::from(u8::MAX)) as u8);
                return Ok(());
            }
            if trailers || status < 200 {
                return Ok(());
            }
            if status >= 300 && f.name.is("retry-after", names) {
                e.retry_after = RetryAfter::parse(f.value.get(values)?);
            }
            if let Some(c) = e.capture.as_deref_mut().filter(|c| !c.headers.is_empty()) {
                let name = match f.name {
                    Name::Static(i) => hpack::STATIC[i].0.as_bytes(),
                    Name::Literal(t) => t.get(names)?,
                };
                if let Ok(name) = std::str::from_utf8(name) {
                    c.keep_header(name, f.value.get(values)?);
                }
            }
            Ok(())
        });
        if decoded.is_err() {
            return Err(frame::COMPRESSION_ERROR);
        }
        if bad || (trailers && !end_stream) || (!trailers && status == 0) {
            return malformed(self);
        }
        let e = &mut self.entries[k];
        if !trailers {
            if status < 200 {
                // An interim response (100 Continue, 103 Early Hints): the final one follows.
                return if end_stream { malformed(self) } else { Ok(()) };
            }
            e.status = status;
        }
        if end_stream {
            self.respond(k);
        }
        Ok(())
    }

    /// Slot `k`'s stream ended with its response whole.
    fn respond(&mut self, k: usize) {
        let grpc = self.cfg.grpc;
        let e = &mut self.entries[k];
        let response = Response {
            status: e.status,
            keep_alive: true,
            head_bytes: 0,
            body_bytes: e.body_bytes,
            retry_after: e.retry_after,
        };
        let code = grpc.then(|| e.grpc.unwrap_or(GRPC_UNKNOWN));
        self.end(k, Ended::Response(response, code));
    }
}
