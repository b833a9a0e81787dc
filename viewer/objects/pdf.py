"""Encapsulated PDF documents: the PDF bytes, and its pages as images (pypdfium2, offline)."""

from __future__ import annotations

import numpy as np
from pydicom import Dataset


def encapsulated_pdf(ds: Dataset) -> bytes:
    """The document's PDF bytes (the pad byte DICOM adds to odd lengths removed)."""
    if str(ds.get("MIMETypeOfEncapsulatedDocument", "")).lower() != "application/pdf":
        raise ValueError("this instance does not encapsulate a PDF")
    data = bytes(ds.EncapsulatedDocument)
    length = ds.get("EncapsulatedDocumentLength")
    if length is not None and 0 < int(length) <= len(data):
        data = data[: int(length)]
    elif data.endswith(b"\0"):
        data = data[:-1]
    if not data.startswith(b"%PDF"):
        raise ValueError("the encapsulated document is not a PDF file")
    return data


def render_pages(pdf: bytes, *, dpi: float = 110.0, max_pages: int = 50) -> list[np.ndarray]:
    """RGB images (rows, cols, 3) of the first ``max_pages`` pages."""
    import pypdfium2

    document = pypdfium2.PdfDocument(pdf)
    try:
        pages = []
        for index in range(min(len(document), max_pages)):
            bitmap = document[index].render(scale=dpi / 72.0)
            pages.append(np.asarray(bitmap.to_pil().convert("RGB")))
        return pages
    finally:
        document.close()
