"""A Debian archive of our own for the mirror tests: a throwaway OpenPGP key made by gpg,
a dists/ tree with a Release listing its indexes' SHA256, clearsigned into InRelease, and
a tiny HTTP server serving the directory."""

from __future__ import annotations

import hashlib
import http.server
import lzma
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SigningKey:
    home: Path  # GNUPGHOME holding the secret key
    keyring: Path  # the public key alone, as a keyring file for gpgv
    fingerprint: str

    def gpg(self, *args: str, data: bytes = b"") -> bytes:
        proc = subprocess.run(["gpg", "--homedir", str(self.home), "--batch", "--yes",
                               "--pinentry-mode", "loopback", "--passphrase", "", *args],
                              input=data, capture_output=True, check=True)
        return proc.stdout

    def clearsign(self, text: str, digest: str = "SHA256") -> bytes:
        return self.gpg("--digest-algo", digest, "--clearsign", data=text.encode())


def make_key(name: str) -> SigningKey:
    """A new ed25519 signing key in a new GNUPGHOME under /tmp (a short path: gpg-agent's
    socket lives there). Call `forget` when done."""
    if shutil.which("gpg") is None:
        raise RuntimeError("gpg is required for these tests (apt-get install gpg)")
    home = Path(tempfile.mkdtemp(prefix="p9gpg-"))
    home.chmod(0o700)
    key = SigningKey(home, home / "public.gpg", "")
    key.gpg("--quick-gen-key", f"{name} <{name}@provision9p.invalid>", "ed25519", "sign",
            "never")
    listing = key.gpg("--with-colons", "--list-keys").decode()
    fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    key.keyring.write_bytes(key.gpg("--export", fpr))
    return SigningKey(home, key.keyring, fpr)


def forget(key: SigningKey) -> None:
    """Stop the gpg-agent that this key's GNUPGHOME started, then remove it."""
    subprocess.run(["gpgconf", "--homedir", str(key.home), "--kill", "gpg-agent"],
                   capture_output=True, check=False)
    shutil.rmtree(key.home, ignore_errors=True)


def release_text(suite: str, indexes: dict[str, bytes], *, codename: str = "",
                 valid_until: str = "", by_hash: bool = False) -> str:
    """A Release for `indexes` (path under dists/<suite>/ -> content)."""
    head = [f"Suite: {suite}", f"Codename: {codename or suite}",
            "Date: Sat, 10 May 2025 08:52:05 UTC", "Architectures: amd64",
            "Components: main"]
    if valid_until:
        head.append(f"Valid-Until: {valid_until}")
    if by_hash:
        head.append("Acquire-By-Hash: yes")
    sums = [f" {hashlib.sha256(data).hexdigest()} {len(data):>16} {name}"
            for name, data in sorted(indexes.items())]
    return "\n".join([*head, "SHA256:", *sums]) + "\n"


def write_archive(mirror: Path, suite: str, packages: str, key: SigningKey,
                  **release: str | bool) -> None:
    """dists/<suite>/{InRelease, main/binary-amd64/Packages.xz} under `mirror`."""
    dists = mirror / "dists" / suite
    index = dists / "main/binary-amd64"
    index.mkdir(parents=True, exist_ok=True)
    packages_xz = lzma.compress(packages.encode())
    (index / "Packages.xz").write_bytes(packages_xz)
    text = release_text(suite, {"main/binary-amd64/Packages.xz": packages_xz,
                                "main/binary-amd64/Packages": packages.encode()},
                        **release)  # type: ignore[arg-type]
    (dists / "Release").write_text(text)
    (dists / "InRelease").write_bytes(key.clearsign(text))


class HttpMirror:
    """A directory served over HTTP on 127.0.0.1, counting requests per path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hits: dict[str, int] = {}
        hits = self.hits

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a: object, **kw: object) -> None:
                super().__init__(*a, directory=str(root), **kw)  # type: ignore[arg-type]

            def do_GET(self) -> None:
                hits[self.path] = hits.get(self.path, 0) + 1
                super().do_GET()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/debian"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
