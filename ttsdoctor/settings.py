"""Project settings: `[tool.ttsdoctor]` in pyproject.toml, or a ttsdoctor.toml, found from the checked path upwards.

[tool.ttsdoctor]
select = ["TOK", "VOC"]            # rule ids or family prefixes (default: all)
ignore = ["TOK006"]
unsafe-fixes = false
baseline = "ttsdoctor-baseline.json"

[tool.ttsdoctor.per-path-ignores]  # glob (relative to the settings file) -> codes
"models/parler-*/**" = ["TOK001"]

[tool.ttsdoctor.rules.VOC004]      # rule options
max-surplus = 2048

[[tool.ttsdoctor.suppress]]        # for files that cannot hold comments (JSON, weights)
path = "models/outetts/config.json"
code = "GEN003"
reason = "kept for the legacy loader"
"""

from __future__ import annotations

import fnmatch
import os
from typing import Any

import msgspec

from ttsdoctor.finding import Finding

SETTINGS_FILES = ("ttsdoctor.toml", "pyproject.toml")


class SettingsError(Exception):
    pass


class Suppression(msgspec.Struct, frozen=True):
    path: str  # glob relative to the settings file
    code: str
    reason: str = ""
    pointer: str | None = None


class Settings(msgspec.Struct):
    path: str | None = None  # the file the settings came from
    select: list[str] | None = None
    ignore: list[str] = []
    unsafe_fixes: bool = False
    baseline: str | None = None
    per_path_ignores: dict[str, list[str]] = {}
    suppress: list[Suppression] = []
    rule_options: dict[str, dict[str, Any]] = {}  # [tool.ttsdoctor.rules.<ID>]
    families: dict[str, str] = {}  # [tool.ttsdoctor.families] glob -> family or "none"

    def apply_family(self, model: Any) -> None:
        """Set a model folder's family as the project says (`"none"`: no TTS family), overriding detection."""
        from ttsdoctor.families import FAMILY_BY_NAME, Detection

        rel = self.relative(model.path)
        for pattern, name in self.families.items():
            if _glob(rel, pattern) or rel == pattern.rstrip("/"):
                model.family = FAMILY_BY_NAME.get(name.lower())
                model.family_detection = Detection(f"[tool.ttsdoctor.families] {pattern!r} = {name!r}")
                model.cache.clear()
                return

    @property
    def root(self) -> str:
        return os.path.dirname(os.path.abspath(self.path)) if self.path else os.getcwd()

    def relative(self, path: str) -> str:
        return os.path.relpath(os.path.abspath(path), self.root).replace(os.sep, "/")

    def ignored(self, finding: Finding) -> bool:
        rel = self.relative(finding.location.path)
        return any(
            _glob(rel, pattern) and any(finding.rule_id.startswith(c) for c in codes)
            for pattern, codes in self.per_path_ignores.items()
        )

    def suppression_for(self, finding: Finding) -> Suppression | None:
        rel = self.relative(finding.location.path)
        for item in self.suppress:
            if (
                _glob(rel, item.path)
                and finding.rule_id.startswith(item.code)
                and (item.pointer is None or item.pointer == finding.location.pointer)
            ):
                return item
        return None


def _glob(path: str, pattern: str) -> bool:
    return fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern.rstrip("/") + "/*")


def _table(path: str) -> dict[str, Any] | None:
    import tomllib

    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read: {exc.strerror}") from None
    if os.path.basename(path) == "pyproject.toml":
        tool = data.get("tool", {})
        return tool.get("ttsdoctor") if isinstance(tool, dict) else None
    return data


def find_settings(start: str) -> str | None:
    """The nearest ttsdoctor.toml, or pyproject.toml with a [tool.ttsdoctor] table, from `start` upwards."""
    current = os.path.abspath(start)
    if not os.path.isdir(current):
        current = os.path.dirname(current)
    while True:
        for name in SETTINGS_FILES:
            candidate = os.path.join(current, name)
            if os.path.isfile(candidate):
                if name == "ttsdoctor.toml":
                    return candidate
                try:
                    if _table(candidate) is not None:
                        return candidate
                except SettingsError:
                    return candidate  # report the broken file rather than skipping it
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def _codes(value: Any, key: str, path: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SettingsError(f"{path}: {key} must be a list of rule ids or prefixes")
    return [v.upper() for v in value]


def load_settings(path: str | None) -> Settings:
    if path is None:
        return Settings()
    table = _table(path) or {}
    if not isinstance(table, dict):
        raise SettingsError(f"{path}: [tool.ttsdoctor] must be a table")
    settings = Settings(path=path)
    known = {"select", "ignore", "unsafe-fixes", "baseline", "per-path-ignores", "suppress", "rules", "families"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise SettingsError(f"{path}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(known))})")
    if "select" in table:
        settings.select = _codes(table["select"], "select", path)
    if "ignore" in table:
        settings.ignore = _codes(table["ignore"], "ignore", path)
    if "unsafe-fixes" in table:
        if not isinstance(table["unsafe-fixes"], bool):
            raise SettingsError(f"{path}: unsafe-fixes must be true or false")
        settings.unsafe_fixes = table["unsafe-fixes"]
    if "baseline" in table:
        if not isinstance(table["baseline"], str):
            raise SettingsError(f"{path}: baseline must be a path")
        settings.baseline = os.path.join(settings.root, table["baseline"])
    ignores = table.get("per-path-ignores", {})
    if not isinstance(ignores, dict):
        raise SettingsError(f"{path}: per-path-ignores must be a table of glob = [codes]")
    settings.per_path_ignores = {str(k): _codes(v, f"per-path-ignores.{k}", path) for k, v in ignores.items()}
    rules = table.get("rules", {})
    if not isinstance(rules, dict) or not all(isinstance(v, dict) for v in rules.values()):
        raise SettingsError(f"{path}: [tool.ttsdoctor.rules.<ID>] tables hold rule options")
    settings.rule_options = {str(k).upper(): dict(v) for k, v in rules.items()}
    families = table.get("families", {})
    if not isinstance(families, dict) or not all(isinstance(v, str) for v in families.values()):
        raise SettingsError(f"{path}: [tool.ttsdoctor.families] maps folder globs to family names")
    from ttsdoctor.families import FAMILY_BY_NAME

    for pattern, name in families.items():
        if name.lower() != "none" and name.lower() not in FAMILY_BY_NAME:
            names = ", ".join(f.name for f in FAMILY_BY_NAME.values())
            raise SettingsError(f"{path}: unknown family {name!r} for {pattern!r} (known: {names}, or none)")
    settings.families = {str(k): str(v) for k, v in families.items()}
    for item in table.get("suppress", []):
        if not isinstance(item, dict) or not isinstance(item.get("path"), str) or not isinstance(item.get("code"), str):
            raise SettingsError(f"{path}: each [[suppress]] needs a path and a code")
        settings.suppress.append(
            Suppression(item["path"], item["code"].upper(), str(item.get("reason", "")), item.get("pointer"))
        )
    return settings
