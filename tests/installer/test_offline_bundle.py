"""The offline install path, run exactly as an admin would: build a bundle, install it with no network.

A tiny real project (``tiny-app`` depending on ``tinydep==1.0``, console script
``hulu-workstation``) is built in a temp folder, so neither building nor installing needs an index.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "installer" / "build_offline_bundle.py"
INSTALL = REPO / "installer" / "install_offline.sh"
TINYDEP_WHEEL = "tinydep-1.0-py3-none-any.whl"
PROJECT_WHEEL = "tiny_app-2.3-py3-none-any.whl"
PYPROJECT = """[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"
[project]
name = "{name}"
version = "{version}"
dependencies = {deps}
{scripts}
"""
CONNECT_OUT = "import socket; socket.create_connection(('1.1.1.1', 443), timeout=3)"
APP_CODE = """import os, sys
def main():
    import tinydep
    print("tinydep", tinydep.VALUE, "HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE"),
          "TRANSFORMERS_OFFLINE", os.environ.get("TRANSFORMERS_OFFLINE"), "args", sys.argv[1:])
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def clean_env() -> dict[str, str]:
    """This machine's pip settings (find-links, extra indexes, constraints) must not take part."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd],
        check=False,
        capture_output=True,
        text=True,
        env=kw.pop("env", clean_env()),
        timeout=120,
        **kw,
    )


def write_project(root: Path, name: str, version: str, deps: list[str], scripts: str, code: str) -> Path:
    package = root / name.replace("-", "")
    (package / name.replace("-", "")).mkdir(parents=True)
    (package / "pyproject.toml").write_text(
        PYPROJECT.format(name=name, version=version, deps=repr(deps).replace("'", '"'), scripts=scripts)
    )
    (package / name.replace("-", "") / "__init__.py").write_text(code)
    return package


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A local wheel index holding tinydep, the tiny-app project and a safetensors-only model folder."""
    root = tmp_path_factory.mktemp("sources")
    dep = write_project(root, "tinydep", "1.0", [], "", "VALUE = 42\n")
    app = write_project(
        root,
        "tiny-app",
        "2.3",
        ["tinydep==1.0"],
        '[project.scripts]\nhulu-workstation = "tinyapp:main"',
        APP_CODE,
    )
    fake_torch = write_project(root, "torch", "9.9+cpu", [], "", "")  # stands for a CPU torch wheel
    torch_app = write_project(root, "torch-app", "1.0", ["torch>=9"], "", "")
    index = root / "index"
    for project in (dep, fake_torch):
        built = run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                index,
                project,
            ]
        )
        assert built.returncode == 0, built.stderr
    model = root / "model"
    (model / "tokenizer").mkdir(parents=True)
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (model / "config.json").write_text('{"model_type": "hulumed_qwen2"}')
    (model / "tokenizer" / "tokenizer.json").write_text('{"version": "1.0"}')
    return {"app": app, "torch_app": torch_app, "index": index, "model": model}


def build(
    sources: dict[str, Path], out: Path, model: Path | None = None, *extra: str, project: str = "app"
) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        BUILD,
        "--project",
        sources[project],
        "--out",
        out,
        "--find-links",
        sources["index"],
        "--no-index",
        "--no-build-isolation",
        "--tar",
        *extra,
    ]
    return run(cmd + (["--model", model] if model else []))


@pytest.fixture(scope="module")
def bundle(sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("build") / "bundle-2.3"
    result = build(sources, out, sources["model"])
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="module")
def offline() -> list[str]:
    """Command prefix that runs its command in a network namespace holding only loopback."""
    for prefix in (["unshare", "-n"], ["unshare", "-rn"]) if os.geteuid() == 0 else (["unshare", "-rn"],):
        if shutil.which("unshare") and run(prefix + ["true"]).returncode == 0:
            probe = run(prefix + [sys.executable, "-c", CONNECT_OUT])
            assert "Network is unreachable" in probe.stderr, probe.stderr
            return prefix
    pytest.skip("cannot remove the network: unshare -n/-rn not permitted here")


def install(
    bundle: Path, prefix: Path, *extra: str, offline: list[str] = ()
) -> subprocess.CompletedProcess[str]:
    return run([*offline, "bash", INSTALL, bundle, "--prefix", prefix, "--python", sys.executable, *extra])


def copy_bundle(bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / bundle.name
    shutil.copytree(bundle, copy)
    return copy


def tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def assert_nothing_installed(prefix: Path) -> None:
    assert not (prefix / "current").exists()
    assert not (prefix / "bin" / "hulu-workstation").exists()
    assert not (prefix / "releases").exists() or not any((prefix / "releases").iterdir())
    assert not list(prefix.glob(".install.*"))  # the scratch folder is removed


def missing_debian_report(bundle: Path) -> str:
    """The line the installer must print about this machine's runtime Debian packages."""
    runtime = [
        ln.split()[0]
        for ln in (bundle / "debian-packages.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#") and ln.split()[1] == "runtime"
    ]
    if not shutil.which("dpkg-query"):
        return "not a Debian system"
    missing = [
        p
        for p in runtime
        if "install ok installed" not in run(["dpkg-query", "-W", "-f=${Status}", p]).stdout
    ]
    return f"apt-get install {' '.join(missing)}" if missing else f"all {len(runtime)} present"


def test_bundle_pins_exact_versions_with_the_wheels_hashes_and_lists_every_file(
    bundle: Path, sources: dict[str, Path]
) -> None:
    leftovers = [
        p.name for p in sources["app"].iterdir() if p.name == "build" or p.name.endswith(".egg-info")
    ]
    assert leftovers == []  # built from a clean copy: nothing written into the project folder
    wheels = bundle / "wheels"
    assert sorted(p.name for p in wheels.iterdir()) == [PROJECT_WHEEL, TINYDEP_WHEEL]
    lock = [ln for ln in (bundle / "requirements.lock").read_text().splitlines() if not ln.startswith("#")]
    assert lock == [f"tinydep==1.0 --hash=sha256:{sha256(wheels / TINYDEP_WHEEL)}"]
    project = [ln for ln in (bundle / "project.lock").read_text().splitlines() if not ln.startswith("#")]
    assert project == [f"tiny-app==2.3 --hash=sha256:{sha256(wheels / PROJECT_WHEEL)}"]
    version = dict(ln.split("=", 1) for ln in (bundle / "VERSION").read_text().splitlines())
    assert (version["PROJECT"], version["PROJECT_VERSION"], version["MODEL_FILES"]) == (
        "tiny-app",
        "2.3",
        "3",
    )
    assert version["PYTHON_VERSION"] == f"{sys.version_info.major}.{sys.version_info.minor}"

    manifest = {
        ln.split("  ", 1)[1]: ln.split("  ", 1)[0] for ln in (bundle / "SHA256SUMS").read_text().splitlines()
    }
    files = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()} - {"SHA256SUMS"}
    assert set(manifest) == files
    assert all(sha256(bundle / name) == digest for name, digest in manifest.items())
    model_sums = (bundle / "model" / "SHA256SUMS").read_text().splitlines()
    assert sorted(ln.split("  ", 1)[1] for ln in model_sums) == [
        "config.json",
        "model.safetensors",
        "tokenizer/tokenizer.json",
    ]
    tar = bundle.with_name(bundle.name + ".tar")
    assert tar.is_file() and tar.stat().st_size > sum(
        (wheels / w).stat().st_size for w in (PROJECT_WHEEL, TINYDEP_WHEEL)
    )


def test_install_from_the_tar_without_network_gives_an_offline_launcher(
    bundle: Path, sources: dict[str, Path], offline: list[str], tmp_path: Path
) -> None:
    prefix = tmp_path / "opt hulu"  # a space in the path must survive the launcher
    recorded = sha256(bundle / "SHA256SUMS")
    result = install(
        bundle.with_name(bundle.name + ".tar"), prefix, "--manifest-sha256", recorded, offline=offline
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert missing_debian_report(bundle) in result.stdout
    assert os.readlink(prefix / "current") == "releases/2.3"
    assert sorted(p.name for p in prefix.iterdir()) == ["bin", "current", "model", "releases"]

    env = {k: v for k, v in clean_env().items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    launched = run([prefix / "bin" / "hulu-workstation", "--demo"], env=env)
    assert launched.returncode == 0, launched.stderr
    assert launched.stdout.split() == [
        "tinydep",
        "42",
        "HF_HUB_OFFLINE",
        "1",
        "TRANSFORMERS_OFFLINE",
        "1",
        "args",
        "['--demo']",
    ]
    for name in ("model.safetensors", "config.json", "tokenizer/tokenizer.json"):
        assert (prefix / "model" / name).read_bytes() == (sources["model"] / name).read_bytes()
    installed = (prefix / "current" / "INSTALLED").read_text()
    assert f"MANIFEST_SHA256={sha256(bundle / 'SHA256SUMS')}" in installed

    again = install(bundle, prefix)
    assert again.returncode == 2 and "installed already; --force reinstalls it" in again.stderr


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda b: tamper(b / "wheels" / TINYDEP_WHEEL),
            f"wheels/{TINYDEP_WHEEL}: sha256 does not match SHA256SUMS",
        ),
        (
            lambda b: (b / "model" / "config.json").unlink(),
            "model/config.json: listed in SHA256SUMS but missing",
        ),
        (
            lambda b: (b / "wheels" / "evil-1.0-py3-none-any.whl").write_bytes(b"PK"),
            "wheels/evil-1.0-py3-none-any.whl: not listed in SHA256SUMS",
        ),
    ],
    ids=["tampered-wheel", "missing-file", "added-file"],
)
def test_a_damaged_bundle_is_refused_naming_the_file(
    bundle: Path, tmp_path: Path, damage, message: str
) -> None:
    copy = copy_bundle(bundle, tmp_path)
    damage(copy)
    result = install(copy, tmp_path / "prefix")
    assert result.returncode == 2
    assert f"REFUSED: {message}" in result.stderr
    assert_nothing_installed(tmp_path / "prefix")


def test_a_replaced_manifest_is_refused_against_the_recorded_hash(bundle: Path, tmp_path: Path) -> None:
    recorded = sha256(bundle / "SHA256SUMS")
    copy = copy_bundle(bundle, tmp_path)
    (copy / "SHA256SUMS").write_text((copy / "SHA256SUMS").read_text() + "\n")
    result = install(copy, tmp_path / "prefix", "--manifest-sha256", recorded)
    assert result.returncode == 2 and f"not the recorded {recorded}" in result.stderr
    assert_nothing_installed(tmp_path / "prefix")


def test_a_tampered_wheel_with_a_rewritten_manifest_is_refused_by_pip_hashes(
    bundle: Path, offline: list[str], tmp_path: Path
) -> None:
    copy = copy_bundle(bundle, tmp_path)
    tamper(copy / "wheels" / TINYDEP_WHEEL)
    rewrite_manifest(copy)
    result = install(copy, tmp_path / "prefix", offline=offline)
    assert result.returncode != 0
    assert "Verifying" in result.stdout and "REFUSED" not in result.stderr  # the manifest check passed
    assert "DO NOT MATCH THE HASHES" in result.stderr and "tinydep" in result.stderr
    assert_nothing_installed(tmp_path / "prefix")


@pytest.mark.parametrize("intruder", ["modeling_hulu.py", "pytorch_model.bin", "sub/extra.pt"])
def test_a_model_folder_with_code_or_pickle_files_is_refused(
    sources: dict[str, Path], tmp_path: Path, intruder: str
) -> None:
    model = tmp_path / "model"
    shutil.copytree(sources["model"], model)
    (model / intruder).parent.mkdir(parents=True, exist_ok=True)
    (model / intruder).write_bytes(b"print('pwned')")
    out = tmp_path / "bundle"
    result = build(sources, out, model)
    assert result.returncode == 2
    assert f"REFUSED: {model / intruder}: refused in a model folder" in result.stderr
    assert not out.exists() and not out.with_name("bundle.partial").exists()


def test_a_model_folder_without_safetensors_is_refused(sources: dict[str, Path], tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    result = build(sources, tmp_path / "bundle", model)
    assert result.returncode == 2 and "no *.safetensors weights" in result.stderr


def rewrite_manifest(bundle: Path) -> None:
    """What someone hand-editing a bundle would do: make SHA256SUMS match the edited files again."""
    rewrite = "find . -type f ! -path ./SHA256SUMS | sed 's|^\\./||' | sort | xargs sha256sum > SHA256SUMS"
    assert run(["bash", "-c", rewrite], cwd=bundle).returncode == 0


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("PYTHON_VERSION", "3.99", "bundle built for Python 3.99"),
        ("PLATFORM", "linux-riscv128", "bundle built for linux-riscv128"),
    ],
)
def test_a_bundle_for_another_python_or_platform_is_refused(
    bundle: Path, tmp_path: Path, key: str, value: str, message: str
) -> None:
    copy = copy_bundle(bundle, tmp_path)
    version = copy / "VERSION"
    version.write_text(
        "".join(
            f"{key}={value}\n" if ln.startswith(f"{key}=") else ln + "\n"
            for ln in version.read_text().splitlines()
        )
    )
    rewrite_manifest(copy)
    result = install(copy, tmp_path / "prefix")
    assert result.returncode == 2 and message in result.stderr
    assert_nothing_installed(tmp_path / "prefix")


def test_a_new_version_installs_beside_the_old_and_keeps_the_model(
    bundle: Path, sources: dict[str, Path], tmp_path: Path
) -> None:
    prefix = tmp_path / "prefix"
    assert install(bundle, prefix).returncode == 0
    newer_project = tmp_path / "tinyapp"
    shutil.copytree(sources["app"], newer_project)
    pyproject = newer_project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "2.3"', 'version = "2.4"'))
    newer = tmp_path / "bundle-2.4"
    built = build({**sources, "app": newer_project}, newer)  # no model this time
    assert built.returncode == 0, built.stderr

    result = install(newer, prefix)
    assert result.returncode == 0, result.stderr
    assert os.readlink(prefix / "current") == "releases/2.4"
    assert sorted(p.name for p in (prefix / "releases").iterdir()) == ["2.3", "2.4"]
    assert (prefix / "model" / "model.safetensors").read_bytes() == (
        sources["model"] / "model.safetensors"
    ).read_bytes()
    assert run([prefix / "bin" / "hulu-workstation"]).stdout.startswith("tinydep 42 ")
    assert "PROJECT_VERSION=2.4" in (prefix / "current" / "INSTALLED").read_text()


def test_the_torch_choice_is_pinned_and_a_cpu_wheel_is_refused_for_a_cuda_bundle(
    sources: dict[str, Path], tmp_path: Path
) -> None:
    cpu = build(
        sources, tmp_path / "cpu", None, "--torch", "cpu", "--torch-version", "9.9", project="torch_app"
    )
    assert cpu.returncode == 0, cpu.stderr
    assert "TORCH=cpu torch==9.9+cpu\n" in (tmp_path / "cpu" / "VERSION").read_text()
    assert "torch==9.9+cpu --hash=sha256:" in (tmp_path / "cpu" / "requirements.lock").read_text()

    cuda = build(
        sources, tmp_path / "cuda", None, "--torch", "cuda", "--torch-version", "9.9", project="torch_app"
    )
    assert cuda.returncode == 2
    assert "REFUSED: torch==9.9+cpu: resolved instead of a CUDA build" in cuda.stderr
    assert not (tmp_path / "cuda").exists() and not (tmp_path / "cuda.partial").exists()


def test_an_output_folder_inside_the_project_is_refused(sources: dict[str, Path]) -> None:
    out = sources["app"] / "bundle"
    result = build(sources, out)
    assert result.returncode == 2 and "inside the project folder" in result.stderr
    assert not out.exists()


def test_the_workstation_wheel_ships_the_resources_its_code_reads(tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache"
        ),
    )
    built = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            tmp_path / "wheel",
            source,
        ]
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "wheel").glob("hulu_med_workstation-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = set(zf.namelist())
    needed = {p.relative_to(REPO).as_posix() for p in (REPO / "resources").rglob("*") if p.is_file()}
    assert "resources/presets/wl_presets.json" in needed
    assert needed - shipped == set()
