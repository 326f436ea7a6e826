"""Study command line: `report` prints the fooling rate with its Wilson interval and n, and exports CSV."""

import csv
import sys

from lit_colorization.study import store
from lit_colorization.study.__main__ import main


def _database_with_votes(path, fooled, total):
    conn = store.open_store(path)
    for vote in range(total):
        store.create_session(conn, f"s{vote}", "agent", [("img", "left")])
        store.record_answer(conn, f"s{vote}", 0, "right" if vote < fooled else "left", 900)
    conn.close()


def test_report_prints_rate_interval_and_n_and_exports_csv(tmp_path, capsys):
    db_path = tmp_path / "study.sqlite"
    _database_with_votes(db_path, fooled=8, total=25)
    out = tmp_path / "answers.csv"
    assert main(["report", "--db", str(db_path), "--csv", str(out), "--per-image"]) == 0
    printed = capsys.readouterr().out
    low, high = store.wilson_interval(8, 25)
    assert f"32.0% fooled (95% CI {100 * low:.1f}% to {100 * high:.1f}%), n=25" in printed
    assert "over 25 session(s)" in printed
    assert "  img: 32.0% fooled" in printed
    with out.open(newline="") as handle:
        assert sum(int(row["fooled"]) for row in csv.DictReader(handle)) == 8


def test_report_on_an_empty_database_says_so(tmp_path, capsys):
    db_path = tmp_path / "study.sqlite"
    store.open_store(db_path).close()
    assert main(["report", "--db", str(db_path)]) == 0
    assert "no answers recorded yet" in capsys.readouterr().out


def test_bad_paths_give_a_one_line_error(tmp_path, capsys):
    assert main(["report", "--db", str(tmp_path / "missing.sqlite")]) == 1
    assert (
        capsys.readouterr().err.strip()
        == f"error: study database {tmp_path / 'missing.sqlite'} does not exist"
    )
    not_a_database = tmp_path / "notes.sqlite"
    not_a_database.write_text("hello, this is not SQLite " * 10)
    assert main(["report", "--db", str(not_a_database)]) == 1
    assert "is not a usable study database" in capsys.readouterr().err
    assert main(["serve", "--study", str(tmp_path / "no_study"), "--db", str(tmp_path / "db.sqlite")]) == 1
    assert "no_study does not exist" in capsys.readouterr().err


def test_serve_without_the_study_extra_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "flask", None)  # as if not installed: importing it fails
    monkeypatch.delitem(sys.modules, "lit_colorization.study.app", raising=False)
    status = main(["serve", "--study", str(tmp_path), "--db", str(tmp_path / "a.sqlite")])
    error = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(error) == 1
    assert "pip install -e '.[study]'" in error[0]
