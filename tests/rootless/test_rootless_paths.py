"""Where things go for root and for a normal user, and the subordinate-id plumbing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provision9p import paths
from provision9p.lab.model import RootfsSpec
from provision9p.qemu_user import RunAs
from provision9p.rootfs import rootless
from provision9p.rootfs.debootstrap import base_key

_VARS = ("PROVISION9P_HOME", "PROVISION9P_CACHE", "XDG_STATE_HOME", "XDG_CACHE_HOME")


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for var in _VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def as_uid(monkeypatch: pytest.MonkeyPatch, uid: int) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: uid)


def test_root_keeps_the_host_wide_places(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    as_uid(monkeypatch, 0)
    assert paths.data_home() == Path("/var/lib/provision9p")
    assert paths.cache_home() == Path("/var/cache/provision9p")


def test_a_user_gets_xdg_defaults_under_home(clean_env: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    as_uid(monkeypatch, 1000)
    assert paths.data_home() == clean_env / ".local/state/provision9p"
    assert paths.cache_home() == clean_env / ".cache/provision9p"


def test_a_user_follows_xdg_variables_but_not_relative_ones(
        clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    as_uid(monkeypatch, 1000)
    monkeypatch.setenv("XDG_STATE_HOME", "/srv/state")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # the spec says: ignore it
    assert paths.data_home() == Path("/srv/state/provision9p")
    assert paths.cache_home() == clean_env / ".cache/provision9p"


def test_provision9p_variables_win_for_everyone(clean_env: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISION9P_HOME", "/x/home")
    monkeypatch.setenv("PROVISION9P_CACHE", "/x/cache")
    for uid in (0, 1000):
        as_uid(monkeypatch, uid)
        assert (paths.data_home(), paths.cache_home()) == (Path("/x/home"), Path("/x/cache"))


def test_inside_the_build_namespace_a_user_keeps_its_places(
        clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    as_uid(monkeypatch, 0)  # what the build's namespace reports
    monkeypatch.setattr(rootless, "_inside", True)
    assert paths.data_home() == clean_env / ".local/state/provision9p"
    assert not rootless.needed() and rootless.active()


def test_a_users_base_tree_is_a_tarball_with_its_own_cache_key(
        monkeypatch: pytest.MonkeyPatch) -> None:
    spec = RootfsSpec(suite="bookworm")
    as_uid(monkeypatch, 0)
    root_key, root_inputs = base_key(spec, "amd64", "http://mirror.invalid/debian")
    as_uid(monkeypatch, 1000)
    user_key, user_inputs = base_key(spec, "amd64", "http://mirror.invalid/debian")
    assert "form" not in root_inputs  # root's cache entries keep their keys
    assert user_inputs["form"] == rootless.BASE_TAR and user_key != root_key


SUBUID = """\
# comment
alice:100000:65536
1001:165536:65536
short:231072:1000
bob:x:65536
"""


def test_sub_ids_by_name_or_uid_and_long_enough(tmp_path: Path) -> None:
    f = tmp_path / "subuid"
    f.write_text(SUBUID)
    assert rootless.sub_ids(f, "alice", 1000) == rootless.SubIds(100000, 65536)
    assert rootless.sub_ids(f, "carol", 1001) == rootless.SubIds(165536, 65536)
    assert rootless.sub_ids(f, "short", 1002) is None  # too few ids for a Debian tree
    assert rootless.sub_ids(f, "bob", 1003) is None
    assert rootless.sub_ids(tmp_path / "missing", "alice", 1000) is None


def test_id_maps_make_the_user_root_and_its_range_the_rest() -> None:
    uids, gids = rootless.id_maps(1000, 1001, rootless.SubIds(100000, 65536),
                                  rootless.SubIds(200000, 65536))
    assert uids == ["0", "1000", "1", "1", "100000", "65535"]
    assert gids == ["0", "1001", "1", "1", "200000", "65535"]


def test_run_as_in_the_namespace_chowns_to_zero_but_keeps_its_ids() -> None:
    outside = RunAs(1000, 1000, "alice")
    inside = RunAs(1000, 1000, "alice", in_namespace=True)
    assert (outside.file_uid, outside.file_gid) == (1000, 1000)
    assert (inside.file_uid, inside.file_gid) == (0, 0)
    assert not inside.is_root and (inside.uid, inside.gid) == (1000, 1000)


def test_doctor_names_the_subid_lines_an_administrator_adds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pwd

    from provision9p.host.doctor import check_subids

    me = pwd.getpwuid(os.geteuid()).pw_name
    subuid, subgid = tmp_path / "subuid", tmp_path / "subgid"
    monkeypatch.setattr(rootless, "SUBUID", subuid)
    monkeypatch.setattr(rootless, "SUBGID", subgid)
    subuid.write_text("other:100000:65536\n")
    subgid.write_text(f"{me}:300000:65536\n")
    missing = check_subids()
    assert not missing.ok and str(subuid) in missing.detail and str(subgid) not in missing.detail
    # the first free range after every one taken
    assert missing.fix == (f"an administrator adds `{me}:365536:65536` to /etc/subuid and "
                           "/etc/subgid once")
    subuid.write_text(f"{me}:100000:65536\n")
    found = check_subids()
    assert found.ok and found.detail == f"{me}: subuid 100000+65536, subgid 300000+65536"


@pytest.mark.tree
def test_this_host_allows_user_namespaces_and_root_needs_no_user_checks() -> None:
    from provision9p.host.doctor import check_userns, user_checks

    assert check_userns().ok  # Debian 12's default, which the rootless build needs
    if os.geteuid() == 0:
        assert user_checks() == []
