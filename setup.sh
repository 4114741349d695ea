#!/usr/bin/env bash
# Set everything up on a Debian 12 host (as root), then run one job:
#   ./setup.sh up [LAB [GUEST...]]   the whole pipeline on LAB (default: the built-in default lab)
#   ./setup.sh test [--all] [PYTEST-ARGS]
#                         ruff, mypy and the CI ring (unit, tree and the vm tests that prove
#                         each feature); --all adds the slow ring (long comparisons, cold caches)
# `up` installs what running needs; `test` adds what testing needs. Safe to run again: it
# installs only what is missing.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

APT_PACKAGES=(
  qemu-system-x86 qemu-utils debootstrap busybox-static cpio zstd xz-utils
  openssh-client python3-venv acl attr iproute2 ca-certificates gpgv debian-archive-keyring
  vde2 mmdebstrap uidmap
  qemu-system-arm qemu-user-static binfmt-support arch-test  # arch-test: mmdebstrap, foreign trees
)
TEST_APT_PACKAGES=(
  libvirt-clients libxml2-utils  # virt-xml-validate, for the libvirt domain's test
  qemu-system-misc  # qemu-system-s390x: the test that QEMU realizes an s390x guest's devices
  iptables  # iptables-save: the host's firewall rules, before and after a contained tree phase
  kmod  # depmod, for virtme-ng in bench/virtme_ng.py (a bench dependency only)
)
job=${1:-up}
if [ "$job" = test ]; then APT_PACKAGES+=("${TEST_APT_PACKAGES[@]}"); fi

say() { printf '==> %s\n' "$*" >&2; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${missing[*]}; run this as root, or install them first" >&2
    exit 1
  fi
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# aarch64 guests' trees run their programs through qemu-user: register it with binfmt_misc
# (update-binfmts mounts it) when a package install could not, e.g. binfmt_misc was unmounted.
if [ "$(id -u)" = 0 ] && command -v update-binfmts >/dev/null &&
   ! grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
  say "registering qemu-user for aarch64 with binfmt_misc"
  update-binfmts --enable qemu-aarch64 || say "could not; aarch64 guests will not build here"
fi

if [ ! -x .venv/bin/python ]; then
  say "creating the virtual environment in .venv"
  python3 -m venv .venv
fi
# running needs provision9p and its dependencies; testing adds the [test] extra (ruff, mypy,
# Ansible for the compatibility tests, pytest-timeout). A stamp per set.
target=.; stamp=.venv/.provision9p-installed
if [ "$job" = test ]; then target='.[test]'; stamp=.venv/.provision9p-test-installed; fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "installing provision9p ($target) and its dependencies into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e "$target"
  touch "$stamp"
fi

shift || true
case "$job" in
  up)
    # ./setup.sh up [LAB [GUEST...]]: the lab file is the CLI's -f.
    if [ $# -gt 0 ]; then lab=$1; shift; exec .venv/bin/provision9p -f "$lab" up "$@"; fi
    exec .venv/bin/provision9p up
    ;;
  test)
    say "ruff"
    .venv/bin/ruff check .
    say "mypy"
    .venv/bin/mypy
    # --all: the slow ring too (tests/conftest.py deselects `slow` unless it is given)
    ring=()
    if [ "${1:-}" = --all ]; then shift; ring=(--run-slow); fi
    # Two lanes on the two cores: the vm tests here, one guest after another, and the unit
    # and tree rings beside them, whose report follows the vm lane's. PYTEST-ARGS go to both;
    # a lane they leave empty (pytest's exit 5) is no failure.
    say "pytest: the vm lane here; the unit and tree rings beside it (their report follows)"
    beside=$(mktemp)
    .venv/bin/python -m pytest -ra --durations=15 -p no:cacheprovider -m "not vm" \
      "${ring[@]}" "$@" >"$beside" 2>&1 &
    lane=$!
    trap 'kill "$lane" 2>/dev/null || true; rm -f "$beside"' EXIT
    vm=0; .venv/bin/python -m pytest -ra --durations=30 -m vm "${ring[@]}" "$@" || vm=$?
    rest=0; wait "$lane" || rest=$?
    say "pytest: the unit and tree rings"
    cat "$beside"
    failed=0
    for rc in "$vm" "$rest"; do [ "$rc" = 0 ] || [ "$rc" = 5 ] || failed=1; done
    if [ "$vm" = 5 ] && [ "$rest" = 5 ]; then failed=1; fi  # nothing ran at all
    exit "$failed"
    ;;
  *)
    echo "usage: ./setup.sh [up [LAB [GUEST...]] | test [--all] [PYTEST-ARGS]]" >&2
    exit 2
    ;;
esac
