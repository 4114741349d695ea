"""provision9p against virtme-ng, side by side: a built guest's `up` to its first SSH
command, and virtme-ng's boot of the same kernel to its --exec command, interleaved.

virtme-ng (pip) boots the host's own root read-only over 9P with a shell-like init; we
boot a full systemd guest with sshd. Both under TCG (--disable-kvm), the same Debian
kernel (the guest's, from provision9p's cache; virtme-ng writes modules.dep into the
kernel dir it gets, so it gets a copy). Without udev on the host virtme-ng's return
channel is missing: it exits 255 although the command ran, and the command's output
does not come back either ("cannot find script I/O ports ... console fallback"). So its
time is taken to its init's console line "script exited with code 0" (or our marker,
where the output does come back), not to its exit, and it is stopped there; that
slightly favours virtme-ng (its shutdown is not counted).

Usage (as root, the guest built; PROVISION9P_HOME as for `up`):
  .venv/bin/python bench/virtme_ng.py [-f LAB] [--guest demo] [--rounds 3]
      [--venv DIR] [--out bench/results/virtme-ng.md]
Needs kmod (depmod) on the host for virtme-ng: a bench dependency, which setup.sh
installs (apt-get install kmod).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provision9p import paths
from provision9p.lab import load_lab
from provision9p.target import resolve

MARK = "P9BENCH-DONE"
DONE = b"virtme-ng-init: script exited with code 0"
REPO = Path(__file__).resolve().parent.parent


def vng_venv(where: Path) -> Path:
    """A throwaway venv with pip's virtme-ng (kept when --venv names it)."""
    vng = where / "bin" / "vng"
    if not vng.exists():
        subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
        subprocess.run([str(where / "bin/pip"), "install", "-q", "virtme-ng"], check=True)
    return vng


def run_vng(vng: Path, kernel: Path, timeout: float = 180) -> float:
    """Seconds from starting vng until its command's output line; its process group is
    stopped there (we started it in its own session)."""
    env = dict(os.environ, PATH=f"{vng.parent}:{os.environ['PATH']}")
    argv = [str(vng), "--run", str(kernel), "--disable-kvm", "--force-9p", "--verbose",
            "--exec", f"echo {MARK}-$(uname -r)"]
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True,
                            cwd=tempfile.gettempdir())
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            # The command's own output does not reach the host without virtio-serial
            # ports (no udev on the host): its init says on the console that it ran.
            if (MARK.encode() + b"-" in raw and b"$(" not in raw) or DONE in raw:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                break
        raise RuntimeError(f"virtme-ng did not run its command (status {proc.poll()})")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_ours(lab_args: list[str], guest: str) -> float:
    """Seconds for `up --no-verify` of the built, stopped guest plus `ssh GUEST -- true`.
    The guest is stopped again before the next virtme-ng run, which would otherwise
    share the host with the rest of its boot (before 2026-12-03 night it was not)."""
    p9 = [sys.executable, "-m", "provision9p", *lab_args]
    subprocess.run([*p9, "down", guest], check=True, capture_output=True)
    start = time.monotonic()
    subprocess.run([*p9, "up", guest, "--no-verify"], check=True, capture_output=True)
    subprocess.run([*p9, "ssh", guest, "--", "true"], check=True)
    took = time.monotonic() - start
    subprocess.run([*p9, "down", guest], check=True, capture_output=True)
    return took


def main() -> None:
    # a plain kill ends the run through the cleanup below (QEMU stopped, unit restored)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser()
    ap.add_argument("-f", "--lab")
    ap.add_argument("--guest", default="demo")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--venv", type=Path)
    ap.add_argument("--out", type=Path, default=REPO / "bench/results/virtme-ng.md")
    args = ap.parse_args()
    if shutil.which("depmod") is None:
        sys.exit("virtme-ng needs depmod: apt-get install kmod")
    lab = load_lab(Path(args.lab) if args.lab else None)
    target = resolve(lab, lab.guest(args.guest))
    build = target.build_record()
    if build is None:
        sys.exit(f"{args.guest} is not built: `provision9p up {args.guest}` once first")
    kdir = paths.cache_home() / "kernels" / Path(build.kernel).stem
    images = sorted((kdir / "boot").glob("vmlinuz-*"))
    if not images:
        sys.exit(f"no cached kernel package for {build.kernel} in {kdir}")
    lab_args = ["-f", args.lab] if args.lab else []
    with tempfile.TemporaryDirectory(prefix="p9-vng-") as tmp:
        kcopy = Path(tmp) / "kernel"
        shutil.copytree(kdir, kcopy, symlinks=True)
        vng = vng_venv(args.venv or Path(tmp) / "venv")
        kernel = kcopy / "boot" / images[0].name
        vng_times: list[float] = []
        our_times: list[float] = []
        loads: list[float] = []
        try:
            for r in range(args.rounds):
                loads.append(os.getloadavg()[0])
                vng_times.append(run_vng(vng, kernel))
                our_times.append(run_ours(lab_args, args.guest))
                print(f"round {r + 1}: virtme-ng {vng_times[-1]:.2f} s, provision9p "
                      f"{our_times[-1]:.2f} s", file=sys.stderr, flush=True)
        finally:  # the guest as it was found: stopped
            subprocess.run([sys.executable, "-m", "provision9p", *lab_args, "down",
                            args.guest], capture_output=True)
    write(args.out, vng_times, our_times, loads, build.release)


def write(out: Path, vng: list[float], ours: list[float], loads: list[float],
          release: str) -> None:
    mv, mo = statistics.median(vng), statistics.median(ours)
    load = os.getloadavg()[0]
    rows = "\n".join(f"| {i + 1} | {lo:.1f} | {v:.2f} | {o:.2f} | {o / v:.2f} |"
                     for i, (v, o, lo) in enumerate(zip(vng, ours, loads, strict=True)))
    out.write_text(f"""# provision9p against virtme-ng (bench/virtme_ng.py)

{len(vng)} interleaved rounds on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())},
TCG on 2 shared cores (load average at the end {load:.1f}; other work ran on the host),
Debian kernel {release} for both.

- virtme-ng: `vng --run <copy of the kernel> --disable-kvm --force-9p --verbose --exec
  'echo {MARK}-$(uname -r)'`, from its start to its init's console line `script exited
  with code 0`. Without udev on the host its virtio-serial ports are missing: the
  command's output does not come back and vng exits 255 after the command ran; it is
  stopped at that line, so its shutdown is not counted.
- provision9p: `provision9p up GUEST --no-verify` of the built, stopped guest, then
  `provision9p ssh GUEST -- true`, both timed, from the start of `up` to the end of `ssh`
  (a full systemd guest with sshd, roles applied over SSH).

| round | load avg at its start | virtme-ng (s) | provision9p (s) | ratio |
|---|---|---|---|---|
{rows}

Median: virtme-ng {mv:.2f} s, provision9p {mo:.2f} s, ratio **{mo / mv:.2f}**
(goal: at most 1.0).
""")
    print(out.read_text())


if __name__ == "__main__":
    main()
