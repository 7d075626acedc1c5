//! Progress on stderr: a redrawn bar on a terminal, a few plain lines otherwise.

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// A progress reporter for one phase.
#[derive(Debug)]
pub struct Progress {
    tty: bool,
    quiet: bool,
    label: String,
    total: usize,
    start: Instant,
    last_plain: usize,
    last_draw: Option<Instant>,
}

impl Progress {
    /// Starts a phase of `total` steps.
    pub fn new(label: impl Into<String>, total: usize, quiet: bool) -> Progress {
        let p = Progress {
            tty: std::io::stderr().is_terminal(),
            quiet,
            label: label.into(),
            total: total.max(1),
            start: Instant::now(),
            last_plain: 0,
            last_draw: None,
        };
        if !p.quiet && !p.tty {
            eprintln!("{}: 0/{}", p.label, p.total);
        }
        p
    }

    /// Reports `done` steps, with an optional note (e.g. the last round's time).
    pub fn set(&mut self, done: usize, note: &str) {
        if self.quiet {
            return;
        }
        if self.tty {
            let now = Instant::now();
            let due = self
                .last_draw
                .is_none_or(|t| now.duration_since(t).as_millis() >= 50);
            if !due && done < self.total {
                return;
            }
            self.last_draw = Some(now);
            const W: usize = 30;
            let filled = (done.min(self.total) * W) / self.total;
            let bar: String = "#".repeat(filled) + &"-".repeat(W - filled);
            eprint!(
                "\r\x1b[2K{} [{bar}] {done}/{} {:.1}s {note}",
                self.label,
                self.total,
                self.start.elapsed().as_secs_f64()
            );
            let _ = std::io::stderr().flush();
        } else {
            // About every 10 %, and the end.
            let step = (self.total / 10).max(1);
            if done >= self.last_plain + step || (done == self.total && done > self.last_plain) {
                self.last_plain = done;
                eprintln!("{}: {done}/{} {note}", self.label, self.total);
            }
        }
    }

    /// Ends the phase.
    pub fn finish(&mut self, note: &str) {
        if self.quiet {
            return;
        }
        if self.tty {
            eprintln!(
                "\r\x1b[2K{} done in {:.1}s {note}",
                self.label,
                self.start.elapsed().as_secs_f64()
            );
        } else {
            eprintln!(
                "{}: done in {:.1}s {note}",
                self.label,
                self.start.elapsed().as_secs_f64()
            );
        }
    }
}
