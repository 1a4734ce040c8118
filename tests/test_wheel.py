"""A wheel built from the repo carries templates/, firmware/ and boards/ and works when installed.

Builds the wheel, installs it (no dependencies) into a fresh venv whose only other packages are the
test venv's dependencies (made visible through a .pth path entry, so nothing is downloaded and the
repo's editable install is NOT visible), and runs the installed package from outside the repo.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FOLDERS = ("templates", "firmware", "boards")
IGNORED_PARTS = {"__pycache__", ".pio", ".DS_Store"}


def repo_files(folder: str) -> set[str]:
    root = REPO / folder
    return {
        str(p.relative_to(root)) for p in root.rglob("*")
        if p.is_file() and not IGNORED_PARTS & set(p.parts) and p.suffix != ".pyc"
    }


@pytest.mark.slow
def test_wheel_installs_and_reads_its_data_folders(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(REPO)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    (wheel,) = dist.glob("edgecompile-*.whl")

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    for folder in FOLDERS:
        packed = {n.removeprefix(f"edgecompile/{folder}/") for n in names if n.startswith(f"edgecompile/{folder}/")}
        assert packed, f"the wheel carries no {folder}/ files"
        assert repo_files(folder) <= packed, f"{folder}/ files missing from the wheel"

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # the dependencies (numpy, click, ...) from the test venv, appended after the fresh site-packages
    (site / "zz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    probe = textwrap.dedent(f"""
        import json, edgecompile
        from edgecompile.resources import resource_dir
        folders = {{n: str(resource_dir(n)) for n in {FOLDERS!r}}}
        files = {{n: sorted(str(p.relative_to(resource_dir(n))) for p in resource_dir(n).rglob('*') if p.is_file())
                 for n in folders}}
        print(json.dumps({{"package": edgecompile.__file__, "folders": folders, "files": files}}))
    """)
    result = subprocess.run([str(py), "-c", probe], cwd=outside, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert Path(found["package"]).is_relative_to(site), found["package"]
    for folder in FOLDERS:
        assert Path(found["folders"][folder]) == site / "edgecompile" / folder
        assert found["files"][folder], f"installed {folder}/ is empty"
        assert repo_files(folder) <= set(found["files"][folder])

    # the installed console script runs outside the repo: `boards` reads boards/ from the package
    exe = venv / "bin" / "edgecompile"
    listed = subprocess.run([str(exe), "boards"], cwd=outside, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    for profile in (REPO / "boards").glob("*.json"):
        assert re.search(rf"^{re.escape(profile.stem)}\s", listed.stdout, re.M), profile.stem

    # ... and on the shipped example
    shown = subprocess.run([str(exe), "inspect", str(REPO / "examples" / "tiny" / "model.npz")],
                           cwd=outside, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("FastGRNN  D=6  H=16  C=4  T=16")
