"""Presentation contexts the SCU proposes: query models, and storage classes for C-GET.

An association carries at most 128 presentation contexts, and C-GET needs one per SOP class we
want to receive (with SCP role selection), so the storage set is a deliberate choice: the image
classes a reading room meets (CT, MR, PET, NM, CR/DX/MG, US, XA/RF, SC, VL, ophthalmic, RT),
their video forms, and the non-image objects a report needs (SR, KOS, PDF, presentation states,
segmentations). Each is offered with uncompressed and the common compressed transfer syntaxes so
the PACS can send what it stores without transcoding.
"""

from __future__ import annotations

from pydicom.uid import (
    HEVCMP51,
    JPEG2000,
    MPEG2MPHL,
    MPEG2MPML,
    MPEG4HP41,
    MPEG4HP41BD,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import build_context, build_role
from pynetdicom import sop_class as sc
from pynetdicom.presentation import PresentationContext

MAX_CONTEXTS = 128

UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
IMAGE_SYNTAXES: tuple[UID, ...] = (
    *UNCOMPRESSED,
    JPEGLosslessSV1,
    JPEGLossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    DeflatedExplicitVRLittleEndian,
)
VIDEO_SYNTAXES: tuple[UID, ...] = (MPEG2MPML, MPEG2MPHL, MPEG4HP41, MPEG4HP41BD, HEVCMP51, *UNCOMPRESSED)
NON_IMAGE_SYNTAXES: tuple[UID, ...] = (*UNCOMPRESSED, DeflatedExplicitVRLittleEndian)

IMAGE_STORAGE: tuple[str, ...] = (
    sc.CTImageStorage,
    sc.EnhancedCTImageStorage,
    sc.LegacyConvertedEnhancedCTImageStorage,
    sc.MRImageStorage,
    sc.EnhancedMRImageStorage,
    sc.EnhancedMRColorImageStorage,
    sc.LegacyConvertedEnhancedMRImageStorage,
    sc.MRSpectroscopyStorage,
    sc.PositronEmissionTomographyImageStorage,
    sc.EnhancedPETImageStorage,
    sc.LegacyConvertedEnhancedPETImageStorage,
    sc.NuclearMedicineImageStorage,
    sc.ComputedRadiographyImageStorage,
    sc.DigitalXRayImageStorageForPresentation,
    sc.DigitalXRayImageStorageForProcessing,
    sc.DigitalMammographyXRayImageStorageForPresentation,
    sc.DigitalMammographyXRayImageStorageForProcessing,
    sc.DigitalIntraOralXRayImageStorageForPresentation,
    sc.BreastTomosynthesisImageStorage,
    sc.BreastProjectionXRayImageStorageForPresentation,
    sc.XRayAngiographicImageStorage,
    sc.EnhancedXAImageStorage,
    sc.XRayRadiofluoroscopicImageStorage,
    sc.EnhancedXRFImageStorage,
    sc.XRay3DAngiographicImageStorage,
    sc.XRay3DCraniofacialImageStorage,
    sc.UltrasoundImageStorage,
    sc.UltrasoundMultiFrameImageStorage,
    sc.EnhancedUSVolumeStorage,
    sc.SecondaryCaptureImageStorage,
    sc.MultiFrameSingleBitSecondaryCaptureImageStorage,
    sc.MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    sc.MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    sc.MultiFrameTrueColorSecondaryCaptureImageStorage,
    sc.VLEndoscopicImageStorage,
    sc.VLMicroscopicImageStorage,
    sc.VLSlideCoordinatesMicroscopicImageStorage,
    sc.VLPhotographicImageStorage,
    sc.VLWholeSlideMicroscopyImageStorage,
    sc.OphthalmicPhotography8BitImageStorage,
    sc.OphthalmicPhotography16BitImageStorage,
    sc.OphthalmicTomographyImageStorage,
    sc.WideFieldOphthalmicPhotographyStereographicProjectionImageStorage,
    sc.RTImageStorage,
    sc.RTDoseStorage,
    sc.ParametricMapStorage,
    sc.SegmentationStorage,
)
VIDEO_STORAGE: tuple[str, ...] = (
    sc.VideoEndoscopicImageStorage,
    sc.VideoMicroscopicImageStorage,
    sc.VideoPhotographicImageStorage,
)
NON_IMAGE_STORAGE: tuple[str, ...] = (
    sc.BasicTextSRStorage,
    sc.EnhancedSRStorage,
    sc.ComprehensiveSRStorage,
    sc.Comprehensive3DSRStorage,
    sc.KeyObjectSelectionDocumentStorage,
    sc.XRayRadiationDoseSRStorage,
    sc.MammographyCADSRStorage,
    sc.ChestCADSRStorage,
    sc.EncapsulatedPDFStorage,
    sc.EncapsulatedCDAStorage,
    sc.GrayscaleSoftcopyPresentationStateStorage,
    sc.ColorSoftcopyPresentationStateStorage,
    sc.RTStructureSetStorage,
    sc.RTPlanStorage,
    sc.SpatialRegistrationStorage,
    sc.DeformableSpatialRegistrationStorage,
    sc.RawDataStorage,
)


def storage_contexts_for_get(query_models: tuple[str, ...]) -> tuple[list[PresentationContext], list]:
    """Contexts and SCP role items for a C-GET association using ``query_models``."""
    contexts = [build_context(m) for m in query_models]
    groups = (
        (IMAGE_STORAGE, IMAGE_SYNTAXES),
        (VIDEO_STORAGE, VIDEO_SYNTAXES),
        (NON_IMAGE_STORAGE, NON_IMAGE_SYNTAXES),
    )
    roles = []
    for classes, syntaxes in groups:
        for uid in classes:
            contexts.append(build_context(uid, list(syntaxes)))
            roles.append(build_role(uid, scp_role=True))
    if len(contexts) > MAX_CONTEXTS:  # a programming error in the lists above
        raise AssertionError(f"{len(contexts)} presentation contexts exceed the limit of {MAX_CONTEXTS}")
    return contexts, roles


def storage_contexts_for_send(pairs: set[tuple[str, str]]) -> list[list[PresentationContext]]:
    """Contexts to send instances of the given (SOP class, transfer syntax) pairs.

    One context per pair, offering the file's own transfer syntax (pynetdicom sends files'
    bytes as they are); uncompressed files also offer the other uncompressed syntax, which
    pynetdicom converts to. Returned in batches of at most 128, one association each.
    """
    contexts = []
    for sop_class, syntax in sorted(pairs):
        syntaxes = [syntax]
        if UID(syntax) in UNCOMPRESSED:
            syntaxes += [s for s in UNCOMPRESSED if s != syntax]
        contexts.append(build_context(sop_class, syntaxes))
    return [contexts[i : i + MAX_CONTEXTS] for i in range(0, len(contexts), MAX_CONTEXTS)] or [[]]
