"""Rendering's resource bounds: the parsed-template cache holds a byte budget, not a count."""

from __future__ import annotations

import gc

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
