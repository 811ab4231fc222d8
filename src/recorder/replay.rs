//! Replaying a recording: `play` with the original timing, `cat` without.
//!
//! `play` takes a `Waiter`, the only thing that waits or reads keys, so the timing logic is
//! tested with a scripted waiter and no sleeping. `play_terminal` picks the real one: when
//! stdin is a terminal it switches it to raw mode (space pauses and resumes, `q` or Ctrl-C
//! quits) and restores it on every way out, including errors and panics; otherwise it sleeps.
//!
//! A file cut short by a crash (a last line without its newline) plays up to that line.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use super::RecorderError;
use super::cast::{parse_event, parse_header};

#[derive(Debug, Clone, PartialEq)]
pub struct PlayOptions {
    /// 2.0 plays twice as fast.
    pub speed: f64,
    /// Pauses longer than this many seconds are shortened to it (default: the header's
    /// `idle_time_limit`, else none).
    pub idle_limit: Option<f64>,
}

impl Default for PlayOptions {
    fn default() -> PlayOptions {
        PlayOptions {
            speed: 1.0,
            idle_limit: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Pause,
    Quit,
    Other,
}

/// What a wait ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// The whole timeout passed.
    Elapsed,
    /// A key was pressed with this much of the timeout left.
    Key(Key, Duration),
}

/// Waits for a timeout (`None`: until a key) or a key press, whichever comes first.
pub trait Waiter {
    fn wait(&mut self, timeout: Option<Duration>) -> Control;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Played {
    Finished,
    Quit,
}

/// The longest pause between two events, whatever the recording says.
const MAX_GAP: Duration = Duration::from_secs(365 * 24 * 3600);

/// Undoes what a recording quit midway may have left in the terminal: the alternate screen
/// (a full-screen program), colours and a hidden cursor.
const TERMINAL_RESET: &str = "\x1b[?1049l\x1b[0m\x1b[?25h";

/// Plays the `o` events of `reader` to `out` with their timing.
pub fn play<R: BufRead, W: Write>(
    reader: R,
    out: &mut W,
    opts: &PlayOptions,
    waiter: &mut dyn Waiter,
) -> Result<Played, RecorderError> {
    let speed = if opts.speed.is_finite() && opts.speed > 0.0 {
        opts.speed
    } else {
        1.0
    };
    let mut lines = Lines::new(reader);
    let header = parse_header(&lines.header()?).map_err(|m| format_err(1, m))?;
    let idle = opts.idle_limit.or(header.idle_time_limit);
    let mut prev = 0.0;
    while let Some((n, line)) = lines.next_line()? {
        let e = parse_event(&line).map_err(|m| format_err(n, m))?;
        if e.code != 'o' {
            continue;
        }
        let mut gap = (e.time - prev).max(0.0);
        prev = e.time;
        if let Some(limit) = idle {
            gap = gap.min(limit.max(0.0));
        }
        // A year at most: a damaged or hostile time must not overflow the clock.
        let d = Duration::try_from_secs_f64(gap / speed)
            .unwrap_or(MAX_GAP)
            .min(MAX_GAP);
        if wait(waiter, d) == Played::Quit {
            return Ok(Played::Quit);
        }
        out.write_all(e.data.as_bytes())
            .and_then(|()| out.flush())
            .map_err(output_err)?;
    }
    Ok(Played::Finished)
}

/// Waits `d`, honouring pause and quit keys.
fn wait(waiter: &mut dyn Waiter, d: Duration) -> Played {
    let mut left = d;
    loop {
        match waiter.wait(Some(left)) {
            Control::Elapsed => return Played::Finished,
            Control::Key(Key::Quit, _) => return Played::Quit,
            Control::Key(Key::Pause, rest) => {
                left = rest;
                loop {
                    match waiter.wait(None) {
                        Control::Key(Key::Pause, _) => break,
                        Control::Key(Key::Quit, _) => return Played::Quit,
                        _ => {}
                    }
                }
            }
            Control::Key(Key::Other, rest) => left = rest,
        }
    }
}

/// Prints the `o` events' text without timing.
pub fn cat<R: BufRead, W: Write>(reader: R, out: &mut W) -> Result<(), RecorderError> {
    let mut lines = Lines::new(reader);
    parse_header(&lines.header()?).map_err(|m| format_err(1, m))?;
    while let Some((n, line)) = lines.next_line()? {
        let e = parse_event(&line).map_err(|m| format_err(n, m))?;
        if e.code == 'o' {
            out.write_all(e.data.as_bytes()).map_err(output_err)?;
        }
    }
    out.flush().map_err(output_err)
}

/// `play` in this process's terminal: raw-mode keys when stdin is a terminal.
pub fn play_terminal<R: BufRead, W: Write>(
    reader: R,
    out: &mut W,
    opts: &PlayOptions,
) -> Result<Played, RecorderError> {
    match tty::RawTty::new() {
        // Dropped on every return and unwind: the terminal is restored.
        Some(mut raw) => play_to_terminal(reader, out, opts, &mut raw),
        None => play_to_terminal(reader, out, opts, &mut Sleeper),
    }
}

/// `play`, then, when quit midway, `TERMINAL_RESET`.
fn play_to_terminal<R: BufRead, W: Write>(
    reader: R,
    out: &mut W,
    opts: &PlayOptions,
    waiter: &mut dyn Waiter,
) -> Result<Played, RecorderError> {
    let played = play(reader, out, opts, waiter)?;
    if played == Played::Quit {
        out.write_all(TERMINAL_RESET.as_bytes())
            .and_then(|()| out.flush())
            .map_err(output_err)?;
    }
    Ok(played)
}

/// No terminal: just sleeps.
struct Sleeper;

impl Waiter for Sleeper {
    fn wait(&mut self, timeout: Option<Duration>) -> Control {
        if let Some(d) = timeout {
            std::thread::sleep(d);
        }
        Control::Elapsed
    }
}

mod tty {
    //! Raw mode on stdin with termios; restored when dropped.
    use super::*;

    pub(super) struct RawTty {
        saved: libc::termios,
    }

    impl RawTty {
        pub(super) fn new() -> Option<RawTty> {
            // SAFETY: isatty/tcgetattr/tcsetattr on fd 0 with a properly sized termios.
            unsafe {
                if libc::isatty(0) != 1 {
                    return None;
                }
                let mut saved: libc::termios = std::mem::zeroed();
                if libc::tcgetattr(0, &mut saved) != 0 {
                    return None;
                }
                let mut raw = saved;
                raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG);
                raw.c_cc[libc::VMIN] = 1;
                raw.c_cc[libc::VTIME] = 0;
                if libc::tcsetattr(0, libc::TCSANOW, &raw) != 0 {
                    return None;
                }
                Some(RawTty { saved })
            }
        }
    }

    impl Drop for RawTty {
        fn drop(&mut self) {
            // SAFETY: restores the attributes read in `new`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &self.saved);
            }
        }
    }

    impl Waiter for RawTty {
        fn wait(&mut self, timeout: Option<Duration>) -> Control {
            let began = Instant::now();
            loop {
                let left = timeout.map(|t| t.saturating_sub(began.elapsed()));
                let ms = left.map_or(-1, |l| {
                    l.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
                });
                let mut pfd = libc::pollfd {
                    fd: 0,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                let r = unsafe { libc::poll(&mut pfd, 1, ms) };
                if r == 0 {
                    return Control::Elapsed;
                }
                if r < 0 {
                    if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    // Cannot read keys: keep time without them.
                    if let Some(l) = left {
                        std::thread::sleep(l);
                    }
                    return Control::Elapsed;
                }
                let mut b = [0u8; 1];
                // SAFETY: reads one byte into a one-byte buffer.
                let n = unsafe { libc::read(0, b.as_mut_ptr().cast(), 1) };
                let rest = left.unwrap_or_default();
                if n <= 0 {
                    // End of input: quit rather than spin.
                    return Control::Key(Key::Quit, rest);
                }
                let key = match b[0] {
                    b' ' => Key::Pause,
                    b'q' | b'Q' | 0x03 => Key::Quit,
                    _ => Key::Other,
                };
                return Control::Key(
                    key,
                    timeout.map_or(rest, |t| t.saturating_sub(began.elapsed())),
                );
            }
        }
    }
}

/// Reads lines, remembering whether the last one was cut short.
struct Lines<R> {
    reader: R,
    n: usize,
}

impl<R: BufRead> Lines<R> {
    fn new(reader: R) -> Lines<R> {
        Lines { reader, n: 0 }
    }

    fn header(&mut self) -> Result<String, RecorderError> {
        match self.read()? {
            Some((_, line, _)) => Ok(line),
            None => Err(format_err(1, "empty file".into())),
        }
    }

    /// The next complete line; a final line without newline that does not parse is dropped.
    fn next_line(&mut self) -> Result<Option<(usize, String)>, RecorderError> {
        match self.read()? {
            Some((_, line, false)) if parse_event(&line).is_err() => Ok(None),
            Some((n, line, _)) => Ok(Some((n, line))),
            None => Ok(None),
        }
    }

    fn read(&mut self) -> Result<Option<(usize, String, bool)>, RecorderError> {
        let mut buf = Vec::new();
        let got = self
            .reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| RecorderError::Io {
                path: "recording".into(),
                source: e,
            })?;
        if got == 0 {
            return Ok(None);
        }
        self.n += 1;
        let complete = buf.last() == Some(&b'\n');
        if complete {
            buf.pop();
        }
        // A last line a crash cut short may end inside a character: it is dropped as
        // incomplete (it cannot parse), not refused as not UTF-8.
        let line = if complete {
            String::from_utf8(buf).map_err(|_| format_err(self.n, "not UTF-8".into()))?
        } else {
            String::from_utf8_lossy(&buf).into_owned()
        };
        Ok(Some((self.n, line, complete)))
    }
}

fn format_err(line: usize, message: String) -> RecorderError {
    RecorderError::Format {
        path: "recording".into(),
        message: format!("line {line}: {message}"),
    }
}

fn output_err(e: std::io::Error) -> RecorderError {
    RecorderError::Io {
        path: "output".into(),
        source: e,
    }
}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
