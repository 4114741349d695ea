"""The lab file rules, one table row each: the key path, the line, a message fragment."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import problems


@pytest.fixture()
def base(tmp_path: Path) -> Path:
    """A lab directory with one role and one verify file, as relative paths expect."""
    (tmp_path / "roles" / "web-server").mkdir(parents=True)
    (tmp_path / "checks.py").write_text("")
    return tmp_path


def G(body: str) -> str:
    """A lab with one guest `web`; the first line of `body` is line 3 of the file."""
    lines = body.strip("\n").splitlines()
    return "guests:\n  web:\n" + "".join(f"    {line}\n" for line in lines)


def S(body: str) -> str:
    """A lab whose guest `web` has one extra share; `body`'s first line is line 5.

    The share has path, mount_tag and mount unless `body` sets them.
    """
    lines = body.strip("\n").splitlines()
    keys = {line.split(":", 1)[0].strip() for line in lines}
    for key, value in (("path", "data"), ("mount_tag", "data"), ("mount", "/mnt/data")):
        if key not in keys:
            lines.append(f"{key}: {value}")
    head = "guests:\n  web:\n    shares:\n      -\n"
    return head + "".join(f"        {line}\n" for line in lines)


# (yaml, line, dotted key path, message fragment); each lab has exactly this one problem.
INVALID: dict[str, tuple[str, int, str, str]] = {
    # -- the lab --
    "top-unknown-key": ("nmae: x\n" + G("cpus: 1"), 1, "nmae", "did you mean 'name'?"),
    "top-not-mapping": ("- a\n- b\n", 1, "(top level)", "expected a mapping with a guests:"),
    "guests-missing": ("name: x\n", 1, "guests", "expected a mapping of guest names"),
    "guests-empty": ("guests: {}\n", 1, "guests", "expected a mapping of guest names"),
    "guests-list": ("guests:\n  - web\n", 1, "guests", "got a list"),
    "guest-name-upper": ("guests:\n  Web_1:\n    cpus: 1\n", 2, "guests.Web_1",
                         "becomes its hostname"),
    "guest-name-64": ("guests:\n  " + "a" * 64 + ":\n", 2, "guests." + "a" * 64,
                      "at most 63"),
    "guest-name-hyphen-end": ("guests:\n  web-:\n", 2, "guests.web-", "inner hyphens"),
    "guest-not-mapping": ("guests:\n  web: 5\n", 2, "guests.web", "expected a mapping, got 5"),
    "guest-unknown-key": (G("memroy: 1G"), 3, "guests.web.memroy",
                          "unknown key (did you mean 'memory'?)"),
    "allow-passthrough-string": ('allow_passthrough: "true"\n' + G("cpus: 1"), 1,
                                 "allow_passthrough", 'expected true or false, got "true"'),
    "defaults-not-mapping": ("defaults: [1]\n" + G("cpus: 1"), 1, "defaults",
                             "expected a mapping, got a list"),
    "duplicate-key": (G("cpus: 1\ncpus: 2"), 4, "guests.web.cpus", "duplicate key"),
    "yaml-syntax": ("guests:\n  web: [1,\n", 3, "YAML syntax", "expected the node content"),
    "merge-not-mapping": ("guests:\n  web:\n    <<: 5\n", 3, "guests.web",
                          "expected a mapping or list of mappings for merging"),
    # -- the guest --
    "arch-unknown": (G("arch: x86"), 3, "guests.web.arch", "did you mean 'x86_64'?"),
    "machine-wrong-arch": (G("arch: aarch64\nmachine: q35"), 4, "guests.web.machine",
                           "expected a aarch64 machine type (virt, virt-*)"),
    "machine-isapc": (G("machine: isapc"), 3, "guests.web.machine", 'got "isapc"'),
    "memory-words": (G("memory: lots"), 3, "guests.web.memory", "expected a size in MiB"),
    "memory-small": (G("memory: 64"), 3, "guests.web.memory", "from 128 to 1048576, got 64"),
    "memory-not-mib": (G("memory: 1000K"), 3, "guests.web.memory", 'got "1000K"'),
    "memory-bool": (G("memory: yes"), 3, "guests.web.memory", "got True"),
    "memory-null": (G("memory:"), 3, "guests.web.memory", "got nothing"),
    "cpus-zero": (G("cpus: 0"), 3, "guests.web.cpus", "from 1 to 64, got 0"),
    "cpus-string": (G("cpus: two"), 3, "guests.web.cpus", 'expected an integer, got "two"'),
    "accel": (G("accel: hvf"), 3, "guests.web.accel", "expected one of auto, kvm, tcg"),
    "boot-timeout": (G("boot_timeout: 5"), 3, "guests.web.boot_timeout", "from 10 to 3600"),
    "kernel-cloud": (G("kernel:\n  package: linux-image-cloud-amd64"), 4,
                     "guests.web.kernel.package", "cloud kernel flavour has no 9P"),
    "kernel-package-and-image": (G("kernel:\n  package: linux-image-amd64\n  image: vmlinuz"),
                                 4, "guests.web.kernel.package", "not both"),
    "kernel-initramfs-never": (G("kernel:\n  initramfs: never"), 4,
                               "guests.web.kernel.initramfs", "without an initramfs"),
    "kernel-initramfs-value": (G("kernel:\n  initramfs: sometimes"), 4,
                               "guests.web.kernel.initramfs", "auto, always, never"),
    "kernel-modules-no-image": (G("kernel:\n  modules: lib/modules"), 4,
                                "guests.web.kernel.modules", "go with a kernel image"),
    "kernel-cmdline-root": (G("kernel:\n  cmdline: quiet root=/dev/vda"), 4,
                            "guests.web.kernel.cmdline", "remove root=/dev/vda"),
    "kernel-unknown": (G("kernel:\n  pakage: x"), 4, "guests.web.kernel.pakage",
                       "did you mean 'package'?"),
    "kernel-not-mapping": (G("kernel: linux-image-amd64"), 3, "guests.web.kernel",
                           "expected a mapping"),
    "kernel-suite-name": (G("kernel:\n  suite: bookworm backports"), 4,
                          "guests.web.kernel.suite", "such as bookworm-backports, got"),
    "kernel-suite-and-image": (G("kernel:\n  suite: bookworm-backports\n  image: vmlinuz"),
                               4, "guests.web.kernel.suite", "goes with a kernel package"),
    "readahead-bookworm-kernel": (G("kernel:\n  suite: bookworm\nrootfs:\n  suite: trixie\n"
                                    "  cache: readahead"), 7, "guests.web.rootfs.cache",
                                  "bookworm's kernel (6.1)"),
    "readahead-bullseye-backports": (G("kernel:\n  suite: bullseye-backports\nrootfs:\n"
                                       "  suite: bullseye\n  cache: readahead"), 7,
                                     "guests.web.rootfs.cache",
                                     "bullseye-backports's kernel (6.1)"),
    "readahead-bookworm-security": (G("kernel:\n  suite: bookworm-security\nrootfs:\n"
                                      "  cache: readahead"), 6, "guests.web.rootfs.cache",
                                    "bookworm-security's kernel (6.1)"),
    "rootfs-suite-int": (G("rootfs:\n  suite: 12"), 4, "guests.web.rootfs.suite",
                         "expected a string, got 12"),
    "rootfs-variant": (G("rootfs:\n  variant: fat"), 4, "guests.web.rootfs.variant",
                       "minbase, buildd"),
    "rootfs-mirror-ftp": (G("rootfs:\n  mirror: ftp://127.0.0.1/debian"), 4,
                          "guests.web.rootfs.mirror", "http://, https:// or file://"),
    "rootfs-components": (G("rootfs:\n  components: main"), 4,
                          "guests.web.rootfs.components", "expected a list of strings"),
    "rootfs-packages-item": (G("rootfs:\n  packages: [vim, 1]"), 4,
                             "guests.web.rootfs.packages[1]", "expected a string, got 1"),
    "rootfs-capabilities": (G("rootfs:\n  capabilities: keep"), 4,
                            "guests.web.rootfs.capabilities", "expected one of drop, fail"),
    "rootfs-readonly": (G("rootfs:\n  readonly: true"), 4, "guests.web.rootfs.readonly",
                        "cannot be read-only"),
    "rootfs-version": (G("rootfs:\n  version: 9p2000.u\n  access: user\n  posixacl: false"),
                       4, "guests.web.rootfs.version", "a 9P root needs 9p2000.L"),
    "rootfs-mount": (G("rootfs:\n  mount: /"), 4, "guests.web.rootfs.mount", "unknown key"),
    "rootfs-security-none-fmode": (G("rootfs:\n  security_model: none\n  fmode: '0644'"), 5,
                                   "guests.web.rootfs.fmode", "only with mapped-xattr"),
    "rootfs-readahead-bookworm": (G("rootfs:\n  cache: readahead"), 4,
                                  "guests.web.rootfs.cache", "bookworm's kernel (6.1)"),
    "ssh-port-low": (G("network:\n  ssh_port: 80"), 4, "guests.web.network.ssh_port",
                     "from 1024 to 65535"),
    "ssh-port-words": (G("network:\n  ssh_port: any"), 4, "guests.web.network.ssh_port",
                       "a port (or auto)"),
    "network-unknown": (G("network:\n  bridge: br0"), 4, "guests.web.network.bridge",
                        "known: ssh_port"),
    "role-missing": (G("roles: [db-server]"), 3, "guests.web.roles[0]",
                     "no role named 'db-server'"),
    "role-path": (G("roles:\n  - role: ../web-server"), 4, "guests.web.roles[0]",
                  "not a path"),
    "role-not-name": (G("roles: [5]"), 3, "guests.web.roles[0]", "expected a role name"),
    "role-vars": (G("roles:\n  - role: web-server\n    vars: [1]"), 5,
                  "guests.web.roles[0].vars", "expected a mapping"),
    "role-unknown-key": (G("roles:\n  - role: web-server\n    tag: [x]"), 5,
                         "guests.web.roles[0].tag", "did you mean 'tags'?"),
    "vars-list": (G("vars: [1]"), 3, "guests.web.vars", "expected a mapping, got a list"),
    "verify-missing": (G("verify: [nothere.py]"), 3, "guests.web.verify[0]",
                       "no such test file"),
    # -- shares: QEMU's -fsdev side --
    "shares-not-list": (G("shares: data"), 3, "guests.web.shares", "expected a list"),
    "share-empty-item": (G("shares:\n  -"), 4, "guests.web.shares[0]", "an empty share"),
    "share-empty-mapping": (G("shares:\n  - {}"), 4, "guests.web.shares[0]",
                            "needs at least path, mount_tag and mount"),
    "share-string": (G("shares: [data]"), 3, "guests.web.shares[0]",
                     'expected a mapping, got "data"'),
    "share-unknown-key": (S("mountpoint: /srv"), 5, "guests.web.shares[0].mountpoint",
                          "did you mean 'mount'?"),
    "fsdriver-proxy": (S("fsdriver: proxy"), 5, "guests.web.shares[0].fsdriver",
                       "not production grade, not considered safe"),
    "fsdriver-proxy-removed": (S("fsdriver: proxy"), 5, "guests.web.shares[0].fsdriver",
                               "removed from QEMU 9.2"),
    "fsdriver-synth": (S("fsdriver: synth"), 5, "guests.web.shares[0].fsdriver",
                       "QEMU's test driver"),
    "fsdriver-other": (S("fsdriver: handle"), 5, "guests.web.shares[0].fsdriver",
                       'expected local, got "handle"'),
    "fsdriver-null": (S("fsdriver:"), 5, "guests.web.shares[0].fsdriver", "got nothing"),
    "socket": (S("socket: /run/9p.sock"), 5, "guests.web.shares[0].socket",
               "belongs to the proxy driver"),
    "sock-fd": (S("sock_fd: 3"), 5, "guests.web.shares[0].sock_fd",
                "belongs to the proxy driver"),
    "security-model-typo": (S("security_model: mapped-xatr"), 5,
                            "guests.web.shares[0].security_model",
                            "did you mean 'mapped-xattr'?"),
    "security-model-null": (S("security_model:"), 5, "guests.web.shares[0].security_model",
                            "got nothing"),
    "security-model-squash": (S("security_model: squash"), 5,
                              "guests.web.shares[0].security_model",
                              "mapped-xattr, mapped-file, passthrough, none, mapped"),
    "passthrough-not-allowed": (S("security_model: passthrough"), 5,
                                "guests.web.shares[0].security_model",
                                "allow_passthrough: true"),
    "passthrough-allow-false": ("allow_passthrough: false\n" + G(
        "rootfs:\n  security_model: passthrough"), 5, "guests.web.rootfs.security_model",
        "needs QEMU to run as root"),
    "fmode-with-none": (S("security_model: none\nfmode: '0644'"), 6,
                        "guests.web.shares[0].fmode", "not none"),
    "dmode-with-passthrough": ("allow_passthrough: true\n" + S(
        "security_model: passthrough\ndmode: '0755'"), 7, "guests.web.shares[0].dmode",
        "only with mapped-xattr or mapped-file, not passthrough"),
    "fmode-decimal": (S("fmode: 644"), 5, "guests.web.shares[0].fmode",
                      "644 has no leading 0, so it is a decimal number; write 0644 or 0o644"),
    "fmode-decimal-string": (S('fmode: "420"'), 5, "guests.web.shares[0].fmode",
                             "decimal number"),
    "fmode-symbolic": (S("fmode: rw-r--r--"), 5, "guests.web.shares[0].fmode",
                       'expected an octal mode like 0644, got "rw-r--r--"'),
    "fmode-hex": (S("fmode: 0x1a4"), 5, "guests.web.shares[0].fmode",
                  "expected an octal mode"),
    "fmode-not-octal-digit": (S("fmode: 0999"), 5, "guests.web.shares[0].fmode",
                              "expected an octal mode"),
    "fmode-sticky": (S("fmode: 01777"), 5, "guests.web.shares[0].fmode",
                     "from 0 to 0777, got 0o1777 (QEMU would drop"),
    "dmode-setgid": (S("dmode: 0o2775"), 5, "guests.web.shares[0].dmode", "got 0o2775"),
    "writeout": (S("writeout: delayed"), 5, "guests.web.shares[0].writeout",
                 "expected one of immediate"),
    "readonly-string": (S('readonly: "yes"'), 5, "guests.web.shares[0].readonly",
                        "expected true or false"),
    "multidevs": (S("multidevs: ignore"), 5, "guests.web.shares[0].multidevs",
                  "remap, forbid, warn"),
    "mount-tag-32-bytes": (S("mount_tag: " + "t" * 32), 5, "guests.web.shares[0].mount_tag",
                           "at most 31 bytes (QEMU's MAX_TAG_LEN), got 32"),
    "mount-tag-utf8-bytes": (S("mount_tag: " + "é" * 16), 5,
                             "guests.web.shares[0].mount_tag", "got 32"),
    "mount-tag-comma": (S("mount_tag: a,b"), 5, "guests.web.shares[0].mount_tag",
                        "a comma splits QEMU's -device options"),
    "mount-tag-space": (S("mount_tag: my data"), 5, "guests.web.shares[0].mount_tag",
                        'got "my data"'),
    "mount-tag-dash-first": (S("mount_tag: -o"), 5, "guests.web.shares[0].mount_tag",
                             "inner '-'"),
    "mount-tag-empty": (S('mount_tag: ""'), 5, "guests.web.shares[0].mount_tag",
                        "cannot be empty"),
    "mount-tag-null": (S("mount_tag:"), 5, "guests.web.shares[0].mount_tag",
                       "missing value (the name the guest mounts it by)"),
    "mount-tag-missing": (G("shares:\n  - path: data\n    mount: /mnt/data"), 4,
                          "guests.web.shares[0]", "missing key mount_tag"),
    "mount-tag-int": (S("mount_tag: 9"), 5, "guests.web.shares[0].mount_tag",
                      "expected a string, got 9"),
    "mount-tag-is-root-tag": (S("mount_tag: rootfs"), 5, "guests.web.shares[0].mount_tag",
                              "already used by the root share"),
    "path-missing": (G("shares:\n  - mount_tag: data\n    mount: /mnt/data"), 4,
                     "guests.web.shares[0]", "missing key path"),
    "path-null": (S("path:"), 5, "guests.web.shares[0].path", "missing value"),
    "path-empty": (S('path: ""'), 5, "guests.web.shares[0].path", "expected a host path"),
    "path-is-root-tree": (S("path: guests/web/root"), 5, "guests.web.shares[0].path",
                          "cannot be the root tree"),
    "path-inside-root-tree": (S("path: guests/web/root/srv"), 5, "guests.web.shares[0].path",
                              "be inside it"),
    "path-contains-root-tree": (S("path: guests"), 5, "guests.web.shares[0].path",
                                "or contain it"),
    "path-dotdot-root-tree": (S("path: data/../guests/web/root"), 5,
                              "guests.web.shares[0].path", "cannot be the root tree"),
    # -- shares: the guest's mount side --
    "msize-small": (S("msize: 1K"), 5, "guests.web.shares[0].msize",
                    'from 4096 to 134217728, got "1K"'),
    "msize-words": (S("msize: big"), 5, "guests.web.shares[0].msize",
                    "expected a size in bytes (512K, 1M, 104857600)"),
    "msize-huge": (S("msize: 1G"), 5, "guests.web.shares[0].msize", "to 134217728"),
    "msize-float": (S("msize: 1.5M"), 5, "guests.web.shares[0].msize", 'got "1.5M"'),
    "version": (S("version: 9p2000.X"), 5, "guests.web.shares[0].version",
                "9p2000.L, 9p2000.u, 9p2000"),
    "cache-writeback": (S("cache: writeback"), 5, "guests.web.shares[0].cache",
                        "none, loose, fscache, mmap, readahead, got"),
    "cache-readahead-bookworm": (S("cache: readahead"), 5, "guests.web.shares[0].cache",
                                 "came with Linux 6.4"),
    "access-root": (S("access: root"), 5, "guests.web.shares[0].access",
                    "user, any, client or a uid"),
    "access-negative": (S("access: -1"), 5, "guests.web.shares[0].access", "got -1"),
    "access-uid-too-big": (S("access: 4294967295"), 5, "guests.web.shares[0].access",
                           "got 4294967295"),
    "access-unicode-digits": (S("access: '١٢'"), 5, "guests.web.shares[0].access",
                              "or a uid"),
    "access-bool": (S("access: true"), 5, "guests.web.shares[0].access", "got True"),
    "access-client-9p2000u": (S("version: 9p2000.u\naccess: client"), 6,
                              "guests.web.shares[0].access", "needs version 9p2000.L"),
    "posixacl-access-user": (S("access: user\nposixacl: true"), 6,
                             "guests.web.shares[0].posixacl",
                             "drops posixacl unless access=client (here access=user)"),
    "posixacl-uid": (S("access: 1000\nposixacl: true"), 6, "guests.web.shares[0].posixacl",
                     "access=1000"),
    "posixacl-9p2000u": (S("version: 9p2000.u\nposixacl: true"), 6,
                         "guests.web.shares[0].posixacl", "needs version 9p2000.L"),
    "posixacl-string": (S("posixacl: on please"), 5, "guests.web.shares[0].posixacl",
                        "expected true or false"),
    "transport-unknown": (S("transport: virtio-9p"), 5, "guests.web.shares[0].transport",
                          "did you mean"),
    "transport-ccw-on-x86": (S("transport: virtio-9p-ccw"), 5,
                             "guests.web.shares[0].transport",
                             "does not plug into a x86_64 pc machine; use virtio-9p-pci"),
    "transport-mmio-on-pc": (S("transport: virtio-9p-device"), 5,
                             "guests.web.shares[0].transport", "x86_64 pc machine"),
    "transport-pci-on-microvm": (G("machine: microvm\nrootfs:\n  transport: virtio-9p-pci"),
                                 5, "guests.web.rootfs.transport", "use virtio-9p-device"),
    "transport-ccw-on-q35": (G("machine: q35\nrootfs:\n  transport: "
                                              "virtio-9p-ccw"), 5,
                                            "guests.web.rootfs.transport", "q35 machine"),
    "mount-relative": (S("mount: mnt/data"), 5, "guests.web.shares[0].mount",
                       "expected an absolute guest path other than /"),
    "mount-slash": (S("mount: /"), 5, "guests.web.shares[0].mount", "other than /"),
    "mount-dotdot": (S("mount: /mnt/../etc"), 5, "guests.web.shares[0].mount",
                     "write the mount point as /etc"),
    "mount-double-slash": (S("mount: /mnt//data"), 5, "guests.web.shares[0].mount",
                           "as /mnt/data"),
    "mount-space": (S("mount: /mnt/my data"), 5, "guests.web.shares[0].mount",
                    "white space"),
    "mount-null": (S("mount:"), 5, "guests.web.shares[0].mount", "missing value"),
    "mount-missing": (G("shares:\n  - path: data\n    mount_tag: data"), 4,
                      "guests.web.shares[0]", "missing key mount"),
}


@pytest.mark.parametrize(("text", "line", "path", "fragment"), INVALID.values(),
                         ids=INVALID.keys())
def test_invalid(text: str, line: int, path: str, fragment: str, base: Path) -> None:
    found = problems(text, base)
    assert len(found) == 1, found
    assert (found[0].line, found[0].path) == (line, path), found[0]
    assert fragment in found[0].message


SHARED_PROBLEMS: dict[str, tuple[str, int, str, str]] = {
    # `guests.web.shares[1]` duplicates; the first share is fine
    "mount-tag-twice": (G("""shares:
  - {path: a, mount_tag: data, mount: /mnt/a}
  - {path: b, mount_tag: data, mount: /mnt/b}"""), 5, "guests.web.shares[1].mount_tag",
                        "'data' is already used by shares[0]"),
    "mount-point-twice": (G("""shares:
  - {path: a, mount_tag: a, mount: /mnt/a}
  - {path: b, mount_tag: b, mount: /mnt/a/}"""), 5, "guests.web.shares[1].mount",
                          "/mnt/a is already the mount point of shares[0]"),
    "ssh-port-twice": ("""guests:
  web:
    network: {ssh_port: 2222}
  db:
    network:
      ssh_port: 2222
""", 6, "guests.db.network.ssh_port", "port 2222 is used by more than one guest (web too)"),
    "ssh-port-in-defaults": ("""defaults:
  network:
    ssh_port: 2222
guests:
  web: {}
  db: {}
""", 3, "defaults.network.ssh_port", "used by more than one guest"),
    "root-tree-in-defaults": ("""defaults:
  rootfs:
    path: trees/shared
guests:
  web:
  db:
""", 3, "defaults.rootfs.path", "overlaps the root tree of guest web"),
    "root-tree-twice": ("""guests:
  web:
    rootfs: {path: trees/one}
  db:
    rootfs:
      path: trees/one/../one
""", 6, "guests.db.rootfs.path", "each guest needs its own root tree"),
    "root-tree-nested": ("""guests:
  web:
    rootfs: {path: trees/web}
  db:
    rootfs:
      path: trees/web/db
""", 6, "guests.db.rootfs.path", "overlaps the root tree of guest web"),
    "root-tree-around-an-earlier-one": ("""guests:
  web:
    rootfs: {path: trees/all/web}
  db:
    rootfs:
      path: trees/all
""", 6, "guests.db.rootfs.path", "trees/all/web); each guest needs its own root tree"),
    "share-around-other-root": ("""guests:
  web: {}
  db:
    shares:
      - path: guests/web
        mount_tag: all
        mount: /srv/all
""", 5, "guests.db.shares[0].path", "overlaps the root tree of guest web"),
    "share-in-other-root": ("""guests:
  web: {}
  db:
    shares:
      - path: guests/web/root/srv
        mount_tag: webroot
        mount: /srv/web
""", 5, "guests.db.shares[0].path", "overlaps the root tree of guest web"),
    "defaults-bad-value-once": ("""defaults:
  memory: lots
guests:
  web: {}
  db: {}
""", 2, "defaults.memory", "expected a size in MiB"),
    "defaults-unknown-key-once": ("""defaults:
  cpu: 2
guests:
  web: {}
  db: {}
""", 2, "defaults.cpu", "did you mean 'cpus'?"),
    "defaults-share-error": ("""defaults:
  shares:
    - path: data
      mount_tag: data
      mount: /mnt/data
      fmode: 644
guests:
  web: {}
  db: {}
""", 6, "defaults.shares[0].fmode", "decimal number"),
    "defaults-passthrough": ("""defaults:
  rootfs:
    security_model: passthrough
guests:
  web: {}
""", 3, "defaults.rootfs.security_model", "allow_passthrough"),
    "defaults-overridden-still-checked-in-guest": ("""defaults:
  cpus: 2
guests:
  web:
    cpus: 100
""", 5, "guests.web.cpus", "from 1 to 64"),
    "yaml-merge-key-error-at-anchor": ("""x-common: &common
  cpus: 0
guests:
  web:
    <<: *common
""", 2, "guests.web.cpus", "from 1 to 64"),
    "guest-named-no": ("""guests:
  no:
    cpus: 0
""", 3, "guests.no.cpus", "from 1 to 64"),
}


@pytest.mark.parametrize(("text", "line", "path", "fragment"), SHARED_PROBLEMS.values(),
                         ids=SHARED_PROBLEMS.keys())
def test_invalid_across_keys(text: str, line: int, path: str, fragment: str,
                             base: Path) -> None:
    """Rules between keys, guests and `defaults:`: said once, where it was written."""
    found = problems(text, base)
    assert len(found) == 1, found
    assert (found[0].line, found[0].path) == (line, path), found[0]
    assert fragment in found[0].message


def test_every_mistake_reported_at_once(base: Path) -> None:
    text = """\
name: many
allow_passthrough: maybe
guests:
  web:
    memory: lots
    kernel:
      package: linux-image-cloud-amd64
    rootfs:
      security_model: passthrough
    shares:
      - path: data
        mount_tag: this-tag-is-far-too-long-for-qemu
        mount: relative/dir
        fsdriver: proxy
        fmode: 644
  Bad_Name:
    cpus: 0
"""
    found = [(p.line, p.path) for p in problems(text, base)]
    assert found == sorted(found), "problems come in file order"
    assert set(found) == {
        (2, "allow_passthrough"),
        (5, "guests.web.memory"),
        (7, "guests.web.kernel.package"),
        (9, "guests.web.rootfs.security_model"),
        (12, "guests.web.shares[0].mount_tag"),
        (13, "guests.web.shares[0].mount"),
        (14, "guests.web.shares[0].fsdriver"),
        (15, "guests.web.shares[0].fmode"),
        (16, "guests.Bad_Name"),
        (17, "guests.Bad_Name.cpus"),
    }


def test_yaml_syntax_error_stops_there(base: Path) -> None:
    """Nothing sound can be checked after a syntax error, so nothing else is said."""
    found = problems("guests:\n  web: {cpus: 1\n  db: {}\n", base)
    assert len(found) == 1 and found[0].path == "YAML syntax"
