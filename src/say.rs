//! One line to the operator on stderr: plain text, or a JSON event under `--log-format json`.
//! A closed or broken stderr is never a panic (unlike `eprintln!`): the line is dropped.

use std::sync::atomic::{AtomicBool, Ordering};

static JSON: AtomicBool = AtomicBool::new(false);

/// Set once by `main` from `--log-format`.
pub fn set_json(json: bool) {
    JSON.store(json, Ordering::Relaxed);
}

pub fn is_json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// Writes one line; under `--log-format json` it is an `ERROR` event of the JSON log.
pub fn line(args: std::fmt::Arguments<'_>) {
    if is_json() {
        tracing::error!("{}", args);
    } else {
        use std::io::Write;
        let _ = writeln!(std::io::stderr().lock(), "{args}");
    }
}

/// Writes text as it is (the summary, several lines) in text mode; under JSON, an `INFO` event.
pub fn text(text: &str) {
    if is_json() {
        tracing::info!("{text}");
    } else {
        use std::io::Write;
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }
}

/// One event of the JSON log whose fields are real JSON (objects, arrays, `null`), in the
/// shape of the log's other events (`timestamp`, `level`, `fields`, `target`): the log's
/// own fields can only be numbers or strings, so a nested figure would be a string of JSON.
pub fn json_event(
    level: &str,
    message: &str,
    mut fields: serde_json::Map<String, serde_json::Value>,
) {
    use std::io::Write;
    fields.insert("message".into(), message.into());
    let event = serde_json::json!({
        "timestamp": crate::clock::now_rfc3339(),
        "level": level,
        "fields": fields,
        "target": "face_enroll",
    });
    let _ = writeln!(std::io::stderr().lock(), "{event}");
}

/// `eprintln!` that never panics and follows `--log-format`.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::say::line(format_args!($($arg)*)) };
}

/// `n` and the noun that goes with it: `1 library`, `2 libraries`, `0 libraries`.
pub fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_count_of_one_takes_the_singular_and_every_other_the_plural() {
        assert_eq!(super::count(1u32, "library", "libraries"), "1 library");
        assert_eq!(super::count(0u32, "library", "libraries"), "0 libraries");
        assert_eq!(super::count(2u64, "face", "faces"), "2 faces");
    }
}
