"""The workbench notebooks run top to bottom on a tiny offline model and the sample data (nbclient).

Each notebook's cell tagged ``parameters`` is followed by an injected cell with the fast CI values, as papermill does.
Outputs stay out of git: every committed notebook must have empty outputs.
"""

import csv
import json
from pathlib import Path

import nbformat
import pytest

from mmsupport.labeling import file_sha256

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SAMPLE = Path(__file__).resolve().parent.parent / "data"


def run_notebook(name: str, parameters: dict, workdir: Path) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    index = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    source = "\n".join(f"{key} = {value!r}" for key, value in parameters.items())
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]}))
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}})
    client.execute()
    return notebook


def outputs(notebook) -> str:
    return "\n".join(output.get("text", "") + json.dumps(output.get("data", {}))
                     for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs)


def has_plot(notebook) -> bool:
    return any("image/png" in output.get("data", {}) for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.outputs)


def test_committed_notebooks_have_no_outputs():
    names = sorted(path.name for path in NOTEBOOKS.glob("*.ipynb"))
    assert names == ["01_label_catalog.ipynb", "02_clean_and_index.ipynb", "03_evaluate_retrieval.ipynb",
                     "04_finetune_lora.ipynb", "05_support_report.ipynb"]
    for name in names:
        for cell in nbformat.read(NOTEBOOKS / name, as_version=4).cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{name}: strip the outputs"


@pytest.mark.notebook
def test_01_label_catalog(tiny_vlm_dir, tmp_path):
    notebook = run_notebook("01_label_catalog.ipynb", {"MODEL": str(tiny_vlm_dir), "LIMIT": 4, "BATCH_SIZE": 2,
                                                       "MAX_NEW_TOKENS": 8}, tmp_path)
    assert len((tmp_path / "labels.jsonl").read_text().splitlines()) == 4
    assert "images with human labels" in outputs(notebook) and has_plot(notebook)


@pytest.mark.notebook
def test_02_clean_and_index(tmp_path):
    labels = tmp_path / "labels.jsonl"
    with open(SAMPLE / "products.csv", newline="") as source:
        rows = list(csv.DictReader(source))[:30]
    kept = {row["subcategory"] for row in rows[1:]}  # P0001 is dropped below
    with open(labels, "w") as target:
        for row in rows:  # as a model would have labelled them
            image = SAMPLE / "images" / row["image"]
            record = {"image": str(image), "sha256": file_sha256(image), "title": row["title"],
                      "category": row["subcategory"], "colour": row["colour"], "attributes": {"brand": row["brand"]},
                      "description": row["description"]}
            target.write(json.dumps(record) + "\n")
        target.write(json.dumps({"image": "/x/broken.png", "sha256": "0", "error": "refused: no product"}) + "\n")
    notebook = run_notebook("02_clean_and_index.ipynb", {
        "LABELS": str(labels), "DB_DIR": str(tmp_path / "db"), "DROP": ["P0001"],
        "OVERRIDES": {"P0002": {"colour": "navy"}}, "MAX_PER_CATEGORY": 2}, tmp_path)
    text = outputs(notebook)
    assert "31 records, 1 failed" in text and has_plot(notebook)
    from mmsupport.catalog import Catalog
    from mmsupport.config import load_settings

    catalog = Catalog.open(load_settings(db_dir=str(tmp_path / "db"), table="labelled"))
    counts = {name: sum(row["subcategory"] == name for row in rows[1:]) for name in kept}
    assert len(catalog) == sum(min(2, count) for count in counts.values())
    assert catalog.get("P0001") is None


@pytest.mark.notebook
def test_03_evaluate_retrieval(tmp_path):
    notebook = run_notebook("03_evaluate_retrieval.ipynb", {"DB_DIR": str(tmp_path / "db"), "KS": [1, 5]}, tmp_path)
    assert "queries against" in outputs(notebook) and has_plot(notebook)


@pytest.mark.notebook
def test_04_finetune_lora(tiny_vlm_dir, tmp_path):
    data = tmp_path / "qa.jsonl"
    pairs = [("Where is my order?", "Check the tracking link in your email."),
             ("Can I return shoes?", "Yes, within 30 days with the receipt."),
             ("My watch flashes red.", "Charge it: the battery is low.")]
    data.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in pairs))
    notebook = run_notebook("04_finetune_lora.ipynb", {
        "MODEL": str(tiny_vlm_dir), "DATA": str(data), "LIMIT": None, "MAX_STEPS": 3, "GRAD_ACCUM": 1, "LR": 1e-2,
        "OUT": str(tmp_path / "adapter")}, tmp_path)
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert "held-out loss" in outputs(notebook) and has_plot(notebook)


@pytest.mark.notebook
def test_05_support_report(tmp_path):
    from support_rows import fill

    from mmsupport.store import ConversationStore

    url = f"sqlite:///{tmp_path}/conversations.db"
    written = fill(ConversationStore(url), sessions=60)
    notebook = run_notebook("05_support_report.ipynb", {"DB_URL": url, "HTML_OUT": str(tmp_path / "report.html")},
                            tmp_path)
    text = outputs(notebook)
    assert f"{len(written)} sessions in 2 variants" in text and "verdict fts:" in text and has_plot(notebook)
    assert "data:image/png;base64," in (tmp_path / "report.html").read_text()
