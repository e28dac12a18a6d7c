"""The house a newcomer can carry on: no import loops, packages that only look down, no private name
borrowed from another package (measured by `scripts/import_graph.py` on every import, module-level and
function-level alike)."""
from __future__ import annotations

import importlib.util
import sys

from conftest import ROOT

MAX_UPWARD = 10


def _tool():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("import_graph", module)
    spec.loader.exec_module(module)
    return module


def test_the_bench_package_has_no_import_loop():
    tool = _tool()
    assert tool.cycles(tool.build()) == []


def test_at_most_ten_imports_look_back_up_a_layer_and_each_is_listed():
    tool = _tool()
    up = tool.upward(tool.build())
    assert len(up) <= MAX_UPWARD, "\n".join(f"{e.src} -> {e.dst}" for e in up)


def test_every_module_has_a_declared_layer():
    tool = _tool()
    for module in tool.build().modules:
        assert tool.layer(module) in range(len(tool.LAYER_NAMES)), module


def test_no_private_name_is_imported_from_another_package():
    tool = _tool()
    assert [f"{e.src}:{e.line} {name} from {e.dst}" for e, name in tool.private_imports(tool.build())] == []


def test_the_tool_sees_loops_upward_and_private_imports_inside_functions(tmp_path):
    """The measure itself: a function-level import counts, a relative one too."""
    tool = _tool()
    pkg = tmp_path / "bench"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "config.py").write_text("def f():\n    from bench.data.io import _read\n")
    (pkg / "data" / "__init__.py").write_text("")
    (pkg / "data" / "io.py").write_text("from ..config import f\n\ndef _read():\n    pass\n")
    graph = tool.build(tmp_path)
    assert tool.cycles(graph) == [["bench.config", "bench.data.io"]]
    assert [(e.src, e.dst) for e in tool.upward(graph)] == [("bench.config", "bench.data.io")]
    assert [(e.src, n) for e, n in tool.private_imports(graph)] == [("bench.config", "_read")]


def test_the_command_line_tool_reports_zero_loops():
    import subprocess

    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "import_graph.py")], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "import loops: 0" in out.stdout


def test_the_stage_graph_in_the_docs_is_the_declared_one():
    from bench.stages import STAGES

    doc = (ROOT / "docs" / "architecture.md").read_text()
    assert STAGES.mermaid() in doc


def test_the_worked_example_in_the_docs_is_the_tested_plugin():
    from test_extensions import PLUGIN

    example = PLUGIN[PLUGIN.index("class OcclusionParams"):PLUGIN.index("class OverlapScorer")].rstrip()
    assert example in (ROOT / "docs" / "architecture.md").read_text()


def test_a_stage_is_one_declaration_and_the_generic_runner_runs_it(tmp_path):
    """A new stage: its function and one `add` line; the runner reaches it by name and by accessor, memoised."""
    from bench.config import Experiment
    from bench.data.node import dataset
    from bench.pipeline import Pipeline
    from bench.stages import Stage, StageGraph

    calls = []

    def query_count(p, name):
        calls.append(name)
        return len(p.dataset(name).collection.queries)

    graph = StageGraph()
    graph.add(Stage("data", dataset, (), "Dataset", "the source", {"": ("bench.data.loaders",)}))
    graph.add(Stage("count", query_count, ("data",), "int", "nothing cached"))
    try:
        graph.add(Stage("orphan", query_count, ("nowhere",), "int", "-", method="orphan"))
        raise AssertionError("a stage whose input is not registered was accepted")
    except ValueError as e:
        assert "not registered" in str(e)
    exp = Experiment.model_validate({"name": "g", "results_dir": str(tmp_path),
                                     "data": [{"name": "d", "loader": "demo", "max_queries": 2}]})
    p = Pipeline(exp, graph)
    assert p.run("count", "d") == 2 and p.query_count("d") == 2 and calls == ["d"]
    assert p.code("data") and p.code("count") is None
