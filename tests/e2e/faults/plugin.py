"""Lists every fault scenario's account at the end of pytest's terminal summary.

The accounts travel in each report's ``user_properties``, so under pytest-xdist the controller sees them too.
"""

from __future__ import annotations

from tests.e2e.faults.accounting import PROPERTY


class AccountSummary:
    """Collects the accounts from the reports and writes them in a section of the terminal summary."""

    def __init__(self):
        self.lines: list[str] = []

    def pytest_runtest_logreport(self, report):
        if report.when != "call":
            return
        self.lines += [f"{value}  ({report.outcome})" for name, value in report.user_properties if name == PROPERTY]

    def pytest_terminal_summary(self, terminalreporter):
        if self.lines:
            terminalreporter.section("fault accounts")
            for line in self.lines:
                terminalreporter.write_line(line)


def pytest_configure(config):
    config.pluginmanager.register(AccountSummary(), "lessoncast-fault-accounts")
