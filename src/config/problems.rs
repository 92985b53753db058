//! The diagnostics: each `Problem` with its line, column and dotted key, and the `ConfigError` that
//! prints them all (`mxhook check-config`).
//!
//! Reading a config file so that every problem is found in one run. serde stops at the first unknown
//! key or bad value, so the file is parsed once into a tree that keeps every span; each entry serde
//! refuses is reported under its dotted key and taken out (the default applies), and serde tries again.
//! `settings` then runs its semantic checks on what is left and locates them with `Doc::at`.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One problem found in a config file, located for a human.
#[derive(Debug)]
pub struct Problem {
    /// 1-based; 0: the file as a whole (it cannot be read).
    pub line: usize,
    pub column: usize,
    pub key: String,
    pub message: String,
}

/// Every problem in one file, in file order, printed one per line as `FILE:LINE:COL: key: message`
/// (`FILE: message` for the file as a whole).
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match p.line {
                0 => write!(f, "{}: {}", self.file.display(), p.message)?,
                _ => write!(f, "{}:{}:{}: {}: {}", self.file.display(), p.line, p.column, p.key, p.message)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A problem at `span` of `text`, located by line and column.
pub(super) fn problem(text: &str, span: Range<usize>, key: &str, message: &str) -> Problem {
    let before = text.get(..span.start).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Problem { line, column, key: key.into(), message: message.into() }
}

/// A file this broken needs reading, not a longer list.
const MAX_PROBLEMS: usize = 100;

/// The text of a config file and its tree with spans.
pub(super) struct Doc<'t> {
    pub text: &'t str,
    root: Spanned<DeTable<'t>>,
}

/// One step from the root of the tree to an entry: a table's key or an array's index.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

impl<'t> Doc<'t> {
    /// Parses the TOML syntax; on errors, every one of them (the first on each line: the later ones
    /// on a line follow from it).
    pub fn parse(text: &'t str) -> Result<Doc<'t>, Vec<Problem>> {
        let (root, errors) = DeTable::parse_recoverable(text);
        if errors.is_empty() {
            return Ok(Doc { text, root });
        }
        let mut problems: Vec<Problem> =
            errors.iter().map(|e| problem(text, e.span().unwrap_or(0..0), "-", e.message().trim())).collect();
        problems.sort_by_key(|p| (p.line, p.column));
        problems.dedup_by_key(|p| p.line);
        Err(problems)
    }

    /// Deserialises `T`, reporting in `problems` each entry serde refuses (unknown key, wrong type,
    /// bad value) and trying again without it, so that one bad entry does not hide the next. A required
    /// key that is missing (or was taken out) gets an empty string in its place. None: the tree could
    /// not be made acceptable.
    pub fn deserialize<T: DeserializeOwned>(&self, problems: &mut Vec<Problem>) -> Option<T> {
        let mut root = self.root.clone();
        let mut fixes = Fixes::default();
        for _ in 0..MAX_PROBLEMS {
            let e = match T::deserialize(toml::de::Deserializer::from(root.clone())) {
                Ok(value) => return Some(value),
                Err(e) => e,
            };
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim();
            let fixed = match missing_field(message) {
                Some(field) => fixes.fill_in(root.get_mut(), &span, field),
                None => fixes.take_out(root.get_mut(), &span).map(|path| (path, true)),
            };
            match fixed {
                Some((path, true)) => {
                    let key = dotted(&path);
                    problems.push(problem(self.text, span, &key, &redacted(&key, message)));
                }
                Some((_, false)) => {}
                None => {
                    problems.push(problem(self.text, span, "-", message));
                    return None;
                }
            }
        }
        None
    }

    /// A problem at a dotted key (`smtp.listen`, `endpoints.app`) found after deserialising, where serde
    /// kept no span: at the key, or at a table's `[header]`; at the nearest enclosing table the file has
    /// when the key itself is not written (its default was used).
    pub fn at(&self, key: &str, message: impl Into<String>) -> Problem {
        let mut table = self.root.get_ref();
        let mut span = 0..0;
        for part in key.split('.') {
            let Some((k, v)) = table.get_key_value(part) else { break };
            span = if matches!(v.get_ref(), DeValue::Table(_)) && !v.span().is_empty() { v.span() } else { k.span() };
            let DeValue::Table(inner) = v.get_ref() else { break };
            table = inner;
        }
        problem(self.text, span, key, &message.into())
    }
}

/// What `Doc::deserialize` changed in its copy of the tree so far.
#[derive(Default)]
struct Fixes {
    /// Entries taken out for a bad value: path and the value's span.
    taken: Vec<(Vec<Step>, Range<usize>)>,
    /// Required keys given a stand-in.
    filled: Vec<Vec<Step>>,
}

impl Fixes {
    /// Takes out the entry serde refused at `span`; its path. None: no entry is there.
    fn take_out(&mut self, root: &mut DeTable<'_>, span: &Range<usize>) -> Option<Vec<Step>> {
        let path = entry_at(root, span)?;
        let (Step::Key(key), parent) = path.split_last()? else { return None };
        let (_, value) = table_mut(root, parent)?.remove_entry(key.as_str())?;
        self.taken.push((path.clone(), value.span()));
        Some(path)
    }

    /// Puts an empty string for the required `field` of the table at `span`; its path, and whether it
    /// is a new problem (not when the key was taken out for its value: that is reported, and the
    /// stand-in takes the place of the value).
    fn fill_in(&mut self, root: &mut DeTable<'_>, span: &Range<usize>, field: &str) -> Option<(Vec<Step>, bool)> {
        let mut path = table_at(root, span)?;
        let table = table_mut(root, &path)?;
        path.push(Step::Key(field.to_string()));
        if self.filled.contains(&path) {
            return None; // the stand-in was refused too
        }
        let taken = self.taken.iter().find(|(p, _)| *p == path).map(|(_, value_span)| value_span.clone());
        let at = taken.clone().unwrap_or(span.clone());
        let key = Spanned::new(at.clone(), Cow::Owned(field.to_string()));
        table.insert(key, Spanned::new(at, DeValue::String(Cow::Borrowed(""))));
        self.filled.push(path.clone());
        Some((path, taken.is_none()))
    }
}

/// `missing field `url`` -> `url`.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// `endpoints.app.retry`, `routes.match`: array indices are left out, as in the semantic problems.
fn dotted(path: &[Step]) -> String {
    let keys: Vec<&str> = path
        .iter()
        .filter_map(|s| match s {
            Step::Key(k) => Some(k.as_str()),
            Step::Index(_) => None,
        })
        .collect();
    keys.join(".")
}

fn holds(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    !inner.is_empty() && outer.start <= inner.start && inner.end <= outer.end
}

/// serde quotes the value it refused (`invalid type: string "whsec_…", expected a sequence`): for a
/// secret or a password the quoted text goes, so that it reaches neither the terminal nor the journal.
fn redacted(key: &str, message: &str) -> String {
    if !(key.contains("secret") || key.contains("password")) {
        return message.to_string();
    }
    message.split('"').enumerate().map(|(i, s)| if i % 2 == 1 { "…" } else { s }).collect::<Vec<_>>().join("\"")
}

/// The deepest entry whose key is `span` or whose value holds it (serde points at the key of an unknown
/// field and at the value of a bad one). A `[table]`'s span is only its header, so the whole tree is searched.
fn entry_at(table: &DeTable<'_>, span: &Range<usize>) -> Option<Vec<Step>> {
    for (k, v) in table.iter() {
        if let Some(mut path) = entry_in(v.get_ref(), span) {
            path.insert(0, Step::Key(k.get_ref().to_string()));
            return Some(path);
        }
    }
    let (k, _) = table.iter().find(|(k, v)| (k.span() == *span && !span.is_empty()) || holds(&v.span(), span))?;
    Some(vec![Step::Key(k.get_ref().to_string())])
}

fn entry_in(value: &DeValue<'_>, span: &Range<usize>) -> Option<Vec<Step>> {
    match value {
        DeValue::Table(t) => entry_at(t, span),
        DeValue::Array(a) => a.iter().enumerate().find_map(|(i, e)| {
            let mut path = entry_in(e.get_ref(), span)?;
            path.insert(0, Step::Index(i));
            Some(path)
        }),
        _ => None,
    }
}

/// The table whose own span is `span` (serde reports a missing field at its table's header).
fn table_at(table: &DeTable<'_>, span: &Range<usize>) -> Option<Vec<Step>> {
    table.iter().find_map(|(k, v)| {
        let mut path = table_in(v, span)?;
        path.insert(0, Step::Key(k.get_ref().to_string()));
        Some(path)
    })
}

fn table_in(value: &Spanned<DeValue<'_>>, span: &Range<usize>) -> Option<Vec<Step>> {
    match value.get_ref() {
        DeValue::Table(t) => table_at(t, span).or_else(|| (value.span() == *span && !span.is_empty()).then(Vec::new)),
        DeValue::Array(a) => a.iter().enumerate().find_map(|(i, e)| {
            let mut path = table_in(e, span)?;
            path.insert(0, Step::Index(i));
            Some(path)
        }),
        _ => None,
    }
}

fn table_mut<'a, 't>(table: &'a mut DeTable<'t>, path: &[Step]) -> Option<&'a mut DeTable<'t>> {
    let Some((Step::Key(k), mut rest)) = path.split_first() else {
        return if path.is_empty() { Some(table) } else { None };
    };
    let mut value = table.get_mut(k.as_str())?.get_mut();
    while let Some((Step::Index(i), after)) = rest.split_first() {
        let DeValue::Array(a) = value else { return None };
        value = a.get_mut(*i)?.get_mut();
        rest = after;
    }
    let DeValue::Table(t) = value else { return None };
    table_mut(t, rest)
}
