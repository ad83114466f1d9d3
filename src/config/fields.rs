//! Checks of single values shared by every section: durations and bounded integers, each
//! reported with its position and the full key name when wrong.

use std::ops::RangeInclusive;
use std::time::Duration;

use toml::Spanned;

use super::error::Problems;
use super::units::parse_duration;

/// A positive duration such as "5s"; `default` when absent or invalid (then reported).
pub fn duration(
    value: &Option<Spanned<String>>,
    key: &str,
    default: Duration,
    problems: &mut Problems<'_>,
) -> Duration {
    match value {
        None => default,
        Some(v) => match parse_duration(v.get_ref()) {
            Some(parsed) if !parsed.is_zero() => parsed,
            _ => {
                problems.add(
                    v.span(),
                    format!("`{key}` is not a valid duration: {:?}", v.get_ref()),
                    Some(
                        "write a positive whole number with a unit: \"250ms\", \"5s\", \"2m\", \"1h\""
                            .into(),
                    ),
                );
                default
            }
        },
    }
}

/// A duration that may be zero ("0s" turns the feature off); `Duration::ZERO` when absent.
pub fn duration_or_zero(
    value: &Option<Spanned<String>>,
    key: &str,
    problems: &mut Problems<'_>,
) -> Duration {
    match value {
        Some(v) if parse_duration(v.get_ref()).is_some_and(|d| d.is_zero()) => Duration::ZERO,
        _ => duration(value, key, Duration::ZERO, problems),
    }
}

/// An integer within `range`; `default` when absent or out of range (then reported).
pub fn integer(
    value: &Option<Spanned<i64>>,
    key: &str,
    range: RangeInclusive<i64>,
    default: i64,
    problems: &mut Problems<'_>,
) -> i64 {
    match value {
        None => default,
        Some(v) if range.contains(v.get_ref()) => *v.get_ref(),
        Some(v) => {
            problems.add(
                v.span(),
                format!(
                    "`{key}` must be between {} and {}, not {}",
                    range.start(),
                    range.end(),
                    v.get_ref()
                ),
                None,
            );
            default
        }
    }
}
