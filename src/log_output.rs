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
//! and shutdown go on. Dropped lines are counted in
//! `nexus_auth_log_lines_dropped_total`, and once standard error takes
//! writes again, one line says how many were dropped.
//!
//! `flush` writes what is waiting, giving up after `EXIT_FLUSH_TIMEOUT`
//! when standard error is blocked. The binary calls it before it exits, and
//! the panic hook that `install` sets calls it before the panic message.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Lines not yet written.
    pending: Mutex<Vec<u8>>,
    /// Lines dropped since the last line that reported drops.
    dropped_unreported: AtomicU64,
    /// Signalled when `pending` stops being empty.
    filled: Condvar,
    /// Destination of the batches: standard error outside the tests. It is
    /// locked while a batch is written, so that batches arrive in the order
    /// they were taken, and always before `pending`.
    output: Mutex<Box<dyn Write + Send>>,
}

impl Shared {
    fn new(output: Box<dyn Write + Send>) -> Arc<Shared> {
        Arc::new(Shared {
            pending: Mutex::default(),
            dropped_unreported: AtomicU64::new(0),
            filled: Condvar::new(),
            output: Mutex::new(output),
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
        let was_empty = pending.is_empty();
        // A first line always fits, so that one long line is not dropped.
        if !was_empty && pending.len() + bytes.len() > MAX_BUFFERED {
            drop(pending);
            DROPPED_LINES.inc();
            self.shared
                .dropped_unreported
                .fetch_add(1, Ordering::Relaxed);
            return Ok(bytes.len());
        }
        pending.extend_from_slice(bytes);
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
    // The write runs on its own thread, because a write to a pipe that
    // nobody reads blocks until the process exits.
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
    if flushing.is_ok() {
        let _ = finished.recv_timeout(EXIT_FLUSH_TIMEOUT);
    }
}

/// Runs the writer thread: waits for a first line, lets more arrive for
/// `FLUSH_INTERVAL`, and writes them all with one call.
fn write_batches(shared: &Shared) {
    loop {
        let mut pending = lock(&shared.pending);
        while pending.is_empty() {
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

/// Takes the buffer and writes it to the output, followed by a line that
/// reports lines dropped since the last such line.
fn write_pending(shared: &Shared) -> io::Result<()> {
    let mut output = lock(&shared.output);
    let batch = std::mem::take(&mut *lock(&shared.pending));
    if !batch.is_empty() {
        output.write_all(&batch)?;
    }

    let dropped = shared.dropped_unreported.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        // Written directly rather than logged, in env_logger's format, so
        // that the report cannot be dropped itself.
        let now = humantime::format_rfc3339_seconds(SystemTime::now());
        let noun = if dropped == 1 { "line" } else { "lines" };
        let report = format!(
            "[{now} WARN  nexus_auth::log_output] dropped {dropped} log {noun} because standard error did not take writes\n"
        );
        if let Err(error) = output.write_all(report.as_bytes()) {
            shared
                .dropped_unreported
                .fetch_add(dropped, Ordering::Relaxed);
            return Err(error);
        }
    }
    output.flush()
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
        assert!(lock(&log.shared.pending).is_empty());
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
        assert_eq!(lock(&log.shared.pending).as_slice(), b"first\nthird\n");
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
        assert_eq!(lock(&log.shared.pending).len(), MAX_BUFFERED + 1);
    }
}
