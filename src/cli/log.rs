//! Where log lines go. env_logger formats them; this sink routes them: to
//! stderr in the foreground, and once the daemon is in the background to
//! `--log-file` if given, otherwise to syslog (so `journalctl -t scratchfs`
//! shows refusals) — never to the terminal or pipe the command was started
//! from, which the parent must be able to close.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;

use crate::sync::Mutex;

enum Sink {
    Stderr,
    File(File),
    Syslog(Vec<u8>),
}

static SINK: Mutex<Sink> = Mutex::new(Sink::Stderr);

/// The `env_logger` target that writes to the current sink.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut *SINK.lock() {
            Sink::Stderr => std::io::stderr().write_all(buf)?,
            Sink::File(f) => f.write_all(buf)?,
            Sink::Syslog(pending) => {
                pending.extend_from_slice(buf);
                while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    syslog(&line[..end]);
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn syslog(line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    let priority = if text.contains(" ERROR ") {
        libc::LOG_ERR
    } else if text.contains(" WARN ") {
        libc::LOG_WARNING
    } else {
        libc::LOG_INFO
    };
    if let Ok(c) = CString::new(text.replace('\0', " ")) {
        // SAFETY: a constant format string and a NUL-terminated argument.
        unsafe { libc::syslog(priority, c"%s".as_ptr(), c.as_ptr()) };
    }
}

/// Sends further log lines to `file`.
pub fn to_file(file: File) {
    *SINK.lock() = Sink::File(file);
}

/// Sends further log lines to syslog (facility daemon, tag `scratchfs`).
pub fn to_syslog() {
    // SAFETY: the identity string is static, as openlog requires.
    unsafe { libc::openlog(c"scratchfs".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
    *SINK.lock() = Sink::Syslog(Vec::new());
}

/// Installs env_logger (`RUST_LOG`, default `info`) writing to the sink.
pub fn init() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .target(env_logger::Target::Pipe(Box::new(LogWriter)))
        .init();
}
