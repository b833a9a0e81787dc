"""Before a signature: the checks the exports run, so that a signed report can always be sent.

:func:`check_before_signing` signs a copy of the report and builds what the RIS route builds
(the HL7 ORU, when a RIS is configured; the text checks in any case). A problem becomes a
:class:`ReportError` that says what to fix; the report itself is not touched.
"""

from __future__ import annotations

from app.reporting.hl7_oru import Hl7ValueError, OruR01, escape_text
from app.reporting.report import SECTION_KINDS, Report, ReportError, ReportStatus
from app.reporting.users import User


def check_before_signing(report: Report, status: ReportStatus, signer: User, *, for_ris: bool) -> None:
    """Raise :class:`ReportError` if ``report`` signed ``status`` by ``signer`` could not be sent."""
    for kind in SECTION_KINDS:
        for number, line in enumerate(report.lines(kind.key), start=1):
            try:
                escape_text(line, f"{kind.title} line {number}")
            except Hl7ValueError as exc:
                raise ReportError(f"Not signed: {exc}. Delete that character, then sign again.") from exc
    trial = Report.from_dict(report.to_dict())
    trial.sign(status, signer.xcn_name, user=signer.login, licence=signer.licence)  # the model's rules
    if for_ris:
        try:
            OruR01(trial, control_id="PREFLIGHT")
        except Hl7ValueError as exc:
            raise ReportError(
                f"Not signed: the RIS could not be sent this report ({exc}). "
                "Correct the study data at the modality/RIS or turn the RIS off in Settings > RIS."
            ) from exc
