"""The image and lock failures a user can meet."""

from __future__ import annotations

from provision9p.errors import Provision9pError


class ImageError(Provision9pError):
    """An image cannot be built, found, trusted or read."""


class BadImageRef(ImageError):
    """The command line names an image that is not in the store or not a file."""

    exit_code = 2


class LockError(Provision9pError):
    """LAB.lock does not fit the lab (or the tree): bad input, refreshed with lock --update."""

    exit_code = 2
