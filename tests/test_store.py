import json

import pytest

from flops_fit.training.store import ResultsStore, RunRecord


def rec(i: int, status: str = "completed", loss: float | None = 3.0) -> RunRecord:
    return RunRecord(
        experiment_id=f"e{i}", compute_budget=1e15, size_value=8 * (i + 1), num_params=1000 * (i + 1),
        num_tokens=1e15 / (6000 * (i + 1)), final_loss=loss, status=status, flops=1e15, flops_method="6ND",
    )


def test_add_is_durable_and_resumable(tmp_path):
    path = tmp_path / "results.json"
    s = ResultsStore(path, "fp1")
    first = rec(0)
    s.add(first)
    s.add(rec(1, "diverged", None))
    again = ResultsStore(path, "fp1")
    assert [r.experiment_id for r in again.records] == ["e0", "e1"]
    assert again.done_ids() == {"e0", "e1"}
    assert again.records[0].to_dict() == first.to_dict()


def test_different_plan_is_refused(tmp_path):
    path = tmp_path / "results.json"
    ResultsStore(path, "fp1").add(rec(0))
    with pytest.raises(ValueError, match=r"results.json: these results were made by a different plan \(fingerprint fp1, this plan is fp2\)"):
        ResultsStore(path, "fp2")


def test_resume_false_moves_old_results_aside(tmp_path):
    path = tmp_path / "results.json"
    ResultsStore(path, "fp1").add(rec(0))
    s = ResultsStore(path, "fp2", resume=False)
    assert s.moved_aside is not None and s.moved_aside.exists()
    assert json.loads(s.moved_aside.read_text())["records"][0]["experiment_id"] == "e0"
    assert s.records == []
    s.add(rec(1))
    s2 = ResultsStore(path, "fp3", resume=False)  # same second: must not overwrite the first aside file
    assert s2.moved_aside != s.moved_aside and s.moved_aside.exists() and s2.moved_aside.exists()


@pytest.mark.parametrize(
    "mutate, msg",
    [
        (lambda t: t[: len(t) // 2], r"results.json: not valid JSON .*corrupt or was edited by hand"),
        (lambda t: t.replace('"final_loss": 3.0', '"final_loss": "low"'), r"records\[0\]: field 'final_loss': expected a number or null, found 'low'"),
        (lambda t: t.replace('"status": "completed"', '"status": "done"'), r"records\[0\]: field 'status': expected one of"),
        (lambda t: t.replace('"num_params"', '"n_params"'), r"records\[0\]: required field 'num_params' is missing"),
        (lambda t: t.replace('"plan_fingerprint"', '"plan"'), r"required field 'plan_fingerprint' is missing"),
        (lambda t: t.replace('"kind": "flops-fit/results"', '"kind": "other"'), r"field 'kind': expected 'flops-fit/results', found 'other'"),
    ],
)
def test_corrupt_or_hand_edited_file_is_named(tmp_path, mutate, msg):
    path = tmp_path / "results.json"
    s = ResultsStore(path, "fp1")
    s.add(rec(0))
    s.compact()
    path.write_text(mutate(path.read_text()))
    with pytest.raises(ValueError, match=msg):
        ResultsStore(path, "fp1")


def test_failed_compaction_leaves_previous_file_and_journal_intact(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    s = ResultsStore(path, "fp1")
    s.add(rec(0))
    s.compact()
    before = path.read_text()
    s.add(rec(1))

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("flops_fit.io.os.replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        s.compact()
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.journal.jsonl", "results.json"], "temp file left"
    monkeypatch.undo()
    assert [r.experiment_id for r in ResultsStore(path, "fp1").records] == ["e0", "e1"]  # nothing lost


def test_each_record_is_one_appended_line_and_compaction_folds_them_in(tmp_path):
    path = tmp_path / "results.json"
    journal = tmp_path / "results.journal.jsonl"
    s = ResultsStore(path, "fp1")
    for i in range(3):
        s.add(rec(i))
        assert not path.exists()  # O(1) per record: results.json is not rewritten
        assert len(journal.read_text().splitlines()) == i + 1
    fp, records = ResultsStore.read(path)  # readers merge the journal
    assert fp == "fp1" and [r.experiment_id for r in records] == ["e0", "e1", "e2"]
    s.compact()
    assert not journal.exists()
    assert [r["experiment_id"] for r in json.loads(path.read_text())["records"]] == ["e0", "e1", "e2"]
    s.add(rec(3, "diverged", None))  # a newer line overrides nothing it should not
    fp, records = ResultsStore.read(path)
    assert [r.experiment_id for r in records] == ["e0", "e1", "e2", "e3"]


def test_a_torn_last_line_is_ignored_a_torn_middle_line_is_named(tmp_path):
    path = tmp_path / "results.json"
    journal = tmp_path / "results.journal.jsonl"
    s = ResultsStore(path, "fp1")
    s.add(rec(0))
    s.add(rec(1))
    text = journal.read_text()
    journal.write_text(text[: len(text) - 40])  # killed mid-append: the second line is cut short
    assert [r.experiment_id for r in ResultsStore(path, "fp1").records] == ["e0"]  # e1 will be redone
    lines = text.splitlines(keepends=True)
    journal.write_text(lines[0][:30] + "\n" + lines[1])
    with pytest.raises(ValueError, match=r"results.journal.jsonl: line 1: not a JSON record"):
        ResultsStore(path, "fp1")
    journal.write_text(lines[0].replace('"fp1"', '"fp9"') + lines[1])
    with pytest.raises(ValueError, match=r"a line of plan fp1 beside results of plan fp9|different plan"):
        ResultsStore(path, "fp1")


def test_a_failed_append_is_cut_back_off(tmp_path, monkeypatch):
    import os

    path = tmp_path / "results.json"
    journal = tmp_path / "results.journal.jsonl"
    s = ResultsStore(path, "fp1")
    s.add(rec(0))
    before = journal.read_bytes()
    real_write = os.write

    def half_then_full(fd, data):
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("flops_fit.training.store.os.write", half_then_full)
    with pytest.raises(OSError, match="could not append a record.*earlier records are intact"):
        s.add(rec(1))
    monkeypatch.undo()
    assert journal.read_bytes() == before  # no half line left to break the next append
    s.add(rec(2))
    assert [r.experiment_id for r in ResultsStore(path, "fp1").records] == ["e0", "e2"]


def test_a_symlinked_journal_is_refused(tmp_path):
    path = tmp_path / "results.json"
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me\n")
    (tmp_path / "results.journal.jsonl").symlink_to(target)
    with pytest.raises(ValueError, match="symbolic link"):
        ResultsStore(path, "fp1")
    assert target.read_text() == "keep me\n"
