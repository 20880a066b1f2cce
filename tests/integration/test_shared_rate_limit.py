"""An SMTP server's `rate=` holds for the whole deployment, not per worker process (issue 19:
N workers sent N times the rate). Two Conveyors on one database stand for two workers; a
hand-moved clock makes the arithmetic exact."""

from __future__ import annotations

import asyncio

from conveyor.bootstrap import bootstrap
from conveyor.channels.smtp import SmtpProvider
from conveyor.services.ratelimits import SharedBucket
from conveyor.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def drain(bucket: SharedBucket) -> int:
    taken = 0
    while got := bucket.draw():
        taken += got
    return taken


def test_two_workers_share_one_rate(conveyor, database_url, tmp_path):
    other = bootstrap(Settings(database_url=database_url, data_dir=tmp_path))  # a 2nd process
    try:
        clock = Clock()
        one = SharedBucket(conveyor.store, "smtp:mx.example:587:shop", rate=10, now=clock)
        two = SharedBucket(other.store, "smtp:mx.example:587:shop", rate=10, now=clock)
        elsewhere = SharedBucket(other.store, "smtp:other.example:587:", rate=10, now=clock)
        # A full bucket holds one second's worth (the burst), whoever draws it.
        assert drain(one) + drain(two) == 10
        assert one.draw() == 0 and two.draw() == 0
        assert drain(elsewhere) == 10  # another account has its own limit
        # Then `rate` a second, for both together.
        clock.now += 0.5
        first = one.draw()
        assert first == 3  # a quarter second's worth (ceil(10 / 4)) at a time
        assert first + drain(two) + drain(one) == 5
        clock.now += 0.25
        assert one.draw() + two.draw() + two.draw() == 2  # 2.5 tokens: two whole ones
        clock.now += 100  # idle for long: still one burst at most, not 100 seconds' worth
        assert drain(two) + drain(one) == 10
    finally:
        other.close()


def test_take_waits_for_the_shared_tokens(conveyor):
    clock = Clock()
    bucket = SharedBucket(conveyor.store, "smtp:slow.example:25:", rate=4, now=clock)

    async def sends(n: int) -> None:
        for _ in range(n):
            await bucket.take()

    asyncio.run(sends(4))  # the burst: no waiting
    assert bucket.draw() == 0


def test_a_rate_in_the_smtp_url_is_shared(conveyor, tenant):
    conveyor.settings.smtp_url = "smtp://u:p@mx.example:587?rate=20"
    provider = conveyor.delivery.providers.email(tenant.workspace)
    assert isinstance(provider, SmtpProvider)
    assert isinstance(provider._bucket, SharedBucket)
    assert provider._bucket.key == "smtp:mx.example:587:u" and provider._bucket.rate == 20
