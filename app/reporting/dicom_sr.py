"""The signed report as a DICOM Comprehensive SR in the shape of TID 2000 (Basic Diagnostic
Imaging Report), built from highdicom content items (highdicom has no TID 2000 class).

Tree: CONTAINER (18748-4 LN "Diagnostic Imaging Report", TID 2000)
  HAS CONCEPT MOD  CODE  121049 "Language of Content Item and Descendants" = en
  HAS OBS CONTEXT  TID 1002 person observer (the signing radiologist)
  CONTAINS CONTAINER 121070 "Findings"    > CONTAINS TEXT 121071 "Finding"
                                             > INFERRED FROM IMAGE 121080 (each key image)
                                             > HAS CONCEPT MOD TID 4019 (when AI-written)
  CONTAINS CONTAINER 121072 "Impressions" > CONTAINS TEXT 121073 "Impression"
                                             > HAS CONCEPT MOD TID 4019 (when AI-written)

A TEXT item whose text holds characters written by the model (accepted by the radiologist) has
the TID 4019 Algorithm Identification (111001 Algorithm Name, 111003 Algorithm Version) of each
model that wrote report text; a report without AI text has none.

The SR goes in the study it reports on, in a new series, with the key images (or, without key
images, the instances passed as evidence) listed as Current Requested Procedure Evidence.
Preliminary reports are unverified and flagged PRELIMINARY; final and corrected ones are
VERIFIED by the radiologist, a correction listing its predecessor documents.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import highdicom as hd
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from app.reporting.hl7_oru import person_components
from app.reporting.report import Report, ReportStatus

REPORT_TITLE = hd.sr.CodedConcept("18748-4", "LN", "Diagnostic Imaging Report")
ENGLISH = hd.sr.CodedConcept("en", "RFC5646", "English")
SR_SERIES_NUMBER = 9901
MANUFACTURER = "Hulu-Med Workstation"


class SrError(ValueError):
    """The report cannot become an SR; the message names what is missing."""


def dicom_person_name(name: str) -> str:
    family, given = person_components(name)
    return f"{family}^{given}" if given else family


def _text_section(
    container_code: hd.sr.CodedConcept,
    item_code: hd.sr.CodedConcept,
    text: str,
    images: Sequence[hd.sr.ImageContentItem] = (),
    algorithms: Sequence[Dataset] = (),
) -> hd.sr.ContainerContentItem:
    section = hd.sr.ContainerContentItem(name=container_code, relationship_type="CONTAINS")
    text_item = hd.sr.TextContentItem(name=item_code, value=text, relationship_type="CONTAINS")
    if images or algorithms:
        text_item.ContentSequence = hd.sr.ContentSequence([*algorithms, *images], is_root=False)
    section.ContentSequence = hd.sr.ContentSequence([text_item], is_root=False)
    return section


def build_report_sr(
    report: Report,
    evidence: Sequence[Dataset],
    *,
    previous_versions: Sequence[Dataset] = (),
    institution_name: str = "",
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    ai_models: Sequence[tuple[str, str]] = (),
) -> hd.sr.ComprehensiveSR:
    """The SR for the report's current signature.

    ``evidence``: headers of the key images (and at least one instance of the study; pixel data
    not needed). ``previous_versions``: earlier SRs of this report (for a correction).
    ``ai_models``: (model id, version) of the models that wrote report text.
    """
    if report.status is ReportStatus.DRAFT or report.amendment_open:
        raise SrError("only a signed report (preliminary, final or corrected) becomes an SR")
    if not evidence:
        raise SrError("evidence: at least one instance of the study is needed (patient and study modules)")
    study_uid = report.study.study_instance_uid
    for ds in evidence:
        if ds.StudyInstanceUID != study_uid:
            raise SrError(f"evidence instance {ds.SOPInstanceUID} belongs to another study")
    by_uid = {ds.SOPInstanceUID: ds for ds in evidence}
    images = []
    for key in report.key_images:
        if key.sop_instance_uid not in by_uid:
            raise SrError(f"key image {key.sop_instance_uid} is missing from the evidence")
        images.append(
            hd.sr.ImageContentItem(
                name=codes.DCM.BestIllustrationOfFinding,
                referenced_sop_class_uid=key.sop_class_uid,
                referenced_sop_instance_uid=key.sop_instance_uid,
                referenced_frame_numbers=key.frame,
                relationship_type="INFERRED FROM",
            )
        )
    radiologist = report.radiologist
    verified = report.status in (ReportStatus.FINAL, ReportStatus.CORRECTED)
    if verified and not radiologist:
        raise SrError("VerifyingObserverName: a final report needs the radiologist who signed")

    root = hd.sr.ContainerContentItem(name=REPORT_TITLE, template_id="2000")
    items: list[Dataset] = [
        hd.sr.CodeContentItem(
            name=codes.DCM.LanguageOfContentItemAndDescendants,
            value=ENGLISH,
            relationship_type="HAS CONCEPT MOD",
        ),
    ]
    signer = report.signatures[-1]
    if radiologist:
        observer = hd.sr.ObserverContext(
            observer_type=codes.DCM.Person,
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                name=dicom_person_name(radiologist), login_name=signer.user or None
            ),
        )
        items.extend(observer)
    models = list(ai_models) or [("model not recorded", "unknown")]

    def algorithms(section: str) -> list[Dataset]:
        if not any(report.ai_lines(section)):
            return []
        return [
            item
            for name, version in models
            for item in hd.sr.AlgorithmIdentification(name, version or "unknown")
        ]

    findings = report.text("findings")
    impression = report.text("impression")
    if findings or images:
        items.append(
            _text_section(
                codes.DCM.Findings,
                codes.DCM.Finding,
                findings or "(see images)",
                images,
                algorithms("findings"),
            )
        )
    if impression:
        items.append(
            _text_section(
                codes.DCM.Impressions, codes.DCM.Impression, impression, (), algorithms("impression")
            )
        )
    root.ContentSequence = hd.sr.ContentSequence(items, is_root=False)

    signed_at = datetime.fromisoformat(report.signatures[-1].at)
    sr = hd.sr.ComprehensiveSR(
        evidence=list(evidence),
        content=root,
        series_instance_uid=series_instance_uid or generate_uid(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=sop_instance_uid or generate_uid(),
        instance_number=len(report.signatures),
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=verified,
        is_verified=verified,
        institution_name=institution_name or None,
        verifying_observer_name=dicom_person_name(radiologist) if verified else None,
        verifying_organization=(institution_name or "Unknown") if verified else None,
        previous_versions=list(previous_versions) or None,
        content_date=signed_at.date(),
        content_time=signed_at.time().replace(tzinfo=None),
        series_description="Report (Hulu-Med Workstation)",
    )
    if verified:
        verifier = sr.VerifyingObserverSequence[0]
        verifier.VerificationDateTime = signed_at.strftime("%Y%m%d%H%M%S")
        if signer.licence:  # the signer's licence/ID number (local coding scheme)
            code = Dataset()
            code.CodeValue, code.CodingSchemeDesignator = signer.licence[:16], "L"
            code.CodeMeaning = "Licence/ID number"
            verifier.VerifyingObserverIdentificationCodeSequence = [code]
    sr.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: names and text may hold any script
    return sr
