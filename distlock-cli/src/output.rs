//! Messages on stderr: coloured only on a terminal, silenced by `--quiet`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime};

use crate::cli::Color;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    quiet: bool,
    color: bool,
    /// stderr is a terminal (progress bars, prompts).
    pub(crate) terminal: bool,
}

impl Output {
    pub(crate) fn new(quiet: bool, color: Color) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let color = match color {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        };
        Output {
            quiet,
            color,
            terminal,
        }
    }

    pub(crate) fn quiet(&self) -> bool {
        self.quiet
    }

    pub(crate) fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// A progress note (not with `--quiet`).
    pub(crate) fn note(&self, text: &str) {
        if !self.quiet {
            let _ = writeln!(std::io::stderr(), "{} {text}", self.paint("2", "distlock:"));
        }
    }

    /// A warning (not with `--quiet`).
    pub(crate) fn warn(&self, text: &str) {
        if !self.quiet {
            let _ = writeln!(
                std::io::stderr(),
                "{} {text}",
                self.paint("33", "distlock: warning:")
            );
        }
    }

    /// An error (always).
    pub(crate) fn error(&self, text: &str) {
        let _ = writeln!(
            std::io::stderr(),
            "{} {text}",
            self.paint("1;31", "distlock: error:")
        );
    }
}

/// `12s`, `3m05s`, `2h01m`: short, for tables.
pub(crate) fn short(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs < 10 {
        return format!("{:.1}s", duration.as_secs_f64());
    }
    if secs < 60 {
        return format!("{secs}s");
    }
    if secs < 3600 {
        return format!("{}m{:02}s", secs / 60, secs % 60);
    }
    if secs < 86_400 {
        return format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60);
    }
    format!("{}d{:02}h", secs / 86_400, (secs % 86_400) / 3600)
}

/// How long ago `t` was (zero if in the future).
pub(crate) fn since(t: SystemTime) -> Duration {
    SystemTime::now().duration_since(t).unwrap_or_default()
}

/// How long until `t` (zero if past).
pub(crate) fn until(t: SystemTime) -> Duration {
    t.duration_since(SystemTime::now()).unwrap_or_default()
}

/// RFC 3339 with milliseconds, UTC.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Milliseconds with a fraction, for figures.
pub(crate) fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}
