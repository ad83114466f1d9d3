//! What the TOML parser says, in the user's words: unknown and missing keys with the
//! closest valid one, keys defined twice, and values of the wrong type with the fix
//! (`threads = "2"`: write it without quotes; `connect = 5`: write `"5s"`).

use super::error::closest;

/// Keys whose value is a duration string (`"5s"`).
const DURATIONS: &[&str] = &[
    "connect",
    "request_header",
    "idle",
    "request",
    "shutdown_grace",
    "interval",
    "timeout",
    "slow_start",
    "queue_timeout",
    "reload_interval",
    "open_for",
    "max_open_for",
    "window",
];

/// The key written on the line where `at` is (`connect` in `connect = 5`), or inside an
/// inline table (`weight` in `{ address = "...", weight = "2" }`).
fn key_at(source: &str, at: usize) -> Option<&str> {
    let at = at.min(source.len());
    let start = source[..at].rfind('\n').map_or(0, |i| i + 1);
    let before = &source[start..at];
    // The last `key =` before the value.
    let eq = before.rfind('=')?;
    let key = before[..eq].trim_end();
    let key = key
        .rsplit(|c: char| c == '{' || c == ',' || c.is_whitespace() || c == '.')
        .next()?;
    (!key.is_empty()).then_some(key.trim_matches('"'))
}

/// For a value of the wrong type, the bytes of `key = value` (from the key to the end
/// of the value) and what to write there instead, of the same length, so that the
/// caller can parse again to find the next problem (positions unchanged): `key=` and a
/// value of the expected type if it fits (so that a required key stays), else spaces.
/// `None` for other errors, after which parsing cannot go on.
pub(super) fn wrong_value(
    message: &str,
    source: &str,
    span: std::ops::Range<usize>,
) -> Option<(std::ops::Range<usize>, String)> {
    let (range, key) = key_and_value(message, source, span)?;
    let expected = message.rsplit(", expected ").next().unwrap_or("");
    let placeholder = if expected.contains("string") {
        "\"\""
    } else if expected.contains("i64") || expected.contains("u32") || expected.contains("u64") {
        "0"
    } else {
        ""
    };
    let stand_in = format!("{key}={placeholder}");
    let text = if !placeholder.is_empty() && stand_in.len() <= range.len() {
        format!("{stand_in:<width$}", width = range.len())
    } else {
        " ".repeat(range.len())
    };
    Some((range, text))
}

fn key_and_value(
    message: &str,
    source: &str,
    span: std::ops::Range<usize>,
) -> Option<(std::ops::Range<usize>, String)> {
    if !message.trim().starts_with("invalid type: ") || span.end > source.len() {
        return None;
    }
    let key = key_at(source, span.start)?;
    let line_start = source[..span.start].rfind('\n').map_or(0, |i| i + 1);
    let key_start = line_start + source[line_start..span.start].rfind(key)?;
    // A quoted key starts at its quote.
    let key_start = if source[..key_start].ends_with('"') {
        key_start - 1
    } else {
        key_start
    };
    Some((key_start..span.end, key.to_owned()))
}

/// `invalid type: string "2", expected i64` and the like.
fn type_error(message: &str, key: Option<&str>) -> Option<(String, Option<String>)> {
    let rest = message.strip_prefix("invalid type: ")?;
    let (found, expected) = rest.split_once(", expected ")?;
    let (found_kind, found_value) = match found.split_once(' ') {
        Some((kind, value)) => (kind, value.trim_matches(|c| c == '`' || c == '"')),
        None => (found, ""),
    };
    let found_kind = match found_kind {
        "floating" => "a decimal number",
        "integer" => "a number",
        "string" => "a string",
        "boolean" => "true/false",
        "sequence" => "a list",
        "map" => "a table",
        other => other,
    };
    let wanted = if expected.contains("i64")
        || expected.contains("u32")
        || expected.contains("u64")
        || expected.contains("integer")
    {
        "a number"
    } else if expected.contains("bool") {
        "true or false"
    } else if expected.contains("string") {
        "a string"
    } else if expected.contains("sequence") {
        "a list"
    } else {
        expected
    };
    let key_name = key.unwrap_or("this value");
    let subject = key.map_or("this value".to_owned(), |k| format!("`{k}`"));
    let message = format!("{subject} must be {wanted}, not {found_kind}");
    let hint = match (wanted, found_kind) {
        ("a number", "a string") => Some(format!(
            "write it without quotes: {key_name} = {found_value}"
        )),
        ("true or false", _) => Some(format!(
            "write {key_name} = true or {key_name} = false, without quotes"
        )),
        ("a string", "a number") if key.is_some_and(|k| DURATIONS.contains(&k)) => Some(format!(
            "a duration is a string with a unit: {key_name} = \"{found_value}s\" (units: ms, s, m, h)"
        )),
        ("a string", "a number" | "a decimal number" | "true/false") => Some(format!(
            "write it in quotes: {key_name} = \"{found_value}\""
        )),
        ("a list", _) => Some(format!("write a list in brackets: {key_name} = [...]")),
        _ => None,
    };
    Some((message, hint))
}

/// Rewrites serde's messages into ours and adds a hint (closest valid key, what to add).
pub(super) fn toml_error(
    message: &str,
    source: &str,
    span: std::ops::Range<usize>,
) -> (String, Option<String>) {
    let message = message.trim().to_owned();
    if let Some(explained) = type_error(&message, key_at(source, span.start)) {
        return explained;
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let valid: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let hint = match closest(field, valid.iter().copied()) {
            Some(best) => format!(
                "did you mean `{best}`? valid keys here: {}",
                valid.join(", ")
            ),
            None => format!("valid keys here: {}", valid.join(", ")),
        };
        return (format!("unknown key `{field}`"), Some(hint));
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        return (
            format!("missing required key `{field}`"),
            Some(format!("add `{field} = ...` to this table")),
        );
    }
    if message.contains("duplicate key") {
        return (
            message.replace("duplicate key", "this key is defined twice"),
            Some("each key, and each pool name, may appear only once".into()),
        );
    }
    (message, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explain(source: &str, message: &str) -> (String, Option<String>) {
        let at = source.find("= ").map_or(0, |i| i + 2);
        toml_error(message, source, at..at + 1)
    }

    #[test]
    fn wrong_types_are_said_with_the_fix() {
        let (m, h) = explain(
            "threads = \"2\"\n",
            "invalid type: string \"2\", expected i64",
        );
        assert_eq!(m, "`threads` must be a number, not a string");
        assert_eq!(h.unwrap(), "write it without quotes: threads = 2");
        let (m, h) = explain(
            "connect = 5\n",
            "invalid type: integer `5`, expected a string",
        );
        assert_eq!(m, "`connect` must be a string, not a number");
        assert!(h.unwrap().contains("connect = \"5s\""));
        let (_, h) = explain("name = 5\n", "invalid type: integer `5`, expected a string");
        assert_eq!(h.unwrap(), "write it in quotes: name = \"5\"");
        let (m, h) = explain(
            "access_log = \"yes\"\n",
            "invalid type: string \"yes\", expected a boolean",
        );
        assert_eq!(m, "`access_log` must be true or false, not a string");
        assert!(h.unwrap().contains("access_log = true"));
    }

    #[test]
    fn a_wrong_value_is_found_with_its_key() {
        let src = "threads = \"2\"\n";
        let at = src.find('"').unwrap();
        let (range, text) =
            wrong_value("invalid type: string \"2\", expected i64", src, at..at + 3).unwrap();
        assert_eq!(
            (&src[range], text.as_str()),
            ("threads = \"2\"", "threads=0    ")
        );
        let src = "bind = 8080\n";
        let (range, text) = wrong_value(
            "invalid type: integer `8080`, expected a string",
            src,
            7..11,
        )
        .unwrap();
        assert_eq!(
            (&src[range], text.as_str()),
            ("bind = 8080", "bind=\"\"    ")
        );
    }

    #[test]
    fn keys_inside_inline_tables() {
        let src = "backends = [{ address = \"127.0.0.1:1\", weight = \"2\" }]\n";
        let at = src.find("\"2\"").unwrap();
        assert_eq!(key_at(src, at), Some("weight"));
    }
}
