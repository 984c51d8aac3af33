"""The docs stay true: their Python runs, their links resolve, they name no machine.

Every ```python block of README.md and docs/*.md runs here, in order, one
namespace per page, in a temporary directory that holds what the pages use: a
small demo set (``train.csv``, ``test.csv``, ``holdout.csv``), a small fitted
model (``artifacts/model``) and the profiles (``configs/``). A block that cannot
run offline carries ``<!-- not run: REASON -->`` right before it and is listed
in :data:`NOT_RUN`.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from models import PreferenceModel
from pipelines.make_demo_data import make_demo_battles

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [REPO / "README.md", *(REPO / "docs").glob("*.md")],
    key=lambda path: path.relative_to(REPO).as_posix(),
)
REPORTS = [*PAGES, REPO / "BENCHMARKS.md"]

NOT_RUN = {
    "docs/distributed.md": ["needs a Dask cluster"],
    "docs/serving.md": ["needs a running server (python -m pipelines.serve)"],
}
"""Blocks that do not run here, by page, with the reason each page gives."""

_FENCE = re.compile(r"^```(\w*)\s*$")
_NOT_RUN = re.compile(r"^<!-- not run: (?P<reason>.+?) -->$")
MACHINE_PATH = re.compile(
    r"(?<![\w.~$/-])/(?:work|root|home|tmp|Users|private/var|var/folders)/"
)
"""Folders of the machine that wrote a text (``/work/``, ``/home/``, ``/tmp/``…).

Paths a user types stay allowed: container paths of a Docker example
(``/app``, ``/run/secrets/...``), example mounts (``/data/``, ``/shared/``),
and relative paths that contain such a name (``artifacts/tmp/``).
"""


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: str
    line: int
    language: str
    code: str
    not_run: str | None


def _blocks(path: Path, page: str | None = None) -> list[Block]:
    """The fenced blocks of ``path``; ``page`` names it (default: its repo path)."""
    page = page or path.relative_to(REPO).as_posix()
    blocks, language, start, code = [], None, 0, []
    previous = ""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = _FENCE.match(line)
        if language is None and fence:
            marker = _NOT_RUN.match(previous.strip())
            language, start, code = fence.group(1), number, []
            not_run = marker["reason"] if marker else None
        elif language is not None and line.strip() == "```":
            blocks.append(Block(page, start, language, "\n".join(code), not_run))
            language = None
        elif language is not None:
            code.append(line)
        if line.strip():
            previous = line
    return blocks


def _python_blocks(path: Path) -> list[Block]:
    return [block for block in _blocks(path) if block.language == "python"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A directory with the files the documentation's examples read."""
    root = tmp_path_factory.mktemp("docs-workspace")
    train = make_demo_battles(n_rows=200, seed=0)
    train.to_csv(root / "train.csv", index=False)
    make_demo_battles(n_rows=100, seed=2).to_csv(root / "holdout.csv", index=False)
    test = make_demo_battles(n_rows=50, seed=1)
    test[["id", "prompt", "response_a", "response_b"]].to_csv(
        root / "test.csv", index=False
    )
    model = PreferenceModel(blocks={"lengths": {}, "flags": {}}, n_folds=3)
    model.fit(train).save(root / "artifacts" / "model")
    shutil.copytree(REPO / "configs", root / "configs")
    return root


@pytest.mark.parametrize(
    "path",
    [p for p in PAGES if any(b.not_run is None for b in _python_blocks(p))],
    ids=lambda path: path.relative_to(REPO).as_posix(),
)
def test_every_python_block_of_the_page_runs(path, workspace, tmp_path, monkeypatch):
    shutil.copytree(workspace, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__doc_example__"}
    ran = 0  # pages whose blocks are all marked not run are not collected
    for block in _python_blocks(path):
        if block.not_run is not None:
            continue
        code = compile(block.code, f"{block.page}:{block.line}", "exec")
        try:
            exec(code, namespace)
        except Exception as err:
            raise AssertionError(
                f"{block.page}, the python block at line {block.line} raised "
                f"{type(err).__name__}: {err}. Fix the example, or mark it "
                "'<!-- not run: REASON -->' and list it in NOT_RUN."
            ) from err
        ran += 1
    assert ran > 0


def test_the_blocks_that_do_not_run_are_the_listed_ones_and_compile():
    found = {}
    for path in PAGES:
        skipped = [b for b in _python_blocks(path) if b.not_run is not None]
        for block in skipped:
            compile(block.code, f"{block.page}:{block.line}", "exec")
        if skipped:
            found[path.relative_to(REPO).as_posix()] = [b.not_run for b in skipped]
    assert found == NOT_RUN


def test_a_not_run_marker_is_followed_by_a_python_block():
    for path in PAGES:
        marked = [b for b in _blocks(path) if b.not_run is not None]
        assert all(block.language == "python" for block in marked), path.name
        lines = path.read_text(encoding="utf-8").splitlines()
        markers = [line for line in lines if _NOT_RUN.match(line.strip())]
        assert len(markers) == len(marked), (
            f"{path.name}: a '<!-- not run: ... -->' comment must come right before "
            "the ```python block it marks"
        )


def test_the_block_parser_sees_fences_markers_and_languages(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n```bash\nmake demo\n```\n\n<!-- not run: needs a cluster -->\n"
        "```python\nx = 1\n```\n```python\ny = 2\n```\n"
    )
    blocks = [(b.language, b.line, b.code, b.not_run) for b in _blocks(page, "page")]
    assert blocks == [
        ("bash", 3, "make demo", None),
        ("python", 8, "x = 1", "needs a cluster"),
        ("python", 11, "y = 2", None),
    ]


@pytest.mark.parametrize(
    "path", REPORTS, ids=lambda path: path.relative_to(REPO).as_posix()
)
def test_no_page_names_a_folder_of_the_machine_that_wrote_it(path):
    found = [
        f"line {number}: {match.group(0)!r}"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        for match in MACHINE_PATH.finditer(line)
    ]
    assert not found, (
        f"{path.name} names machine folders ({'; '.join(found[:5])}); write paths as "
        "a reader types them: ../shared/data/... beside the repository, $TMPDIR/..."
    )


@pytest.mark.parametrize(
    ("text", "flagged"),
    [
        ("--data /work/shared/data/corpus/train.csv", True),
        ("--store /tmp/exp/store", True),
        ("(`/home/me/x`)", True),
        ("cd /root/project", True),
        ("--data ../shared/data/corpus/train.csv", False),
        ("artifacts/tmp/x and $TMPDIR/lite_model and ~/work/x", False),
        ("docker run -v /run/secrets/keys:/app/keys", False),
        ("--model /shared/model --data /data/test.csv", False),
    ],
)
def test_the_machine_path_rule_flags_machine_folders_only(text, flagged):
    assert bool(MACHINE_PATH.search(text)) is flagged


_LINK = re.compile(r"\]\((?P<target>[^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize(
    "path", PAGES, ids=lambda path: path.relative_to(REPO).as_posix()
)
def test_every_relative_link_points_to_a_file(path):
    text = path.read_text(encoding="utf-8")
    missing = [
        match["target"]
        for match in _LINK.finditer(text)
        if "://" not in match["target"] and not (path.parent / match["target"]).exists()
    ]
    assert not missing, f"{path.name} links to missing files: {missing}"


def test_the_docs_index_lists_every_page():
    index = (REPO / "docs" / "index.md").read_text(encoding="utf-8")
    pages = sorted(p.name for p in (REPO / "docs").glob("*.md") if p.name != "index.md")
    assert [page for page in pages if f"]({page})" not in index] == []


def test_the_data_page_explains_every_repair_kind():
    from features import REPAIR_KINDS

    data = (REPO / "docs" / "data.md").read_text(encoding="utf-8")
    assert [kind for kind in REPAIR_KINDS if f"`{kind}`" not in data] == []


@pytest.mark.parametrize("profile", ["lite", "default", "embeddings"])
def test_the_profiles_page_explains_every_key_of_a_profile(profile):
    import yaml

    config = yaml.safe_load((REPO / "configs" / f"{profile}.yaml").read_text())
    keys = [
        f"{section}.{key}" if isinstance(values, dict) else section
        for section, values in config.items()
        for key in (values if isinstance(values, dict) else [None])
    ]
    page = (REPO / "docs" / "profiles.md").read_text(encoding="utf-8")
    blocks = config["features"]["blocks"]
    assert [key for key in keys if f"`{key}`" not in page] == []
    assert [block for block in blocks if f"| `{block}` |" not in page] == []
