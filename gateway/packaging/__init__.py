"""Packaging stage: valid invoices of one partner and syntax become flows.

Pure: names and archive bytes are computed from their inputs, so a resent flow has
the same bytes under the same name. Writing the archive is the pipeline's job.
"""

from gateway.packaging.flow import (
    LAYOUTS,
    build_archive,
    flow_file_name,
    make_flow_id,
    member_name,
    pack_flow,
    plan_flows,
)

__all__ = ["LAYOUTS", "build_archive", "flow_file_name", "make_flow_id", "member_name", "pack_flow", "plan_flows"]
