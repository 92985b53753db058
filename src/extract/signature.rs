//! The signature at the end of the new text: after a `-- ` line (RFC 3676) or `__`, a mobile
//! client's "Sent from my …" line, a `-Name` line, or the short lines after a closing word
//! ("Thanks,", "Mit freundlichen Grüßen"). Only the last lines are looked at: a signature is short.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

use super::patterns;

/// How far from the end a signature may start, in non-empty lines.
const MAX_SIGNATURE_LINES: usize = 12;
/// The lines after a closing word that can be a name, title, phone: at most this many, each short.
const MAX_NAME_LINES: usize = 4;
const MAX_NAME_CHARS: usize = 60;
/// A signature line is short; longer lines are not matched at all.
const MAX_LINE_BYTES: usize = 200;

static DELIMITER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(?:--\s*|-- .*|_{2,}\s*|—\s*)$").expect("delimiter"));
/// "-Abhishek": a dash straight before a name, alone on its line.
static DASH_NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^-\p{L}[\p{L} .'-]*$").expect("dash name"));
static SENT_FROM: LazyLock<Regex> = LazyLock::new(|| {
    let alts = patterns::SENT_FROM.join("|");
    Regex::new(&format!(r"(?i)^\s*(?:{alts})\s*[.!]?\s*$")).expect("sent from")
});
static VALEDICTION: LazyLock<Regex> = LazyLock::new(|| {
    let alts = patterns::VALEDICTIONS.iter().map(|v| v.replace(' ', r"\s+")).collect::<Vec<_>>().join("|");
    Regex::new(&format!(r"(?i)^\s*(?:{alts})\s*[,.!:]?\s*$")).expect("valediction")
});

/// (text, signature): the text without its trailing signature (borrowed when there is none), and the
/// signature (None: none found).
pub fn split(text: Cow<'_, str>) -> (Cow<'_, str>, Option<String>) {
    // Only the last lines can start a signature: they are looked at first, and the whole text is
    // split into lines only when one does. From the end: the last MAX_SIGNATURE_LINES non-empty
    // lines and one more, which stands for every line above them (positions only compare).
    let mut tail: Vec<&str> = Vec::new();
    let mut nonempty = 0;
    for line in text.lines().rev() {
        tail.push(line);
        nonempty += usize::from(!line.trim().is_empty());
        if nonempty > MAX_SIGNATURE_LINES {
            break;
        }
    }
    tail.reverse();
    let signed = signature_at(&tail).is_some();
    drop(tail);
    if !signed {
        return (trimmed(text), None);
    }
    let lines: Vec<&str> = text.lines().collect();
    let cut = signature_at(&lines)
        .map(|i| (lines[..i].join("\n").trim_end().to_string(), lines[i..].join("\n").trim().to_string()));
    drop(lines);
    match cut {
        Some((body, sig)) => (Cow::Owned(body), (!sig.is_empty()).then_some(sig)),
        None => (trimmed(text), None),
    }
}

/// `text` without its trailing white space, borrowed when it was.
fn trimmed(text: Cow<'_, str>) -> Cow<'_, str> {
    match text {
        Cow::Borrowed(t) => Cow::Borrowed(t.trim_end()),
        Cow::Owned(mut t) => {
            t.truncate(t.trim_end().len());
            Cow::Owned(t)
        }
    }
}

/// The line the signature starts at, if any.
fn signature_at(lines: &[&str]) -> Option<usize> {
    let nonempty: Vec<usize> = (0..lines.len()).filter(|&i| !lines[i].trim().is_empty()).collect();
    let window = &nonempty[nonempty.len().saturating_sub(MAX_SIGNATURE_LINES)..];
    window
        .iter()
        .copied()
        // Not the first line of the message: a one-line message is text, whatever it says.
        .filter(|&i| i > nonempty[0])
        .find(|&i| {
            let l = lines[i].trim_end();
            if l.len() > MAX_LINE_BYTES {
                return false;
            }
            DELIMITER.is_match(l) || DASH_NAME.is_match(l.trim()) || SENT_FROM.is_match(l) && is_last(lines, i)
        })
        .or_else(|| after_valediction(lines, &nonempty))
}

/// The whole of `text` is a signature (a mailing list footer under the quote, "-- \nAda").
pub fn is_signature(text: &str) -> bool {
    let (body, sig) = split(Cow::Owned(format!("x\n{text}")));
    sig.is_some() && body.trim() == "x"
}

/// "Sent from my iPhone" is the signature when only other such lines or a signature follow it.
fn is_last(lines: &[&str], i: usize) -> bool {
    lines[i + 1..].iter().filter(|l| !l.trim().is_empty()).count() <= 2
}

/// The line after a closing word, when what follows it is a few short lines (a name, a title).
fn after_valediction(lines: &[&str], nonempty: &[usize]) -> Option<usize> {
    let tail = &nonempty[nonempty.len().saturating_sub(MAX_NAME_LINES + 1)..];
    let v = tail.iter().position(|&i| lines[i].len() <= MAX_LINE_BYTES && VALEDICTION.is_match(lines[i]))?;
    let names = &tail[v + 1..];
    let short = names.iter().all(|&i| {
        let l = lines[i].trim();
        let sentence = l.ends_with(['?', '!', ':']) || (l.ends_with('.') && l.split_whitespace().count() > 5);
        l.chars().count() <= MAX_NAME_CHARS && !sentence
    });
    // Text before the closing word: a message that is only "Thanks,\nAda" keeps it all.
    let first = *names.first()?;
    (short && tail[v] > nonempty[0]).then_some(first)
}
