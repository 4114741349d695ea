"""Valid lab files: what each setting turns into, and the warnings that go with it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from provision9p.lab import LabSpec, load_lab
from provision9p.lab.model import GuestSpec, MountOptions, Share

from .helpers import valid


def web(lab: LabSpec) -> GuestSpec:
    return lab.guest("web")


def share(lab: LabSpec) -> Share:
    return lab.guest("web").shares[0]


def opts(lab: LabSpec) -> MountOptions:
    return lab.guest("web").shares[0].options


def G(body: str) -> str:
    lines = body.strip("\n").splitlines()
    return "guests:\n  web:\n" + "".join(f"    {line}\n" for line in lines)


def S(body: str) -> str:
    """Guest `web` with one share at /mnt/data whose other keys are `body`."""
    lines = [*body.strip("\n").splitlines(), "path: data", "mount_tag: data",
             "mount: /mnt/data"]
    keys = [line.split(":", 1)[0] for line in lines]
    lines = [line for i, line in enumerate(lines) if keys[i] not in keys[:i]]
    return "guests:\n  web:\n    shares:\n      -\n" + "".join(f"        {x}\n" for x in lines)


# (yaml, what to read from the LabSpec, expected value)
VALID: dict[str, tuple[str, Callable[[LabSpec], Any], Any]] = {
    "minimal-guest": ("guests:\n  web:\n", lambda lab: web(lab).memory_mib, 1024),
    "defaults-applied": ("defaults: {cpus: 4}\n" + G("memory: 2G"),
                         lambda lab: (web(lab).cpus, web(lab).memory_mib), (4, 2048)),
    "defaults-deep-merge": ("defaults:\n  rootfs: {suite: trixie, packages: [vim]}\n"
                            + G("rootfs: {packages: [curl]}"),
                            lambda lab: (web(lab).rootfs.suite, web(lab).rootfs.packages),
                            ("trixie", ("curl",))),
    "defaults-kept-by-empty-section": ("defaults:\n  rootfs: {suite: trixie}\n"
                                       + G("rootfs:"),
                                       lambda lab: web(lab).rootfs.suite, "trixie"),
    "yaml-merge-key": ("x-big: &big\n  memory: 4G\n  cpus: 8\n" + G("<<: *big\ncpus: 2"),
                       lambda lab: (web(lab).memory_mib, web(lab).cpus), (4096, 2)),
    "memory-mib-int": (G("memory: 1536"), lambda lab: web(lab).memory_mib, 1536),
    "memory-mib-string": (G("memory: 1536M"), lambda lab: web(lab).memory_mib, 1536),
    "memory-gib": (G("memory: 2GiB"), lambda lab: web(lab).memory_mib, 2048),
    "machine-versioned": (G("machine: pc-q35-7.2"), lambda lab: web(lab).root.transport,
                          "virtio-9p-pci"),
    "transport-microvm": (G("machine: microvm"), lambda lab: web(lab).root.transport,
                          "virtio-9p-device"),
    "transport-s390x": (G("arch: s390x"), lambda lab: (web(lab).machine,
                                                       web(lab).root.transport),
                        ("s390-ccw-virtio", "virtio-9p-ccw")),
    "transport-aarch64": (G("arch: aarch64"), lambda lab: (web(lab).debian_arch,
                                                           web(lab).root.transport),
                          ("arm64", "virtio-9p-pci")),
    "transport-aarch64-mmio": (G("arch: aarch64\nrootfs: {transport: virtio-9p-device}"),
                               lambda lab: web(lab).root.transport, "virtio-9p-device"),
    "kernel-default-package": ("guests:\n  web:\n", lambda lab: web(lab).kernel.package,
                               "linux-image-amd64"),
    "kernel-image": (G("kernel: {image: bzImage, modules: mods, initramfs: never}"),
                     lambda lab: (web(lab).kernel.package,
                                  web(lab).kernel.image == lab.base_dir / "bzImage",
                                  web(lab).kernel.initramfs),
                     (None, True, "never")),
    "kernel-cmdline": (G("kernel: {cmdline: 'quiet rootwait'}"),
                       lambda lab: web(lab).kernel.cmdline, "quiet rootwait"),
    "kernel-suite-default": ("guests:\n  web:\n", lambda lab: (web(lab).kernel.suite,
                                                                 web(lab).kernel_suite),
                             (None, "bookworm")),
    # a newer kernel under bookworm's userspace: readahead (Linux 6.4+) is allowed then
    "kernel-suite-backports": (G("kernel: {suite: bookworm-backports}\n"
                                 "rootfs: {cache: readahead}"),
                               lambda lab: (web(lab).kernel_suite, web(lab).rootfs.suite,
                                            web(lab).root.options.cache),
                               ("bookworm-backports", "bookworm", "readahead")),
    "root-defaults": ("guests:\n  web:\n",
                      lambda lab: (web(lab).root.mount_tag, web(lab).root.mount,
                                   web(lab).root.security_model,
                                   web(lab).root.options.cache,
                                   web(lab).root.options.as_string()),
                      ("rootfs", "/", "mapped-xattr", "loose",
                       "trans=virtio,version=9p2000.L,msize=512000,cache=loose,"
                       "access=client,posixacl")),
    "rootfs-settings": (G("""rootfs:
  suite: trixie
  variant: buildd
  components: [main, contrib]
  mirror: http://127.0.0.1:3142/debian
  capabilities: fail
  cache: readahead"""), lambda lab: (web(lab).rootfs.components, web(lab).rootfs.mirror,
                                     web(lab).rootfs.capabilities, web(lab).root.options.cache),
                        (("main", "contrib"), "http://127.0.0.1:3142/debian", "fail",
                         "readahead")),
    "readahead-own-kernel": (G("kernel: {image: bzImage}\nrootfs: {cache: readahead}"),
                             lambda lab: web(lab).root.options.cache, "readahead"),
    "security-mapped-alias": (S("security_model: mapped"),
                              lambda lab: share(lab).security_model, "mapped-xattr"),
    "security-mapped-file": (S("security_model: mapped-file\nfmode: '0600'"),
                             lambda lab: (share(lab).security_model, share(lab).fmode),
                             ("mapped-file", 0o600)),
    "security-none-share": (S("security_model: none"),
                            lambda lab: (share(lab).security_model, opts(lab).posixacl),
                            ("none", False)),
    "fmode-yaml-octal": (S("fmode: 0644"), lambda lab: share(lab).fmode, 0o644),
    "fmode-0o": (S("fmode: 0o640"), lambda lab: share(lab).fmode, 0o640),
    "fmode-string": (S('fmode: "0644"'), lambda lab: share(lab).fmode, 0o644),
    "dmode-0777": (S("dmode: 0777"), lambda lab: share(lab).dmode, 0o777),
    "fmode-zero": (S("fmode: 0"), lambda lab: share(lab).fmode, 0),
    "readonly": (S("readonly: true"), lambda lab: (share(lab).readonly,
                                                   opts(lab).as_string(readonly=True)[-3:]),
                 (True, ",ro")),
    "writeout-multidevs": (S("writeout: immediate\nmultidevs: remap"),
                           lambda lab: (share(lab).writeout, share(lab).multidevs),
                           ("immediate", "remap")),
    "msize-k": (S("msize: 256K"), lambda lab: opts(lab).msize, 262144),
    "msize-bytes": (S("msize: 104857600"), lambda lab: opts(lab).msize, 104857600),
    "msize-min": (S("msize: 4096"), lambda lab: opts(lab).msize, 4096),
    "cache-loose": (S("cache: loose"), lambda lab: opts(lab).cache, "loose"),
    "cache-share-default": (S("readonly: false"), lambda lab: opts(lab).cache, "none"),
    "access-uid": (S("access: 1000"), lambda lab: (opts(lab).access, opts(lab).posixacl),
                   ("1000", False)),
    "access-any": (S("access: any"), lambda lab: (opts(lab).access, opts(lab).posixacl),
                   ("any", False)),
    "access-default-9p2000u": (S("version: 9p2000.u"),
                               lambda lab: (opts(lab).access, opts(lab).posixacl),
                               ("user", False)),
    "posixacl-off": (S("posixacl: false"), lambda lab: opts(lab).as_string(),
                     "trans=virtio,version=9p2000.L,msize=512000,cache=none,access=client"),
    "share-path-relative": (S("readonly: false"), lambda lab: share(lab).path.name, "data"),
    "share-path-absolute": (S("path: /srv/exports/data"), lambda lab: str(share(lab).path),
                            "/srv/exports/data"),
    "mount-trailing-slash": (S("mount: /mnt/data/"), lambda lab: share(lab).mount,
                             "/mnt/data"),
    "ssh-port": (G("network: {ssh_port: 2222}"), lambda lab: web(lab).ssh_port, 2222),
    "ssh-port-auto": (G("network: {ssh_port: auto}"), lambda lab: web(lab).ssh_port, None),
    "roles": (G("roles:\n  - web-server\n  - role: web-server\n    vars: {port: 80}\n"
                "    tags: [http]"),
              lambda lab: [(r.name, dict(r.vars), r.tags) for r in web(lab).roles],
              [("web-server", {}, ()), ("web-server", {"port": 80}, ("http",))]),
    "vars-verify": (G("vars: {a: 1}\nverify: [checks.py]"),
                    lambda lab: (dict(web(lab).vars), web(lab).verify[0].name),
                    ({"a": 1}, "checks.py")),
    "guest-named-yes": ("guests:\n  yes: {}\n", lambda lab: lab.guests[0].name, "yes"),
    "x-keys-ignored": ("x-anything: [1, 2]\nguests:\n  web:\n",
                       lambda lab: len(lab.guests), 1),
    "two-guests": ("guests:\n  web:\n  db:\n    network: {ssh_port: 2223}\n",
                   lambda lab: [g.name for g in lab.guests], ["web", "db"]),
    "shared-data-dir": ("""guests:
  web:
    shares: [{path: common, mount_tag: common, mount: /srv}]
  db:
    shares: [{path: common, mount_tag: common, mount: /srv}]
""", lambda lab: lab.guest("web").shares[0].path == lab.guest("db").shares[0].path, True),
    "lab-name-and-state": ("name: mylab\nstate_dir: st\n" + G("cpus: 1"),
                           lambda lab: (lab.name, lab.state_dir.name), ("mylab", "st")),
}


@pytest.mark.parametrize(("text", "read", "expected"), VALID.values(), ids=VALID.keys())
def test_valid(text: str, read: Callable[[LabSpec], Any], expected: Any,
               tmp_path: Path) -> None:
    (tmp_path / "roles" / "web-server").mkdir(parents=True)
    (tmp_path / "checks.py").write_text("")
    assert read(valid(text, tmp_path)) == expected


def test_relative_paths_resolve_against_the_lab_directory(tmp_path: Path) -> None:
    lab_dir = tmp_path / "labs"
    lab_dir.mkdir()
    lab_file = lab_dir / "lab.yml"
    lab_file.write_text(S("path: ../shared") + "    rootfs: {path: trees/web}\n")
    lab = load_lab(lab_file)
    guest = lab.guest("web")
    assert guest.shares[0].path == tmp_path / "shared"
    assert guest.root.path == lab_dir / "trees" / "web"
    assert lab.base_dir == lab_dir


WARNINGS: dict[str, tuple[str, int, str, str]] = {
    "passthrough-allowed": ("allow_passthrough: true\n" + G(
        "rootfs:\n  security_model: passthrough"), 5, "guests.web.rootfs.security_model",
        "QEMU will run as root"),
    "msize-above-virtio-cap": (S("msize: 1M"), 5, "guests.web.shares[0].msize",
                               "clamps msize to 512000"),
    "root-access-any": (G("rootfs:\n  access: any"), 4, "guests.web.rootfs.access",
                        "every guest user acts as one user"),
    "none-root": (G("rootfs:\n  security_model: none"), 4, "guests.web.rootfs.security_model",
                  "cannot chown"),
}


@pytest.mark.parametrize(("text", "line", "path", "fragment"), WARNINGS.values(),
                         ids=WARNINGS.keys())
def test_warning(text: str, line: int, path: str, fragment: str, tmp_path: Path) -> None:
    lab = valid(text, tmp_path)
    assert len(lab.warnings) == 1, lab.warnings
    assert lab.warnings[0].startswith(f"lab.yml:{line}:")
    assert f" {path}: " in lab.warnings[0]
    assert fragment in lab.warnings[0]


def test_no_warnings_for_a_plain_lab(tmp_path: Path) -> None:
    assert valid(S("msize: 512000"), tmp_path).warnings == ()


def test_builtin_default_lab(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """One bookworm guest `demo` with one extra read-write share, under the data home."""
    monkeypatch.setenv("PROVISION9P_HOME", str(tmp_path))
    lab = load_lab(None)
    assert [g.name for g in lab.guests] == ["demo"]
    demo = lab.guest("demo")
    assert demo.rootfs.suite == "bookworm"
    assert demo.root.security_model == "mapped-xattr"
    assert demo.root.path == tmp_path / "default" / "guests" / "demo" / "root"
    assert len(demo.shares) == 1
    data = demo.shares[0]
    assert (data.mount_tag, data.mount, data.readonly) == ("data", "/mnt/data", False)
    assert data.path == tmp_path / "default" / "share"
    assert lab.warnings == ()
    assert list(tmp_path.iterdir()) == []  # validating wrote nothing
