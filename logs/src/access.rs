//! The access log: one line per request, written by a thread of its own
//! ([`AccessLog`]), fed by the serving threads through a bounded channel
//! ([`AccessLogger::log`]). A request never waits for the log: when the channel is
//! full the line is dropped and counted (`access_log_dropped_total`), as
//! `tracing-appender`'s lossy writer does, and nginx's `access_log ... buffer=`.
//!
//! The writer buffers, and flushes whenever the channel runs empty, so the file is
//! current whenever the service is not busy. [`AccessLogger::reopen`] (on SIGHUP)
//! makes it close and reopen the file before its next line: logrotate renames the
//! file, sends SIGHUP, and the next lines go to a new file of the old name.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::RepeatLog;
use crate::access_line::{AccessFormat, AccessRecord};

/// Lines that may wait for the writer; past this they are dropped (and counted).
pub const QUEUE_CAPACITY: usize = 16_384;

/// Describes the access log's metrics to the installed recorder (the binary calls it
/// once, with every crate's).
pub fn describe() {
    metrics::describe_counter!(
        "access_log_dropped_total",
        "Access-log lines dropped because the writer's queue was full (a request never waits \
            for the log)"
    );
    metrics::describe_counter!(
        "access_log_errors_total",
        "Failed writes and reopens of the access log (the log says why, at most once a second)"
    );
}

/// Where the lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Standard output (`--access-log -`): never reopened.
    Stdout,
    /// A file, appended to, created if missing, reopened on [`AccessLogger::reopen`].
    File(PathBuf),
}

impl Destination {
    /// `-` is standard output, anything else a file path.
    pub fn parse(value: &str) -> Self {
        if value == "-" {
            Destination::Stdout
        } else {
            Destination::File(PathBuf::from(value))
        }
    }
}

/// What opens (and reopens) the writer's output.
type Opener = Box<dyn FnMut() -> io::Result<Box<dyn Write + Send>> + Send>;

/// What goes through the channel.
enum Message {
    /// A line to write.
    Line(Box<AccessRecord>),
    /// Look at the flags (a reopen was asked for while the writer may be idle).
    Wake,
    /// Write what came before, flush and exit.
    Stop,
}

/// What the loggers and the writer share.
#[derive(Debug)]
struct Shared {
    /// Set by [`AccessLogger::reopen`], taken by the writer before its next line.
    reopen: AtomicBool,
    /// Lines dropped because the channel was full (or the writer gone).
    dropped: AtomicU64,
    /// `access_log_dropped_total`.
    dropped_metric: metrics::Counter,
}

/// The writer thread's owner: stopping it ([`AccessLog::shutdown`], or dropping it)
/// writes what is queued, flushes and joins the thread.
#[derive(Debug)]
pub struct AccessLog {
    logger: AccessLogger,
    thread: Option<JoinHandle<()>>,
}

/// A handle the serving threads log through: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct AccessLogger {
    /// Bounded: a request's line is offered with `try_send`, never waited for.
    sender: Sender<Message>,
    shared: Arc<Shared>,
}

impl AccessLog {
    /// Opens `destination` now (a file that cannot be opened is an error at start-up,
    /// not a silent loss later) and starts the writer thread, which writes each line
    /// in `format`.
    pub fn open(destination: &Destination, format: AccessFormat) -> io::Result<Self> {
        let opener: Opener = match destination {
            Destination::Stdout => Box::new(|| Ok(Box::new(io::stdout()))),
            Destination::File(path) => {
                let path = path.clone();
                Box::new(move || open_append(&path))
            }
        };
        Self::with_opener(opener, format, QUEUE_CAPACITY)
    }

    /// [`AccessLog::open`] over any output: `opener` is called now and on every
    /// reopen; `capacity` lines may wait.
    pub fn with_opener(
        mut opener: Opener,
        format: AccessFormat,
        capacity: usize,
    ) -> io::Result<Self> {
        let output = opener()?;
        let (sender, receiver) = crossbeam_channel::bounded(capacity.max(1));
        let shared = Arc::new(Shared {
            reopen: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            dropped_metric: metrics::counter!("access_log_dropped_total"),
        });
        shared.dropped_metric.increment(0);
        let writer = Writer {
            receiver,
            shared: Arc::clone(&shared),
            output: BufWriter::with_capacity(64 * 1024, output),
            opener,
            format,
            errors: metrics::counter!("access_log_errors_total"),
            failing: RepeatLog::per_second(),
            line: Vec::with_capacity(512),
        };
        writer.errors.increment(0);
        let thread = std::thread::Builder::new()
            .name("loadlab-access-log".to_owned())
            .spawn(move || writer.run())?;
        Ok(Self {
            logger: AccessLogger { sender, shared },
            thread: Some(thread),
        })
    }

    /// A handle to log through.
    pub fn logger(&self) -> AccessLogger {
        self.logger.clone()
    }

    /// Writes what is queued, flushes and stops the thread. Blocks until it has (the
    /// queue's lines are written first).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            // A blocking send: the writer drains the queue, so there is room soon.
            let _ = self.logger.sender.send(Message::Stop);
            let _ = thread.join();
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.stop();
    }
}

impl AccessLogger {
    /// Queues `record` for the writer; when the queue is full, drops it and counts it
    /// in `access_log_dropped_total`. Never blocks.
    pub fn log(&self, record: AccessRecord) {
        match self.sender.try_send(Message::Line(Box::new(record))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                self.shared.dropped_metric.increment(1);
            }
        }
    }

    /// Asks the writer to close and reopen its file before its next line (logrotate's
    /// SIGHUP). Never blocks; nothing happens on standard output.
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Ordering::Release);
        // Wakes an idle writer to reopen now; a busy one (queue full) sees the flag
        // before its next line.
        let _ = self.sender.try_send(Message::Wake);
    }

    /// Lines dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Lines waiting for the writer now.
    pub fn queued(&self) -> usize {
        self.sender.len()
    }
}

/// The writer thread's state.
struct Writer {
    receiver: Receiver<Message>,
    shared: Arc<Shared>,
    output: BufWriter<Box<dyn Write + Send>>,
    opener: Opener,
    format: AccessFormat,
    /// `access_log_errors_total`: failed writes and reopens.
    errors: metrics::Counter,
    /// Write errors repeat per line (a full disk): logged at most once a second.
    failing: RepeatLog,
    /// The line being formatted, reused.
    line: Vec<u8>,
}

impl Writer {
    /// Writes lines until [`Message::Stop`] or every sender is gone.
    fn run(mut self) {
        while let Ok(message) = self.receiver.recv() {
            if self.shared.reopen.swap(false, Ordering::Acquire) {
                self.reopen();
            }
            match message {
                Message::Line(record) => self.write(&record),
                Message::Wake => {}
                Message::Stop => break,
            }
            if self.receiver.is_empty() {
                self.flush();
            }
        }
        self.flush();
    }

    fn write(&mut self, record: &AccessRecord) {
        self.line.clear();
        record.write_line(self.format, &mut self.line);
        self.line.push(b'\n');
        match self.output.write_all(&self.line) {
            Ok(()) => self.recovered(),
            Err(error) => self.failed("write", &error),
        }
    }

    fn flush(&mut self) {
        match self.output.flush() {
            Ok(()) => self.recovered(),
            Err(error) => self.failed("write", &error),
        }
    }

    /// Closes the output and opens it again (the old file's buffered lines go to the
    /// old file first). A failed open keeps the old output.
    fn reopen(&mut self) {
        self.flush();
        match (self.opener)() {
            Ok(output) => {
                self.output = BufWriter::with_capacity(64 * 1024, output);
                tracing::info!("access log reopened");
            }
            Err(error) => self.failed("reopen", &error),
        }
    }

    /// Closes an episode of failures with a line saying how many were not logged.
    fn recovered(&mut self) {
        if self.failing.is_running() {
            let repeats = self.failing.settle().unwrap_or(0);
            tracing::warn!(repeats, "access log writes again");
        }
    }

    fn failed(&mut self, action: &'static str, error: &io::Error) {
        self.errors.increment(1);
        if let crate::Verdict::Log { repeats } = self.failing.occurred() {
            tracing::error!(action, %error, repeats, "access log failed");
        }
    }
}

/// `path` opened for appending, created if missing.
fn open_append(path: &Path) -> io::Result<Box<dyn Write + Send>> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    Ok(Box::new(file))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::mpsc;
    use std::time::{Duration, SystemTime};

    use super::*;

    fn record(path: &str) -> AccessRecord {
        AccessRecord {
            time: SystemTime::now(),
            listener: "front",
            client: None,
            method: "GET".to_owned(),
            path: path.to_owned(),
            protocol: "HTTP/1.1",
            status: 200,
            bytes: 2,
            duration: Duration::from_micros(10),
            upstream: None,
            request_id: "id".to_owned(),
            referer: None,
            user_agent: None,
        }
    }

    /// An output whose first write waits until the test lets it go, after saying so:
    /// the writer thread is then stuck mid-line, as on a slow disk.
    struct Stuck {
        entered: mpsc::Sender<()>,
        release: Arc<Mutex<mpsc::Receiver<()>>>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _ = self.entered.send(());
            let _ = self.release.lock().expect("gate").recv();
            self.written.lock().expect("sink").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        // Arrange: a writer stuck on its first line, and a queue of 4.
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&written);
        let opener: Opener = Box::new(move || {
            Ok(Box::new(Stuck {
                entered: entered_tx.clone(),
                release: Arc::clone(&release_rx),
                written: Arc::clone(&sink),
            }))
        });
        let log = AccessLog::with_opener(opener, AccessFormat::Json, 4).expect("started");
        let logger = log.logger();
        logger.log(record("/first"));
        entered
            .recv_timeout(Duration::from_secs(10))
            .expect("the writer took the first line");

        // Act: 4 lines fill the queue; 6 more find it full. None of these calls may
        // wait for the writer (it is stuck until released below).
        for i in 0..10 {
            logger.log(record(&format!("/next/{i}")));
        }

        // Assert
        assert_eq!(logger.dropped(), 6);
        assert_eq!(logger.queued(), 4);
        drop(release);
        log.shutdown();
        let text = String::from_utf8(written.lock().expect("sink").clone()).expect("utf-8");
        let paths: Vec<String> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("JSON");
                v["path"].as_str().expect("path").to_owned()
            })
            .collect();
        assert_eq!(
            paths,
            ["/first", "/next/0", "/next/1", "/next/2", "/next/3"]
        );
    }

    #[test]
    fn a_reopen_sends_the_next_lines_to_a_new_file_of_the_same_name() {
        // Arrange
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        let log =
            AccessLog::open(&Destination::File(path.clone()), AccessFormat::Json).expect("opened");
        let logger = log.logger();
        logger.log(record("/before"));

        // Act: logrotate's move, then the reopen a SIGHUP asks for.
        let rotated = dir.path().join("access.log.1");
        wait_for_line(&path, "/before");
        std::fs::rename(&path, &rotated).expect("rename");
        logger.reopen();
        logger.log(record("/after"));
        log.shutdown();

        // Assert
        let old = std::fs::read_to_string(&rotated).expect("rotated file");
        let new = std::fs::read_to_string(&path).expect("new file");
        assert!(old.contains("/before") && !old.contains("/after"), "{old}");
        assert!(new.contains("/after") && !new.contains("/before"), "{new}");
    }

    /// Waits (bounded) until `path` holds a line containing `text`.
    fn wait_for_line(path: &Path, text: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(path).is_ok_and(|t| t.contains(text)) {
            assert!(std::time::Instant::now() < deadline, "{text} never written");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
