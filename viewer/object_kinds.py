"""What a DICOM object is, from its SOP Class UID: an image for the image loader, or one of the
objects that come with a study (reports, key objects, presentation states, segmentations, RT
structure sets, encapsulated PDFs) that have their own viewers and must never reach the loader.

The SOP Class decides, not the presence of Pixel Data: a SEG carries (1-bit) Pixel Data, and a
private or future image class is still an image. Standard storage classes not listed here are
images; only a private class is judged by whether it holds pixels. RT Dose and RT Image are
images (the loader reads dose grids).
"""

from __future__ import annotations

from typing import Literal

ObjectKind = Literal["image", "sr", "kos", "pr", "seg", "rtstruct", "pdf", "other-nonimage"]

KIND_LABELS: dict[str, str] = {
    "image": "image",
    "sr": "structured report (SR)",
    "kos": "key object selection (KOS)",
    "pr": "presentation state (PR)",
    "seg": "segmentation (SEG)",
    "rtstruct": "RT structure set (RTSTRUCT)",
    "pdf": "encapsulated PDF",
    "other-nonimage": "non-image object",
}

_STORAGE = "1.2.840.10008.5.1.4.1.1."
_KOS = _STORAGE + "88.59"
_SR_PREFIX = _STORAGE + "88."  # every SR class, and KOS (checked first)
_PR_PREFIX = _STORAGE + "11."  # grayscale/colour/pseudo-colour/blending/planar MPR/volume rendering PS
_SEG = {_STORAGE + "66.4", _STORAGE + "66.5", _STORAGE + "66.7"}  # Segmentation, Surface, Label Map
_RTSTRUCT = _STORAGE + "481.3"
_RT_IMAGES = {_STORAGE + "481.1", _STORAGE + "481.2"}  # RT Image, RT Dose
_RT_PREFIX = _STORAGE + "481."  # plans, treatment records, second-generation RT objects
_PDF = _STORAGE + "104.1"
_NON_IMAGE_PREFIXES = (
    _STORAGE + "104.",  # encapsulated CDA, STL, OBJ, MTL
    _STORAGE + "9.",  # waveforms (ECG, audio, haemodynamic ...)
    _STORAGE + "66",  # raw data, spatial registration and fiducials, tractography
    _STORAGE + "67",  # real world value mapping
    _STORAGE + "68.",  # surface scan mesh / point cloud
    _STORAGE + "200.",  # defined / performed procedure protocols
    "1.2.840.10008.5.1.4.38.",  # hanging protocols
    "1.2.840.10008.5.1.4.39.",  # colour palettes
    "1.2.840.10008.5.1.4.43.",  # generic implant templates
    "1.2.840.10008.5.1.4.44.",
    "1.2.840.10008.5.1.4.45.",
    "1.2.840.10008.1.3.10",  # Media Storage Directory (DICOMDIR)
)
_NON_IMAGE = {
    _STORAGE + "4.2",  # MR Spectroscopy
    _STORAGE + "78.1",  # lensometry, refraction, visual acuity ... measurements
    _STORAGE + "78.2",
    _STORAGE + "78.3",
    _STORAGE + "78.4",
    _STORAGE + "78.5",
    _STORAGE + "78.6",
    _STORAGE + "78.7",
    _STORAGE + "78.8",
    _STORAGE + "79.1",  # macular grid thickness and volume report
    _STORAGE + "80.1",  # ophthalmic visual field static perimetry measurements
}


def object_kind(sop_class_uid: str, has_pixels: bool = True) -> ObjectKind:
    """The kind of object a SOP Class UID stands for.

    ``has_pixels`` (the object holds Rows and Pixel Data) only decides for a class outside the
    standard storage classes (private ones): with pixels it is treated as an image."""
    uid = sop_class_uid.strip("\0 ")
    if uid == _KOS:
        return "kos"
    if uid.startswith(_SR_PREFIX):
        return "sr"
    if uid.startswith(_PR_PREFIX):
        return "pr"
    if uid in _SEG:
        return "seg"
    if uid == _RTSTRUCT:
        return "rtstruct"
    if uid == _PDF:
        return "pdf"
    if uid in _RT_IMAGES:
        return "image"
    if uid.startswith(_RT_PREFIX) or uid in _NON_IMAGE or uid.startswith(_NON_IMAGE_PREFIXES):
        return "other-nonimage"
    if uid.startswith(_STORAGE):
        return "image"  # every other standard storage class holds images
    return "image" if has_pixels else "other-nonimage"


def is_image(sop_class_uid: str, has_pixels: bool = True) -> bool:
    """True when the object belongs in the image loader."""
    return object_kind(sop_class_uid, has_pixels) == "image"
