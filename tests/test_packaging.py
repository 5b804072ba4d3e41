"""The distribution: `python -m build` makes an sdist and a wheel, and the wheel alone holds a working ganaug.

The full check, a fresh virtual environment that installs the wheel with its dependencies and runs a smoke search
through the installed `ganaug`, is .ci/wheel_check.sh (minutes: it installs torch and Ray).
"""

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import ganaug

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def test_sdist_and_wheel_build_and_the_wheel_works_on_its_own(tmp_path):
    # --no-isolation: this environment's setuptools (pyproject's floor is checked by build), offline and in seconds.
    built = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp_path / "dist"),
                            str(ROOT)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    version = ganaug.__version__
    wheel = tmp_path / "dist" / f"ganaug-{version}-py3-none-any.whl"
    sdist = tmp_path / "dist" / f"ganaug-{version}.tar.gz"

    with tarfile.open(sdist) as archive:
        names = set(archive.getnames())
    assert {f"ganaug-{version}/{name}" for name in ("LICENSE", "README.md", "pyproject.toml", "ganaug/cli.py")} <= names

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"ganaug-{version}.dist-info/METADATA").decode()
        entry_points = archive.read(f"ganaug-{version}.dist-info/entry_points.txt").decode()
    modules = {f"ganaug/{path.name}" for path in (ROOT / "ganaug").glob("*.py")}
    assert modules | {"ganaug/py.typed", f"ganaug-{version}.dist-info/licenses/LICENSE"} <= names
    assert not [name for name in names if name.startswith(("tests/", "benchmarks/", "analysis/"))]
    assert f"Version: {version}\n" in metadata and "License-Expression: MIT\n" in metadata
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert all(f"Requires-Dist: {dependency}\n" in metadata for dependency in dependencies)
    assert "ganaug = ganaug.cli:main" in entry_points

    # The wheel installed on its own (no dependencies: those are .ci/wheel_check.sh's), imported with no site
    # packages and nothing of this checkout on the path: importing ganaug and its CLI needs only the wheel.
    target = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                                "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stderr[-3000:]
    check = subprocess.run([sys.executable, "-S", "-c", "import ganaug, ganaug.cli; print(ganaug.__version__); "
                            "print(ganaug.__file__)"], cwd=tmp_path, env={"PYTHONPATH": str(target)},
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    printed_version, location = check.stdout.split()
    assert printed_version == version and Path(location).is_relative_to(target)
    assert (target / "ganaug" / "py.typed").is_file()
    version_out = subprocess.run([sys.executable, "-S", "-m", "ganaug", "--version"], cwd=tmp_path,
                                 env={"PYTHONPATH": str(target)}, capture_output=True, text=True, timeout=60)
    assert version_out.stdout.strip() == f"ganaug {version}", version_out.stderr
