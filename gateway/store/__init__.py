"""Store stage: the reconciliation database, the single source of truth.

Everything else reads and writes through ``Store.transaction()`` and the named
methods of ``Tx``; no other module builds SQL.
"""

from gateway.store.repo import DuplicateInvoice, Store, Tx

__all__ = ["DuplicateInvoice", "Store", "Tx"]
