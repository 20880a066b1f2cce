"""Rendering's resource bounds: the parsed-template cache holds a byte budget, not a count."""

from __future__ import annotations

import gc
import html as htmllib
import re

import pytest

from conveyor.services import rendering


def resident_bytes() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def large_template(seed: int, size: int = 200_000) -> str:
    """A tag-dense email body of `size` characters, different for every seed."""
    line = "<p>Hi {{ contact.first_name | default: 'friend' }}{% if contact.score > N %}!{% endif %}</p>\n"
    count = size // len(line) + 1
    return f"<!-- {seed} -->" + "".join(line.replace("N", str(i)) for i in range(count))


def test_many_large_templates_leave_resident_memory_within_the_cache_budget(monkeypatch):
    """16 distinct 90 KB templates, parsed ~3 MB each, under a 20 MB budget (the default
    is 64 MB; benchmarks/templates.py measures it). Before, an LRU of 1,024 entries kept them
    all: 20 of 470 KB took a server from 163 to 472 MB, never freed."""
    cache = getattr(rendering, "PARSED", None)
    if cache is not None:
        cache.clear()
        monkeypatch.setattr(cache, "budget", 20_000_000)
    gc.collect()
    before = resident_bytes()
    context = {"contact": {"first_name": "Ann", "score": 10}}
    for seed in range(16):
        assert "Hi Ann!" in rendering.render(large_template(seed, 90_000), context, html=True)
    gc.collect()
    grown = resident_bytes() - before
    assert grown < 30_000_000, f"resident memory grew by {grown / 1e6:.0f} MB"
    if cache is not None:
        assert 0 < cache.size <= cache.budget
        cache.clear()


def test_the_cache_keeps_recently_used_templates_and_skips_huge_ones():
    cache = rendering.ParsedCache(budget=100_000)
    small = ["{{ a }}" + str(i) for i in range(20)]
    first = cache.get(small[0], False)
    assert cache.get(small[0], False) is first  # a hit
    for source in small[1:]:
        cache.get(source, False)
    assert cache.size <= 100_000
    assert cache.get(small[-1], False) is cache.get(small[-1], False)
    huge = "{{ a }}" * 100
    assert cache.get(huge, False) is not cache.get(huge, False)  # parsed, never kept


UNSAFE = [
    "javascript:alert(document.cookie)",
    "JavaScript:alert(1)",
    " javascript:alert(1)",
    "java\tscript:alert(1)",
    "java\nscript:alert(1)",
    "&#106;avascript:alert(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
]


@pytest.mark.parametrize("website", UNSAFE)
def test_a_contact_value_with_an_unsafe_scheme_is_neutralised_and_not_tracked(website):
    content = {
        "subject": "Hi",
        "html": '<p><a href="{{ contact.website }}">your site</a> '
        "<a href={{ contact.website }}>unquoted</a> "
        '<a href="https://shop.example/start">shop</a></p>',
    }
    links = rendering.Links(
        click=lambda i: f"https://c.example/t/c/{i}", open_pixel=None, unsubscribe=None
    )
    parts = rendering.email_parts(content, {"contact": {"website": website}}, links)
    assert parts.html is not None
    assert not any(followable_unsafe(url) for url in hrefs(parts.html)), parts.html
    assert parts.links == ["https://shop.example/start"]
    assert 'href="https://c.example/t/c/0"' in parts.html


def hrefs(html: str) -> list[str]:
    """Every href value as a browser reads it (attribute quoted or not)."""
    found = re.findall(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", html, re.I)
    return [htmllib.unescape(a or b or c) for a, b, c in found]


def followable_unsafe(url: str) -> bool:
    plain = re.sub(r"[\x00-\x20]", "", url).lower()
    return plain.startswith(("javascript:", "data:", "vbscript:"))


def test_an_unsafe_link_written_in_the_template_itself_is_neutralised_too():
    html = (
        '<a href="&#106;avascript:alert(1)">a</a><a href="JAVASCRIPT:x">b</a>'
        "<area href=' data:text/html,x'><a href=vbscript:x>c</a>"
    )
    links = rendering.Links(click=lambda i: f"https://c/{i}", open_pixel=None, unsubscribe=None)
    parts = rendering.email_parts({"subject": "s", "html": html}, {}, links)
    assert not any(followable_unsafe(url) for url in hrefs(parts.html)), parts.html
    assert parts.html.count('href="#"') == 4 and parts.links == []


def test_safe_links_are_kept():
    links = rendering.Links(click=None, open_pixel=None, unsubscribe=None)
    html = '<a href="mailto:a@example.com">m</a><a href="/path">p</a><a href="tel:+481">t</a>'
    assert rendering.neutralise_links(html) == html
    parts = rendering.email_parts({"subject": "s", "html": html}, {}, links)
    assert "mailto:a@example.com" in parts.html and "tel:+481" in parts.html


def test_a_linked_stylesheet_is_never_fetched_and_stays_for_mail_clients():
    """MJML links Google Fonts by default; css-inline fetched every linked stylesheet, so a
    render waited on (or failed without) the network, and a tenant could point the server at
    any address. A port nothing listens on would fail the render if it were fetched."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/style.css"
    html = f'<html><head><link rel="stylesheet" href="{url}"><style>p {{ color: red }}</style></head><body><p>x</p></body></html>'
    links = rendering.Links(click=None, open_pixel=None, unsubscribe=None)
    parts = rendering.email_parts({"subject": "s", "html": html}, {}, links)
    assert url in parts.html and 'style="color: red' in parts.html
    mjml = "<mjml><mj-body><mj-section><mj-column><mj-text>Hi</mj-text></mj-column></mj-section></mj-body></mjml>"
    parts = rendering.email_parts({"subject": "s", "mjml": mjml}, {}, links)
    assert "fonts.googleapis.com" in parts.html and "Hi" in parts.text
