//! Asking a person at the terminal: the one place shipit reads an answer
//! from stdin. Only used when both stdin and stdout are terminals (the
//! caller checks); without one, shipit never asks.

use std::io::{BufRead, Write};

/// Prints `lines`, then `question` without a newline, and reads one line
/// of answer.
pub fn ask(lines: &[String], question: &str) -> std::io::Result<String> {
    let mut out = std::io::stdout().lock();
    for l in lines {
        writeln!(out, "{l}")?;
    }
    write!(out, "{question}")?;
    out.flush()?;
    drop(out);
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer)
}
