//! The new text of a plain-text reply: each line is marked (empty, quoted with `>`, a quote header,
//! a forward marker, text), and the marks decide what is quoted history, as mailgun's talon does:
//! - a quote header with unquoted text after it (Outlook, an HTML reply turned into text): cut there;
//! - quoted lines (`>`) from a header or a run of two: cut them, keep any text after them;
//! - text between two quoted blocks: an inline answer, kept whole down to the last answer;
//! - a forward marker first: nothing is cut here (`forward.rs` reads it).
//!
//! Quote headers wrapped over two or three lines are joined before they are matched.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

use super::patterns;

/// What one line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Empty,
    /// Starts with `>`.
    Quoted,
    /// A quote header ("On … wrote:", "-----Original Message-----", "From: … Sent: …").
    Header,
    /// A forwarded message starts here.
    Forward,
    Text,
}

/// The text of a reply without its quoted history; the signature is still in it. Borrowed from the
/// body when nothing was cut.
#[derive(Debug, PartialEq)]
pub struct Unquoted<'a> {
    pub text: Cow<'a, str>,
    /// Something was cut.
    pub quoted: bool,
    /// The line where the cut history starts (None: nothing cut, or cut lines only in the middle).
    pub cut_at: Option<usize>,
}

fn alternation(words: &[&str]) -> String {
    words.iter().map(|w| w.replace(' ', r"\s+")).collect::<Vec<_>>().join("|")
}

/// "On … wrote:" starting with the header word.
static ON_WROTE: LazyLock<Regex> = LazyLock::new(|| {
    let (on, wrote) = (alternation(patterns::ON), alternation(patterns::WROTE));
    Regex::new(&format!(r"(?i)^\s*[*_]?(?:{on})\s.*(?:{wrote})(?:\s*[:：]?|\s.*[:：])\s*[*_]?\s*$")).expect("ON_WROTE")
});

/// "… wrote:" with a date or an address in it, and the colon.
static DATED_WROTE: LazyLock<Regex> = LazyLock::new(|| {
    let wrote = alternation(patterns::WROTE);
    Regex::new(&format!(r"(?i)^.*(?:\d|@).*(?:{wrote})(?:\s.*)?\s*[:：]\s*[*_]?\s*$")).expect("DATED_WROTE")
});

/// Android / Gmail in some languages: "2014-10-17 11:28 GMT+03:00 Bob <bob@example.com>:".
static DATE_ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*(?:\d{1,4}[-./年]\s?\d{1,2}[-./月]\s?\d{1,4}日?|\w+,? \d{1,2} \w+ \d{4}).*<?[^\s<>]+@[^\s<>]+>?\s*[:：]\s*$|^.*\d{1,2}:\d{2}.*<[^\s<>]+@[^\s<>]+>\s*[:：]\s*$")
        .expect("DATE_ADDRESS")
});

/// "---- John Smith wrote ----" (Android) and "------On 12/29/1987, Ada wrote-----".
static DASHED_WROTE: LazyLock<Regex> = LazyLock::new(|| {
    let wrote = alternation(patterns::WROTE);
    Regex::new(&format!(r"(?i)^\s*-{{2,}}.*(?:{wrote})\s*[:：]?\s*-{{2,}}\s*$")).expect("DASHED_WROTE")
});

/// "2011/4/7 Ada <ada@example.com>": a numeric date and an address, colon or not.
static NUMERIC_DATE_ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\s.*<[^\s<>]+@[^\s<>]+>\s*[:：]?\s*$").expect("NUMERIC_DATE_ADDRESS")
});

/// "reply On Wed, …, bob@example.com wrote:": the answer and the header on one line (the header's
/// word capitalised, so "on" inside a sentence never splits it).
static SHARED_LINE: LazyLock<Regex> = LazyLock::new(|| {
    let wrote = alternation(patterns::WROTE);
    let on: Vec<String> = patterns::ON
        .iter()
        .filter(|w| w.is_ascii())
        .map(|w| {
            let mut c = w.chars();
            c.next().map_or(String::new(), |f| f.to_uppercase().chain(c).collect())
        })
        .collect();
    let on = alternation(&on.iter().map(String::as_str).collect::<Vec<_>>());
    Regex::new(&format!(r"^(.*?\S)[\s-]*\s(?:{on})\s.*(?:\d|@).*(?i:{wrote})\s*[:：]\s*$")).expect("SHARED_LINE")
});

static ORIGINAL: LazyLock<Regex> = LazyLock::new(|| {
    let words = alternation(patterns::ORIGINAL_MESSAGE);
    Regex::new(&format!(r"(?i)^\s*[-_=]{{2,}}\s*(?:{words})\s*[-_=]{{2,}}\s*$")).expect("ORIGINAL")
});

pub static FORWARD_LINE: LazyLock<Regex> = LazyLock::new(|| {
    let (dashed, begin) = (alternation(patterns::FORWARDED_DASHED), alternation(patterns::FORWARDED_BEGIN));
    Regex::new(&format!(
        r"(?i)^\s*(?:[-_=]{{2,}}\s*(?:{dashed})\s*[-_=]{{2,}}|(?:{begin})\s*[:：]?|[-_=]{{2,}}\s*(?:{begin})\s*[:：]?\s*[-_=]{{2,}})\s*$"
    ))
    .expect("FORWARD_LINE")
});

/// A header-block field `Name:` (optionally bold, `*From:*`), by name list.
pub fn field(names: &[&str]) -> Regex {
    let names = alternation(names);
    Regex::new(&format!(r"(?i)^\s*[*_]{{0,2}}(?:{names})\s*[*_]{{0,2}}\s*[:：]\s*[*_]{{0,2}}\s*(.*?)\s*$"))
        .expect("field pattern")
}

pub static FROM_FIELD: LazyLock<Regex> = LazyLock::new(|| field(patterns::FROM));
pub static SENT_FIELD: LazyLock<Regex> = LazyLock::new(|| field(patterns::SENT));
pub static TO_FIELD: LazyLock<Regex> = LazyLock::new(|| field(patterns::TO));
pub static SUBJECT_FIELD: LazyLock<Regex> = LazyLock::new(|| field(patterns::SUBJECT));
pub static CC_FIELD: LazyLock<Regex> = LazyLock::new(|| field(patterns::CC));

fn is_quoted(line: &str) -> bool {
    line.trim_start().starts_with('>')
}

/// A line of only separators (`____`, `-----`): Outlook draws one above its header block.
fn is_rule(line: &str) -> bool {
    let t = line.trim();
    t.len() >= 4 && t.chars().all(|c| matches!(c, '_' | '-' | '=' | '—'))
}

/// A quote header is one short line (or two or three joined): longer lines are text, and the
/// patterns (unbounded `.*`, kept small) never scan a 10 KB line.
const MAX_HEADER_CHARS: usize = 600;

fn header_text(line: &str) -> bool {
    if line.len() > MAX_HEADER_CHARS || !may_be_header(line) {
        return false;
    }
    ON_WROTE.is_match(line)
        || DATED_WROTE.is_match(line)
        || DATE_ADDRESS.is_match(line)
        || ORIGINAL.is_match(line)
        || DASHED_WROTE.is_match(line)
        || NUMERIC_DATE_ADDRESS.is_match(line)
}

/// A cheap look before the patterns: every header ends with a colon, or is drawn with dashes, or
/// (a date and an address) starts with a digit. Most lines of a message are none of these.
fn may_be_header(line: &str) -> bool {
    let t = line.trim();
    t.ends_with([':', '：', '-', '*', '_', '='])
        || t.starts_with(['-', '_', '='])
        || (t.starts_with(|c: char| c.is_ascii_digit()) && t.ends_with('>'))
        || t.len().checked_sub(5).and_then(|at| t.get(at..)).is_some_and(|end| end.eq_ignore_ascii_case("wrote"))
}

/// A forward marker is short, and drawn with dashes or ended by a colon.
pub fn may_be_forward(line: &str) -> bool {
    let t = line.trim();
    t.len() <= 120 && (t.ends_with([':', '：', '-', '=', '_']) || t.starts_with(['-', '=', '_']))
}

/// A field line (`Name: value`) has its colon early.
pub(super) fn may_be_field(line: &str) -> bool {
    // A colon (or a full-width one, EF BC 9A in UTF-8) starting in the first 40 bytes, found in the
    // bytes: no character is decoded for the many lines that have none.
    let b = line.as_bytes();
    let head = &b[..b.len().min(42)];
    b[..b.len().min(40)].contains(&b':') || (head.contains(&0xEF) && head.windows(3).any(|w| w == "：".as_bytes()))
}

/// Outlook's block: a From field, then within the next four lines a Sent/Date field (or To and Subject).
fn header_block(lines: &[&str], i: usize) -> bool {
    if !may_be_field(lines[i]) {
        return false;
    }
    let starts = FROM_FIELD.is_match(lines[i]) || SENT_FIELD.is_match(lines[i]);
    if !starts {
        return false;
    }
    let next = lines.iter().skip(i + 1).take(4).filter(|l| !l.trim().is_empty());
    let (mut sent, mut to, mut subject, mut from) = (false, false, false, FROM_FIELD.is_match(lines[i]));
    for l in next.filter(|l| may_be_field(l)) {
        sent |= SENT_FIELD.is_match(l);
        to |= TO_FIELD.is_match(l);
        subject |= SUBJECT_FIELD.is_match(l);
        from |= FROM_FIELD.is_match(l);
    }
    (from && (sent || (to && subject))) || (SENT_FIELD.is_match(lines[i]) && to)
}

/// Marks every line; a header wrapped over two or three lines marks all its lines.
pub fn mark(lines: &[&str]) -> Vec<Mark> {
    let mut marks: Vec<Mark> = lines
        .iter()
        .map(|l| {
            if l.trim().is_empty() {
                Mark::Empty
            } else if is_quoted(l) {
                Mark::Quoted
            } else {
                Mark::Text
            }
        })
        .collect();
    let mut i = 0;
    while i < lines.len() {
        if marks[i] != Mark::Text {
            i += 1;
            continue;
        }
        if may_be_forward(lines[i]) && FORWARD_LINE.is_match(lines[i]) {
            marks[i] = Mark::Forward;
        } else if header_text(lines[i]) || header_block(lines, i) {
            marks[i] = Mark::Header;
        } else if let Some(n) = wrapped_header(lines, &marks, i) {
            marks[i..i + n].fill(Mark::Header);
            i += n;
            continue;
        }
        i += 1;
    }
    marks
}

/// A header that starts at line `i` and needs the next one or two lines to be whole (Gmail wraps
/// "On Mon, … <ada@example.com>\nwrote:"): how many lines it takes.
fn wrapped_header(lines: &[&str], marks: &[Mark], i: usize) -> Option<usize> {
    let first = lines[i].trim();
    // The start of a header: its "On" word, or a date; never a sentence that ended, and never the
    // last line.
    if first.ends_with(['.', '!', '?']) || i + 1 >= lines.len() || marks[i + 1] != Mark::Text {
        return None;
    }
    if !(first.starts_with(|c: char| c.is_ascii_digit()) || ON_WROTE_START.is_match(first)) {
        return None;
    }
    for n in 2..=3 {
        let next = i + n - 1;
        if next >= lines.len() || marks[next] != Mark::Text {
            return None;
        }
        // The patterns are anchored at the end of the joined lines, the end of this line: without
        // a header's ending they need not run. Most digit-led lines (a table, figures, smtp-source's
        // bodies) have none, and running the three patterns on each cost a third of the CPU of a
        // 100 KB message.
        if !ends_like_header(lines[next]) {
            continue;
        }
        let joined = lines[i..=next].iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ");
        if joined.len() > MAX_HEADER_CHARS {
            return None;
        }
        if ON_WROTE.is_match(&joined) || DATED_WROTE.is_match(&joined) || DATE_ADDRESS.is_match(&joined) {
            return Some(n);
        }
    }
    None
}

/// How every header ON_WROTE, DATED_WROTE and DATE_ADDRESS match ends: a colon (then `*`, `_`
/// or white space), or ON_WROTE's bare "wrote" word.
fn ends_like_header(line: &str) -> bool {
    let t = line.trim_end_matches(|c: char| c.is_whitespace() || c == '*' || c == '_');
    t.ends_with([':', '：']) || WROTE_END.is_match(t)
}

/// Anchored at the end only: the regex crate matches it backwards from the end of the line.
static WROTE_END: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"(?i)(?:{})$", alternation(patterns::WROTE))).expect("WROTE_END"));

static ON_WROTE_START: LazyLock<Regex> = LazyLock::new(|| {
    let on = alternation(patterns::ON);
    Regex::new(&format!(r"(?i)^[*_]?(?:{on})\s")).expect("ON_WROTE_START")
});

/// The reply without its quoted history.
pub fn unquote(text: &str) -> Unquoted<'_> {
    unquote_lines(text, &text.lines().collect::<Vec<_>>())
}

/// `unquote`, with `text`'s lines as the caller already split them.
pub fn unquote_lines<'a>(text: &'a str, lines: &[&str]) -> Unquoted<'a> {
    let marks = mark(lines);
    let whole = || Unquoted { text: Cow::Borrowed(text.trim_end()), quoted: false, cut_at: None };
    let first_forward = marks.iter().position(|m| *m == Mark::Forward);
    let first_header = marks.iter().position(|m| *m == Mark::Header);
    // A forward before any quote: the message is a forward, its original is not quoted history.
    if let Some(f) = first_forward
        && first_header.is_none_or(|h| f < h)
        && !marks[..f].contains(&Mark::Quoted)
    {
        return whole();
    }
    // An inline answer: text between two quoted blocks. Kept whole down to its last text line.
    let texts: Vec<usize> = (0..marks.len()).filter(|&i| marks[i] == Mark::Text).collect();
    let quoted: Vec<usize> = (0..marks.len()).filter(|&i| marks[i] == Mark::Quoted).collect();
    if let (Some(&first_q), Some(&last_q)) = (quoted.first(), quoted.last())
        && texts.iter().any(|&t| t > first_q && t < last_q)
        && let Some(&last_t) = texts.last()
    {
        // A signature under the last quote (bottom posting) ends the answer; the quote above it goes.
        let tail = lines[last_q + 1..].join("\n");
        let signed = last_t > last_q && super::signature::is_signature(&tail);
        let last_answer = if signed { texts.iter().rev().find(|&&t| t < last_q).copied() } else { Some(last_t) };
        let last_answer = last_answer.unwrap_or(last_t);
        let quoted_any = marks[last_answer + 1..].iter().any(|m| matches!(m, Mark::Quoted | Mark::Header));
        let mut kept = lines[..=last_answer].join("\n").trim_end().to_string();
        if signed {
            kept.push_str("\n\n");
            kept.push_str(tail.trim());
        }
        return Unquoted { text: Cow::Owned(kept), quoted: quoted_any, cut_at: None };
    }
    let Some(start) = (0..marks.len()).find(|&i| {
        marks[i] == Mark::Header || (marks[i] == Mark::Quoted && quote_run(&marks, i)) || marks[i] == Mark::Forward
    }) else {
        return whole();
    };
    // A header followed by unquoted text (Outlook, HTML turned text): all of it is history.
    let after = &marks[start..];
    let unquoted_text_after = marks[start] == Mark::Header
        && after.iter().find(|m| **m != Mark::Header && **m != Mark::Empty) == Some(&Mark::Text);
    let end = if unquoted_text_after || marks[start] == Mark::Forward {
        lines.len()
    } else {
        // Up to the last quoted or header line; text after it (a signature under the quote) stays.
        let last = (start..marks.len()).rev().find(|&i| matches!(marks[i], Mark::Quoted | Mark::Header));
        last.map_or(lines.len(), |l| l + 1)
    };
    // Rules and blank lines just above the cut belong to it.
    let mut cut = start;
    while cut > 0 && (lines[cut - 1].trim().is_empty() || is_rule(lines[cut - 1])) {
        cut -= 1;
    }
    // Leading blank lines go (the quote was above the answer).
    let mut kept: Vec<&str> = lines[..cut].iter().copied().skip_while(|l| l.trim().is_empty()).collect();
    let shared = (lines[start].len() <= MAX_HEADER_CHARS)
        .then(|| SHARED_LINE.captures(lines[start]))
        .flatten()
        .and_then(|c| c.get(1))
        .map(|m| m.as_str().trim_end_matches('-'));
    if let Some(prefix) = shared.filter(|p| !p.trim().is_empty() && cut == start && marks[start] == Mark::Header) {
        kept.push(prefix);
    }
    let tail: Vec<&str> = lines[end..].to_vec();
    if tail.iter().any(|l| !l.trim().is_empty()) {
        if cut < start {
            kept.push("");
        }
        kept.extend(tail.iter().skip_while(|l| l.trim().is_empty()));
    }
    let text = kept.join("\n");
    let text = text.trim_end();
    if text.trim().is_empty() {
        // All of it looked quoted: a message is never left without text because of it.
        return whole();
    }
    Unquoted { text: Cow::Owned(text.to_string()), quoted: true, cut_at: Some(cut) }
}

/// Quoted lines that count as history: after a header, or a run of at least two (`>` lines and
/// blank lines between them).
fn quote_run(marks: &[Mark], i: usize) -> bool {
    let before_is_header = marks[..i].iter().rev().find(|m| **m != Mark::Empty) == Some(&Mark::Header);
    before_is_header || marks[i..].iter().filter(|m| **m != Mark::Empty).take(2).all(|m| *m == Mark::Quoted)
}

#[cfg(test)]
mod ends {
    use super::{DATE_ADDRESS, DATED_WROTE, ON_WROTE, ends_like_header};

    /// The pre-check may skip a line only where the patterns could not match: every line that one
    /// of them matches (headers wrapped at each space, as a client might) ends as a header does.
    #[test]
    fn every_line_the_patterns_match_ends_like_a_header() {
        let headers = [
            "On Mon, Nov 23, 2026 at 10:00 AM Ada Lovelace <ada@example.com> wrote:",
            "On Mon, Nov 23, 2026 at 10:00 AM Ada Lovelace <ada@example.com> wrote",
            "*On Mon, Nov 23, 2026, Ada <ada@example.com> wrote:* ",
            "Am Mo., 23. Nov. 2026 um 10:00 Uhr schrieb Ada Lovelace <ada@example.com>:",
            "Le lun. 23 nov. 2026 à 10:00, Ada Lovelace <ada@example.com> a écrit :",
            "El lun, 23 nov 2026 a las 10:00, Ada Lovelace (<ada@example.com>) ESCRIBIÓ",
            "2014-10-17 11:28 GMT+03:00 Bob <bob@example.com>:",
            "Ada Lovelace <ada@example.com> 于2026年11月23日周一 10:00写道：",
            "23 нояб. 2026 г., в 10:00, Ада Лавлейс <ada@example.com> написал(а):",
        ];
        for h in headers {
            let words: Vec<&str> = h.split_whitespace().collect();
            for cut in 1..words.len() {
                let joined = format!("{} {}", words[..cut].join(" "), words[cut..].join(" "));
                let matched =
                    ON_WROTE.is_match(&joined) || DATED_WROTE.is_match(&joined) || DATE_ADDRESS.is_match(&joined);
                assert!(!matched || ends_like_header(&words[cut..].join(" ")), "{joined}");
            }
            assert!(ends_like_header(h), "{h}");
        }
        for line in ["1234567890 abcdefghij", "2026 figures: 12, 14", "10 items sent to", "On the 3rd we went"] {
            assert!(!ends_like_header(line), "{line}");
        }
    }

    #[test]
    fn a_table_of_figures_is_text_and_a_wrapped_header_is_still_cut() {
        let table: String = (0..500).map(|i| format!("{i} 0123456789 ABCDEFGHIJ {i}\n")).collect();
        let r = super::super::reply_of(&table, None);
        assert!(!r.quoted);
        let reply =
            format!("{table}\nOn Mon, Nov 23, 2026 at 10:00 AM Ada\n<ada@example.com>\nwrote:\n\n> Shall we?\n");
        let r = super::super::reply_of(&reply, None);
        assert!(r.quoted);
        assert_eq!(r.text, table.trim_end());
    }
}

#[cfg(test)]
mod memory {
    #[test]
    #[ignore = "prints the memory each pattern takes"]
    fn each_pattern() {
        let rss = || {
            let s = std::fs::read_to_string("/proc/self/status").unwrap();
            s.lines()
                .find(|l| l.starts_with("VmRSS"))
                .unwrap()
                .split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<i64>()
                .unwrap()
        };
        let line = "On Mon, Nov 23, 2026 at 10:00 AM Ada <ada@example.com> wrote:";
        for (name, re) in [
            ("ON_WROTE", &*super::ON_WROTE),
            ("DATED_WROTE", &*super::DATED_WROTE),
            ("DATE_ADDRESS", &*super::DATE_ADDRESS),
            ("DASHED", &*super::DASHED_WROTE),
            ("NUMERIC", &*super::NUMERIC_DATE_ADDRESS),
            ("SHARED", &*super::SHARED_LINE),
            ("ORIGINAL", &*super::ORIGINAL),
            ("FORWARD", &*super::FORWARD_LINE),
            ("FROM", &*super::FROM_FIELD),
            ("SENT", &*super::SENT_FIELD),
            ("TO", &*super::TO_FIELD),
            ("SUBJECT", &*super::SUBJECT_FIELD),
        ] {
            let b = rss();
            let _ = re.is_match(line);
            eprintln!("{name}: +{} KiB", rss() - b);
        }
    }
}
