"""Transport stage: deposit flows at a partner and pick up what it sends back.

Every transport writes under a temporary name and renames, so that a receiver never
sees a partial file. Only modules of this package touch the network or a partner's
directories.
"""

from gateway.transport.base import Delivery, Transport, open_transport

__all__ = ["Delivery", "Transport", "open_transport"]
