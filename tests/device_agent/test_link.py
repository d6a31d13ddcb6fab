"""The agent's reconnect delays: exponential, capped, and spread at random so a fleet does not come back in step."""

import random

from device_agent.link import Link, LinkOptions

CREDS = {"device": "r-0123456789", "mqtt": {"host": "127.0.0.1", "port": 1, "username": "r-0123456789",
                                            "password": "x"}}


def _link(seed: int, **options) -> Link:
    return Link(CREDS, lambda *_: None, options=LinkOptions(**options), rng=random.Random(seed))


def test_delays_stay_under_an_exponentially_growing_cap():
    link = _link(1, backoff_base_s=1.0, backoff_cap_s=300.0)
    for attempt in range(1, 15):
        cap = min(300.0, 2 ** attempt)
        assert all(0 <= link._delay(attempt) <= cap for _ in range(200))


def test_a_fleet_reconnects_spread_out_not_in_lockstep():
    # 6,000 devices lose the broker at once; their first retries after a few failures are spread over the window.
    delays = [_link(seed)._delay(5) for seed in range(6000)]
    assert max(delays) - min(delays) > 25, "spread over most of the 32 s window"
    busiest_second = max(sum(1 for d in delays if int(d) == s) for s in range(32))
    assert busiest_second < 6000 / 10, "no single second takes a large share of the fleet"


def test_the_cap_bounds_long_outages():
    link = _link(2, backoff_base_s=1.0, backoff_cap_s=60.0)
    assert max(link._delay(40) for _ in range(500)) <= 60.0
