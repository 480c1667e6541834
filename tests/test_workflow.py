"""Developer workflows: pre-commit hooks, CI formats, settings, suppressions, baselines."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from conftest import ROOT, run_cli, run_main

OUTETTS = os.path.join(ROOT, "fixtures/TOK001/bad/outetts-pad-eos-0")
CLEAN = os.path.join(ROOT, "fixtures/TOK001/good/outetts-distinct-pad")


def _codes(out: str) -> list[str]:
    return [f["code"] for f in json.loads(out)["findings"]]


def test_github_annotations() -> None:
    code, out = run_main("check", OUTETTS, "--format", "github", "--select", "TOK001")
    assert code == 1
    lines = out.splitlines()
    # config.json's pad == eos is the seed error; generation_config.json's a warning (the tokenizer pads otherwise)
    assert len(lines) == 2 and lines[0].startswith("::error file=") and lines[1].startswith("::warning file=")
    assert ",line=25,col=3,title=TOK001 pad-is-eos::pad_token_id 0 ('!') equals eos_token_id" in lines[0]


def test_sarif_is_valid_and_carries_rule_docs() -> None:
    from sarif_pydantic import Sarif

    _, out = run_main("check", OUTETTS, "--format", "sarif")
    payload = json.loads(out)
    Sarif.model_validate(payload)  # the SARIF 2.1.0 object model
    assert payload["version"] == "2.1.0"
    run = payload["runs"][0]
    rules = {r["id"]: r for r in run["tool"]["driver"]["rules"]}
    assert "transformers 5 never infers an attention mask" in rules["TOK001"]["help"]["markdown"]
    assert rules["TOK001"]["defaultConfiguration"]["level"] == "error"
    result = next(r for r in run["results"] if r["ruleId"] == "TOK001")
    assert run["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == "TOK001"
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"].endswith("config.json") and location["region"]["startLine"] == 25


def _project(tmp_path, settings: str) -> str:
    project = tmp_path / "proj"
    shutil.copytree(OUTETTS, project / "models" / "outetts")
    (project / "pyproject.toml").write_text(settings)
    return str(project)


def test_settings_select_ignore_per_path_and_suppress(tmp_path) -> None:
    project = _project(
        tmp_path,
        """
[tool.ttsdoctor]
select = ["TOK", "SUP"]
ignore = ["TOK005"]

[tool.ttsdoctor.per-path-ignores]
"models/outetts/generation_config.json" = ["TOK001"]

[[tool.ttsdoctor.suppress]]
path = "models/outetts/config.json"
code = "TOK004"
pointer = "/eos_token_id"

[[tool.ttsdoctor.suppress]]
path = "models/other/*"
code = "TOK001"
""",
    )
    _, out = run_main("check", project, "--format", "json")
    findings = json.loads(out)["findings"]
    codes = [f["code"] for f in findings]
    assert "TOK005" not in codes and not any(c.startswith(("GEN", "VOC")) for c in codes)
    tok001 = [f for f in findings if f["code"] == "TOK001"]
    assert [f["path"].endswith("config.json") and "generation" not in f["path"] for f in tok001] == [True]
    tok004 = {f["pointer"] for f in findings if f["code"] == "TOK004" and f["path"].endswith("/config.json")}
    assert tok004 == {"/pad_token_id"}
    unused = [f for f in findings if f["code"] == "SUP001"]
    assert len(unused) == 1 and "models/other/*" in unused[0]["message"]
    assert unused[0]["path"].endswith("pyproject.toml")


def test_bad_settings_exit_2(tmp_path) -> None:
    project = _project(tmp_path, "[tool.ttsdoctor]\nselct = ['TOK']\n")
    code, _, err = run_cli("check", project)
    assert code == 2 and "unknown setting 'selct'" in err
    (tmp_path / "proj" / "pyproject.toml").write_text("[tool.ttsdoctor\n")
    code, _, err = run_cli("check", project)
    assert code == 2 and "invalid TOML" in err and "Traceback" not in err


def test_explicit_config_and_unsafe_setting(tmp_path) -> None:
    config = tmp_path / "ttsdoctor.toml"
    config.write_text('select = ["ATT"]\n')
    code, out = run_main("check", OUTETTS, "--config", str(config), "--format", "json")
    assert code == 0 and _codes(out) == []


def test_yaml_inline_suppression(tmp_path) -> None:
    shutil.copytree(os.path.join(ROOT, "fixtures/FRZ002/bad/freeze-below-base"), tmp_path / "p")
    path = tmp_path / "p" / "config" / "training_config.yaml"
    path.write_text(
        path.read_text().replace("freeze_until_index: 2000", "freeze_until_index: 2000  # ttsdoctor: ignore[FRZ002]")
    )
    codes = _codes(run_main("check", str(path), "--format", "json")[1])
    assert "FRZ002" not in codes and "SUP001" not in codes


def test_baseline_reports_only_new_findings(tmp_path) -> None:
    shutil.copytree(OUTETTS, tmp_path / "m")
    baseline = tmp_path / "baseline.json"
    code, out = run_main("check", str(tmp_path / "m"), "--write-baseline", str(baseline))
    assert code == 0 and "Recorded 10 findings" in out
    code, out = run_main("check", str(tmp_path / "m"), "--baseline", str(baseline), "--format", "json")
    assert code == 0 and _codes(out) == []
    gen = tmp_path / "m" / "generation_config.json"
    gen.write_text(gen.read_text().replace('"do_sample": true', '"do_sample": true,\n  "output_attentions": true'))
    code, out = run_main("check", str(tmp_path / "m"), "--baseline", str(baseline), "--format", "json")
    assert code == 1 and _codes(out) == ["ATT001"]
    assert run_cli("check", str(tmp_path / "m"), "--baseline", str(tmp_path / "nope.json"))[0] == 2


def test_hook_mode_maps_files_and_skips_foreign_ones(tmp_path) -> None:
    (tmp_path / "package.json").write_text('{"name": "x"}')
    (tmp_path / "ci.yaml").write_text("on: push\njobs: {}\n")
    code, out = run_main(
        "check",
        "--hook",
        str(tmp_path / "package.json"),
        str(tmp_path / "ci.yaml"),
        os.path.join(OUTETTS, "tokenizer_config.json"),
        "--format",
        "json",
        "--select",
        "TOK001",
    )
    assert code == 1 and set(_codes(out)) == {"TOK001"}


def test_pre_commit_hooks_file_lists_both_hooks_and_docs_name_them() -> None:
    from ruamel.yaml import YAML

    with open(os.path.join(ROOT, ".pre-commit-hooks.yaml"), encoding="utf-8") as fh:
        hooks = YAML(typ="safe").load(fh)
    assert [h["id"] for h in hooks] == ["ttsdoctor", "ttsdoctor-fix"]
    assert all(h["language"] == "python" and "additional_dependencies" not in h for h in hooks)
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    for hook in hooks:
        assert f"id: {hook['id']}" in readme


def _git(repo, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
    }
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, env=env, timeout=600)


def test_real_pre_commit_fails_broken_commit_and_passes_fixed(tmp_path) -> None:
    """pre-commit installs the hooks of this repository (its committed HEAD: on CI, a clean checkout) once into
    its cache and runs them three times; `try-repo` would build a fresh environment for every run."""
    pre_commit = [sys.executable, "-m", "pre_commit"]
    repo = tmp_path / "repo"
    shutil.copytree(OUTETTS, repo / "model", ignore=shutil.ignore_patterns("model.safetensors"))
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    config = tmp_path / "pre-commit-config.yaml"
    config.write_text(
        f"repos:\n- repo: {ROOT}\n  rev: {head.stdout.strip()}\n  hooks:\n  - id: ttsdoctor\n  - id: ttsdoctor-fix\n"
    )
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache"), "NO_COLOR": "1"}
    env.pop("TTSDOCTOR_DEBUG", None)

    def run(hook: str = "ttsdoctor") -> subprocess.CompletedProcess:
        return subprocess.run(
            [*pre_commit, "run", hook, "--config", str(config), "--verbose"],
            cwd=repo,
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )

    broken = run()
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "TOK001" in broken.stdout
    fixing = run("ttsdoctor-fix")  # applies the safe fixes: pre-commit fails because files changed
    assert fixing.returncode == 1 and "files were modified by this hook" in fixing.stdout, fixing.stdout
    assert json.loads((repo / "model" / "config.json").read_text())["pad_token_id"] == 272
    assert not (repo / "model" / ".ttsdoctor-backups").exists()  # --no-backups: git is the backup
    _git(repo, "add", "-A")
    fixed = run()
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert len(list((tmp_path / "cache").glob("repo*"))) == 1  # one environment, built once


def test_rule_options_from_settings(tmp_path) -> None:
    project = tmp_path / "proj"
    shutil.copytree(os.path.join(ROOT, "fixtures/VOC004/bad/extension-for-another-tokenizer"), project)
    target = str(project / "config" / "training_config.yaml")
    assert "VOC004" in _codes(run_main("check", target, "--format", "json")[1])
    with open(project / "pyproject.toml", "a") as fh:
        fh.write("\n[tool.ttsdoctor.rules.VOC004]\npadding-multiple = 8\n")
    assert "VOC004" not in _codes(run_main("check", target, "--format", "json")[1])
    (project / "pyproject.toml").write_text("[tool.ttsdoctor.rules.VOC004]\npadding-multiple = 'eight'\n")
    code, _, err = run_cli("check", target)
    assert code == 2 and "must be int" in err
    (project / "pyproject.toml").write_text("[tool.ttsdoctor.rules.VOC004]\nmax-surplu = 3\n")
    code, _, err = run_cli("check", target)
    assert code == 2 and "has no option 'max-surplu'" in err and "max-surplus" in err
