"""Registry packaging (pyproject.toml [project] / [tool.comfy], .comfyignore): what `comfy node pack` publishes."""
import fnmatch
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# What ComfyUI loads at run time: never left out of the archive.
RUNTIME = ("__init__.py", "nodes/", "models/", "guidance/", "web/", "example_workflows/", "LICENSE", "README.md",
           "pyproject.toml", "requirements.txt")


def ignored(path: str, patterns: list[str]) -> bool:
    """gitwildmatch as comfy-cli applies it, for the pattern kinds used here ('dir/' and plain globs)."""
    for p in patterns:
        if p.endswith("/") and (path.startswith(p) or f"/{p}" in f"/{path}"):
            return True
        if not p.endswith("/") and (fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path.rsplit("/", 1)[-1], p)):
            return True
    return False


def test_comfyignore_leaves_out_development_files_only():
    patterns = [ln.strip() for ln in (ROOT / ".comfyignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\n")
    tracked = [t for t in tracked if t]
    dropped = [t for t in tracked if ignored(t, patterns)]
    assert dropped and all(t.split("/")[0] in ("tests", ".ci", "tools") for t in dropped), dropped
    assert not [t for t in tracked if t.startswith(("tests/", ".ci/", "tools/")) and t not in dropped]
    assert not [t for t in tracked if t.startswith(RUNTIME) and ignored(t, patterns)]


def test_no_accelerator_classifier_so_every_device_is_compatible():
    """The Registry knows no CPU classifier, and the frontend's conflict check treats an empty accelerator list as
    'all supported' but flags a CPU or Intel XPU device against any list (see the comment in pyproject.toml)."""
    classifiers = PYPROJECT["project"]["classifiers"]
    assert "Operating System :: OS Independent" in classifiers
    assert not [c for c in classifiers if c.startswith("Environment ::")]


def test_icon_is_a_raw_url_of_a_square_png_in_the_repository():
    url = PYPROJECT["tool"]["comfy"]["Icon"]
    repo = PYPROJECT["project"]["urls"]["Repository"].removeprefix("https://github.com/")
    prefix = f"https://raw.githubusercontent.com/{repo}/main/"
    assert url.startswith(prefix), url
    path = ROOT / url.removeprefix(prefix)
    assert path.is_file() and path.stat().st_size < 100_000
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width == img.height >= 200


@pytest.mark.slow
def test_the_wheel_carries_every_builtin_model(tmp_path):
    """`pip install .` (the Python API's install) must bring every built-in model's weights: build the wheel from
    the tracked files (offline, with the installed setuptools), install it into an empty folder and load each
    built-in model from there, in a fresh interpreter that cannot see the repository."""
    source = tmp_path / "src"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
                    str(source)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "-q", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True, capture_output=True)
    check = ("import scalewise.models.builtin as b, pathlib; "
             "assert pathlib.Path(b.__file__).is_relative_to(pathlib.Path(r'%s')), b.__file__; "
             "print([m.load().image_size for m in b.BUILTIN_MODELS])" % (tmp_path / "site"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(tmp_path / "site")
    out = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[64, 128]"
