"""Sandbox stage: the built-in Chorus Pro simulator, for rehearsals and tests.

A partner reached through the local transport: the gateway deposits flows in
``<root>/inbox``; ``run_sandbox_once`` answers each with an integration report and a
lifecycle file in ``<root>/outbox``, as Chorus Pro would (see docs/sandbox.md).

- ``simulator``: the decisions, pure (``process_flow``, ``SandboxSettings``);
- ``cppstatut``: the ``CPPStatut`` writers;
- ``runner``: the files (inbox → outbox, received/, state.json);
- ``directory``: the small built-in directory of public structures.

It simulates Chorus Pro's documented checks only; it is not Chorus Pro.
"""

from __future__ import annotations

from gateway.sandbox.cppstatut import (
    flow_error_line,
    flow_status_document,
    invoice_error_line,
    invoice_status_document,
)
from gateway.sandbox.directory import SAMPLE_PUBLIC_STRUCTURES, UNLISTED_BUYER_SIRET, PublicStructure
from gateway.sandbox.runner import run_sandbox_once
from gateway.sandbox.simulator import (
    IntegratedInvoice,
    RejectedInvoice,
    SandboxOutcome,
    SandboxSettings,
    process_flow,
)

__all__ = [
    "SAMPLE_PUBLIC_STRUCTURES",
    "UNLISTED_BUYER_SIRET",
    "IntegratedInvoice",
    "PublicStructure",
    "RejectedInvoice",
    "SandboxOutcome",
    "SandboxSettings",
    "flow_error_line",
    "flow_status_document",
    "invoice_error_line",
    "invoice_status_document",
    "process_flow",
    "run_sandbox_once",
]
