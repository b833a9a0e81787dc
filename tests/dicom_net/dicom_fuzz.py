"""Seeded mutations of real and generated DICOM datasets, and the oracle that judges what was kept.

The oracle is independent of :mod:`dicom_net.validation`: an object is *readable* when pydicom
reads it with no warning and converts every binary value, and DCMTK's ``dcmdump`` reads it with
exit status 0 and no ``E:`` line (many files per ``dcmdump`` run; a failing batch is split).
The element walk here (:func:`layout`) only serves to aim mutations at length fields.
"""

from __future__ import annotations

import io
import random
import struct
import subprocess
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pydicom
from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)
from pydicom.valuerep import VR

from tests.dicom_net.dicom_objects import part10, small_ct

NATIVE_SYNTAXES = (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian)
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_KNOWN_VRS = {str(vr) for vr in VR}
_BINARY_VRS = {"AT", "FD", "FL", "OD", "OF", "OL", "OV", "OW", "SL", "SS", "SV", "UL", "US", "UV"}


@dataclass(frozen=True)
class Case:
    """One C-STORE as the listener sees it: command UIDs, negotiated syntax and dataset bytes."""

    label: str
    sop_class: str
    sop_instance: str
    transfer_syntax: str
    dataset: bytes


# ------------------------------------------------------------------------------------------ seeds


def part10_meta(data: bytes) -> tuple[dict[int, str], int]:
    """The File Meta group's UI values by element number, and where the dataset starts."""
    values, pos = {}, 132
    while data[pos : pos + 2] == b"\x02\x00":
        element, vr = struct.unpack_from("<H2s", data, pos + 2)
        if vr in (b"OB", b"UN", b"UT", b"SQ"):
            length, start = struct.unpack_from("<I", data, pos + 8)[0], pos + 12
        else:
            length, start = struct.unpack_from("<H", data, pos + 6)[0], pos + 8
        values[element] = data[start : start + length].decode("ascii", "replace").rstrip("\0 ")
        pos = start + length
    return values, pos


def _split(data: bytes) -> tuple[str, str, str, bytes]:
    """(SOP class, SOP instance, transfer syntax, dataset bytes) of a Part-10 file."""
    meta, start = part10_meta(data)
    if not (meta.get(0x0002) and meta.get(0x0003) and meta.get(0x0010)):
        raise ValueError("incomplete file meta")
    return meta[0x0002], meta[0x0003], meta[0x0010], data[start:]


def with_references(ds: Dataset, defined_length: bool) -> Dataset:
    """Add nested sequences (two levels) with defined- or undefined-length items."""
    items = []
    for n in range(2):
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "121311", "DCM", "Localizer"
        code.is_undefined_length_sequence_item = not defined_length
        item = Dataset()
        item.ReferencedSOPClassUID = ds.SOPClassUID
        item.ReferencedSOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{n + 17}"
        item.PurposeOfReferenceCodeSequence = Sequence([code])
        item.PurposeOfReferenceCodeSequence.is_undefined_length = not defined_length
        item.is_undefined_length_sequence_item = not defined_length
        items.append(item)
    ds.ReferencedImageSequence = Sequence(items)
    ds.ReferencedImageSequence.is_undefined_length = not defined_length
    return ds


def _encoded(ds: Dataset, syntax: str) -> bytes:
    ds.file_meta.TransferSyntaxUID = syntax
    return part10(ds)


def generated_seeds() -> list[tuple[str, bytes]]:
    """Small CTs with nested sequences in every native syntax, and an RLE one in 3 fragments."""
    seeds = []
    for syntax in NATIVE_SYNTAXES:
        for defined in (True, False):
            ds = with_references(small_ct(1, rows=16)[0], defined)
            seeds.append((f"ct-{syntax.name}-{'defined' if defined else 'undefined'}", _encoded(ds, syntax)))
    ds = with_references(small_ct(1, rows=16)[0], True)
    ds.compress(RLELossless, encoding_plugin="pydicom")
    frame = pydicom.encaps.get_frame(ds.PixelData, 0)
    ds.PixelData = encapsulate([frame], fragments_per_frame=3, has_bot=True)
    seeds.append(("ct-rle-3-fragments", _encoded(ds, RLELossless)))
    return seeds


def sample_seeds(max_bytes: int = 64 * 1024) -> list[tuple[str, bytes]]:
    """pydicom's and pydicom-data's Part-10 sample files up to ``max_bytes`` (as they are)."""
    roots = [Path(pydicom.data.__file__).parent / "test_files"]
    try:
        import data_store  # the pydicom-data package

        roots.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    seeds = []
    for path in sorted(p for root in roots for p in root.glob("*.dcm")):
        data = path.read_bytes()
        if len(data) <= max_bytes and data[128:132] == b"DICM":
            try:
                _split(data)
            except Exception:
                continue  # no usable file meta: not something a sender could put in a C-STORE
            seeds.append((path.name, data))
    return seeds


def seed_case(name: str, data: bytes) -> Case:
    sop_class, sop_instance, syntax, dataset = _split(data)
    return Case(name, sop_class, sop_instance, syntax, dataset)


def _renamed(case: Case, number: int) -> Case:
    """The same object under a fresh SOP Instance UID of the same length (nothing else moves)."""
    old = case.sop_instance
    if len(old) < 12:
        return case
    new = f"2.25.9{number:0{len(old) - 6}d}"
    dataset = case.dataset
    if case.transfer_syntax == DeflatedExplicitVRLittleEndian:
        inflated = zlib.decompress(dataset, -15).replace(old.encode(), new.encode())
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        dataset = packer.compress(inflated) + packer.flush()
        dataset += b"\0" * (len(dataset) & 1)
    else:
        dataset = dataset.replace(old.encode(), new.encode())
    return replace(case, sop_instance=new, dataset=dataset)


# ---------------------------------------------------------------------------------------- layout


@dataclass
class Layout:
    lengths: list[tuple[int, int, bool]]  # (offset, size 2 or 4, little endian) of every length field
    elements: list[tuple[int, int]]  # (start, end) of top-level elements
    vrs: list[int]  # offsets of explicit VR fields


def layout(data: bytes, little: bool, explicit: bool) -> Layout:
    """Where the length fields of a well-formed dataset are, nested items and fragments included."""
    out = Layout([], [], [])
    e = "<" if little else ">"

    def element(pos: int, explicit: bool) -> tuple[int, bytes | None, int, int]:
        group, elem = struct.unpack_from(e + "HH", data, pos)
        tag = group << 16 | elem
        if group == 0xFFFE or not explicit:
            out.lengths.append((pos + 4, 4, little))
            return tag, None, pos + 8, struct.unpack_from(e + "I", data, pos + 4)[0]
        vr = data[pos + 4 : pos + 6]
        out.vrs.append(pos + 4)
        if vr in _LONG_VRS:
            out.lengths.append((pos + 8, 4, little))
            return tag, vr, pos + 12, struct.unpack_from(e + "I", data, pos + 8)[0]
        out.lengths.append((pos + 6, 2, little))
        return tag, vr, pos + 8, struct.unpack_from(e + "H", data, pos + 6)[0]

    def items(pos: int, end: int | None, explicit: bool) -> int:
        while end is None or pos < end:
            tag, _, value, length = element(pos, explicit)
            if tag == 0xFFFEE0DD:
                return value
            if length == 0xFFFFFFFF:
                pos = dataset(value, None, explicit)
            else:
                if length >= 8 and struct.unpack_from(e + "HH", data, value)[0] != 0xFFFE:
                    dataset(value, value + length, explicit)
                pos = value + length
        return pos

    def dataset(pos: int, end: int | None, explicit: bool, top: bool = False) -> int:
        while pos < (len(data) if end is None else end):
            tag, vr, value, length = element(pos, explicit)
            if tag == 0xFFFEE00D:
                return value
            if length == 0xFFFFFFFF:
                after = items(value, None, explicit and vr != b"UN")
            else:
                after = value + length
                is_sq = vr == b"SQ" or (vr is None and _dictionary_vr(tag) == "SQ")
                if is_sq and length:
                    items(value, after, explicit)
            if top:
                out.elements.append((pos, after))
            pos = after
        return pos

    dataset(0, None, explicit, top=True)
    return out


def _dictionary_vr(tag: int) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def _syntax_layout(syntax: str) -> tuple[bool, bool] | None:
    if syntax == ImplicitVRLittleEndian:
        return True, False
    if syntax == ExplicitVRBigEndian:
        return False, True
    if syntax == DeflatedExplicitVRLittleEndian:
        return None
    return True, True


# -------------------------------------------------------------------------------------- mutations


def _set_length(data: bytearray, offset: int, size: int, little: bool, value: int) -> None:
    fmt = ("<" if little else ">") + ("H" if size == 2 else "I")
    struct.pack_into(fmt, data, offset, value % (1 << (8 * size)))


def mutate(case: Case, rng: random.Random) -> Case:
    """One or two random structural or byte-level mutations of a case."""
    kinds = []
    for _ in range(1 if rng.random() < 0.8 else 2):
        case, kind = _mutate_once(case, rng)
        kinds.append(kind)
    return replace(case, label=f"{case.label} [{'+'.join(kinds)}]")


def _mutate_once(case: Case, rng: random.Random) -> tuple[Case, str]:
    data = bytearray(case.dataset)
    shape = _syntax_layout(case.transfer_syntax)
    try:
        found = layout(bytes(data), *shape) if shape else None
    except (struct.error, IndexError, RecursionError):
        found = None
    kinds = ["flip", "truncate", "trailing", "syntax", "delete", "insert", "uid"]
    if found and found.lengths:
        kinds += ["length"] * 6 + ["duplicate", "vr"]
    kind = rng.choice(kinds)
    if kind == "length":
        offset, size, little = rng.choice(found.lengths)
        fmt = ("<" if little else ">") + ("H" if size == 2 else "I")
        old = struct.unpack_from(fmt, data, offset)[0]
        delta = rng.choice((-8, -4, -2, -1, 1, 2, 4, 8, rng.randint(-300, 300)))
        new = 0xFFFFFFFF if size == 4 and rng.random() < 0.1 else old + delta
        _set_length(data, offset, size, little, new)
    elif kind == "vr" and found.vrs:
        offset = rng.choice(found.vrs)
        data[offset : offset + 2] = rng.choice(
            (b"UN", b"OB", b"SQ", b"US", b"UL", b"LO", b"UI", b"ob", b"\0\0")
        )
    elif kind == "duplicate" and found.elements:
        start, end = rng.choice(found.elements)
        data[end:end] = data[start:end]
    elif kind == "flip" and data:
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] ^= rng.randint(1, 255)
    elif kind == "truncate" and data:
        del data[rng.randrange(len(data)) :]
    elif kind == "trailing":
        data += rng.choice(
            (b"\0" * 8, b"\0\0", bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 16))))
        )
    elif kind == "syntax":
        others = [s for s in NATIVE_SYNTAXES if s != case.transfer_syntax]
        return replace(case, transfer_syntax=rng.choice(others), dataset=bytes(data)), kind
    elif kind == "delete" and data:
        start = rng.randrange(len(data))
        del data[start : start + rng.randint(1, 16)]
    elif kind == "insert":
        start = rng.randrange(len(data) + 1)
        data[start:start] = bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 16)))
    elif kind == "uid":
        data = _damage_a_uid(data, rng)
    return replace(case, dataset=bytes(data)), kind


def _damage_a_uid(data: bytearray, rng: random.Random) -> bytearray:
    """Replace one character of a UID-looking value (same length) with a letter, dot or space."""
    starts = [
        i for i in range(0, len(data) - 12) if data[i : i + 6] == b"1.2.84" or data[i : i + 6] == b"1.2.82"
    ]
    if not starts:
        return data
    at = rng.choice(starts) + rng.randint(0, 10)
    data[at] = ord(rng.choice("A. x-"))
    return data


def mutated_cases(count: int, seed: int = 10, max_bytes: int = 64 * 1024) -> Iterator[Case]:
    """The unmutated seeds (sample files up to ``max_bytes``, each once), then ``count`` mutants,
    each under its own SOP UID."""
    rng = random.Random(seed)
    seeds = [seed_case(name, data) for name, data in generated_seeds() + sample_seeds(max_bytes)]
    number = 0
    for case in seeds:
        number += 1
        yield _renamed(case, number)
    for _ in range(count):
        number += 1
        yield mutate(_renamed(rng.choice(seeds), number), rng)


# ----------------------------------------------------------------------------------------- oracle


def pydicom_problem(data: bytes) -> str | None:
    """Why pydicom cannot read the Part-10 bytes completely, or None.

    A warning while reading is a problem (pydicom then guesses: another VR encoding, a cut-short
    value); so is a binary value whose length does not fit its VR. Text values are not judged.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mode = pydicom_config.settings.reading_validation_mode
        try:
            ds = pydicom.dcmread(io.BytesIO(data))
            pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
            _convert_binary(ds)
            _convert_binary(ds.file_meta)
        except Exception as exc:
            return f"{type(exc).__name__}: {str(exc)[:200]}"
        finally:
            pydicom_config.settings.reading_validation_mode = mode
    return None


def _convert_binary(ds: Dataset) -> None:
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)
        vr = raw.VR or _dictionary_vr(int(tag))
        if vr not in _KNOWN_VRS:
            raise ValueError(f"unknown VR {vr!r} in {tag}")
        if vr == "UN" and not tag.is_private:  # pydicom reads it by its dictionary VR
            vr = ds[tag].VR
        if vr == "SQ":
            for item in ds[tag].value:
                _convert_binary(item)
        elif vr in _BINARY_VRS:
            ds[tag]  # converts the raw value; raises when its length does not fit the VR


def pydicom_tree(data: bytes) -> list[tuple[int, int]]:
    """(depth, tag) of every dataset element as pydicom reads it, items' elements included."""
    tree: list[tuple[int, int]] = []

    def walk(ds: Dataset, depth: int) -> None:
        for tag in sorted(ds.keys()):
            tree.append((depth, int(tag)))
            if (ds.get_item(tag).VR or _dictionary_vr(int(tag))) == "SQ":  # DCMTK keeps a UN value opaque
                for item in ds[tag].value:
                    walk(item, depth + 1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        walk(pydicom.dcmread(io.BytesIO(data)), 0)
    return tree


def dcmdump_problems(
    paths: list[Path], batch: int = 200, trees: dict[Path, list] | None = None
) -> dict[Path, str]:
    """Files that ``dcmdump`` cannot read completely (non-zero exit or an ``E:`` line), with why.

    With ``trees`` (path -> :func:`pydicom_tree`), a file whose elements DCMTK reads otherwise
    (other tags, other nesting) is a problem too: the two toolkits would see different objects.
    """
    problems: dict[Path, str] = {}
    for start in range(0, len(paths), batch):
        _dcmdump_batch(paths[start : start + batch], problems)
    if trees:
        readable = [p for p in paths if p not in problems and p in trees]
        for start in range(0, len(readable), batch):
            chunk = readable[start : start + batch]
            for path, tree in _dcmdump_trees(chunk).items():
                if tree != trees[path]:
                    problems[path] = "DCMTK reads other elements than pydicom"
    return problems


def _dcmdump_trees(paths: list[Path]) -> dict[Path, list[tuple[int, int]]]:
    """(depth, tag) of the dataset elements ``dcmdump`` shows for each file."""
    result = subprocess.run(
        ["dcmdump", "+F", *map(str, paths)], capture_output=True, text=True, errors="replace"
    )
    trees: dict[Path, list[tuple[int, int]]] = {}
    current: list[tuple[int, int]] = []
    in_dataset = False
    for line in result.stdout.splitlines():
        if line.startswith("# dcmdump ("):
            current = trees.setdefault(Path(line.split("): ", 1)[1]), [])
            in_dataset = False
        elif line.startswith("# Dicom-Data-Set"):
            in_dataset = True
        elif in_dataset and line.lstrip().startswith("(") and not line.lstrip().startswith("(fffe,"):
            indent = len(line) - len(line.lstrip())
            group, element = line.lstrip()[1:10].split(",")
            current.append((indent // 4, int(group, 16) << 16 | int(element, 16)))
    return trees


def _dcmdump_batch(paths: list[Path], problems: dict[Path, str]) -> None:
    if not paths:
        return
    result = subprocess.run(["dcmdump", *map(str, paths)], capture_output=True, text=True, errors="replace")
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("E:")]
    if result.returncode == 0 and not errors:
        return
    if len(paths) == 1:
        problems[paths[0]] = f"exit {result.returncode}: {' | '.join(errors)[:300]}"
        return
    half = len(paths) // 2
    _dcmdump_batch(paths[:half], problems)
    _dcmdump_batch(paths[half:], problems)
