#!/usr/bin/env python3
"""Build an offline install bundle of the workstation on a machine WITH internet access.

The bundle is a folder (optionally also a ``.tar``) that a hospital IT admin copies to a
workstation without network access and installs with ``install_offline.sh``:

    wheels/                 every wheel needed, the project's own included (no sdists)
    requirements.lock       dependencies pinned to exact versions with their wheels' sha256
    project.lock            the project's own wheel, pinned the same way
    debian-packages.txt     Debian packages the workstation needs (listed, never downloaded)
    install_offline.sh      the installer, README.md its procedure
    model/                  optional checkpoint (safetensors only) with its own SHA256SUMS
    VERSION                 KEY=value lines: project, version, Python, platform, torch choice
    SHA256SUMS              sha256 of every other file in the bundle (``sha256sum -c`` format)

Run it with the Python minor version the workstation has (wheels are resolved for the running
interpreter and platform). Uses only the standard library and pip.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path

INSTALLER_DIR = Path(__file__).resolve().parent
REPO_ROOT = INSTALLER_DIR.parent
MANIFEST = "SHA256SUMS"
# Files that can execute code when a checkpoint is loaded or opened (pickles, scripts, binaries).
REFUSED_MODEL_SUFFIXES = frozenset(
    {
        ".bin",
        ".pt",
        ".pth",
        ".ckpt",
        ".pkl",
        ".pickle",
        ".joblib",
        ".npy",
        ".npz",
        ".h5",
        ".msgpack",
        ".py",
        ".pyc",
        ".pyo",
        ".so",
        ".dll",
        ".dylib",
        ".exe",
        ".sh",
    }
)
SOURCE_IGNORED = (
    ".git",
    ".venv",
    "venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
)
_WHEEL_RE = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")
_CHUNK = 8 << 20


class BundleError(Exception):
    """A problem that stops the build; the message names the file and the fix."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def normalize_name(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_wheel_name(filename: str) -> tuple[str, str]:
    """(normalized project name, version) from a wheel file name."""
    match = _WHEEL_RE.match(filename)
    if not match:
        raise BundleError(f"{filename}: not a valid wheel file name")
    return normalize_name(match["name"]), match["version"]


def check_model_folder(folder: Path) -> list[Path]:
    """Files of a checkpoint folder (relative), refusing code/pickle files, links and no safetensors."""
    if not folder.is_dir():
        raise BundleError(f"{folder}: model folder not found")
    files: list[Path] = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_symlink():
            raise BundleError(f"{path}: symbolic links are refused in a model folder; copy the real file")
        if path.is_dir():
            continue
        if path.suffix.lower() in REFUSED_MODEL_SUFFIXES:
            raise BundleError(
                f"{path}: refused in a model folder ({path.suffix} files can run code when "
                "loaded); only safetensors weights are shipped - remove it"
            )
        files.append(rel)
    if not any(f.suffix == ".safetensors" for f in files):
        raise BundleError(f"{folder}: no *.safetensors weights in the model folder")
    return files


def read_manifest(path: Path) -> dict[str, str]:
    """{relative file: sha256} from a ``sha256sum`` format file."""
    entries: dict[str, str] = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            raise BundleError(f"{path}: line {line_no} is not '<sha256>  <file>'")
        entries[parts[1].lstrip("*").strip()] = parts[0].lower()
    return entries


def write_manifest(folder: Path, files: list[Path], target: Path) -> None:
    """Write ``target`` listing the sha256 of ``files`` (relative to ``folder``), atomically."""
    lines = [f"{sha256_file(folder / rel)}  {rel.as_posix()}\n" for rel in sorted(files)]
    write_text_atomic(target, "".join(lines))


def write_text_atomic(target: Path, text: str) -> None:
    tmp = target.with_name(target.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)


def copy_model(source: Path, dest: Path) -> int:
    """Copy a checked checkpoint into the bundle with its own SHA256SUMS; return its file count."""
    files = check_model_folder(source)
    source_sums = source / MANIFEST
    if source_sums.is_file():  # the publisher's checksums: the copy must match them
        for rel, expected in read_manifest(source_sums).items():
            if not (source / rel).is_file():
                raise BundleError(f"{source / rel}: listed in {source_sums} but missing")
            if sha256_file(source / rel) != expected:
                raise BundleError(f"{source / rel}: sha256 does not match {source_sums}; download it again")
    payload = [f for f in files if f.as_posix() != MANIFEST]
    for rel in payload:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, dest / rel)
    write_manifest(dest, payload, dest / MANIFEST)
    return len(payload)


def run_pip(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    print("+", " ".join(cmd), flush=True)
    result = subprocess.run(cmd, check=False)
    if result.returncode != 0:
        raise BundleError(f"pip {args[0]} failed (exit {result.returncode}); see pip's output above")


def torch_constraint(choice: str, version: str | None) -> str | None:
    """The pip constraint line selecting the torch build the bundle should carry."""
    if choice == "resolver":
        return None
    if not version:
        raise BundleError("--torch cpu/cuda needs --torch-version (e.g. 2.13.0)")
    if choice == "cpu":
        return f"torch=={version}+cpu"
    return f"torch=={version}"  # PyPI's Linux torch wheels are CUDA builds


def check_torch_build(choice: str, pin: str) -> None:
    """Refuse a bundle whose torch is not the build asked for (a local +cpu wheel satisfies ==X too)."""
    if choice != "resolver" and pin == "none":
        raise BundleError(f"--torch {choice}: torch is not among the project's dependencies")
    local = pin.partition("+")[2]
    if choice == "cpu" and local != "cpu":
        raise BundleError(f"{pin}: resolved instead of a CPU build; check --torch-index")
    if choice == "cuda" and local and not local.startswith("cu"):
        raise BundleError(
            f"{pin}: resolved instead of a CUDA build; a local wheel folder or index offers it "
            "first (remove it from pip's find-links, or pass --torch-index for a cuXXX index)"
        )


def build_bundle(args: argparse.Namespace) -> Path:
    out: Path = args.out.resolve()
    if out.exists():
        raise BundleError(f"{out}: already exists; choose a new output folder or remove it")
    if args.project.resolve() in out.parents:
        raise BundleError(
            f"{out}: inside the project folder, which is copied for the build; choose a folder outside it"
        )
    constraint = torch_constraint(args.torch, args.torch_version)
    if args.model:
        check_model_folder(args.model)  # refuse before spending minutes on downloads
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    try:
        fill_bundle(partial, args, constraint)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    os.replace(partial, out)
    return out


def fill_bundle(partial: Path, args: argparse.Namespace, constraint: str | None) -> None:
    """Download, build, lock and hash everything into ``partial``."""
    wheels = partial / "wheels"
    wheels.mkdir(parents=True)
    index_args: list[str] = []
    for link in args.find_links:
        index_args += ["--find-links", str(link.resolve())]
    if args.no_index:
        index_args.append("--no-index")
    build_args = ["--no-build-isolation"] if args.no_build_isolation else []

    with tempfile.TemporaryDirectory(prefix="bundle-build-") as tmp_name:
        tmp = Path(tmp_name)
        # Build from a clean copy: an in-tree build leaves build/ behind, and a stale build/lib
        # can put deleted modules into the wheel.
        source = tmp / "source"
        shutil.copytree(args.project.resolve(), source, ignore=shutil.ignore_patterns(*SOURCE_IGNORED))
        run_pip(["wheel", "--no-deps", *build_args, *index_args, "-w", str(tmp / "project"), str(source)])
        (project_wheel,) = (tmp / "project").glob("*.whl")
        project_name, project_version = parse_wheel_name(project_wheel.name)
        shutil.copy2(project_wheel, wheels / project_wheel.name)

        download_args = list(index_args)
        torch_index = args.torch_index
        if torch_index and not args.no_index:
            download_args += ["--extra-index-url", torch_index]
        if constraint:
            (tmp / "constraints.txt").write_text(constraint + "\n", encoding="utf-8")
            download_args += ["-c", str(tmp / "constraints.txt")]
        extras = f"[{args.extras}]" if args.extras else ""
        requirement = f"{project_name}{extras} @ {project_wheel.resolve().as_uri()}"
        run_pip(["download", "--dest", str(tmp / "download"), *download_args, requirement])
        for item in sorted((tmp / "download").iterdir()):
            if item.name.endswith(".whl"):
                if parse_wheel_name(item.name)[0] != project_name:
                    shutil.move(str(item), wheels / item.name)
            else:  # an sdist: build it here, so the workstation never compiles or needs build tools
                run_pip(["wheel", "--no-deps", *build_args, *index_args, "-w", str(wheels), str(item)])

    locked = write_locks(partial, project_name)
    torch_line = next((line.split()[0] for line in locked if line.startswith("torch==")), "none")
    check_torch_build(args.torch, torch_line)
    shutil.copy2(INSTALLER_DIR / "debian-packages.txt", partial / "debian-packages.txt")
    shutil.copy2(INSTALLER_DIR / "install_offline.sh", partial / "install_offline.sh")
    shutil.copy2(INSTALLER_DIR / "README.md", partial / "README.md")
    model_files = copy_model(args.model.resolve(), partial / "model") if args.model else 0
    version_text = "".join(
        f"{k}={v}\n"
        for k, v in {
            "PROJECT": project_name,
            "PROJECT_VERSION": project_version,
            "PYTHON_VERSION": f"{sys.version_info.major}.{sys.version_info.minor}",
            "PLATFORM": sysconfig.get_platform(),
            "TORCH": f"{args.torch} {torch_line}",
            "MODEL_FILES": model_files,
            "BUILT_UTC": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "BUILT_ON": f"{platform.node()} python {platform.python_version()}",
        }.items()
    )
    write_text_atomic(partial / "VERSION", version_text)
    everything = [p.relative_to(partial) for p in partial.rglob("*") if p.is_file()]
    write_manifest(partial, everything, partial / MANIFEST)


def write_locks(bundle: Path, project_name: str) -> list[str]:
    """Write requirements.lock (dependencies) and project.lock; return the dependency lines."""
    pins: dict[str, tuple[str, list[str]]] = {}
    for wheel in sorted((bundle / "wheels").glob("*.whl")):
        name, version = parse_wheel_name(wheel.name)
        known_version, hashes = pins.setdefault(name, (version, []))
        if known_version != version:
            raise BundleError(f"{wheel.name}: two versions of {name} in the wheelhouse ({known_version})")
        hashes.append(sha256_file(wheel))

    def line(name: str) -> str:
        version, hashes = pins[name]
        return f"{name}=={version} " + " ".join(f"--hash=sha256:{h}" for h in hashes)

    header = "# Generated by installer/build_offline_bundle.py; install with --no-index --require-hashes\n"
    dependency_lines = [line(name) for name in sorted(pins) if name != project_name]
    write_text_atomic(bundle / "requirements.lock", header + "".join(f"{x}\n" for x in dependency_lines))
    write_text_atomic(bundle / "project.lock", header + line(project_name) + "\n")
    return dependency_lines


def write_tar(folder: Path) -> Path:
    """``<folder>.tar`` holding the bundle folder (wheels are compressed already), atomically."""
    target = folder.with_name(folder.name + ".tar")
    tmp = target.with_name(target.name + ".tmp")
    with tarfile.open(tmp, "w") as tar:
        tar.add(folder, arcname=folder.name)
    with tmp.open("rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    return target


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="bundle folder to create (must not exist)")
    p.add_argument(
        "--project", type=Path, default=REPO_ROOT, help="project to bundle (default: this checkout)"
    )
    p.add_argument("--extras", default="", help="extras of the project to include, e.g. 'test'")
    p.add_argument(
        "--torch",
        choices=("resolver", "cpu", "cuda"),
        default="resolver",
        help="torch build: cpu (+cpu wheel), cuda (PyPI's CUDA wheel) or whatever pip resolves",
    )
    p.add_argument("--torch-version", help="torch version for --torch cpu/cuda, e.g. 2.13.0")
    p.add_argument(
        "--torch-index",
        help="extra index that serves the chosen torch build (default: none, pip's own indexes)",
    )
    p.add_argument("--model", type=Path, help="checkpoint folder to include (safetensors only)")
    p.add_argument("--tar", action="store_true", help="also write <out>.tar")
    p.add_argument("--find-links", type=Path, action="append", default=[], help="extra local wheel folder")
    p.add_argument("--no-index", action="store_true", help="resolve from --find-links only (no index)")
    p.add_argument(
        "--no-build-isolation",
        action="store_true",
        help="build wheels with the running Python's setuptools (no build-time download)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        out = build_bundle(args)
    except BundleError as exc:
        print(f"REFUSED: {exc}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"bundle: {out} ({size / 1e6:.1f} MB)")
    print(
        f"manifest sha256 (record it, pass it to install_offline.sh --manifest-sha256): "
        f"{sha256_file(out / MANIFEST)}"
    )
    if args.tar:
        tar = write_tar(out)
        print(f"tar: {tar} sha256 {sha256_file(tar)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
