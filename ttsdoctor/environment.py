"""Facts about the installed environment that rules phrase their messages with.

Versions come from package metadata (importlib.metadata): nothing heavy is imported.
"""

from __future__ import annotations

import functools
from importlib import metadata

from packaging.version import InvalidVersion, Version


@functools.cache
def installed_version(distribution: str) -> Version | None:
    try:
        return Version(metadata.version(distribution))
    except (metadata.PackageNotFoundError, InvalidVersion):
        return None


def transformers_major() -> int | None:
    version = installed_version("transformers")
    return version.major if version is not None else None
