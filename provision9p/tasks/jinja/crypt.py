"""Password hashes for /etc/shadow, written from the published algorithms.

Python's `crypt` module is deprecated since 3.11 and gone in 3.13, and passlib is not
a dependency: SHA-crypt (Drepper's specification, `$5$`/`$6$`) and MD5-crypt (`$1$`)
are short enough to write here; bcrypt comes from the `bcrypt` package (paramiko's).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable

from provision9p.errors import TaskError

_B64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SALT_CHARS = frozenset(_B64)

# The byte triples each output group takes, from the specification's final step.
_ORDER_512 = [(0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26),
              (6, 27, 48), (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32),
              (12, 33, 54), (34, 55, 13), (56, 14, 35), (15, 36, 57), (37, 58, 16),
              (59, 17, 38), (18, 39, 60), (40, 61, 19), (62, 20, 41)]
_ORDER_256 = [(0, 10, 20), (21, 1, 11), (12, 22, 2), (3, 13, 23), (24, 4, 14), (15, 25, 5),
              (6, 16, 26), (27, 7, 17), (18, 28, 8), (9, 19, 29)]
_ORDER_MD5 = [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)]


def _b64(b2: int, b1: int, b0: int, n: int) -> str:
    w = (b2 << 16) | (b1 << 8) | b0
    out = []
    for _ in range(n):
        out.append(_B64[w & 0x3F])
        w >>= 6
    return "".join(out)


def _repeat(block: bytes, length: int) -> bytes:
    return (block * (length // len(block) + 1))[:length]


def sha_crypt(password: bytes, salt: bytes, rounds: int = 5000, bits: int = 512) -> str:
    """`$6$` (bits=512) or `$5$` (bits=256) crypt, as glibc's crypt(3) computes it."""
    new: Callable[[bytes], hashlib._Hash] = hashlib.sha512 if bits == 512 else hashlib.sha256
    salt = salt[:16]
    b = new(password + salt + password).digest()
    ctx = new(password + salt + _repeat(b, len(password)))
    n = len(password)
    while n:
        ctx.update(b if n & 1 else password)
        n >>= 1
    a = ctx.digest()
    p = _repeat(new(password * len(password)).digest(), len(password))
    s = _repeat(new(salt * (16 + a[0])).digest(), len(salt))
    # The round's input depends on i mod 2, 3 and 7: one pattern per i mod 42.
    plan = []
    for i in range(42):
        mid = (s if i % 3 else b"") + (p if i % 7 else b"")
        plan.append((True, p + mid) if i & 1 else (False, mid + p))
    for i in range(rounds):
        odd, fixed = plan[i % 42]
        a = new(fixed + a).digest() if odd else new(a + fixed).digest()
    if bits == 512:
        body = "".join(_b64(a[x], a[y], a[z], 4) for x, y, z in _ORDER_512) + _b64(0, 0, a[63], 2)
        ident = "6"
    else:
        body = "".join(_b64(a[x], a[y], a[z], 4) for x, y, z in _ORDER_256)
        body += _b64(0, a[31], a[30], 3)
        ident = "5"
    spec = "" if rounds == 5000 else f"rounds={rounds}$"
    return f"${ident}${spec}{salt.decode('ascii')}${body}"


def md5_crypt(password: bytes, salt: bytes) -> str:
    """`$1$` crypt (FreeBSD's MD5 scheme, kept for old systems)."""
    salt = salt[:8]
    b = hashlib.md5(password + salt + password).digest()
    ctx = hashlib.md5(password + b"$1$" + salt + _repeat(b, len(password)))
    n = len(password)
    while n:
        ctx.update(b"\0" if n & 1 else password[:1])
        n >>= 1
    a = ctx.digest()
    for i in range(1000):
        data = (password if i & 1 else a) + (salt if i % 3 else b"")
        data += (password if i % 7 else b"") + (a if i & 1 else password)
        a = hashlib.md5(data).digest()
    body = "".join(_b64(a[x], a[y], a[z], 4) for x, y, z in _ORDER_MD5) + _b64(0, 0, a[11], 2)
    return f"$1${salt.decode('ascii')}${body}"


#: What Ansible (through passlib) uses when no rounds are given; its hashes carry them.
DEFAULT_ROUNDS = {"sha512": 656000, "sha256": 535000, "blowfish": 12}
_ALIASES = {"sha512_crypt": "sha512", "sha256_crypt": "sha256", "md5_crypt": "md5",
            "bcrypt": "blowfish"}


def password_hash(password: object, hashtype: str = "sha512", salt: str | None = None,
                  salt_size: int | None = None, rounds: int | None = None,
                  ident: str | None = None) -> str:
    """Ansible's `password_hash` filter: the same string for the same salt and rounds."""
    kind = _ALIASES.get(hashtype, hashtype)
    if kind not in ("sha512", "sha256", "md5", "blowfish"):
        raise TaskError(f"password_hash: unknown hash type {hashtype!r}",
                        hint="use sha512, sha256, md5 or blowfish")
    secret = str(password).encode("utf-8")
    limit = {"md5": 8, "blowfish": 22}.get(kind, 16)
    if salt is None:
        salt = "".join(secrets.choice(_B64) for _ in range(salt_size or limit))
    salt = str(salt)
    if not salt or not set(salt) <= SALT_CHARS or len(salt) > limit:
        raise TaskError(f"password_hash: invalid salt {salt!r}",
                        hint=f"a salt is 1 to {limit} characters from [./0-9A-Za-z]")
    if kind == "md5":
        return md5_crypt(secret, salt.encode("ascii"))
    if kind == "blowfish":
        return _bcrypt(secret, salt, int(rounds or DEFAULT_ROUNDS["blowfish"]), ident or "2b")
    rounds = int(rounds or DEFAULT_ROUNDS[kind])
    if not 1000 <= rounds <= 999_999_999:
        raise TaskError(f"password_hash: rounds must be 1000 to 999999999, not {rounds}")
    return sha_crypt(secret, salt.encode("ascii"), rounds, 512 if kind == "sha512" else 256)


def _bcrypt(secret: bytes, salt: str, rounds: int, ident: str) -> str:
    import bcrypt  # paramiko's dependency; only blowfish hashes need it

    if len(salt) != 22:
        raise TaskError(f"password_hash: a blowfish salt is exactly 22 characters, not {salt!r}")
    # bcrypt's own base64 order; the last salt character's 4 low bits are unused and
    # must be zero (passlib repairs them the same way, so Ansible's hash is this one).
    alphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    salt = salt[:21] + alphabet[alphabet.index(salt[21]) & 0x30]
    setting = f"${ident}${rounds:02d}${salt}".encode("ascii")
    return bcrypt.hashpw(secret, setting).decode("ascii")
