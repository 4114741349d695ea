"""The kernel-configs/ fragments: their format, annotations, and merging."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from provision9p import paths
from provision9p.errors import KernelError
from provision9p.kernel.fragments import (
    fragments_for,
    merge_fragments,
    parse_config,
    parse_fragment,
    requirements_for,
)

# What scripts/kconfig/merge_config.sh picks out of a fragment (its SED_CONFIG_EXP1/2).
MERGE_SET = re.compile(r"^CONFIG_[a-zA-Z0-9_]*=.*$")
MERGE_UNSET = re.compile(r"^# CONFIG_[a-zA-Z0-9_]* is not set$")


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "frag.config"
    p.write_text(text)
    return p


def test_annotations_are_read(tmp_path: Path) -> None:
    frag = write(tmp_path, "# header\n\n# the bus\n# module: virtio_ring, virtio\n"
                           "CONFIG_VIRTIO=y\n\n# a nic\n# module: virtio_net\n# when: late\n"
                           "CONFIG_VIRTIO_NET=y\n# never\n# CONFIG_FOO is not set\n")
    reqs = parse_fragment(frag)
    assert [(r.option, r.value, r.reason, r.modules, r.when, r.line) for r in reqs] == [
        ("CONFIG_VIRTIO", "y", "the bus", ("virtio_ring", "virtio"), "boot", 5),
        ("CONFIG_VIRTIO_NET", "y", "a nic", ("virtio_net",), "late", 10),
        ("CONFIG_FOO", "n", "never", (), "boot", 12),
    ]


def test_option_without_reason_is_refused(tmp_path: Path) -> None:
    frag = write(tmp_path, "# header\n\nCONFIG_PCI=y\n")
    with pytest.raises(KernelError, match=r"frag.config:3: CONFIG_PCI has no `# reason`"):
        parse_fragment(frag)


def test_bad_lines_and_duplicates_are_refused(tmp_path: Path) -> None:
    with pytest.raises(KernelError, match="not a kconfig line"):
        parse_fragment(write(tmp_path, "# why\nPCI=y\n"))
    with pytest.raises(KernelError, match="already set on line 2"):
        parse_fragment(write(tmp_path, "# why\nCONFIG_PCI=y\n# why\nCONFIG_PCI=y\n"))
    with pytest.raises(KernelError, match="when: soon"):
        parse_fragment(write(tmp_path, "# why\n# when: soon\nCONFIG_PCI=y\n"))


@pytest.mark.parametrize("arch", ["x86_64", "amd64", "aarch64", "arm64", "s390x"])
def test_shipped_fragments_parse_and_merge_config_can_read_them(arch: str) -> None:
    frags = fragments_for(arch)
    assert frags[-1].name == "9p-root.config"
    reqs = requirements_for(arch)
    assert {"CONFIG_NET_9P", "CONFIG_NET_9P_VIRTIO", "CONFIG_9P_FS",
            "CONFIG_VIRTIO"} <= {r.option for r in reqs}
    for frag in frags:
        for line in frag.read_text().splitlines():
            # every line is a kconfig line, a comment merge_config ignores, or blank
            assert MERGE_SET.match(line) or MERGE_UNSET.match(line) or not line \
                or (line.startswith("# ") and "CONFIG_" not in line), line
    for r in reqs:
        assert r.reason and r.fragment.parent == paths.kernel_configs_dir()


def test_arch_fragments() -> None:
    assert [p.name for p in fragments_for("arm64")] == [
        "virtio.config", "arm64-virt.config", "9p-root.config"]
    options = {r.option for r in requirements_for("aarch64")}
    assert {"CONFIG_PCI_HOST_GENERIC", "CONFIG_VIRTIO_MMIO",
            "CONFIG_SERIAL_AMBA_PL011_CONSOLE"} <= options
    x86 = {r.option for r in requirements_for("x86_64")}
    assert {"CONFIG_VIRTIO_PCI", "CONFIG_SERIAL_8250_CONSOLE", "CONFIG_PCI"} <= x86
    with pytest.raises(KernelError, match="riscv64") as exc:
        fragments_for("riscv64")
    assert exc.value.hint is not None and "x86_64" in exc.value.hint


def test_every_module_option_names_its_module() -> None:
    modules = {r.option: r.modules for r in requirements_for("x86_64")}
    assert modules["CONFIG_NET_9P_VIRTIO"] == ("9pnet_virtio",)
    assert modules["CONFIG_9P_FS"] == ("9p",)
    assert modules["CONFIG_VIRTIO"] == ("virtio_ring", "virtio")
    assert modules["CONFIG_9P_FS_POSIX_ACL"] == ()  # a bool: never a module


def test_parse_config_and_merge_override() -> None:
    base = "CONFIG_A=m\n# CONFIG_B is not set\nCONFIG_C=\"x\"\nCONFIG_9P_FS=m\n"
    assert parse_config(base) == {"CONFIG_A": "m", "CONFIG_C": '"x"', "CONFIG_9P_FS": "m"}
    merged = parse_config(merge_fragments(base, fragments_for("x86_64")))
    assert merged["CONFIG_9P_FS"] == "y"  # =y from the fragment overrides =m
    assert merged["CONFIG_A"] == "m"
