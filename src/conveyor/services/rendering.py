"""Turning a template and a contact into what goes on the wire: Liquid (sandboxed, with resource
limits), MJML, inlined CSS, a text part, tracked links, an open pixel and the headers bulk
senders need (List-Unsubscribe with one-click, Message-ID).

A template that does not parse, or uses a filter that does not exist, is refused when saved
(`check_source`, with line and column); at send time a missing value renders empty, or its
`default`, never an error.
"""

from __future__ import annotations

import base64
import html as htmllib
import json
import re
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr, getaddresses, parseaddr
from functools import cache
from typing import TYPE_CHECKING, Any

import css_inline
import mrml

from conveyor.domain.errors import InvalidInput

if TYPE_CHECKING:
    from liquid import Environment

# Limits keep a template from looping or writing without end (the sandbox's resource side).
_LIMITS = {
    "loop_iteration_limit": 10_000,
    "output_stream_limit": 2_000_000,
    "context_depth_limit": 30,
    "local_namespace_limit": 100_000,
}


# A tenant's template cannot name another file: there is no template loader to reach, and
# `include`/`render` made `analyze()` raise at save time. Without the tags they do not parse.
_NO_LOADER = ("include", "render")


@cache
def _environments() -> tuple[Environment, Environment]:
    """Liquid for text, and for HTML (contact data escaped: no markup injection). Built on first
    use: importing python-liquid costs ~0.2 s of CPU, which every `conveyor` command paid."""
    from liquid import Environment, Undefined

    class _Environment(Environment):
        # Class attributes are how python-liquid 2 configures resource limits.
        loop_iteration_limit = _LIMITS["loop_iteration_limit"]
        output_stream_limit = _LIMITS["output_stream_limit"]
        context_depth_limit = _LIMITS["context_depth_limit"]
        local_namespace_limit = _LIMITS["local_namespace_limit"]

    def _json(value: Any) -> str:
        """`{{ contact.email | json }}`: a value as JSON, for webhook bodies."""
        if isinstance(value, Undefined):
            return "null"
        return json.dumps(value, default=str, ensure_ascii=False)

    text, html = _Environment(), _Environment(autoescape=True)
    for env in (text, html):
        env.filters["json"] = _json
        for tag in _NO_LOADER:
            env.tags.pop(tag, None)
    return text, html


def _environment(html: bool) -> Environment:
    text, markup = _environments()
    return markup if html else text


def _liquid_error() -> type[Exception]:
    """python-liquid's error class, for `except` clauses (evaluated only when one is raised)."""
    from liquid.exceptions import LiquidError

    return LiquidError


def check_source(source: Any, path: str, *, html: bool = False) -> None:
    """Refuse Liquid that does not parse or uses unknown filters; the error names the line."""
    if not isinstance(source, str):
        raise InvalidInput(path, "expects text")
    env = _environment(html)
    try:
        template = env.from_string(source)
    except _liquid_error() as exc:
        reason = _located(exc, source)
        if any(f"unexpected tag '{tag}'" in reason for tag in _NO_LOADER):
            reason += " (a template cannot include another: there is nothing to include from)"
        raise InvalidInput(path, reason) from None
    unknown = [name for name in template.analyze().filters if name not in env.filters]
    if unknown:
        spans = template.analyze().filters[unknown[0]]
        where = _line_col(source, spans[0].index) if spans else ""
        raise InvalidInput(path, f"{where}unknown filter '{unknown[0]}'")


def _line_col(source: str, index: int) -> str:
    line = source.count("\n", 0, index) + 1
    column = index - (source.rfind("\n", 0, index) + 1) + 1
    return f"line {line}, column {column}: "


def _located(exc: Exception, source: str) -> str:
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    token = getattr(exc, "token", None)
    index = getattr(token, "start_index", None)
    return f"{_line_col(source, index)}{message}" if isinstance(index, int) else message


def parsed_cost(source: str) -> int:
    """Estimated bytes a parsed template holds: measured with tracemalloc, python-liquid keeps
    ~35 bytes per character of a tag-dense email and ~600 bytes per tag or output in the
    densest ones; plain text costs almost nothing. Over-estimates on purpose."""
    return len(source) + 1_500 * (source.count("{{") + source.count("{%"))


class ParsedCache:
    """Parsed templates, least recently used out first, within a budget of estimated bytes.
    Parsing was a fifth of rendering and the same few templates render for every contact; an
    LRU of 1,024 entries, at up to ~15 MB per 470 KB template, grew by 300 MB for 20 large
    ones and never gave it back. An entry over a quarter of the budget is parsed, not kept."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.size = 0
        self._entries: OrderedDict[tuple[str, bool], tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, source: str, html: bool) -> Any:
        key = (source, html)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                return hit[0]
        template = _environment(html).from_string(source)
        cost = parsed_cost(source)
        if cost <= self.budget // 4:
            with self._lock:
                if key not in self._entries:
                    self._entries[key] = (template, cost)
                    self.size += cost
                while self.size > self.budget:
                    _, (_, freed) = self._entries.popitem(last=False)
                    self.size -= freed
        return template

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.size = 0


CACHE_BUDGET = 64 * 1024 * 1024  # estimated bytes of parsed templates kept per process
PARSED = ParsedCache(CACHE_BUDGET)


def render(source: str | None, context: dict[str, Any], *, html: bool = False) -> str:
    if not source:
        return ""
    try:
        return PARSED.get(source, html).render(**context)
    except _liquid_error() as exc:
        # Saved templates parse; what is left is data-dependent (a loop limit, a filter given a
        # value of the wrong type). The message fails, with the reason, instead of the worker.
        raise RenderError(_located(exc, source)) from None


class RenderError(Exception):
    """A template that parsed at save time but cannot render for this contact."""


def context_for(
    contact: dict[str, Any],
    trigger: dict[str, Any],
    workspace: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Names templates see: `contact` (standard and custom fields, tags, score), `event` (the
    trigger event's properties), `workspace` (its name and `template_vars` setting)."""
    return {"contact": contact, "event": trigger, "workspace": workspace, **(extra or {})}


# --- email -----------------------------------------------------------------------------------


@dataclass
class Links:
    """How links in a message are tracked: `click(i)` makes the URL that redirects to link i."""

    click: Any  # Callable[[int], str] | None
    open_pixel: str | None
    unsubscribe: str | None
    seen: list[str] = field(default_factory=list)


_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_BODY_OPEN = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_BODY_CLOSE = re.compile(r"</body\s*>", re.IGNORECASE)


# Schemes that run code or smuggle a document when a link is followed. Browsers ignore ASCII
# whitespace and control characters anywhere in a scheme ("java\tscript:") and case.
UNSAFE_SCHEMES = ("javascript:", "data:", "vbscript:")
_IGNORED_IN_SCHEME = re.compile(r"[\x00-\x20\x7f]+")
_ANY_HREF = re.compile(
    r"""(<[a-z][^>]*?\bhref\s*=\s*)(?:(["'])(.*?)\2|([^\s"'>]+))""", re.IGNORECASE | re.DOTALL
)


def unsafe_url(url: str) -> bool:
    """Whether following `url` would run script or open an inline document: a contact's
    "website" of `javascript:…` rendered into an href is a stored XSS in every mail client
    that follows it (and in the click redirect, were it tracked)."""
    plain = _IGNORED_IN_SCHEME.sub("", htmllib.unescape(url)).lower()
    return plain.startswith(UNSAFE_SCHEMES)


def neutralise_links(html: str) -> str:
    """Every href with an unsafe scheme becomes `#` (quoted or not, in any tag)."""

    def replace(match: re.Match[str]) -> str:
        value = match.group(3) if match.group(2) else match.group(4)
        if not unsafe_url(value):
            return match.group(0)
        return f'{match.group(1)}"#"'

    return _ANY_HREF.sub(replace, html)


def track_links(html: str, links: Links) -> str:
    """Point every http(s) link through the click redirect, remember the original URLs (the
    redirect goes only to those), and add the open pixel. Links with an unsafe scheme, in any
    tag, become `#` first: they are neither followed nor tracked."""

    def replace(match: re.Match[str]) -> str:
        url = htmllib.unescape(match.group(3)).strip()
        if links.click is None or not url.lower().startswith(("http://", "https://")):
            return match.group(0)
        if links.unsubscribe and url == links.unsubscribe:
            return match.group(0)
        if url in links.seen:
            index = links.seen.index(url)
        else:
            index = len(links.seen)
            links.seen.append(url)
        tracked = htmllib.escape(links.click(index), quote=True)
        return f"{match.group(1)}{match.group(2)}{tracked}{match.group(2)}"

    html = _HREF.sub(replace, neutralise_links(html))
    if links.open_pixel:
        pixel = (
            f'<img src="{htmllib.escape(links.open_pixel, quote=True)}" width="1" height="1" '
            'alt="" style="display:block;border:0;width:1px;height:1px">'
        )
        closing = list(_BODY_CLOSE.finditer(html))
        html = (
            html[: closing[-1].start()] + pixel + html[closing[-1].start() :]
            if closing
            else html + pixel
        )
    return html


def with_preheader(html: str, preheader: str) -> str:
    """The preview text inboxes show after the subject, hidden in the body."""
    if not preheader:
        return html
    hidden = (
        '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all" aria-hidden="true">'
        f"{htmllib.escape(preheader)}</div>"
    )
    opening = _BODY_OPEN.search(html)
    return html[: opening.end()] + hidden + html[opening.end() :] if opening else hidden + html


_TEXT_LINK = re.compile(r"\[([^\]\n]*)\]\(([^)\s]+)\)")


def html_to_text(html: str) -> str:
    """The plain-text part: the HTML's text with each link's address after it, "our shop
    (https://…)" — a reader of plain text can still follow links, the unsubscribe one included.
    Only web and mail addresses are shown."""

    from inscriptis import get_text  # with lxml, imported when an email is first rendered

    def link(match: re.Match[str]) -> str:
        label, url = match.group(1).strip(), match.group(2)
        if not url.lower().startswith(("http://", "https://", "mailto:")):
            return label
        return url if not label or label == url else f"{label} ({url})"

    return _TEXT_LINK.sub(link, get_text(html, _text_config())).strip() + "\n"


@cache
def _text_config() -> Any:
    from inscriptis.model.config import ParserConfig

    return ParserConfig(display_links=True)


@dataclass(frozen=True)
class EmailParts:
    subject: str
    html: str | None
    text: str
    links: list[str]


def email_parts(content: dict[str, Any], context: dict[str, Any], links: Links) -> EmailParts:
    """Subject, HTML (MJML compiled, CSS inlined, links tracked) and text of an email."""
    subject = " ".join(render(content.get("subject"), context).split())
    preheader = " ".join(render(content.get("preheader"), context).split())
    html: str | None = None
    if content.get("mjml"):
        try:
            html = mrml.to_html(render(content["mjml"], context, html=True)).content
        except OSError as exc:  # mrml reports malformed MJML as OSError
            raise RenderError(f"MJML: {exc}") from None
    elif content.get("html"):
        html = render(content["html"], context, html=True)
    text = render(content.get("text"), context) if content.get("text") else None
    if html is not None:
        if text is None:  # from the HTML before its CSS is inlined: the same text, faster
            text = html_to_text(html)
        # Never fetch a stylesheet a template links to (MJML links Google Fonts by default): a
        # render must not wait on, fail with, or be pointed by a tenant at another server. The
        # <link> stays for the mail clients that load it.
        try:
            html = css_inline.inline(html, load_remote_stylesheets=False, keep_link_tags=True)
        except css_inline.InlineError as exc:
            raise RenderError(f"CSS: {exc}") from None
        html = track_links(with_preheader(html, preheader), links)
    return EmailParts(subject, html, text or "", list(links.seen))


@dataclass(frozen=True)
class Envelope:
    sender: str  # From, e.g. "Acme <news@acme.example>"
    to: str
    reply_to: str | None
    message_id: str
    date: datetime
    unsubscribe_url: str | None  # marketing mail: List-Unsubscribe with one-click POST
    unsubscribe_mailto: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def compose(parts: EmailParts, envelope: Envelope) -> bytes:
    """The RFC 5322 message, written directly: the standard library's `EmailMessage` parses
    every header it is given and encodes parts in pure Python, which was half of the time of
    sending an email. ASCII header values go as they are (each under 998 characters);
    non-ASCII ones as RFC 2047 encoded words; both parts in base64 UTF-8."""
    lines = [
        f"From: {_addresses(envelope.sender)}",
        f"To: {_addresses(envelope.to)}",
    ]
    if envelope.reply_to:
        lines.append(f"Reply-To: {_addresses(envelope.reply_to)}")
    lines += [
        f"Subject: {_text_header(parts.subject, 'Subject')}",
        f"Date: {format_datetime(envelope.date)}",
        f"Message-ID: <{envelope.message_id}>",
        "MIME-Version: 1.0",
    ]
    if envelope.unsubscribe_url:
        targets = [f"<{envelope.unsubscribe_url}>"]
        if envelope.unsubscribe_mailto:
            targets.append(f"<mailto:{envelope.unsubscribe_mailto}>")
        lines.append("List-Unsubscribe: " + ",\r\n ".join(targets))
        lines.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    for name, value in envelope.headers.items():
        lines.append(f"{name}: {_text_header(value, name)}")
    text = _part("text/plain", parts.text)
    if parts.html is None:
        lines += text
        body = ""
    else:
        boundary = f"=_conveyor_{secrets.token_hex(12)}"
        lines.append(f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"')
        html = _part("text/html", parts.html)
        body = (
            f"\r\n--{boundary}\r\n"
            + "\r\n".join(text)
            + f"\r\n--{boundary}\r\n"
            + "\r\n".join(html)
            + f"\r\n--{boundary}--\r\n"
        )
        return ("\r\n".join(lines) + "\r\n" + body).encode("ascii")
    return ("\r\n".join(lines)).encode("ascii") + b"\r\n"


def _part(content_type: str, content: str) -> list[str]:
    """Headers, a blank line and the base64 body of one part (lines of 76, CRLF)."""
    encoded = base64.encodebytes(content.encode("utf-8")).decode("ascii")
    return [
        f'Content-Type: {content_type}; charset="utf-8"',
        "Content-Transfer-Encoding: base64",
        "",
        encoded.replace("\n", "\r\n").rstrip("\r\n"),
    ]


def _text_header(value: str, name: str) -> str:
    value = " ".join(str(value).split())  # no line breaks smuggled into headers
    if value.isascii():
        return _fold(value, len(name) + 2)
    return Header(value, "utf-8", header_name=name).encode(linesep="\r\n")


def _fold(value: str, used: int, width: int = 78) -> str:
    """An ASCII header value folded at spaces into lines of at most `width` characters where
    words allow (RFC 5322 2.2.3; a line may never pass 998): `used` is the "Name: " before it."""
    lines: list[str] = []
    line = ""
    for word in value.split(" "):
        room = width - (used if not lines else 1)
        if line and len(line) + 1 + len(word) > room:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\r\n ".join(_split_long(part, 998 - used) for part in lines)


def _split_long(part: str, limit: int) -> str:
    """A word longer than a line may be is broken with encoded-word-free folding: rare (a
    1,000-character token), but never a line past 998."""
    if len(part) <= limit:
        return part
    return "\r\n ".join(part[i : i + limit] for i in range(0, len(part), limit))


def _addresses(value: str) -> str:
    pairs = getaddresses([" ".join(value.split())])
    return ", ".join(formataddr(pair, charset="utf-8") for pair in pairs if pair[1])


def message_id_for(key: str, sender: str) -> str:
    """A stable Message-ID per outbox row: a resend after a crash carries the same one, so
    receiving systems can spot the duplicate."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "conveyor.invalid"
    safe = re.sub(r"[^A-Za-z0-9.\-]", ".", key)
    return f"{safe}@{domain}"


def address(name: str | None, email: str) -> str:
    return formataddr((name, email)) if name else email
