"""What an image leaves out or fixes, decided per path (no files needed)."""

from __future__ import annotations

import tarfile

import pytest

from provision9p.image.normalize import Rules, fixed_shadow

RULES = Rules(epoch=1_700_000_000)


def _info(kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo("x")
    info.type = kind
    return info


@pytest.mark.parametrize("rel", [
    "etc/ssh/ssh_host_ed25519_key", "etc/ssh/ssh_host_ed25519_key.pub", "var/log/dpkg.log",
    "var/log/apt/history.log", "var/lib/apt/lists/deb.example_dists_Release",
    "var/cache/ldconfig/aux-cache", "var/lib/systemd/random-seed", "var/lib/dpkg/status-old",
    "var/cache/debconf/config.dat-old", "usr/lib/python3/dist-packages/__pycache__",
    "usr/lib/python3/dist-packages/__pycache__/x.cpython-311.pyc", "etc/shadow-",
    "var/cache/man/index.db", "var/cache/apt/pkgcache.bin",
])
def test_dropped(rel: str) -> None:
    assert RULES.dropped(rel, _info())


@pytest.mark.parametrize("rel", [
    "etc/ssh/sshd_config", "var/log", "var/lib/dpkg/status", "etc/shadow", "etc/machine-id",
    "usr/lib/python3/dist-packages/apt/__init__.py", "var/cache/debconf/config.dat",
])
def test_kept(rel: str) -> None:
    assert not RULES.dropped(rel, _info())


def test_directories_below_an_emptied_one_stay() -> None:
    assert not RULES.dropped("var/log/apt", _info(tarfile.DIRTYPE))
    assert RULES.dropped("var/log/apt/eipp.log.xz", _info())


def test_dbus_machine_id_symlink_stays() -> None:
    assert not RULES.dropped("var/lib/dbus/machine-id", _info(tarfile.SYMTYPE))
    assert RULES.dropped("var/lib/dbus/machine-id", _info())


def test_machine_id_is_emptied_and_shadow_days_fixed() -> None:
    assert RULES.content("etc/machine-id", b"0123456789abcdef\n") == b""
    shadow = b"root:*:20412:0:99999:7:::\nann:$y$x:20500::::::\nnobody:*::0:99999:7:::\n"
    day = 1_700_000_000 // 86400
    assert RULES.content("etc/shadow", shadow) == (
        f"root:*:{day}:0:99999:7:::\nann:$y$x:{day}::::::\nnobody:*::0:99999:7:::\n".encode())
    assert fixed_shadow(b"", day) == b""


def test_times_clamped_and_names_gone() -> None:
    info = _info()
    info.mtime, info.uname, info.gname = 1_800_000_000, "root", "root"
    info.pax_headers = {"mtime": "1800000000.5", "SCHILY.xattr.user.b": "2",
                        "SCHILY.xattr.user.a": "1"}
    RULES.clamp(info)
    assert info.mtime == RULES.epoch and info.uname == info.gname == ""
    assert list(info.pax_headers) == ["SCHILY.xattr.user.a", "SCHILY.xattr.user.b"]
    old = _info()
    old.mtime = 1_000
    RULES.clamp(old)
    assert old.mtime == 1_000


def test_the_building_labs_client_key_leaves_root_authorized_keys() -> None:
    lab_key = "ssh-ed25519 AAAAC3labkey provision9p"
    rules = Rules(epoch=1, client_keys=(lab_key,))
    role_key = b'from="10.0.0.1" ssh-ed25519 AAAAC3rolekey ann@ci'
    data = b"ssh-ed25519 AAAAC3labkey provision9p\n" + role_key + b"\n"
    assert rules.content("root/.ssh/authorized_keys", data) == role_key + b"\n"
    assert rules.content("root/.ssh/authorized_keys", lab_key.encode() + b"\n") == b""
    assert rules.content("home/ann/.ssh/authorized_keys", data) == data  # only root's
    assert RULES.content("root/.ssh/authorized_keys", data) == data  # no key given
