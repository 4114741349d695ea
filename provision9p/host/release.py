"""The signed chain from a Debian mirror to every .deb, checked the way apt checks it.

1. `dists/<suite>/InRelease` carries an OpenPGP signature: gpgv checks it against the
   Debian archive keyring, and only the text inside the signature is read.
2. That Release lists the SHA256 and size of every index (`main/binary-amd64/Packages.xz`).
3. The Packages index lists the SHA256 and size of every .deb.

So a mirror (or anything between it and us) can make us trust no file the archive's key
did not vouch for. Parsing is python-debian's (`deb822.Release`); this module adds what
apt does around it: the signature, the suite and expiry checks, and the hash checks.
python-debian's own `Deb822.get_gpg_info` also runs gpgv, but its caller then parses the
text python-debian split off by itself, not the text gpgv verified (text before the
signed block is read as a paragraph); so gpgv's `--output` is what is parsed here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

from debian import deb822

from provision9p.errors import MirrorError

# The keyring debian-archive-keyring installs: every current Debian archive key.
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# Other keyrings (os.pathsep-separated), for a mirror that is an archive of one's own.
KEYRING_ENV = "PROVISION9P_KEYRING"
# gpg's digest algorithm numbers (RFC 4880 9.4) that apt no longer trusts.
WEAK_DIGESTS = {"1": "MD5", "2": "SHA1", "3": "RIPEMD160"}
_KEY_HINT = ("apt-get install debian-archive-keyring gpgv; for an archive of your own, "
             f"point {KEYRING_ENV} at its public keyring")


@dataclass(frozen=True)
class Expected:
    """What a file must be, and who said so (for the message when it is not)."""

    sha256: str
    size: int
    source: str  # e.g. "the signed Release of bookworm"


@dataclass(frozen=True)
class Release:
    """A verified Release: the suite it is for and the indexes it vouches for."""

    suite: str
    codename: str
    date: str
    valid_until: datetime | None
    by_hash: bool  # indexes can be fetched by their hash (no mid-sync mismatch)
    files: Mapping[str, Expected]  # path under dists/<suite>/ -> its hash and size
    signer: str  # fingerprint of the key whose signature was good


def keyrings() -> list[Path]:
    """The keyrings an InRelease is checked against: $PROVISION9P_KEYRING, else Debian's."""
    if env := os.environ.get(KEYRING_ENV):
        return [Path(p).absolute() for p in env.split(os.pathsep) if p]
    return [DEBIAN_KEYRING]


def verify_signature(path: Path, *, what: str,
                     keyring: Sequence[Path] | None = None) -> tuple[str, str]:
    """(the signed text, the signer's fingerprint) of a clearsigned file, via gpgv.

    Only the text inside the signature is returned: anything a tamperer put around it is
    never read. A bad signature, one by a key not in the keyring, an expired or revoked
    key, or a weak digest (SHA1, MD5) is an error, as in apt."""
    rings = list(keyring) if keyring is not None else keyrings()
    gpgv = shutil.which("gpgv")
    if gpgv is None:
        raise MirrorError(f"cannot check the signature of {what}: gpgv is missing",
                          hint="apt-get install gpgv")
    missing = [str(k) for k in rings if not k.is_file()]
    if missing or not rings:
        raise MirrorError(f"cannot check the signature of {what}: no keyring at "
                          f"{', '.join(missing) or '(none given)'}", hint=_KEY_HINT)
    with tempfile.TemporaryDirectory(prefix="provision9p-gpgv-") as home:
        out = Path(home) / "signed"
        argv = [gpgv, "--homedir", home, "--status-fd", "1", "--output", str(out)]
        for ring in rings:
            argv += ["--keyring", str(ring)]
        proc = subprocess.run([*argv, str(path)], capture_output=True, text=True,
                              errors="replace", env={**os.environ, "LC_ALL": "C"})
        status = [line.split()[1:] for line in proc.stdout.splitlines()
                  if line.startswith("[GNUPG:] ") and len(line.split()) > 1]
        signer = _good_signer(status)
        problem = _signature_problem(status, proc.returncode, signer)
        if problem:
            said = " ".join(proc.stderr.split())[-300:]
            raise MirrorError(
                f"the signature of {what} does not verify against "
                f"{', '.join(map(str, rings))}: {problem}" + (f" (gpgv: {said})" if said else ""),
                hint="the mirror or something between it and this host may have changed "
                     "the file; try another mirror (rootfs.mirror). " + _KEY_HINT)
        return out.read_text(encoding="utf-8", errors="replace"), signer


def _good_signer(status: list[list[str]]) -> str:
    """The fingerprint of a GOODSIG that has a VALIDSIG, or ''."""
    good = any(s[0] == "GOODSIG" for s in status)
    valid = [s for s in status if s[0] == "VALIDSIG" and len(s) > 8]
    return valid[0][-1] if good and valid else ""


def _signature_problem(status: list[list[str]], returncode: int, signer: str) -> str:
    """Why the signature is not good enough, or '' when it is."""
    kinds = {s[0] for s in status}
    for bad, why in (("BADSIG", "a signature is bad (the text was changed)"),
                     ("EXPKEYSIG", "it is signed by an expired key"),
                     ("REVKEYSIG", "it is signed by a revoked key")):
        if bad in kinds:
            return why
    weak = [WEAK_DIGESTS[s[8]] for s in status if s[0] == "VALIDSIG" and len(s) > 8
            and s[8] in WEAK_DIGESTS]
    if weak:
        return f"it is signed with a weak digest ({weak[0]})"
    if returncode == 0 and signer:
        return ""
    if "NO_PUBKEY" in kinds or "ERRSIG" in kinds:
        keys = sorted({s[1] for s in status if s[0] in ("NO_PUBKEY", "ERRSIG") and len(s) > 1})
        return f"it is signed by a key not in the keyring ({', '.join(keys)})"
    if "NODATA" in kinds or not kinds:
        return "it carries no OpenPGP signature"
    return f"gpgv exited with status {returncode}"


def parse_release(text: str, *, suite: str, origin: str, signer: str = "",
                  now: datetime | None = None) -> Release:
    """Read a verified Release with python-debian and check it is the suite asked for
    and still valid: a signed Release of another suite, or an expired one replayed by a
    mirror, is refused as apt refuses it."""
    fields = deb822.Release(text)
    what = f"the signed Release of {suite} at {origin}"
    names = (fields.get("Suite", ""), fields.get("Codename", ""))
    if suite not in names:
        raise MirrorError(f"{what} is for Suite {names[0] or '?'}, Codename "
                          f"{names[1] or '?'} (not {suite})",
                          hint="check the suite, or whether the mirror serves the right files")
    valid_until = _date(fields.get("Valid-Until", ""), what)
    now = now or datetime.now(UTC)
    if valid_until is not None and valid_until < now:
        raise MirrorError(f"{what} expired at {fields['Valid-Until']} (Valid-Until)",
                          hint="the mirror is out of date (or replays an old Release); "
                               "try again later or use another mirror (rootfs.mirror)")
    entries = fields.get("SHA256") or []
    if not entries:
        raise MirrorError(f"{what} lists no SHA256 sums", hint="use an up-to-date mirror")
    source = f"the signed Release of {suite}"
    files = {e["name"]: Expected(e["sha256"].lower(), int(e["size"]), source) for e in entries}
    return Release(suite=fields.get("Suite", ""), codename=fields.get("Codename", ""),
                   date=fields.get("Date", ""), valid_until=valid_until,
                   by_hash=fields.get("Acquire-By-Hash", "").strip().lower() == "yes",
                   files=files, signer=signer)


def _date(value: str, what: str) -> datetime | None:
    if not value.strip():
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError) as exc:
        raise MirrorError(f"{what} has an unreadable date {value!r}",
                          hint="use another mirror (rootfs.mirror)") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def matches(path: Path, expected: Expected) -> bool:
    """Is `path` the file `expected` describes (size first: it is free)?"""
    try:
        return path.stat().st_size == expected.size and file_sha256(path) == expected.sha256
    except OSError:
        return False


def mismatch(what: str, url: str, expected: Expected, *, sha256: str, size: int
             ) -> MirrorError:
    """The error for a file that is not what the chain says it must be."""
    if size != expected.size:
        got = f"{size} bytes where {expected.source} says {expected.size}"
    else:
        got = f"SHA256 {sha256} where {expected.source} says {expected.sha256}"
    return MirrorError(f"{what} from {url} does not match: {got}; it was not kept",
                       hint="the mirror may be mid-sync (try again later) or the file was "
                            "changed on the way; try another mirror (rootfs.mirror)")
