"""Before any build or boot, `up` refuses a share QEMU's user cannot use (exit 2, the
path and the fix): a directory root made beforehand (mode 755) is not writable by
QEMU's unprivileged account, which verify used to find only after every guest booted."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from provision9p.cli import main
from provision9p.errors import ShareAccessError
from provision9p.lab import load_lab
from provision9p.qemu_user import qemu_user
from provision9p.verify.preflight import check_share_access

pytestmark = [pytest.mark.tree]


@pytest.fixture()
def place() -> Iterator[Path]:
    """A directory QEMU's user may enter (pytest's own temporary tree is root's, 0700)."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root (a directory root made), as CI has")
    where = Path(tempfile.mkdtemp(prefix="p9-share-access-", dir="/var/tmp"))
    where.chmod(0o755)
    yield where
    shutil.rmtree(where)


def _lab(place: Path, share: str) -> Path:
    lab = place / "lab.yml"
    lab.write_text(f"name: acc\nguests:\n  g:\n    shares:\n      - {share}\n")
    return lab


def test_up_refuses_a_root_made_share_before_any_build(
        place: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (place / "data").mkdir(mode=0o755)
    lab = _lab(place, "{path: ./data, mount_tag: data, mount: /mnt/data}")
    monkeypatch.setenv("PROVISION9P_HOME", str(place / "home"))
    code = main(["--lab", str(lab), "up"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"share data: {place / 'data'} is not writable by provision9p" in err, err
    assert "chown -R provision9p" in err and "readonly: true" in err, err
    assert "Traceback" not in err
    assert not (place / "guests").exists()  # nothing was built, nothing booted
    assert not (place / "home").exists()


def test_what_qemus_user_can_use_passes(place: Path) -> None:
    (place / "ro").mkdir(mode=0o755)
    (place / "open").mkdir()
    (place / "open").chmod(0o777)
    lab = load_lab(_lab(place, "{path: ./ro, mount_tag: ro, mount: /mnt/ro, readonly: true}"))
    guest = lab.guest("g")
    check_share_access(guest, qemu_user(guest))  # readable is enough for a readonly share
    for share in ("{path: ./open, mount_tag: o, mount: /mnt/o}",
                  "{path: ./new/deeper, mount_tag: n, mount: /mnt/n}"):  # made by the build
        guest = load_lab(_lab(place, share)).guest("g")
        check_share_access(guest, qemu_user(guest))


def test_a_share_behind_a_closed_directory_names_it(place: Path) -> None:
    closed = place / "closed"
    (closed / "data").mkdir(parents=True)
    closed.chmod(0o700)
    (closed / "data").chmod(0o777)
    guest = load_lab(_lab(place, "{path: ./closed/data, mount_tag: d, mount: /mnt/d}")).guest("g")
    with pytest.raises(ShareAccessError, match=f"cannot enter {closed}\n") as exc:
        check_share_access(guest, qemu_user(guest))
    assert exc.value.exit_code == 2 and f"chmod o+x {closed}" in str(exc.value)
