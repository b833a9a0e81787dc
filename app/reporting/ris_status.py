"""Which result status the RIS must get: never a correction (C) for a final it never received.

A corrected report goes to a RIS as a correction only when an F (or C) of the same report is
delivered there or still on its way (pending/sending, delivered first: the outbox keeps order);
otherwise, e.g. when the final could not be sent and was amended, the correction is the RIS's
first final report and is sent as F.
"""

from __future__ import annotations

from app.reporting.outbox import Outbox, State
from app.reporting.report import Report, ReportStatus

_ON_ITS_WAY = (State.PENDING, State.SENDING, State.DELIVERED)


def first_final_status(outbox: Outbox, report: Report, destination: str) -> str | None:
    """ "F" when a corrected report's RIS never got (and will not get) a final; else None."""
    if report.status is not ReportStatus.CORRECTED:
        return None
    for message in outbox.messages(report.report_id):
        if (
            message.kind == "hl7"
            and message.destination == destination
            and message.result_status in ("F", "C")
            and message.state in _ON_ITS_WAY
        ):
            return None
    return "F"
