"""fkd reproduce on tiny notebooks: success, failure (with its cell), timeout, reports."""

import json
import subprocess
import sys

import nbformat
import pytest

from fkdlib.errors import ConfigError, FkdError
from fkdlib.reproduce import discover_notebooks, notebook_hygiene_problems, reproduce

PARAMETERS = ('profile = "smoke"\nseed = 0\ndata = "synthface"\neval_sets = ""\noverrides = ""\n'
              'device = "cpu"\n'
              'results_dir = "results"\nfigures_dir = "figures"\n')


def _notebook(path, *sources):
    notebook = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell(PARAMETERS)
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters] + [nbformat.v4.new_code_cell(s) for s in sources]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbformat.write(notebook, path)


@pytest.fixture
def notebooks(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(folder / "01_ok.ipynb",
              "import pathlib, sys\n"
              "out = pathlib.Path(results_dir); out.mkdir(parents=True, exist_ok=True)\n"
              "(out / 'claims.csv').write_text('id,statement,source,status,effect,ci_low,ci_high\\n'"
              "'c1,margin helps,paper,holds,0.5,0.1,0.9\\n')\n"
              "(out / 'table.md').write_text('| a |\\n|---|\\n| 1 |')\n"
              "(out / 'python.txt').write_text(sys.executable)")
    _notebook(folder / "02_fails.ipynb", "x = 1", "raise ValueError('broken on purpose')")
    _notebook(folder / "03_hangs.ipynb", "import time\ntime.sleep(600)")
    return folder


def test_reproduce_runs_all_continues_past_failures_and_reports(notebooks, tmp_path):
    results = tmp_path / "results"
    runs = reproduce("smoke", notebooks_dir=notebooks, results_dir=results,
                     figures_dir=tmp_path / "figures", timeout_s=25, log=lambda *_: None)
    status = {run.name: run for run in runs}
    assert [run.name for run in runs] == ["01_ok", "02_fails", "03_hangs"]
    assert status["01_ok"].status == "ok"
    assert status["02_fails"].status == "failed"
    # papermill inserts a header cell, so the failing cell index refers to the output notebook
    assert "ValueError: broken on purpose" in status["02_fails"].error
    output = json.loads((results / "02_fails" / "02_fails.ipynb").read_text())
    failing = output["cells"][status["02_fails"].failing_cell]
    assert "raise ValueError" in "".join(failing["source"])
    assert status["03_hangs"].status == "timeout"
    assert status["03_hangs"].runtime_s < 60
    # the kernel is this interpreter, not whatever "python" is on PATH
    assert (results / "01_ok" / "python.txt").read_text() == sys.executable
    claims = (results / "CLAIMS.md").read_text()
    assert "| 01_ok | c1 | margin helps | paper | holds | 0.5 | 0.1 | 0.9 |" in claims
    report = (results / "REPORT.md").read_text()
    assert "| 02_fails | failed |" in report and "| 03_hangs | timeout |" in report
    assert "| a |" in report
    assert json.loads((results / "01_ok" / "run.json").read_text())["status"] == "ok"


def test_reports_keep_earlier_runs_of_the_same_profile(notebooks, tmp_path):
    results = tmp_path / "results"
    (notebooks / "03_hangs.ipynb").unlink()
    options = dict(notebooks_dir=notebooks, results_dir=results, figures_dir=tmp_path / "f",
                   timeout_s=60, log=lambda *_: None)
    reproduce("smoke", only=["01_ok"], **options)
    record = json.loads((results / "01_ok" / "run.json").read_text())
    assert record["output_notebook"] == "01_ok/01_ok.ipynb"  # portable
    runs = reproduce("smoke", only=["02_fails"], **options)
    assert [run.name for run in runs] == ["02_fails"]
    report = (results / "REPORT.md").read_text()
    assert "| 01_ok | ok |" in report and "| 02_fails | failed |" in report
    assert "Executed notebook: `01_ok/01_ok.ipynb`" in report
    assert "| 01_ok | c1 |" in (results / "CLAIMS.md").read_text()
    # a run recorded under another profile is not reported as this one's
    record["parameters"]["profile"] = "default"
    (results / "01_ok" / "run.json").write_text(json.dumps(record))
    reproduce("smoke", only=["02_fails"], **options)
    assert "01_ok" not in (results / "REPORT.md").read_text()


def test_cli_exits_nonzero_naming_the_failed_notebook(notebooks, tmp_path):
    (notebooks / "03_hangs.ipynb").unlink()
    (notebooks / "01_ok.ipynb").unlink()
    code = (
        "import sys; from fkdlib.reproduce import reproduce, _reproduce_command\n"
        "import fkdlib.reproduce as r\n"
        f"r.REPO_ROOT = __import__('pathlib').Path({str(tmp_path)!r})\n"
        "class A: profile='smoke'; only=None; data='synthface'; seed=0; device='cpu'; eval_sets=''; overrides=[]\n"
        f"A.results_dir={str(tmp_path / 'r')!r}; A.figures_dir={str(tmp_path / 'f')!r}; A.timeout=60\n"
        "sys.exit(_reproduce_command(A))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "FAILED 02_fails" in proc.stderr and "cell" in proc.stderr


def test_only_selects_and_rejects_unknown_names(notebooks):
    assert [p.stem for p in discover_notebooks(notebooks, ["02_fails"])] == ["02_fails"]
    with pytest.raises(ConfigError, match="01_ok"):
        discover_notebooks(notebooks, ["04_nope"])


def test_hygiene_flags_outputs_counts_tags_and_kernels(tmp_path):
    clean = tmp_path / "01_clean.ipynb"
    _notebook(clean, "print(1)")
    assert notebook_hygiene_problems(clean) == []
    dirty = json.loads(clean.read_text())
    dirty["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "1"}]
    dirty["cells"][1]["execution_count"] = 3
    dirty["cells"][0]["metadata"]["tags"] = []
    dirty["metadata"]["kernelspec"]["name"] = "my-conda-env"
    (tmp_path / "02_dirty.ipynb").write_text(json.dumps(dirty))
    problems = " / ".join(notebook_hygiene_problems(tmp_path / "02_dirty.ipynb"))
    for expected in ("stored outputs", "execution count", "tagged 'parameters'", "my-conda-env"):
        assert expected in problems


def test_a_non_default_run_writes_under_build_and_says_where(notebooks, tmp_path,
                                                             monkeypatch):
    import fkdlib.reproduce as module

    monkeypatch.setattr(module, "REPO_ROOT", tmp_path)
    (notebooks / "02_fails.ipynb").unlink()
    (notebooks / "03_hangs.ipynb").unlink()
    said = []
    runs = reproduce("smoke", notebooks_dir=notebooks, timeout_s=60, log=said.append,
                     seed=2, overrides="epochs=3")
    assert [run.status for run in runs] == ["ok"]
    base = tmp_path / "build" / "smoke-custom" / "synthface-seed2"
    assert (base / "results" / "01_ok" / "claims.csv").exists()
    assert not (tmp_path / "results").exists()
    assert said[0] == f"writing results to {base / 'results'} and figures to {base / 'figures'}"
    assert runs[0].parameters["overrides"] == "epochs=3"


@pytest.mark.parametrize("options, message", [
    ({"overrides": "epoch=1"}, "unknown profile field"),
    ({"eval_sets": "megaface"}, "unknown evaluation set"),
    ({"data": "rec:/nonexistent/faces"}, "does not exist"),
])
def test_bad_options_fail_before_any_notebook_runs(notebooks, tmp_path, options, message):
    said = []
    with pytest.raises(FkdError, match=message):
        reproduce("smoke", notebooks_dir=notebooks, results_dir=tmp_path / "r",
                  figures_dir=tmp_path / "f", log=said.append, **options)
    assert said == [] and not (tmp_path / "r").exists()
