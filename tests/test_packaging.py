"""The set-up files agree with each other."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}  # PyPI name -> conda-forge name where they differ


def split_requirement(req: str) -> tuple[str, str]:
    name = re.match(r"[A-Za-z0-9_.\-]+", req).group(0).lower()
    return name, req[len(name):].replace(" ", "")


def test_environment_yml_lists_the_runtime_dependencies_of_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pypi = dict(split_requirement(r) for r in project["dependencies"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = dict(split_requirement(d.replace("=", "==", 1) if re.match(r"^[\w\-]+=[^=<>]", d)
                                   else d)
                 for d in env["dependencies"] if isinstance(d, str))
    for name, spec in pypi.items():
        conda_name = CONDA_NAMES.get(name, name)
        assert conda_name in conda, f"environment.yml lacks {conda_name} (pyproject: {name})"
        assert conda[conda_name] == spec, f"{name}: pyproject {spec!r}, environment.yml " \
                                          f"{conda[conda_name]!r}"
    extra = set(conda) - {CONDA_NAMES.get(n, n) for n in pypi} - {"python", "pip"}
    assert not extra, f"environment.yml has packages that pyproject.toml lacks: {extra}"


def test_readme_shows_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^lab:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
