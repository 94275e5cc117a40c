//! latency.hlog: the HdrHistogram interval log of a run (V2, deflate-compressed), one line per
//! histogram per interval: the corrected latency untagged, the uncorrected one tagged
//! `uncorrected`, that of expected responses tagged `ok`, each status class seen tagged
//! `class:5xx`, and each named request's corrected latency tagged `name:NAME`. Values are
//! microseconds; the max column is in milliseconds (`MaxValueDivisor: 1000`). HdrHistogram's
//! own `HistogramLogProcessor` reads it, and `engine report merge` adds the histograms of
//! several runs exactly, per name too.

use std::collections::BTreeMap;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, IntervalLogWriterBuilder, LogEntry};
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use hdrhistogram::Histogram;

use crate::observe::{Flow, Interval as Observed, Observer};
use crate::stats::{new_histogram, Totals};
use crate::summary::Summary;

/// Largest log read back: far above what a week-long run writes, so the bound only stops a
/// path that never ends (a FIFO, `/dev/zero`) from taking all memory.
pub const MAX_HLOG: u64 = 4 * 1024 * 1024 * 1024;
/// The tag of the uncorrected histograms.
const UNCORRECTED: &str = "uncorrected";
/// The tag of the expected responses' histograms.
const OK: &str = "ok";
/// The tag prefix of a status class's histograms.
const CLASS: &str = "class:";
/// The tag prefix of a named request's histograms.
const NAME: &str = "name:";
/// The tags of the connect times and the TLS handshake times of the connections opened.
const CONNECT: &str = "connect";
const HANDSHAKE: &str = "tls_handshake";

#[derive(Debug, thiserror::Error)]
pub enum HlogError {
    #[error("cannot read '{path}': {source}")]
    Read { path: PathBuf, source: engine_util::files::FileError },
    #[error("'{path}', entry {entry}: {reason}")]
    Entry { path: PathBuf, entry: usize, reason: String },
}

/// One interval of a log: its absolute start and length (seconds) and histograms.
pub struct Interval {
    pub start: f64,
    pub len: f64,
    pub corrected: Histogram<u64>,
    pub uncorrected: Histogram<u64>,
    /// Corrected, of the responses whose status was expected.
    pub ok: Histogram<u64>,
    /// Corrected, per status class (`1xx` at 0 .. `5xx` at 4).
    pub classes: [Option<Histogram<u64>>; 5],
    /// Per named request (scenarios), corrected.
    pub names: BTreeMap<String, Histogram<u64>>,
    /// Connect and TLS handshake times of the connections opened in the interval.
    pub connect: Option<Histogram<u64>>,
    pub handshake: Option<Histogram<u64>>,
}

/// A log read back.
pub struct Log {
    pub intervals: Vec<Interval>,
    /// A digest of the file's bytes: two inputs with the same one are one run given twice.
    pub digest: u64,
}

impl Log {
    /// Responses the log holds (one corrected sample each).
    pub fn responses(&self) -> u64 {
        self.intervals.iter().map(|i| i.corrected.len()).sum()
    }
}

/// Reads a log written by [`Writer`].
pub fn read(path: &Path) -> Result<Log, HlogError> {
    let bytes = engine_util::files::read_limited(path, MAX_HLOG)
        .map_err(|source| HlogError::Read { path: path.to_path_buf(), source })?;
    parse(&bytes, path)
}

/// Reads a log's text (`path` names it in errors): what [`read`] does after reading the file.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Log, HlogError> {
    let mut base = 0.0;
    // The histograms of one interval come as several lines with one start time.
    let mut open: BTreeMap<u64, Interval> = BTreeMap::new();
    let mut de = Deserializer::new();
    for (n, entry) in IntervalLogIterator::new(bytes).enumerate() {
        let bad = |reason: String| HlogError::Entry { path: path.to_path_buf(), entry: n + 1, reason };
        match entry.map_err(|e| bad(format!("not an interval log ({e:?})")))? {
            LogEntry::StartTime(t) | LogEntry::BaseTime(t) => base = t.as_secs_f64(),
            LogEntry::Interval(h) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(h.encoded_histogram())
                    .map_err(|_| bad("bad base64 (a truncated or edited log?)".into()))?;
                let hist: Histogram<u64> =
                    de.deserialize(&mut raw.as_slice()).map_err(|e| bad(format!("bad histogram ({e:?})")))?;
                let start = base + h.start_timestamp().as_secs_f64();
                let e = open.entry((start * 1000.0).round() as u64).or_insert_with(|| Interval {
                    start,
                    len: h.duration().as_secs_f64(),
                    corrected: new_histogram(),
                    uncorrected: new_histogram(),
                    ok: new_histogram(),
                    classes: Default::default(),
                    names: BTreeMap::new(),
                    connect: None,
                    handshake: None,
                });
                match h.tag().map(|t| t.as_str()) {
                    None => e.corrected = hist,
                    Some(UNCORRECTED) => e.uncorrected = hist,
                    Some(OK) => e.ok = hist,
                    Some(CONNECT) => e.connect = Some(hist),
                    Some(HANDSHAKE) => e.handshake = Some(hist),
                    Some(t) => {
                        if let Some(name) = t.strip_prefix(NAME) {
                            e.names.insert(name.to_string(), hist);
                        } else if let Some(k) = t.strip_prefix(CLASS).and_then(class_index) {
                            e.classes[k] = Some(hist);
                        } else {
                            return Err(bad(format!("unknown tag '{t}'")));
                        }
                    }
                }
            }
        }
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    Ok(Log { intervals: open.into_values().collect(), digest: hasher.finish() })
}

/// `2xx` → 1.
fn class_index(tag: &str) -> Option<usize> {
    match tag.as_bytes() {
        [d @ b'1'..=b'5', b'x', b'x'] => Some(usize::from(d - b'1')),
        _ => None,
    }
}

/// Writes a log. The file is created with the first interval, so a run that never started
/// leaves none.
pub struct Writer {
    /// Where the log goes once it begins: a file to create, or a sink given.
    to: Destination,
    out: Option<Box<dyn Write + Send>>,
    serializer: V2DeflateSerializer,
    /// Request names by the plan's index (empty for a single request).
    names: Vec<String>,
    encoded: Vec<u8>,
    text: String,
}

enum Destination {
    File(PathBuf),
    Sink(Option<Box<dyn Write + Send>>),
}

impl Writer {
    pub fn new(path: PathBuf, names: Vec<String>) -> Self {
        Writer::to(Destination::File(path), names)
    }

    /// A log written to `sink` (the live page's frames carry it), unbuffered.
    pub fn into_sink(sink: Box<dyn Write + Send>, names: Vec<String>) -> Self {
        Writer::to(Destination::Sink(Some(sink)), names)
    }

    fn to(to: Destination, names: Vec<String>) -> Self {
        Writer {
            to,
            out: None,
            serializer: V2DeflateSerializer::new(),
            names,
            encoded: Vec::new(),
            text: String::new(),
        }
    }

    /// Creates the file and writes its header: times in the log count from `start`.
    pub fn begin(&mut self, start: SystemTime) -> io::Result<()> {
        let mut out: Box<dyn Write + Send> = match &mut self.to {
            Destination::File(path) => Box::new(BufWriter::new(File::create(path)?)),
            Destination::Sink(sink) => sink.take().ok_or_else(|| io::Error::other("the log began twice"))?,
        };
        let mut serializer = V2DeflateSerializer::new();
        IntervalLogWriterBuilder::new()
            .add_comment(
                "engine latency: corrected (untagged), uncorrected (Tag=uncorrected), per request (Tag=name:NAME)",
            )
            .add_comment("values in microseconds; the max column in milliseconds")
            .with_start_time(start)
            .with_base_time(start)
            .with_max_value_divisor(1000.0)
            .begin_log_with(&mut out, &mut serializer)?;
        self.out = Some(out);
        Ok(())
    }

    /// Appends one interval, `from_s`..`to_s` after the start.
    pub fn write(&mut self, from_s: f64, to_s: f64, totals: &Totals) -> io::Result<()> {
        let start = Duration::from_secs_f64(from_s.max(0.0));
        let length = Duration::from_secs_f64((to_s - from_s).max(0.0));
        self.line(None, start, length, &totals.latency)?;
        self.line(Some(UNCORRECTED), start, length, &totals.latency_uncorrected)?;
        self.line(Some(OK), start, length, totals.ok_latency())?;
        for (k, h) in totals.by_class.iter().enumerate() {
            if let Some(h) = h {
                self.line(Some(&format!("{CLASS}{}xx", k + 1)), start, length, h)?;
            }
        }
        for i in 0..self.names.len().min(totals.names.len()) {
            let tag = format!("{NAME}{}", self.names[i]);
            self.line(Some(&tag), start, length, &totals.names[i].latency)?;
        }
        if let Some(setup) = &totals.setup {
            for (tag, h) in [(CONNECT, Some(&setup.connect)), (HANDSHAKE, setup.handshake.as_deref())] {
                if let Some(h) = h.filter(|h| !h.is_empty()) {
                    self.line(Some(tag), start, length, h)?;
                }
            }
        }
        Ok(())
    }

    /// One histogram in the log's line format (`[Tag=T,]start,length,max,base64`). Written
    /// here rather than through hdrhistogram's log writer, which borrows its sink and
    /// serializer for its whole life, so an observer could not hold it.
    fn line(&mut self, tag: Option<&str>, start: Duration, length: Duration, h: &Histogram<u64>) -> io::Result<()> {
        let Some(out) = self.out.as_mut() else { return Ok(()) };
        self.encoded.clear();
        self.serializer.serialize(h, &mut self.encoded).map_err(|e| io::Error::other(format!("{e:?}")))?;
        self.text.clear();
        base64::engine::general_purpose::STANDARD.encode_string(&self.encoded, &mut self.text);
        if let Some(t) = tag {
            write!(out, "Tag={t},")?;
        }
        writeln!(
            out,
            "{:.3},{:.3},{:.3},{}",
            start.as_secs_f64(),
            length.as_secs_f64(),
            h.max() as f64 / 1000.0,
            self.text
        )
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match self.out.as_mut() {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }
}

/// The log as an observer of a run. A write that fails (a full disk) does not stop the run;
/// the summary says the log is incomplete.
pub struct HlogObserver {
    writer: Writer,
    error: Option<io::Error>,
}

impl HlogObserver {
    pub fn new(writer: Writer) -> Self {
        HlogObserver { writer, error: None }
    }
}

impl Observer for HlogObserver {
    fn interval(&mut self, i: &Observed<'_>) -> Flow {
        if self.error.is_none() {
            let began = if i.seq == 1 { self.writer.begin(i.started) } else { Ok(()) };
            if let Err(e) = began.and_then(|()| self.writer.write(i.from_s, i.elapsed_s, i.totals)) {
                self.error = Some(e);
            }
        }
        Flow::Continue
    }

    fn finish(&mut self, summary: &mut Summary) {
        if let Err(e) = self.writer.flush() {
            self.error.get_or_insert(e);
        }
        if let Some(e) = &self.error {
            summary.warnings.push(format!("latency.hlog is incomplete: {e}"));
        }
    }
}
