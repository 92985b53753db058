"""The independent reference for tests/spine/headers.rs: what Python's `email` package (policy
`default`) makes of each message given on the command line, as JSON on stdout:

{file: {"headers": [[name, parsed, text], ...], "uu": [[sha256, size], ...]}}

- `parsed` is str(value) of Python's own header object for the field (structured for addresses,
  dates, MIME parameters; unstructured otherwise), or null when Python cannot parse the field.
- `text` is the field's unfolded value read as unstructured text: Python's decoding of its encoded
  words, with no structure rebuilt.
- `uu` has the decoded bytes of every x-uuencode / uuencode / x-uue / uue part, in order.
The bytes parser keeps 8-bit header bytes as surrogates; they are read as UTF-8 (RFC 6532).
"""
import hashlib
import json
import re
import sys
from email import message_from_bytes, policy
from email.headerregistry import HeaderRegistry

as_text = HeaderRegistry(use_default_map=False)  # every field unstructured


def utf8(s):
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


out = {}
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        msg = message_from_bytes(f.read(), policy=policy.default)
    headers = []
    for name, value in msg.raw_items():
        try:
            parsed = utf8(str(policy.default.header_fetch_parse(name, value)))
        except Exception:
            parsed = None
        text = utf8(str(as_text(name, re.sub(r"[\r\n]", "", value))))
        headers.append([utf8(name), parsed, text])
    uu = []
    for part in msg.walk():
        if part.get("content-transfer-encoding", "").strip().lower() in ("x-uuencode", "uuencode", "x-uue", "uue"):
            data = part.get_payload(decode=True) or b""
            uu.append([hashlib.sha256(data).hexdigest(), len(data)])
    out[path.rsplit("/", 1)[-1]] = {"headers": headers, "uu": uu}
json.dump(out, sys.stdout, ensure_ascii=False)
