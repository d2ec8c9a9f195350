"""workflow/envs/hi4dfix.yaml (the conda environment every rule names) gets what pyproject.toml needs,
and the torch pins are written once, in pyproject.toml, which setup.sh follows too.

conda and mamba are not available here, so the environment is checked as a file, not created."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from workflow_helpers import REPO

ENV_FILE = REPO / "workflow" / "envs" / "hi4dfix.yaml"
PINNED = ("torch", "torchvision")  # a pair that imports together


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def dependencies() -> dict[str, Requirement]:
    return {(r := Requirement(line)).name: r for line in pyproject()["project"]["dependencies"]}


def conda_and_pip(env: dict) -> tuple[list[str], list[str]]:
    """The conda specs and the pip lines of an environment file."""
    conda = [dep for dep in env["dependencies"] if isinstance(dep, str)]
    pip = [line for dep in env["dependencies"] if isinstance(dep, dict) for line in dep.get("pip", [])]
    return conda, pip


def installed_projects(env_file: Path, pip_lines: list[str]) -> list[Path]:
    """Local projects the pip section installs (``-e DIR`` or ``DIR``), resolved as conda does: from the
    folder of the environment file, where it runs pip."""
    projects = []
    for line in pip_lines:
        target = line.removeprefix("-e").strip()
        if target.startswith((".", "/")):
            projects.append((env_file.parent / target).resolve())
    return projects


def env_gets(env_file: Path, name: str) -> bool:
    """Whether the environment installs ``name``: listed itself (conda or pip), or a dependency of a
    local project it installs whose pyproject.toml names it."""
    env = yaml.safe_load(env_file.read_text())
    conda, pip = conda_and_pip(env)
    listed = {re.split(r"[=<>!~ \[]", spec, maxsplit=1)[0].lower() for spec in conda + pip if not spec.startswith("-")}
    if name.lower() in listed:
        return True
    for project in installed_projects(env_file, pip):
        config = tomllib.loads((project / "pyproject.toml").read_text())
        if name in {Requirement(line).name for line in config["project"]["dependencies"]}:
            return True
    return False


def test_torch_pins_are_exact_and_in_pyproject():
    deps = dependencies()
    for name in PINNED:
        specifiers = list(deps[name].specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"pyproject.toml: {deps[name]} is not a pin"


def test_environment_installs_this_repository_with_every_dependency():
    conda, pip = conda_and_pip(yaml.safe_load(ENV_FILE.read_text()))
    assert "pip" in conda
    assert REPO.resolve() in installed_projects(ENV_FILE, pip), f"{ENV_FILE} does not install {REPO}"
    missing = [name for name in dependencies() if not env_gets(ENV_FILE, name)]
    assert not missing, f"{ENV_FILE} lacks {missing}"


def test_environment_python_fits_the_project():
    conda, _ = conda_and_pip(yaml.safe_load(ENV_FILE.read_text()))
    (python,) = [spec for spec in conda if spec.startswith("python")]
    version = python.split("=", 1)[1]
    assert SpecifierSet(pyproject()["project"]["requires-python"]).contains(version)


def test_no_other_torch_pins():
    """setup.sh and the environment follow pyproject.toml's pins: any torch version they write is the same."""
    deps = dependencies()
    conda, pip = conda_and_pip(yaml.safe_load(ENV_FILE.read_text()))
    written = {
        "setup.sh": (REPO / "setup.sh").read_text(),
        str(ENV_FILE.relative_to(REPO)): "\n".join(conda + pip),
    }
    for where, text in written.items():
        for name, version in re.findall(r"\b(torch|torchvision)\s*==\s*([0-9][\w.+]*)", text):
            message = f"{where} pins {name}=={version}, pyproject.toml {deps[name]}"
            assert f"=={version}" == str(deps[name].specifier), message
    readme = (REPO / "README.md").read_text()
    for name in PINNED:  # the README names the versions setup.sh installs
        version = str(deps[name].specifier).removeprefix("==")
        assert f"{name} {version}" in readme, f"README.md does not say {name} {version}"


def test_every_rule_names_the_environment():
    rules = "\n".join(path.read_text() for path in sorted((REPO / "workflow" / "rules").glob("*.smk")))
    jobs = len(re.findall(r"^\s*(?:script|shell|run):", rules, flags=re.M))
    envs = re.findall(r"^\s*conda:\s*\n\s*\"([^\"]+)\"", rules, flags=re.M)
    assert len(envs) == jobs, f"{jobs} rules run code, {len(envs)} name a conda environment"
    assert {(REPO / "workflow" / "rules" / env).resolve() for env in envs} == {ENV_FILE.resolve()}


def test_a_listed_or_installed_dependency_counts(tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "p"\ndependencies = ["numpy>=1"]\n')
    env_file = tmp_path / "envs" / "e.yaml"
    env_file.parent.mkdir()
    env_file.write_text("dependencies:\n  - python=3.11\n  - pandas>=2\n  - pip\n  - pip:\n      - -e ../proj\n")
    assert env_gets(env_file, "numpy") and env_gets(env_file, "pandas") and not env_gets(env_file, "scipy")
