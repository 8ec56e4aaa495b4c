"""What one pass did, and the exit code `gateway run --once` gives for it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

#: Exit codes of `gateway run --once` (README, "Exit codes"); the most urgent wins.
EXIT_FLOW_FAILED = 3
EXIT_CHANNEL_HALTED = 4
EXIT_REPORT_PICKUP_FAILED = 5


@dataclass
class PassSummary:
    """What one pass did, for the CLI's table and for tests."""

    files: Counter[str] = field(default_factory=Counter)
    invoices: Counter[str] = field(default_factory=Counter)
    flows_packed: list[str] = field(default_factory=list)
    flows_sent: list[str] = field(default_factory=list)
    #: Flows that became failed in this pass: the operator fixes the cause, then `flows retry`.
    flows_failed: list[str] = field(default_factory=list)
    reports: Counter[str] = field(default_factory=Counter)
    #: Flows found overdue in this pass (each alerted once).
    reports_overdue: list[str] = field(default_factory=list)
    #: Channel → why its validator cannot run: the channel took in and sent nothing.
    channels_halted: dict[str, str] = field(default_factory=dict)
    #: Partner → why its returned files could not be listed or fetched (tried again next pass).
    reports_pickup_failed: dict[str, str] = field(default_factory=dict)

    def exit_code(self) -> int:
        """0 when nothing needs the operator; else the most urgent problem's code: a failed
        flow (invoices not delivered) before a halted channel (files wait in its watch
        directory) before a failed pickup (often transient).

        >>> PassSummary().exit_code()
        0
        >>> PassSummary(reports_pickup_failed={"chorus": "refused"}, channels_halted={"erp": "no rules"}).exit_code()
        4
        >>> PassSummary(flows_failed=["AAA1231100000000000000001"], channels_halted={"erp": "no rules"}).exit_code()
        3
        """
        if self.flows_failed:
            return EXIT_FLOW_FAILED
        if self.channels_halted:
            return EXIT_CHANNEL_HALTED
        if self.reports_pickup_failed:
            return EXIT_REPORT_PICKUP_FAILED
        return 0
