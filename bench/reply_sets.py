#!/usr/bin/env python3
"""Measures reply extraction (src/extract/) against two public test sets, without copying them here:

  github/email_reply_parser  test/emails/*.txt, expectations from test/email_reply_parser_test.rb
  mailgun/talon              tests/text_quotations_test.py (every extract_from_plain case) and
                             tests/fixtures/standard_replies/*.eml

    REPLY_SETS_ERP=/path/to/email_reply_parser REPLY_SETS_TALON=/path/to/talon python3 bench/reply_sets.py

Each path is a checkout or a bare git directory (read with `git archive HEAD`). The cases are written to
a temporary JSON-lines file, the ignored test `extract::tests::measure_public_sets` runs our extractor on
each, and this script compares and prints agreement per set and per language (docs/reply-extraction.md).

How expectations are derived:
Texts are compared with line ends and each line's trailing white space ignored, and leading and
trailing blank lines stripped.
- email_reply_parser: the visible text (`EmailReplyParser.parse_reply`) when the Ruby test asserts it
  whole; otherwise from the fragment assertions: the visible fragments' text must be there (starts /
  contains), the hidden fragments' text (quoted history, signature) must not. Compared with our
  `reply.text` (quote and signature removed, as their visible text is).
- talon: its Python test file is run with `quotations.extract_from_plain` replaced by a recorder and
  `eq_` collecting (expected, input) pairs, so every assertion on extract_from_plain becomes a case as
  written. talon removes quotations only, so it is compared with our text before the signature split.
  The language is the test's name (test_german_from_block → de), English otherwise.
"""

import email
import email.iterators
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def checkout(path):
    """A directory with the repository's files: `path` itself, or its HEAD exported from a bare git dir."""
    if os.path.isdir(os.path.join(path, "tests")) or os.path.isdir(os.path.join(path, "test")):
        return path
    out = tempfile.mkdtemp(prefix="reply-set-")
    data = subprocess.run(["git", "--git-dir", path, "archive", "HEAD"], check=True, capture_output=True).stdout
    tarfile.open(fileobj=io.BytesIO(data)).extractall(out)
    return out


def erp_cases(root):
    def read(name):
        with open(os.path.join(root, "test", "emails", name + ".txt"), encoding="utf-8") as f:
            return f.read()

    # (fixture, checks) from the assertions of test/email_reply_parser_test.rb.
    expect = {
        "email_1_1": {"equals": "Hi folks\n\nWhat is the best way to clear a Riak bucket of all key, values after\nrunning a test?\nI am currently using the Java HTTP API."},
        "email_1_2": {"starts": "Hi,", "contains": ["wrote:", "You can list", "individually."], "excludes": ["-Abhishek Kona", "____"]},
        "email_1_3": {"starts": "Oh thanks.\n\nHaving", "excludes": ["-Abhishek", "On 01/03/11", "____"]},
        "email_1_4": {"starts": "Awesome", "excludes": ["On Aug 22", "Loader"]},
        "email_1_5": {"whole": True},
        "email_1_6": {"starts": "I get", "excludes": ["On Dec 16", "Was this"]},
        "email_1_7": {"contains": [":+1:"], "excludes": ["Steps 0-2"]},
        "email_1_8": {"starts": "On Tue, Apr 29", "contains": ["I will reply", "okay?", "and under this."], "excludes": ["inline", "Hey there, this is my signature"]},
        "correct_sig": {"equals": "this is an email with a correct -- signature."},
        "email_2_1": {"equals": "Outlook with a reply"},
        "email_2_2": {"equals": "Outlook with a reply directly above line"},
        "email_2_3": {"equals": "Outlook with a reply directly above line"},
        "email_iPhone": {"equals": "Here is another email"},
        "email_BlackBerry": {"equals": "Here is another email"},
        "email_multi_word_sent_from_my_mobile_device": {"equals": "Here is another email"},
        "email_sent_from_my_not_signature": {"equals": "Here is another email\n\nSent from my desk, is much easier then my mobile phone."},
        "email_bullets": {"equals": "test 2 this should list second\n\nand have spaces\n\nand retain this formatting\n\n\n   - how about bullets\n   - and another"},
        "email_one_is_not_on": {"contains": ["One outstanding question"], "excludes": ["On Oct 1, 2012"]},
        "greedy_on": {"starts": "On your remote host", "excludes": ["On 9 Jan 2014", "I am having"]},
        "email_sig_delimiter_in_middle_of_line": {"whole": True},
        "pathological": {"seconds": 1},
        "email_long_quote": {"seconds": 1},
    }
    for name, checks in expect.items():
        text = read(name)
        if checks.get("whole"):
            checks = {"equals": text.rstrip()}
        yield {"set": "email_reply_parser", "lang": "en", "name": name, "input": text, "field": "reply", "checks": checks}


LANGS = {"german": "de", "french": "fr", "polish": "pl", "danish": "da", "swedish": "sv", "norwegian": "no",
         "dutch": "nl", "vietnamese": "vi", "russian": "ru", "spanish": "es", "italian": "it", "portuguese": "pt",
         "japanese": "ja", "chinese": "zh"}


def lang_of(test_name):
    for word, code in LANGS.items():
        if word in test_name:
            return code
    return "en"


def talon_cases(root):
    tests = os.path.join(root, "tests")
    cases = []
    current = {"name": ""}

    class Recorded(str):
        pass

    def extract_from_plain(msg_body):
        r = Recorded("<recorded>")
        r.input = msg_body
        return r

    def eq_(expected, actual, *_):
        if isinstance(actual, Recorded):
            cases.append({"set": "talon", "lang": lang_of(current["name"]), "name": current["name"],
                          "input": actual.input, "field": "unquoted", "checks": {"equals": expected.strip()}})

    quotations = types.SimpleNamespace(extract_from_plain=extract_from_plain, MAX_LINES_COUNT=1000)
    # What the test module imports, reduced to what the extract_from_plain tests touch.
    six = types.SimpleNamespace(text_type=str, StringIO=io.StringIO, moves=None)

    class patch:
        @staticmethod
        def object(*_a, **_k):
            return lambda f: f

    src = open(os.path.join(tests, "text_quotations_test.py"), encoding="utf-8").read()
    src = "\n".join(l for l in src.splitlines() if not l.startswith(("from ", "import ")))
    env = {"quotations": quotations, "six": six, "eq_": eq_, "patch": patch, "os": os, "email": email,
           "range": range, "STANDARD_REPLIES": os.path.join(tests, "fixtures", "standard_replies"),
           "ok_": lambda *a: None, "Mock": None}
    exec(compile(src, "text_quotations_test.py", "exec"), env)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for name, fn in list(env.items()):
            if not name.startswith("test_") or not callable(fn):
                continue
            current["name"] = name
            try:
                result = fn()
                if isinstance(result, types.GeneratorType):
                    for step in result:
                        step[0](*step[1:])
            except Exception:
                # A test of talon internals (mark_message_lines, preprocess…), not of extract_from_plain.
                pass
    finally:
        os.chdir(cwd)
    # Standard replies: name each by its file.
    std = os.path.join(tests, "fixtures", "standard_replies")
    for c in cases:
        if c["name"] == "test_standard_replies":
            pass
    n = 0
    for c in cases:
        if c["name"] == "test_standard_replies":
            files = sorted(f for f in os.listdir(std) if f.endswith(".eml"))
            c["name"] = "standard_replies/" + files[n] if n < len(files) else c["name"]
            n += 1
    return cases


def norm(text):
    """Line ends and trailing white space on each line do not count (they are invisible)."""
    return "\n".join(l.rstrip() for l in text.replace("\r\n", "\n").split("\n")).strip("\n").rstrip()


def check(case, result):
    got = norm(result["reply"] if case["field"] == "reply" else result["unquoted"])
    c = case["checks"]
    if "seconds" in c:
        return result["seconds"] < c["seconds"]
    ok = True
    if "equals" in c:
        ok &= got == norm(c["equals"])
    if "starts" in c:
        ok &= got.startswith(c["starts"])
    for s in c.get("contains", []):
        ok &= s in got
    for s in c.get("excludes", []):
        ok &= s not in got
    return ok


def main():
    erp, talon = os.environ.get("REPLY_SETS_ERP"), os.environ.get("REPLY_SETS_TALON")
    if not erp or not talon:
        sys.exit(__doc__)
    cases = list(erp_cases(checkout(erp))) + talon_cases(checkout(talon))
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = os.path.join(tmp, "cases.jsonl"), os.path.join(tmp, "results.jsonl")
        with open(inp, "w") as f:
            for c in cases:
                f.write(json.dumps({"input": c["input"]}) + "\n")
        env = dict(os.environ, MXHOOK_REPLY_CASES=inp, MXHOOK_REPLY_RESULTS=out)
        subprocess.run(["cargo", "test", "--quiet", "--lib", "extract::tests::measure_public_sets", "--",
                        "--ignored"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        results = [json.loads(l) for l in open(out)]
    per = {}
    failed = []
    for c, r in zip(cases, results):
        ok = check(c, r)
        for key in [(c["set"], "all"), (c["set"], c["lang"])]:
            a = per.setdefault(key, [0, 0])
            a[0] += ok
            a[1] += 1
        if not ok:
            failed.append((c, r))
    for (s, lang), (ok, n) in sorted(per.items()):
        print(f"{s:20} {lang:4} {ok:3}/{n:<3} {100 * ok / n:5.1f} %")
    if "-v" in sys.argv:
        for c, r in failed:
            print("---- FAIL", c["set"], c["name"], json.dumps(c["checks"], ensure_ascii=False)[:300])
            print(r["reply"] if c["field"] == "reply" else r["unquoted"])


if __name__ == "__main__":
    main()
