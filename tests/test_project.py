"""The set-up promises: environment.yml installs pyproject.toml, README and CI run the same tests."""

from __future__ import annotations

import re
import tomllib

import yaml

from tests.layout import REPO_ROOT


def _pyproject():
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def _env():
    return yaml.safe_load((REPO_ROOT / "environment.yml").read_text())


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_installs_the_project_with_every_extra():
    deps = _env()["dependencies"]
    pip_sections = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert pip_sections == [["-e .[all]"]], (
        "environment.yml must install pyproject.toml, nothing else"
    )
    extras = _pyproject()["project"]["optional-dependencies"]
    assert extras["all"] == ["alsresearch[notebooks,serve,dev,spark,postgres]"]
    assert set(extras) == {"notebooks", "serve", "dev", "spark", "postgres", "all"}


def test_environment_python_satisfies_requires_python():
    conda = [d for d in _env()["dependencies"] if isinstance(d, str)]
    python = [d for d in conda if d.startswith("python")]
    assert python == ["python=3.11"]
    assert _pyproject()["project"]["requires-python"] == ">=3.11"
    # any other conda package must also be a declared dependency (one source of truth)
    declared = {_name(r) for r in _pyproject()["project"]["dependencies"]}
    for extra in _pyproject()["project"]["optional-dependencies"].values():
        declared |= {_name(r) for r in extra}
    others = {_name(d) for d in conda} - {"python", "pip"}
    assert others <= declared, f"conda-only packages not in pyproject.toml: {others - declared}"


def test_readme_ci_and_makefile_agree_on_the_two_commands():
    readme = (REPO_ROOT / "README.md").read_text()
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    makefile = (REPO_ROOT / "Makefile").read_text()
    ci_commands = [line.strip() for line in ci.splitlines() if line.strip().startswith("make ")]
    assert ci_commands == ["make test"]
    head = readme[: readme.index("\n## ", readme.index("make test"))]
    assert "make demo" in head and "make test" in head, "README must open with the two commands"
    for target in ("demo", "test"):
        assert re.search(rf"^{target}:", makefile, re.M), f"Makefile has no '{target}' target"


def test_core_dependencies_stay_small():
    core = {_name(r) for r in _pyproject()["project"]["dependencies"]}
    heavy = {"optuna", "papermill", "jupyterlab", "fastapi", "uvicorn", "implicit", "matplotlib"}
    assert not core & heavy


def test_packaged_defaults_equal_the_copies_users_edit():
    """The default search space and the demo experiment ship inside the package (so an
    installed package has them); experiments/ keeps the copies users edit, which must start
    out equal to what the package uses."""
    for name in ("search_space.yaml", "search_space_ease.yaml", "demo.yaml"):
        packaged = REPO_ROOT / "alsresearch" / "resources" / name
        assert packaged.read_text() == (REPO_ROOT / "experiments" / name).read_text(), name


def test_checkout_paths_point_into_the_packaged_resources():
    """notebooks/ and data/ml-latest-small are where the README says, as links to the one copy
    the package ships."""
    for link, target in (
        ("notebooks", "alsresearch/resources/notebooks"),
        ("data/ml-latest-small", "alsresearch/resources/ml-latest-small"),
    ):
        assert (REPO_ROOT / link).resolve() == (REPO_ROOT / target).resolve(), link


def test_notebook_progress_bars_render_as_widgets():
    """tqdm.auto needs ipywidgets in JupyterLab (else 'IProgress not found')."""
    assert "ipywidgets" in {
        _name(r) for r in _pyproject()["project"]["optional-dependencies"]["notebooks"]
    }
