"""A wheel install (not editable) ships the roles and kernel fragments and works anywhere.

The wheel is built from a copy of the checkout's files and installed into a fresh
virtual environment; its dependencies come from this environment through a .pth line,
so the test needs no package index. The commands then run from an unrelated directory.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.tree  # builds and installs for real; a few seconds


def _checkout_files() -> list[str]:
    """The files a clone has (tracked or new, not ignored), so build leftovers stay out."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=PROJECT,
                         capture_output=True, check=True).stdout
    return [f for f in out.decode().split("\0") if f and (PROJECT / f).is_file()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed; its python."""
    if shutil.which("git") is None:
        pytest.skip("git is needed to list the checkout's files")
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    for rel in _checkout_files():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT / rel, src / rel)
    dist = work / "dist"
    # Without isolation when this environment can build (fast, offline); else pip's way.
    local = importlib.util.find_spec("wheel") and importlib.util.find_spec("setuptools")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    *(["--no-build-isolation"] if local else []), "-w", str(dist), str(src)],
                   check=True, capture_output=True)
    (whl,) = dist.glob("provision9p-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-index", str(whl)], check=True, capture_output=True)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig."
                                "get_paths()['purelib'])"], capture_output=True, text=True,
                               check=True).stdout.strip())
    # The dependencies (paramiko, PyYAML, ...) from this environment, after the wheel.
    (site / "zz-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def _run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd),
           "PROVISION9P_HOME": str(cwd / "home"), "PROVISION9P_CACHE": str(cwd / "cache")}
    return subprocess.run([str(python.parent / "provision9p"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_installed_package_is_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    res = subprocess.run([str(installed), "-c", "import provision9p, provision9p.paths as p; "
                          "print(provision9p.__file__); print(p.shipped_roles_dir()); "
                          "print(p.kernel_configs_dir())"],
                         cwd=tmp_path, capture_output=True, text=True, check=True)
    module, roles, configs = (Path(x) for x in res.stdout.split())
    venv = installed.parent.parent
    for path in (module, roles, configs):
        assert venv in path.parents, path
    assert {p.name for p in roles.iterdir()} >= {"base", "ninep_shares", "ssh", "users"}
    assert (roles / "base" / "tasks" / "main.yml").is_file()
    assert (configs / "9p-root.config").is_file()


def test_validate_from_another_directory(installed: Path, tmp_path: Path) -> None:
    lab = tmp_path / "lab.yml"
    # A shipped role: the lab only validates when the wheel carries roles/.
    lab.write_text("name: w\nguests:\n  a:\n    roles: [base, users]\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = _run(installed, "-f", str(lab), "validate", cwd=elsewhere)
    assert res.returncode == 0, res.stderr
    assert res.stdout.endswith(f"{lab}: valid, 1 guest(s)\n")
    # lab.yml in the working directory is the lab when -f is not given.
    res = _run(installed, "validate", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.endswith("lab.yml: valid, 1 guest(s)\n")


def test_kernel_check_uses_the_shipped_fragments(installed: Path, tmp_path: Path) -> None:
    config = tmp_path / "config"
    # 9P without its virtio transport: unbootable, and each fix names a shipped fragment.
    config.write_text("CONFIG_X86_64=y\nCONFIG_VIRTIO=m\nCONFIG_NET_9P=m\nCONFIG_9P_FS=m\n")
    res = _run(installed, "kernel", "check", str(config), "--json", cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    fixes = json.loads(res.stdout)["fixes"]
    assert "CONFIG_NET_9P_VIRTIO" in fixes
    venv = installed.parent.parent
    for fragment in map(Path, fixes.values()):
        assert venv in fragment.parents and fragment.is_file(), fragment
