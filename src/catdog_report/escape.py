"""One escape function per context a string from the user's files lands in.

File names, link targets, exception messages and page output are data, never markup: each
place that puts one into Markdown, HTML or a log line escapes it for that place (JSON is
only ever written by json.dumps and nbformat, which escape for it).
Helpers that emit intended Markdown escape what they interpolate with these.
"""

from __future__ import annotations

import html
import re
import unicodedata

# The characters Python-Markdown (with the tables extension) lets a backslash escape: every
# one that starts or ends markup there; < and & become entities instead.
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()>#+\-.!|])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def terminal(text: str) -> str:
    """Text for one log or terminal line: control characters (newlines, escape sequences)
    written as Python escapes, so a name cannot forge or colour a line."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode()
                   for ch in str(text))


def markdown_text(text: str) -> str:
    """Text shown as itself inside Markdown prose, a list item or a table cell: every
    character that could start markup (emphasis, links, HTML, code, a table's pipe) is
    escaped and line breaks become spaces."""
    flat = " ".join(_visible(text).split())
    return _MARKDOWN_SPECIALS.sub(r"\\\1", flat).replace("&", "&amp;").replace("<", "&lt;")


def code_span(text: str) -> str:
    """Text as an inline code span: the fence is longer than any run of backticks inside,
    so the text cannot end it; line breaks become spaces."""
    flat = " ".join(_visible(text).split("\n"))
    longest = max((len(m) for m in re.findall(r"`+", flat)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") or not flat.strip() else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def code_block(text: str, language: str = "text") -> str:
    """Text as a fenced code block whose fence no line of the text can close."""
    longest = max((len(m) for m in re.findall(r"^[ \t]*(`{3,}|~{3,})", text, re.M)),
                  default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{_visible(text, keep_newlines=True)}\n{fence}"


def html_text(text: str) -> str:
    """Text inside an HTML element (and Markdown inside one: a figure's caption)."""
    return html.escape(_visible(text), quote=False)


def html_attribute(text: str) -> str:
    """Text inside a double- or single-quoted HTML attribute value."""
    return html.escape(" ".join(_visible(text).split()), quote=True)


def alt_text(text: str) -> str:
    """Text for a Markdown image's alt (between ![ and ]): one line, no brackets or other
    markup, plain words for a screen reader."""
    flat = " ".join(_visible(text).split()).replace("[", "(").replace("]", ")")
    return markdown_text(flat)


def _visible(text: str, keep_newlines: bool = False) -> str:
    """The text without control characters (other than newlines and tabs when kept);
    each becomes the Unicode replacement character."""
    text = unicodedata.normalize("NFC", str(text)).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("\ufffd", text)
    return text if keep_newlines else text.replace("\t", " ")
