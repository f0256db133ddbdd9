//! Where progress bars draw: stderr as a terminal even when it is not one (`--progress
//! always`, for logs that keep the bar's frames). indicatif hides its own stderr target off a
//! terminal, so this one writes the same cursor movements itself.

use std::io::Write;

use indicatif::{ProgressDrawTarget, TermLike};

/// Columns assumed when stderr is not a terminal.
const WIDTH: u16 = 80;

/// The draw target for a bar that is to be shown: indicatif's own on a terminal, [`Forced`]
/// elsewhere.
pub(crate) fn draw_target() -> ProgressDrawTarget {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::term_like(Box::new(Forced))
    }
}

/// stderr written to as if it were an 80-column terminal.
#[derive(Debug)]
struct Forced;

impl Forced {
    fn write(text: &str) -> std::io::Result<()> {
        std::io::stderr().lock().write_all(text.as_bytes())
    }

    fn moved(n: usize, code: char) -> std::io::Result<()> {
        if n == 0 { Ok(()) } else { Self::write(&format!("\x1b[{n}{code}")) }
    }
}

impl TermLike for Forced {
    fn width(&self) -> u16 {
        WIDTH
    }

    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        Self::moved(n, 'A')
    }

    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        Self::moved(n, 'B')
    }

    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        Self::moved(n, 'C')
    }

    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        Self::moved(n, 'D')
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        Self::write(&format!("{s}\n"))
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        Self::write(s)
    }

    fn clear_line(&self) -> std::io::Result<()> {
        Self::write("\r\x1b[2K")
    }

    fn flush(&self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
