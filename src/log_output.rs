//! Log output: env_logger formats each record on the thread that logs it,
//! and `BatchedLog` collects the formatted lines so that a background
//! thread writes them to standard error in batches.
//!
//! Under load every login logs one line. Writing each line with its own
//! system call, under the standard error lock that all workers share, cost
//! about a tenth of a login's CPU time (see BENCHMARKS.md). Here a line is
//! copied into a buffer, and the writer thread writes the buffer at most
//! `FLUSH_INTERVAL` after its first line arrived. Lines keep their order.
//! No line is dropped: once `MAX_BUFFERED` bytes are waiting, the thread
//! that logs writes the buffer itself, so a blocked standard error slows
//! logging down as it did before instead of growing memory.
//!
//! `flush` writes what is waiting. The binary calls it before it exits, and
//! the panic hook that `install` sets calls it before the panic message.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::Duration;

/// Maximum time a logged line waits in the buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(20);

/// Buffer size, in bytes, at which the logging thread writes the buffer
/// itself instead of leaving it to the writer thread.
const MAX_BUFFERED: usize = 1 << 20;

struct Shared {
    /// Lines not yet written.
    pending: Mutex<Vec<u8>>,
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
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut pending = lock(&self.shared.pending);
        let was_empty = pending.is_empty();
        pending.extend_from_slice(bytes);
        let full = pending.len() >= MAX_BUFFERED;
        drop(pending);

        if full {
            write_pending(&self.shared)?;
        } else if was_empty {
            self.shared.filled.notify_one();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes the lines waiting in the installed writer to standard error.
/// Does nothing when no writer is installed.
pub fn flush() {
    if let Some(shared) = INSTALLED.get() {
        // Standard error is the last resort for reporting anything, so a
        // failed write has nowhere to go.
        let _ = write_pending(shared);
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

/// Takes the buffer and writes it to the output.
fn write_pending(shared: &Shared) -> io::Result<()> {
    let mut output = lock(&shared.output);
    let batch = std::mem::take(&mut *lock(&shared.pending));
    if batch.is_empty() {
        return Ok(());
    }
    output.write_all(&batch)?;
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
    fn full_buffer_written_by_caller() {
        let collected = Collected::default();
        // No writer thread runs for this writer, so only the caller can
        // empty the buffer.
        let mut log = BatchedLog {
            shared: Shared::new(Box::new(collected.clone())),
        };

        log.write_all(b"first\n").unwrap();
        assert!(lock(&collected.0).is_empty());

        log.write_all(&vec![b'x'; MAX_BUFFERED]).unwrap();
        assert_eq!(lock(&collected.0).len(), MAX_BUFFERED + 6);
        assert!(lock(&collected.0).starts_with(b"first\n"));
        assert!(lock(&log.shared.pending).is_empty());
    }
}
