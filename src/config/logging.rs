//! `access_log`: `true`/`false`, or a table choosing the format (text, JSON or a
//! template), the file, sampling and errors-only; validated here.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::error::Problems;

/// The variables a log template may use (`$name`).
pub const LOG_VARIABLES: &[&str] = &[
    "time",
    "listener",
    "client",
    "method",
    "path",
    "http",
    "tls",
    "sni",
    "route",
    "pool",
    "backend",
    "status",
    "retries",
    "grpc_status",
    "algorithm",
    "bytes_in",
    "bytes_out",
    "queue_ms",
    "connect_ms",
    "ttfb_ms",
    "retried",
    "sticky",
    "limited",
    "denied",
    "compressed",
    "cache",
    "ms",
];

/// `access_log` as written: `true`/`false` or a table.
#[derive(Debug)]
pub enum RawAccessLog {
    /// `access_log = true`.
    On(bool),
    /// `[access_log]`.
    Table(RawAccessLogTable),
}

// By hand rather than `#[serde(untagged)]`, which would lose the positions (`Spanned`)
// inside the table and say "did not match any variant" for a mistyped key.
impl<'de> Deserialize<'de> for RawAccessLog {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawAccessLog;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true, false or a table (format, path, sample, errors_only, enabled)")
            }

            fn visit_bool<E: serde::de::Error>(self, on: bool) -> Result<RawAccessLog, E> {
                Ok(RawAccessLog::On(on))
            }

            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                map: M,
            ) -> Result<RawAccessLog, M::Error> {
                RawAccessLogTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawAccessLog::Table)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `[access_log]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLogTable {
    pub enabled: Option<bool>,
    pub format: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub sample: Option<Spanned<f64>>,
    pub errors_only: Option<bool>,
}

/// The access log's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogConfig {
    /// Log at all.
    pub enabled: bool,
    /// How lines look.
    pub format: LogFormat,
    /// The file (standard error when `None`).
    pub path: Option<PathBuf>,
    /// The share of successful requests logged (errors always are).
    pub sample: f64,
    /// Log only failed requests (5xx, or no response).
    pub errors_only: bool,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig {
            enabled: true,
            format: LogFormat::Text,
            path: None,
            sample: 1.0,
            errors_only: false,
        }
    }
}

/// How access log lines look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFormat {
    /// `time kind key=value...`.
    Text,
    /// One JSON object per line.
    Json,
    /// Your own line, with `$variables`.
    Template(String),
}

/// Checks `access_log`.
pub(super) fn check(
    raw: Option<&RawAccessLog>,
    base: &Path,
    problems: &mut Problems<'_>,
) -> AccessLogConfig {
    let t = match raw {
        None => return AccessLogConfig::default(),
        Some(RawAccessLog::On(on)) => {
            return AccessLogConfig {
                enabled: *on,
                ..AccessLogConfig::default()
            };
        }
        Some(RawAccessLog::Table(t)) => t,
    };
    let format = match &t.format {
        None => LogFormat::Text,
        Some(f) => match f.get_ref().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            template if template.contains('$') => {
                let unknown: Vec<String> = unknown_variables(template);
                if !unknown.is_empty() {
                    problems.add(
                        f.span(),
                        format!("unknown log variable(s): ${}", unknown.join(", $")),
                        Some(format!("variables: ${}", LOG_VARIABLES.join(" $"))),
                    );
                }
                LogFormat::Template(template.to_owned())
            }
            other => {
                problems.add(
                    f.span(),
                    format!("unknown log format `{other}`"),
                    Some("use \"text\", \"json\", or a template such as \"$client $method $path $status $ms\"".into()),
                );
                LogFormat::Text
            }
        },
    };
    let sample = match &t.sample {
        None => 1.0,
        Some(s) if (0.0..=1.0).contains(s.get_ref()) => *s.get_ref(),
        Some(s) => {
            problems.add(
                s.span(),
                "`sample` is the share of requests logged, from 0.0 to 1.0",
                Some("e.g. sample = 0.1 logs one successful request in ten (errors always)".into()),
            );
            1.0
        }
    };
    AccessLogConfig {
        enabled: t.enabled.unwrap_or(true),
        format,
        path: t.path.as_ref().map(|p| base.join(p.get_ref())),
        sample,
        errors_only: t.errors_only.unwrap_or(false),
    }
}

/// A template in pieces, in order: literal text (`false`) and `$variable` names
/// (`true`, without the `$`).
pub fn template_pieces(template: &str) -> Vec<(bool, &str)> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        if i > 0 {
            pieces.push((false, &rest[..i]));
        }
        let after = &rest[i + 1..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        pieces.push((true, &after[..len]));
        rest = &after[len..];
    }
    if !rest.is_empty() {
        pieces.push((false, rest));
    }
    pieces
}

/// The `$names` in `template` that are not variables.
pub fn unknown_variables(template: &str) -> Vec<String> {
    template_pieces(template)
        .into_iter()
        .filter(|(var, name)| *var && !LOG_VARIABLES.contains(name))
        .map(|(_, name)| name.to_owned())
        .collect()
}
