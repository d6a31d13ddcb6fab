"""A Jepsen-style account of what a fault scenario did to the data: every item a client sent, what the server (or
the device) stored, and what became of each one.

- sent: distinct items the clients produced (an event id, a media file a device must hold).
- stored: what the store holds for those clients, counted with repeats.
- lost: sent but not stored.
- duplicated: stored more than once (every copy after the first counts).
- unexpected: stored but never sent (a corrupted file kept, an event nobody produced).
- intact: the rows that were already stored before the fault have the same checksum after it.

``Account.check()`` asserts 0 lost, 0 duplicated, 0 unexpected and intact data; ``record`` (the ``fault_account``
fixture) prints the account in the test's output and hands it to ``tests/e2e/faults/plugin.py``, which lists every
account of the run at the end of pytest's terminal summary (also under pytest-xdist).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Hashable, Iterable, Optional

SCALE_ENV = "FAULTS"  # FAULTS=full selects the full scenarios (make test-faults); anything else the short ones


def full_scale() -> bool:
    """Whether this run asks for the full fault scenarios."""
    return os.environ.get(SCALE_ENV, "").lower() == "full"


def scaled(short, full):
    """SHORT in `make test`, FULL in `make test-faults`."""
    return full if full_scale() else short


def rows_checksum(rows: Iterable[Iterable]) -> str:
    """A checksum of ROWS independent of their order: sha256 over the sorted JSON of each row."""
    digest = hashlib.sha256()
    for line in sorted(json.dumps(list(row), sort_keys=True, default=str) for row in rows):
        digest.update(line.encode())
        digest.update(b"\n")
    return digest.hexdigest()


@dataclass
class Account:
    """What happened to every item of one scenario."""

    scenario: str
    sent: set[Hashable]
    stored: Counter
    intact_before: Optional[str] = None  # checksum of the rows stored before the fault...
    intact_after: Optional[str] = None  # ...and of the same rows after it
    figures: dict = field(default_factory=dict)  # what else the scenario measured (reconnect spread, resends...)

    @classmethod
    def of(cls, scenario: str, sent: Iterable[Hashable], stored: Iterable[Hashable], **kwargs) -> "Account":
        return cls(scenario, set(sent), Counter(stored), **kwargs)

    @property
    def lost(self) -> set:
        return self.sent - set(self.stored)

    @property
    def duplicated(self) -> int:
        return sum(n - 1 for n in self.stored.values() if n > 1)

    @property
    def unexpected(self) -> set:
        return set(self.stored) - self.sent

    @property
    def intact(self) -> Optional[bool]:
        if self.intact_before is None:
            return None
        return self.intact_before == self.intact_after

    def line(self) -> str:
        scale = "full" if full_scale() else "short"
        intact = {None: "n/a", True: "yes", False: "NO"}[self.intact]
        extra = "".join(f" {k}={v}" for k, v in self.figures.items())
        return (f"{self.scenario} [{scale}]: sent={len(self.sent)} stored={sum(self.stored.values())} "
                f"lost={len(self.lost)} duplicated={self.duplicated} unexpected={len(self.unexpected)} "
                f"intact={intact}{extra}")

    def check(self) -> None:
        problems = []
        if self.lost:
            problems.append(f"{len(self.lost)} lost, e.g. {sorted(map(str, self.lost))[:5]}")
        if self.duplicated:
            dups = [k for k, n in self.stored.items() if n > 1]
            problems.append(f"{self.duplicated} duplicated, e.g. {sorted(map(str, dups))[:5]}")
        if self.unexpected:
            problems.append(f"{len(self.unexpected)} unexpected, e.g. {sorted(map(str, self.unexpected))[:5]}")
        if self.intact is False:
            problems.append("rows stored before the fault changed")
        if not self.sent:
            problems.append("nothing was sent: the scenario proved nothing")
        assert not problems, f"{self.line()}\n" + "\n".join(problems)


PROPERTY = "fault_account"


def record(request, account: Account) -> None:
    """Print ACCOUNT, attach it to the test's report for the terminal summary, and check it."""
    text = account.line()
    print(f"\nACCOUNT {text}")
    request.node.user_properties.append((PROPERTY, text))
    account.check()
