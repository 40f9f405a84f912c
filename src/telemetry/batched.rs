//! Log lines gathered into few `write`s: under load the server logs a line per request, and
//! one unbuffered `write` to stderr per line was half of what the access log cost (~3.5% of
//! the webhook's CPU, BENCHMARKS.md). Lines below WARN wait at most [`HOLD`] (or until
//! [`CAP`] bytes are waiting); a WARN or ERROR line goes out at once, after everything
//! before it, so nothing an operator must see waits and the order is kept.
//!
//! Why not `tracing-appender`'s non-blocking writer: it sends each line through a channel to
//! a thread that writes it on its own, so every line still costs a `write`, plus an
//! allocation and a thread wake-up.

use std::io::{self, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest a line waits before it is written.
pub const HOLD: Duration = Duration::from_millis(50);
/// Waiting bytes that are written at once: bounds the buffer, and the lines lost in a crash.
pub const CAP: usize = 64 * 1024;

#[derive(Debug)]
pub struct Batched<W> {
    state: Mutex<State<W>>,
}

#[derive(Debug)]
struct State<W> {
    sink: W,
    waiting: Vec<u8>,
    /// When the oldest waiting line came.
    since: Option<Instant>,
}

impl<W: Write> Batched<W> {
    pub fn new(sink: W) -> Batched<W> {
        Batched {
            state: Mutex::new(State {
                sink,
                waiting: Vec::with_capacity(CAP),
                since: None,
            }),
        }
    }

    /// Takes one whole line (the formatter hands each over in one call).
    pub fn line(&self, line: &[u8], urgent: bool) -> io::Result<()> {
        let mut state = self.lock();
        state.waiting.extend_from_slice(line);
        let since = *state.since.get_or_insert_with(Instant::now);
        if urgent || state.waiting.len() >= CAP || since.elapsed() >= HOLD {
            state.write_out()?;
        }
        Ok(())
    }

    /// Writes whatever waits.
    pub fn flush(&self) -> io::Result<()> {
        self.lock().write_out()
    }

    /// Writes what has waited [`HOLD`] or longer: for a timer, when no new line comes to do it.
    pub fn flush_due(&self) -> io::Result<()> {
        let mut state = self.lock();
        match state.since {
            Some(since) if since.elapsed() >= HOLD => state.write_out(),
            _ => Ok(()),
        }
    }

    /// [`Batched::flush`] unless another thread is in the middle of a line (a panic hook
    /// must not wait for a lock its own thread may hold).
    pub fn try_flush(&self) -> io::Result<()> {
        match self.state.try_lock() {
            Ok(mut state) => state.write_out(),
            Err(_) => Ok(()),
        }
    }

    #[cfg(test)]
    fn into_sink(self) -> W {
        self.state.into_inner().unwrap().sink
    }

    #[cfg(test)]
    fn with_sink<T>(&self, look: impl FnOnce(&W) -> T) -> T {
        look(&self.lock().sink)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<W>> {
        // A panic while a line was copied in leaves whole lines or a torn last one: still
        // worth writing.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<W: Write> State<W> {
    fn write_out(&mut self) -> io::Result<()> {
        self.since = None;
        if self.waiting.is_empty() {
            return Ok(());
        }
        let result = self.sink.write_all(&self.waiting);
        // On failure too: a sink that cannot take lines must not make them pile up.
        self.waiting.clear();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_wait_until_a_flush_then_go_out_in_one_write_in_order() {
        let batched = Batched::new(Writes::default());
        batched.line(b"one\n", false).unwrap();
        batched.line(b"two\n", false).unwrap();
        assert!(batched.with_sink(|s| s.0.is_empty()));
        batched.flush().unwrap();
        assert_eq!(batched.into_sink().0, vec![b"one\ntwo\n".to_vec()]);
    }

    #[test]
    fn an_urgent_line_goes_out_at_once_after_the_waiting_ones() {
        let batched = Batched::new(Writes::default());
        batched.line(b"info\n", false).unwrap();
        batched.line(b"warn\n", true).unwrap();
        assert_eq!(batched.into_sink().0, vec![b"info\nwarn\n".to_vec()]);
    }

    #[test]
    fn a_full_buffer_is_written_without_waiting() {
        let batched = Batched::new(Writes::default());
        let line = vec![b'x'; 1000];
        for _ in 0..CAP / 1000 + 1 {
            batched.line(&line, false).unwrap();
        }
        let writes = batched.into_sink().0;
        assert_eq!(writes.len(), 1);
        assert!(writes[0].len() >= CAP);
    }

    #[test]
    fn a_line_that_waited_its_time_goes_out_with_the_next_or_the_timer() {
        let batched = Batched::new(Writes::default());
        batched.line(b"old\n", false).unwrap();
        batched.flush_due().unwrap();
        assert!(batched.with_sink(|s| s.0.is_empty()), "not due yet");
        std::thread::sleep(HOLD);
        batched.flush_due().unwrap();
        assert_eq!(batched.with_sink(|s| s.0.clone()), vec![b"old\n".to_vec()]);
        batched.line(b"new\n", false).unwrap();
        std::thread::sleep(HOLD);
        batched.line(b"newer\n", false).unwrap();
        assert_eq!(batched.into_sink().0[1], b"new\nnewer\n".to_vec());
    }

    #[test]
    fn a_failed_write_drops_the_lines_it_held_and_says_so() {
        let batched = Batched::new(Failing);
        batched.line(b"lost\n", false).unwrap();
        assert!(batched.flush().is_err());
        batched.flush().unwrap(); // nothing left waiting
    }

    /// Each `write` call's bytes.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Failing;

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("no space"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}
