"""Pure text helpers: HTML to plain text, whitespace, and URL canonicalisation.

No I/O. Word-level analysis for matching (folding, tokenising, stemming) lives in analyze.py.
"""

from __future__ import annotations

import html
import re

from selectolax.lexbor import LexborHTMLParser
from yarl import URL

# A field bigger than this is cut before parsing: deeply nested hostile HTML is slow to parse,
# and no news summary needs more.
MAX_FIELD_CHARS = 200_000

_WHITESPACE = re.compile(r"\s+")

# Block-level elements separate words; inline ones (b, i, span, a ...) do not: "W<b>or</b>d" is
# one word, "<p>a</p><p>b</p>" two.
_BLOCK_TAGS = (
    "address",
    "article",
    "aside",
    "blockquote",
    "br",
    "dd",
    "div",
    "dl",
    "dt",
    "figcaption",
    "figure",
    "footer",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "td",
    "th",
    "tr",
    "ul",
    "img",
)


# Control characters (terminal escapes, NUL, C1 codes) are never text: a feed could otherwise
# drive the console user's terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def collapse(text: str) -> str:
    """Whitespace (CR/LF included) collapsed to single spaces, control characters removed,
    trimmed."""
    return _WHITESPACE.sub(" ", _CONTROL.sub("", text)).strip()


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment: tags stripped, entities decoded, whitespace collapsed."""
    fragment = fragment[:MAX_FIELD_CHARS]
    if "<" not in fragment and "&" not in fragment:
        return collapse(fragment)
    if "<" not in fragment:
        return collapse(html.unescape(fragment))
    tree = LexborHTMLParser(fragment)
    root = tree.body or tree.root
    if root is None:
        return ""
    # Scripts and styles carry no readable text.
    for node in root.css("script, style, noscript, template"):
        node.decompose()
    for node in root.css(", ".join(_BLOCK_TAGS)):
        node.insert_before(" ")
        node.insert_after(" ")
    return collapse(root.text(deep=True, separator=""))


# Query parameters that only track the reader; dropped so one story has one link.
# Kept in one place, documented in README ("Story identity").
TRACKER_PARAMS = frozenset(
    ["fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid", "igshid", "mc_cid", "mc_eid", "ocid", "cmpid", "cmp", "smid", "xtor", "ito", "ns_mchannel", "ns_source", "ns_campaign", "ns_linkname", "_ga", "_gl", "guccounter", "ref_src", "ref_url", "emc", "partner", "ncid", "spm", "wt_mc", "iid"]
)
TRACKER_PREFIXES = ("utm_", "at_", "mtm_", "pk_", "hmb_", "__hs", "vero_", "oly_")


def canonical_url(url: str) -> str | None:
    """The http(s) URL without trackers, fragment, default port or host case; None if not http(s)."""
    try:
        parsed = URL(url.strip())
    except (ValueError, TypeError):
        return None
    if parsed.scheme.lower() not in ("http", "https") or not parsed.host:
        return None
    query = [
        (k, v)
        for k, v in parsed.query.items()
        if k.lower() not in TRACKER_PARAMS and not k.lower().startswith(TRACKER_PREFIXES)
    ]
    canonical = parsed.with_fragment(None).with_query(query)
    return str(canonical)


# Query parameters whose values are credentials in feed URLs (private feeds carry them).
_SECRET_PARAM = re.compile(r"token|key|secret|pass|auth|sig|session|api|access|hash", re.I)


def redact_url(url: str) -> str:
    """The URL with its password and credential-looking query values replaced by ***, for
    showing a feed URL (which may carry a token) in status output and logs."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return "***"
    if parsed.password:
        parsed = parsed.with_password("***")
    if parsed.query:
        parsed = parsed.with_query([(k, "***" if _SECRET_PARAM.search(k) else v)
                                    for k, v in parsed.query.items()])
    return str(parsed)
