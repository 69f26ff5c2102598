//! The printed table: every row that ran, written to stderr even when a case panics half-way.

use std::fmt::Display;
use std::io::Write;

/// One row: case, request, expected, got, whether it holds.
struct Row(&'static str, String, String, String, bool);

/// The table; printed when dropped, so a panic in the middle still shows what ran.
#[derive(Default)]
pub(crate) struct Table {
    /// The case the next rows belong to.
    pub(crate) case: &'static str,
    rows: Vec<Row>,
}

impl Table {
    /// A row that holds when `got` reads exactly as `expected`.
    pub(crate) fn row(
        &mut self,
        request: impl Into<String>,
        expected: impl Display,
        got: impl Display,
    ) {
        let (expected, got) = (expected.to_string(), got.to_string());
        let ok = expected == got;
        let row = Row(self.case, request.into(), expected, got, ok);
        self.rows.push(row);
    }

    /// Asserts that every row holds, naming the case and request of each one that does not.
    pub(crate) fn finish(self) {
        let wrong: Vec<String> = (self.rows.iter().filter(|r| !r.4))
            .map(|r| format!("case {}, {}: expected {}, got {}", r.0, r.1, r.2, r.3))
            .collect();
        assert!(
            wrong.is_empty(),
            "{} row(s) wrong:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        let width = |f: fn(&Row) -> &str| self.rows.iter().map(|r| f(r).len()).max();
        let q = width(|r| &r.1).unwrap_or(0).max(7);
        let e = width(|r| &r.2).unwrap_or(0).max(8);
        let mut out = format!("\nbroker authorization table ({} rows)\n", self.rows.len());
        out += &format!("case | {:<q$} | {:<e$} | got\n", "request", "expected");
        for Row(case, request, expected, got, ok) in &self.rows {
            let mark = if *ok { "" } else { "   <-- WRONG" };
            out += &format!("{case:<4} | {request:<q$} | {expected:<e$} | {got}{mark}\n");
        }
        // Straight to the process's stderr: the harness captures only eprintln!.
        let _ = std::io::stderr().write_all(out.as_bytes());
    }
}
