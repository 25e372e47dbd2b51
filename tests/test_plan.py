"""The plan: pure, no TensorFlow, no kernel. Pages' needs come from parsing their code."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from catdog_report import study
from catdog_report.errors import ConfigError, PageError
from catdog_report.plan import Needs, RunSpec, make_plan, page_needs, run_specs
from test_study import write_study


def test_needs_come_from_the_ast_not_from_substrings() -> None:
    cells = [
        'st = study()\nrun = st.fit("small")  # st.fit("ghost") in a comment does not count',
        'text = "st.fit(\'fake\') and runs_in_build in a string"\nmodel.fit(x, y)',
        "%matplotlib inline\nruns = st.runs_in_build()",
        'again = st.fit("small")\nother = st.fit(name)  # not a literal: not a need',
    ]
    needs = page_needs(cells, "page x.md")
    assert (needs.fits, needs.reads_runs) == (("small",), True)
    needs = page_needs(['print("runs_in_build", ".fit(")'], "y")
    assert (needs.fits, needs.reads_runs, needs.every_model) == ((), False, False)
    # every seed's runs are every run too: a page that asks only for them waits for all
    needs = page_needs(["seeds = st.all_seed_runs()"], "z")
    assert (needs.fits, needs.reads_runs, needs.every_model) == ((), True, True)


@pytest.mark.parametrize(("code", "every"), [
    ('run = st.fit("small")\nshow(st.title("small"))', False),
    ("rows = st.declaration.data.grid_rows\nsize = st.settings.image_size", False),
    ("for name, m in st.models.items(): print(m.title)", True),  # every model's declaration
    ("print(st.settings.epochs_for(name))", True),  # a model it does not name
    ("titles = st.declaration.titles()", True),
    ("run = st.fit(name)", True),  # which model is known only when it runs
    ("print(st.settings)", True),
])
def test_what_a_page_reads_of_the_declaration(code: str, every: bool) -> None:
    assert page_needs([code], "p").every_model is every


def test_the_functions_and_modules_a_page_names() -> None:
    needs = page_needs(['show_code("head", "model_one")\nimport numpy as np\n'
                        'from models import head\nfor t, p in st.chapters(): pass'], "p")
    assert {"head", "model_one"} <= set(needs.literals) and not needs.all_code
    assert needs.imports == ("models", "numpy") and needs.nav
    assert page_needs(["show_code(*names)"], "p").all_code  # names known only when it runs


PARTS = {"study": "S", "models": {"small": "s1", "tuned": "t1"},
         "functions": {"head": "h1", "small_net": "n1"}, "files": {"models": "F1"},
         "nav": ["index", "small"]}


def test_a_page_key_holds_only_the_parts_of_the_study_it_uses(tmp_path: Path) -> None:
    s = study.load(write_study(tmp_path))
    pages = [("small", Path("small.md"), "", page_needs(['st.fit("small")\nshow_code("head")'],
                                                          "small.md")),
             ("data", Path("data.md"), "", page_needs(["x = st.declaration.data"], "data.md")),
             ("index", Path("index.md"), "", page_needs(["st.models\nst.chapters()"], "i")),
             ("all", Path("all.md"), "", page_needs(["st.runs_in_build()"], "all.md"))]
    known = {"small@0": "a" * 64, "tuned@0": "b" * 64}

    def keys(parts: dict[str, Any]) -> list[str | None]:
        return [n.key for n in make_plan(s, pages, known, {"x": 1}, _specs(s), None,
                                         parts).pages]

    before = keys(PARTS)
    assert len(set(before)) == 4
    changed = [a != b for a, b in zip(before, keys(
        PARTS | {"models": {"small": "s1", "tuned": "t2"}}), strict=True)]
    assert changed == [False, False, True, True]  # tuned's epochs: its readers only
    added = keys(PARTS | {"models": PARTS["models"] | {"extra": "e1"},
                          "functions": PARTS["functions"] | {"extra_net": "x1"},
                          "nav": [*PARTS["nav"], "extra"]})
    assert [a != b for a, b in zip(before, added, strict=True)] == [False, False, True, True]
    edited = keys(PARTS | {"functions": {"head": "h2", "small_net": "n1"},
                           "files": {"models": "F2"}})
    assert [a != b for a, b in zip(before, edited, strict=True)] == [True, False, False, False]
    wide = keys(PARTS | {"study": "S2"})  # the study-wide part: every page holds it
    assert all(a != b for a, b in zip(before, wide, strict=True))


def test_a_cell_that_is_not_python_names_the_page_and_cell() -> None:
    with pytest.raises(PageError, match=r"page z.md: code cell 2 is not valid Python"):
        page_needs(["x = 1", "def broken(:"], "page z.md")


def _specs(s: study.Study, seeds: Any = (0,)) -> list[RunSpec]:
    per_model = {m: list(seeds[m] if isinstance(seeds, dict) else seeds) for m in s.models}
    return run_specs(s, per_model, dict.fromkeys(s.models, 1), "float32", None, 1)


def _pages(*needs: Needs) -> list[tuple[str, Path, str, Needs]]:
    return [(f"p{i}", Path(f"content/p{i}.md"), f"text {i}", n) for i, n in enumerate(needs)]


def test_runs_in_dependency_order_and_page_keys(tmp_path: Path) -> None:
    s = study.load(write_study(tmp_path))
    plan = make_plan(s, _pages(Needs(()), Needs(("tuned",))), {}, {"x": 1}, _specs(s))
    assert plan.runs == ["small", "tuned"]  # the parent trains first
    assert plan.pages[1].runs == ("tuned",) and plan.pages[1].key is None  # key: later
    assert plan.pages[0].key is not None  # shows no run: known now
    known = {"small@0": "a" * 64, "tuned@0": "b" * 64}
    again = make_plan(s, _pages(Needs(()), Needs(("tuned",))), known, {"x": 1}, _specs(s))
    assert again.pages[1].key is not None and again.to_train == []
    other = make_plan(s, _pages(Needs(()), Needs(("tuned",))), known | {"tuned@0": "c" * 64},
                      {"x": 1}, _specs(s))
    assert other.pages[1].key != again.pages[1].key  # a page's key holds its runs' keys
    assert other.pages[0].key == again.pages[0].key


def test_a_page_reading_the_runs_needs_every_model(tmp_path: Path) -> None:
    s = study.load(write_study(tmp_path))
    plan = make_plan(s, _pages(Needs(("small",)), Needs((), True)), {}, {}, _specs(s))
    assert plan.runs == ["small", "tuned"] and plan.pages[1].runs == ("small", "tuned")


def test_a_page_fitting_an_undeclared_model_fails_before_training(tmp_path: Path) -> None:
    s = study.load(write_study(tmp_path))
    with pytest.raises(ConfigError, match=r"page p1.md fits model 'smal' \(did you mean "
                                          r"'small'\?\), which study.yml does not declare"):
        make_plan(s, _pages(Needs(()), Needs(("smal",))), {}, {}, _specs(s))


def test_planning_imports_no_tensorflow(tmp_path: Path) -> None:
    path = write_study(tmp_path)
    code = (f"import sys; from catdog_report import study, plan; "
            f"s = study.load({str(path)!r}); "
            f"plan.make_plan(s, [('p', __import__('pathlib').Path('p.md'), 't', "
            f"plan.page_needs(['st.fit(\\'tuned\\')'], 'p'))], {{}}, {{}}, "
            f"plan.run_specs(s, {{'small': [0], 'tuned': [0]}}, {{'small': 1, 'tuned': 1}}, "
            f"'float32', None, 1)); "
            f"print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "False"]


def test_several_seeds_are_several_runs(tmp_path: Path) -> None:
    s = study.load(write_study(tmp_path))
    plan = make_plan(s, _pages(Needs(("tuned",)), Needs((), True)), {"small@0": "k"}, {},
                     _specs(s, [0, 1, 2]))
    assert plan.ids == ["small@0", "small@1", "small@2", "tuned@0", "tuned@1", "tuned@2"]
    assert plan.pages[0].ids == ("tuned@0", "tuned@1", "tuned@2")  # every seed it shows
    assert plan.to_train == plan.ids[1:] and plan.pages[0].key is None


def test_seeds_per_model_are_planned_per_model(tmp_path: Path) -> None:
    s = study.load(write_study(tmp_path))
    plan = make_plan(s, _pages(Needs(("tuned",)), Needs((), True)), {"small@0": "k"}, {},
                     _specs(s, {"small": [0, 1, 2], "tuned": [0]}))
    assert plan.ids == ["small@0", "small@1", "small@2", "tuned@0"]
    assert plan.seeds_of("small") == [0, 1, 2] and plan.seeds_of("tuned") == [0]
    assert plan.pages[0].ids == ("tuned@0",)
    assert plan.pages[1].ids == ("small@0", "small@1", "small@2", "tuned@0")  # reads every run


def test_a_run_spec_fixes_what_its_run_reads(tmp_path: Path) -> None:
    s = study.load(write_study(tmp_path))
    specs = run_specs(s, {"small": [0, 1], "tuned": [0]}, {"small": 3, "tuned": 5}, "bf16",
                      "w" * 64, 2)
    assert [x.id for x in specs] == ["small@0", "small@1", "tuned@0"]
    tuned = specs[-1]
    assert (tuned.epochs, tuned.parent, tuned.parent_id, tuned.precision) == (
        5, "small", "small@0", "bf16")
    assert specs[0].parent is None and specs[0].parent_id is None
    declares = {name for name, m in s.models.items() if m.weights}
    assert all((x.base_weights is not None) == (x.model in declares) for x in specs)
    assert RunSpec(**tuned.to_dict()) == tuned  # what a worker process receives
