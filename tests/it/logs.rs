//! The JSON log lines stay readable by JSON parsers: no tracing event, span or
//! `#[instrument]` in the workspace has a field named `message`. The event's own text is
//! the `message` key; a field of that name made lines with two `message` keys, and a
//! parser kept one (the human text was lost). A scan of the sources guards the class.

use std::path::{Path, PathBuf};

const MACROS: &[&str] = &[
    "trace!(",
    "debug!(",
    "info!(",
    "warn!(",
    "error!(",
    "event!(",
    "span!(",
    "trace_span!(",
    "debug_span!(",
    "info_span!(",
    "warn_span!(",
    "error_span!(",
    "instrument(",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        if p.is_dir() {
            if name != "target" && name != "node_modules" && name != "fixtures" {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The text between the `(` that ends `open` at `at` and its matching `)`.
fn call_args(src: &str, at: usize) -> &str {
    let mut depth = 0usize;
    for (i, c) in src[at..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &src[at + 1..at + i];
                }
            }
            _ => {}
        }
    }
    &src[at..]
}

/// `args` with the contents of its string literals blanked out.
fn without_strings(args: &str) -> String {
    let mut out = String::with_capacity(args.len());
    let mut in_str = false;
    let mut escaped = false;
    for c in args.chars() {
        if in_str {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => {
                    in_str = false;
                    out.push(c);
                }
                _ => escaped = false,
            }
        } else {
            in_str = c == '"';
            out.push(c);
        }
    }
    out
}

/// Whether `args` names a field `message` (`message = …`, not `message_id = …`).
fn has_message_field(args: &str) -> bool {
    let args = &without_strings(args);
    let bytes = args.as_bytes();
    args.match_indices("message").any(|(i, _)| {
        let before = i.checked_sub(1).map(|j| bytes[j] as char);
        let word_start = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'));
        let rest = args[i + "message".len()..].trim_start();
        word_start && rest.starts_with('=') && !rest.starts_with("==")
    })
}

#[test]
fn no_log_event_or_span_has_a_field_named_message() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(
        files.len() > 100,
        "the scan found the sources ({})",
        files.len()
    );
    let mut found = Vec::new();
    for f in files.iter().filter(|f| !f.ends_with("tests/it/logs.rs")) {
        let src = std::fs::read_to_string(f).unwrap_or_default();
        for m in MACROS {
            for (i, _) in src.match_indices(m) {
                let args = call_args(&src, i + m.len() - 1);
                if has_message_field(args) {
                    let line = src[..i].lines().count();
                    found.push(format!("{}:{line}", f.display()));
                }
            }
        }
    }
    assert!(found.is_empty(), "fields named `message`: {found:?}");
}

#[test]
fn the_scan_sees_a_message_field() {
    assert!(has_message_field(r#" message = %d.message_id, "x""#));
    assert!(has_message_field(r#"error = %e, message=?m, "x""#));
    assert!(!has_message_field(
        r#" message_id = %d.message_id, "the message = x""#
    ));
    assert!(!has_message_field(r#"e.message == x"#));
    assert_eq!(call_args("warn!(a, f(b), c); d)", 5), "a, f(b), c");
}
