//! Log output: env_logger formats each record on the thread that logs it,
//! and `BatchedLog` collects the formatted lines so that a background
//! thread writes them to standard error in batches.
//!
//! Under load every login logs one line. Writing each line with its own
//! system call, under the standard error lock that all workers share, cost
//! about a tenth of a login's CPU time (see BENCHMARKS.md). Here a line is
//! copied into a buffer, and the writer thread writes the buffer at most
//! `FLUSH_INTERVAL` after its first line arrived, in order.
//!
//! A thread that logs never waits for standard error. When nothing reads
//! it (a pipe whose reader stalls), the buffer fills up to `MAX_BUFFERED`
//! bytes and further lines are dropped, so that requests, health checks
//! and shutdown go on. Lines that a failed write loses (a full disk, a
//! closed pipe) are handled the same way. Both are counted in
//! `nexus_auth_log_lines_dropped_total`, and once standard error takes
//! writes again, one line after the last line written before the gap
//! reports how many were lost.
//!
//! `flush` writes what is waiting, giving up after `EXIT_FLUSH_TIMEOUT`
//! when standard error is blocked. The binary calls it before it exits, and
//! the panic hook that `install` sets calls it before the panic message.

use std::io::{self, Write};
use std::sync::{mpsc, Arc, Condvar, LazyLock, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, SystemTime};

use prometheus::IntCounter;

/// Maximum time a logged line waits in the buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(20);

/// Buffer size, in bytes, past which lines are dropped: about 9,000 login
/// lines.
const MAX_BUFFERED: usize = 1 << 20;

/// Maximum time `flush` waits for standard error to take the last lines.
const EXIT_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Log lines dropped because the buffer was full, since the process started.
static DROPPED_LINES: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "nexus_auth_log_lines_dropped_total",
        "Log lines dropped because standard error did not take writes.",
    )
    .expect("valid metric")
});

/// Returns the counter of dropped log lines, for the metrics registry.
pub fn dropped_lines_counter() -> IntCounter {
    DROPPED_LINES.clone()
}

struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when `pending` stops being empty.
    filled: Condvar,
    /// The destination, locked while a batch is written so that batches
    /// arrive in the order they were taken. Always locked before `pending`.
    output: Mutex<Output>,
}

/// Lines not yet written, and the lines dropped after them.
#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    /// Lines dropped because `lines` was full. They came after every line
    /// in `lines`, so the report of them goes after those.
    dropped: u64,
}

/// Destination of the batches: standard error outside the tests.
struct Output {
    sink: Box<dyn Write + Send>,
    /// Lines lost and not yet reported.
    unreported: u64,
    /// Whether a failed write stopped inside a line, so that the next write
    /// must start a new line.
    inside_line: bool,
}

impl Shared {
    fn new(sink: Box<dyn Write + Send>) -> Arc<Shared> {
        Arc::new(Shared {
            pending: Mutex::default(),
            filled: Condvar::new(),
            output: Mutex::new(Output {
                sink,
                unreported: 0,
                inside_line: false,
            }),
        })
    }
}

/// The buffer of the installed writer, for `flush`.
static INSTALLED: OnceLock<Arc<Shared>> = OnceLock::new();

/// A `Write` for env_logger's `Target::Pipe` that buffers lines for the
/// writer thread. Its `flush` does nothing, because env_logger flushes after
/// every record; `log_output::flush` writes the buffer.
pub struct BatchedLog {
    shared: Arc<Shared>,
}

impl BatchedLog {
    /// Starts the writer thread for standard error and returns the writer
    /// that feeds it. The first writer installed is the one that `flush`
    /// and the panic hook write out.
    pub fn install() -> io::Result<BatchedLog> {
        let log = BatchedLog::start(Box::new(io::stderr()))?;
        if INSTALLED.set(Arc::clone(&log.shared)).is_ok() {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                flush();
                previous(info);
            }));
        }
        Ok(log)
    }

    fn start(output: Box<dyn Write + Send>) -> io::Result<BatchedLog> {
        let shared = Shared::new(output);
        let for_thread = Arc::clone(&shared);
        thread::Builder::new()
            .name("log-writer".to_owned())
            .spawn(move || write_batches(&for_thread))?;
        Ok(BatchedLog { shared })
    }
}

impl Write for BatchedLog {
    /// Buffers `bytes`, which env_logger passes as one whole record, or
    /// drops them when the buffer is full.
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut pending = lock(&self.shared.pending);
        let was_empty = pending.lines.is_empty();
        // A first line always fits, so that one long line is not dropped.
        if !was_empty && pending.lines.len() + bytes.len() > MAX_BUFFERED {
            pending.dropped += 1;
            drop(pending);
            DROPPED_LINES.inc();
            return Ok(bytes.len());
        }
        pending.lines.extend_from_slice(bytes);
        drop(pending);

        if was_empty {
            self.shared.filled.notify_one();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes the lines waiting in the installed writer to standard error.
/// Gives up after `EXIT_FLUSH_TIMEOUT` if standard error does not take
/// them. Does nothing when no writer is installed.
pub fn flush() {
    let Some(shared) = INSTALLED.get() else {
        return;
    };
    // The write runs on its own thread, because a write to a pipe that no
    // process reads blocks until the process exits.
    let shared = Arc::clone(shared);
    let (done, finished) = mpsc::channel();
    let flushing = thread::Builder::new()
        .name("log-flush".to_owned())
        .spawn(move || {
            // Standard error is the last resort for reporting anything, so
            // a failed write has nowhere to go.
            let _ = write_pending(&shared);
            let _ = done.send(());
        });
    // NOTE: lines still waiting after the timeout are lost, and nothing
    // reports them, because standard error is where a report would go.
    if flushing.is_ok() {
        let _ = finished.recv_timeout(EXIT_FLUSH_TIMEOUT);
    }
}

/// Runs the writer thread: waits for a first line, lets more arrive for
/// `FLUSH_INTERVAL`, and writes them all with one call.
fn write_batches(shared: &Shared) {
    loop {
        let mut pending = lock(&shared.pending);
        while pending.lines.is_empty() {
            pending = shared
                .filled
                .wait(pending)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        drop(pending);

        thread::sleep(FLUSH_INTERVAL);
        let _ = write_pending(shared);
    }
}

/// Takes the buffer and writes it to the output. A line that reports lost
/// lines goes where they were lost: before the batch for lines that an
/// earlier write failed to write, and after it for lines dropped because
/// the batch was full.
fn write_pending(shared: &Shared) -> io::Result<()> {
    let mut output = lock(&shared.output);
    let (batch, dropped) = {
        let mut pending = lock(&shared.pending);
        let batch = std::mem::take(&mut pending.lines);
        (batch, std::mem::take(&mut pending.dropped))
    };
    output.write_report()?;
    output.write_lines(&batch)?;
    output.unreported += dropped;
    output.write_report()?;
    output.sink.flush()
}

impl Output {
    /// Writes one line that reports the lines lost since the last such line,
    /// if any were. It is written directly rather than logged, in
    /// env_logger's format, so that it cannot be dropped itself.
    fn write_report(&mut self) -> io::Result<()> {
        let lost = self.unreported;
        if lost == 0 {
            return Ok(());
        }
        let now = humantime::format_rfc3339_seconds(SystemTime::now());
        let noun = if lost == 1 { "line" } else { "lines" };
        let report = format!(
            "[{now} WARN  nexus_auth::log_output] dropped {lost} log {noun} because standard error did not take writes\n"
        );
        self.unreported = 0;
        if let Err((error, _)) = self.write_after_break(report.as_bytes()) {
            // The report is not a log line, so a failure counts nothing
            // more, and the lines it reported stay unreported.
            self.unreported = lost;
            return Err(error);
        }
        Ok(())
    }

    /// Writes `lines`, whole lines ending in a line break. When a write
    /// fails, the lines that did not get out in full are counted as lost.
    fn write_lines(&mut self, lines: &[u8]) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let Err((error, written)) = self.write_after_break(lines) else {
            return Ok(());
        };
        let lost = lines[written..]
            .iter()
            .filter(|byte| **byte == b'\n')
            .count() as u64;
        DROPPED_LINES.inc_by(lost);
        self.unreported += lost;
        Err(error)
    }

    /// Writes `lines` after the line break that a torn line needs, and
    /// records whether a failed write cut a line short. On failure, returns
    /// the error and the number of bytes of `lines` written.
    fn write_after_break(&mut self, lines: &[u8]) -> Result<(), (io::Error, usize)> {
        if self.inside_line {
            self.sink.write_all(b"\n").map_err(|error| (error, 0))?;
            self.inside_line = false;
        }
        let mut written = 0;
        while written < lines.len() {
            let error = match self.sink.write(&lines[written..]) {
                Ok(0) => io::ErrorKind::WriteZero.into(),
                Ok(count) => {
                    written += count;
                    continue;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => error,
            };
            self.inside_line = written > 0 && lines[written - 1] != b'\n';
            return Err((error, written));
        }
        Ok(())
    }
}

/// Locks `mutex` even if a thread panicked while holding it. The buffer is
/// plain bytes, and losing log lines to a poisoned lock would hide the panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output that tests can read back.
    #[derive(Clone, Default)]
    struct Collected(Arc<Mutex<Vec<u8>>>);

    impl Write for Collected {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            lock(&self.0).extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writer_thread_writes_lines_in_order() {
        let collected = Collected::default();
        let mut log = BatchedLog::start(Box::new(collected.clone())).unwrap();
        let expected: Vec<u8> = (0..100)
            .flat_map(|line| format!("line {line}\n").into_bytes())
            .collect();
        for line in 0..100 {
            log.write_all(format!("line {line}\n").as_bytes()).unwrap();
        }

        let waited = std::time::Instant::now();
        while lock(&collected.0).len() < expected.len() {
            assert!(
                waited.elapsed() < Duration::from_secs(5),
                "the writer thread left lines in the buffer"
            );
            thread::sleep(FLUSH_INTERVAL);
        }
        assert_eq!(*lock(&collected.0), expected);
        assert!(lock(&log.shared.pending).lines.is_empty());
    }

    #[test]
    fn full_buffer_drops_and_reports() {
        let collected = Collected::default();
        // No writer thread runs for this writer, so lines stay buffered
        // until the test writes them out.
        let mut log = BatchedLog {
            shared: Shared::new(Box::new(collected.clone())),
        };
        let dropped_before = DROPPED_LINES.get();

        log.write_all(b"first\n").unwrap();
        log.write_all(&vec![b'x'; MAX_BUFFERED]).unwrap();
        log.write_all(b"third\n").unwrap();
        assert!(lock(&collected.0).is_empty());
        assert_eq!(
            lock(&log.shared.pending).lines.as_slice(),
            b"first\nthird\n"
        );
        assert!(DROPPED_LINES.get() > dropped_before);

        write_pending(&log.shared).unwrap();
        let written = String::from_utf8(lock(&collected.0).clone()).unwrap();
        assert!(written.starts_with("first\nthird\n"), "{written}");
        assert!(
            written.ends_with("dropped 1 log line because standard error did not take writes\n"),
            "{written}"
        );

        lock(&collected.0).clear();
        log.write_all(b"fourth\n").unwrap();
        write_pending(&log.shared).unwrap();
        assert_eq!(lock(&collected.0).as_slice(), b"fourth\n");
    }

    #[test]
    fn long_first_line_kept() {
        let collected = Collected::default();
        let mut log = BatchedLog {
            shared: Shared::new(Box::new(collected.clone())),
        };

        log.write_all(&vec![b'x'; MAX_BUFFERED + 1]).unwrap();
        assert_eq!(lock(&log.shared.pending).lines.len(), MAX_BUFFERED + 1);
    }

    /// An output that takes a limited number of bytes and then fails, like
    /// a full disk, until `room` is raised.
    #[derive(Clone, Default)]
    struct Cramped {
        written: Arc<Mutex<Vec<u8>>>,
        room: Arc<Mutex<usize>>,
    }

    impl Write for Cramped {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let mut room = lock(&self.room);
            if *room == 0 {
                return Err(io::Error::other("no space left"));
            }
            let count = bytes.len().min(*room);
            *room -= count;
            lock(&self.written).extend_from_slice(&bytes[..count]);
            Ok(count)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn failed_write_counted_and_line_ended() {
        let cramped = Cramped::default();
        *lock(&cramped.room) = 7;
        let mut log = BatchedLog {
            shared: Shared::new(Box::new(cramped.clone())),
        };
        let dropped_before = DROPPED_LINES.get();

        log.write_all(b"aaaa\nbbbb\ncccc\n").unwrap();
        assert!(write_pending(&log.shared).is_err());
        assert_eq!(lock(&cramped.written).as_slice(), b"aaaa\nbb");
        assert!(DROPPED_LINES.get() >= dropped_before + 2);

        *lock(&cramped.room) = usize::MAX;
        log.write_all(b"dddd\n").unwrap();
        write_pending(&log.shared).unwrap();
        let written = String::from_utf8(lock(&cramped.written).clone()).unwrap();
        assert!(written.starts_with("aaaa\nbb\n["), "{written}");
        assert!(
            written.ends_with(
                "dropped 2 log lines because standard error did not take writes\ndddd\n"
            ),
            "{written}"
        );
    }
}
