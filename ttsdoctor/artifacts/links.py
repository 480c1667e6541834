"""Symbolic links inside a checked tree that lead outside it (a repository can commit them)."""

from __future__ import annotations

import os

import msgspec


class OutsideLink(msgspec.Struct):
    """A link in the tree whose target lies outside the checked root: directories are not followed, files
    are read through the link but never written through it."""

    path: str
    points_to: str
    is_dir: bool
    exists: bool = True  # False: dangling here (a link to its author's home folder, committed by mistake)
    kind = "link"
    errors: tuple = ()


def leads_outside(path: str, root: str) -> str | None:
    """Where the link at `path` resolves to when that is outside `root` (None for anything else)."""
    if not os.path.islink(path):
        return None
    resolved = os.path.realpath(path)
    base = os.path.realpath(root)
    if resolved == base or resolved.startswith(base.rstrip(os.sep) + os.sep):
        return None
    return resolved


def load_link(path: str, root: str | None) -> OutsideLink:
    resolved = os.path.realpath(path)
    return OutsideLink(path, resolved, os.path.isdir(resolved), os.path.exists(resolved))
