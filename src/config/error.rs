//! Config errors a person can act on: `FILE:LINE:COL: what is wrong`, then a hint.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// What to do about it, if we can tell.
    pub hint: Option<String>,
}

/// Why a config could not be loaded: every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problems are in (as the user named it).
    pub file: PathBuf,
    /// At least one problem.
    pub problems: Vec<Problem>,
}

impl std::error::Error for ConfigError {}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                p.line,
                p.column,
                p.message
            )?;
            if let Some(hint) = &p.hint {
                write!(f, "\n  hint: {hint}")?;
            }
        }
        Ok(())
    }
}

impl ConfigError {
    /// An error that is not about a position in the file (it could not be read).
    pub fn unreadable(file: &Path, err: &std::io::Error) -> Self {
        ConfigError {
            file: file.to_owned(),
            problems: vec![Problem {
                line: 1,
                column: 1,
                message: format!("cannot read the config file: {err}"),
                hint: Some("check the path given with -c/--config".into()),
            }],
        }
    }
}

/// Collects problems while validating one source text.
#[derive(Debug)]
pub struct Problems<'a> {
    source: &'a str,
    found: Vec<(usize, Problem)>,
}

impl<'a> Problems<'a> {
    /// Starts collecting for `source`.
    pub fn new(source: &'a str) -> Self {
        Problems {
            source,
            found: Vec::new(),
        }
    }

    /// Records a problem at byte range `span` of the source.
    pub fn add(&mut self, span: Range<usize>, message: impl Into<String>, hint: Option<String>) {
        let (line, column) = line_column(self.source, span.start);
        self.found.push((
            span.start,
            Problem {
                line,
                column,
                message: message.into(),
                hint,
            },
        ));
    }

    /// The text being validated.
    pub fn source(&self) -> &'a str {
        self.source
    }

    /// How many problems were found so far.
    pub fn len(&self) -> usize {
        self.found.len()
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// The error for `file`, problems sorted by position.
    pub fn into_error(mut self, file: &Path) -> ConfigError {
        self.found.sort_by_key(|(at, _)| *at);
        ConfigError {
            file: file.to_owned(),
            problems: self.found.into_iter().map(|(_, p)| p).collect(),
        }
    }
}

/// 1-based line and column of byte offset `at` in `source`.
pub fn line_column(source: &str, at: usize) -> (usize, usize) {
    let at = at.min(source.len());
    let before = &source[..at];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = source[line_start..at].chars().count() + 1;
    (line, column)
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a typo.
pub fn closest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            let next = (row[j] + 1).min(row[j + 1] + 1).min(diag + cost);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let src = "a = 1\nbb = 2\n";
        assert_eq!(line_column(src, 0), (1, 1));
        assert_eq!(line_column(src, 6), (2, 1));
        assert_eq!(line_column(src, 8), (2, 3));
    }

    #[test]
    fn closest_finds_typos_only() {
        let keys = ["algorithm", "hash_key", "backends"];
        assert_eq!(closest("algoritm", keys), Some("algorithm"));
        assert_eq!(closest("backend", keys), Some("backends"));
        assert_eq!(closest("zzzzzz", keys), None);
    }

    #[test]
    fn display_is_file_line_column() {
        let mut p = Problems::new("x = 1\ny = 2\n");
        p.add(6..7, "bad y", Some("remove it".into()));
        let e = p.into_error(Path::new("f.toml"));
        assert_eq!(e.to_string(), "f.toml:2:1: bad y\n  hint: remove it");
    }
}
