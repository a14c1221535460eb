"""The package users install: a wheel and an sdist that work outside this checkout."""

from __future__ import annotations

import email
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Every public name, imported from the installed wheel (the modules of the API reference).
IMPORT_ALL = """
import importlib, pathlib, sys
import multitask_mnist
home = pathlib.Path(multitask_mnist.__file__).parent
assert str(home).startswith(sys.prefix), home  # the wheel's copy, not the checkout
assert (home / "py.typed").is_file()
names = 0
for module in ("multitask_mnist", "multitask_mnist.data", "multitask_mnist.models",
               "multitask_mnist.losses", "multitask_mnist.tasks", "multitask_mnist.methods",
               "multitask_mnist.presets", "multitask_mnist.training",
               "multitask_mnist.distributed", "multitask_mnist.export",
               "multitask_mnist.demo", "multitask_mnist.cli"):
    loaded = importlib.import_module(module)
    for name in loaded.__all__:
        getattr(loaded, name)
        names += 1
print(names)
"""


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def test_build_makes_a_wheel_and_an_sdist_with_the_package_data(dist: Path) -> None:
    (wheel,) = dist.glob("multitask_mnist-*.whl")
    (sdist,) = dist.glob("multitask_mnist-*.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        files = set(archive.namelist())
        (metadata_name,) = (n for n in files if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(archive.read(metadata_name))
    assert "multitask_mnist/py.typed" in files and "multitask_mnist/demo.py" in files
    assert not any(name.startswith(("tests/", "benchmarks/", "examples/")) for name in files)
    requires = {r.split(">")[0].split(";")[0].strip() for r in metadata.get_all("Requires-Dist")}
    assert {"torch", "torchvision", "typing-extensions", "tqdm", "torchjd"} <= requires
    extras = set(metadata.get_all("Provides-Extra"))
    assert {"demo", "export", "tensorboard", "plot", "solvers"} <= extras
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    assert any(n.endswith("multitask_mnist/py.typed") for n in names)
    assert any(n.endswith("/pyproject.toml") for n in names)


def test_the_wheel_runs_in_a_fresh_venv(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("multitask_mnist-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.strip()
    # The dependencies (torch alone is gigabytes) come from this environment, after the
    # venv's own folder; the wheel itself is installed, and its metadata checked above.
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    listed = subprocess.run(
        [str(venv / "bin" / "multitask-mnist"), "presets"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert listed.returncode == 0, listed.stderr
    assert "mnist_sum" in listed.stdout and "multi_mnist_lenet" in listed.stdout
    imported = subprocess.run(
        [str(python), "-c", IMPORT_ALL], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert imported.returncode == 0, imported.stderr
    assert int(imported.stdout) > 100


def test_the_version_is_declared_once_and_released_in_the_changelog() -> None:
    """pyproject reads the package's __version__; a release has its CHANGELOG section."""
    import re

    import multitask_mnist

    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert 'version = { attr = "multitask_mnist.__version__" }' in pyproject
    version = multitask_mnist.__version__
    changelog = (ROOT / "CHANGELOG.md").read_text()
    if not re.search(r"\.dev\d+$", version):
        assert re.search(
            rf"^## \[{re.escape(version)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.M
        )
    assert changelog.index("## [Unreleased]") < changelog.index("## [0.2.0]")
