"""Store stage: the reconciliation database, the single source of truth.

Everything else reads and writes through ``Store.transaction()`` and the named
methods of ``Tx``; no other module builds SQL, touches the session or imports the
mapped rows (``models``): the pipeline reads rows through ``rows``' protocols, the CLI
gets ``views``.
"""

from gateway.store.repo import DuplicateInvoice, Store, Tx

__all__ = ["DuplicateInvoice", "Store", "Tx"]
