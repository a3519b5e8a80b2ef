"""training.leaderboard: every scored candidate ranked by the selection rule, and the students' spread."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from training.leaderboard import load_candidates, main, markdown, run_course, spread  # noqa: E402


def _write(folder, name, weights, rows):
    """rows: (shift, worst ratio) pairs; the four figures are made to follow the ratio."""
    out = [{"shift": s, "FERPlus valid accuracy": 0.87 * r, "FERPlus valid macro recall": 0.72 * r,
            "SFEW accuracy": 0.52 * r, "SFEW macro recall": 0.42 * r, "worst ratio to target": r}
           for s, r in rows]
    (folder / f"prior_shift_{name}.json").write_text(json.dumps({"weights": weights, "rows": out}))


def test_candidates_are_ranked_at_their_best_shift_and_teachers_kept_out_of_the_spread(tmp_path):
    _write(tmp_path, "a", "runs/a/ep1.pt", [(0.3, 0.90), (0.4, 0.95)])
    _write(tmp_path, "b", "runs/b/ep1.pt", [(0.3, 0.97), (0.4, 0.93)])
    _write(tmp_path, "t", "runs/robust_teacher/last.pt", [(0.5, 0.99)])
    cands = load_candidates(tmp_path)
    assert [c["name"] for c in cands] == ["t", "b", "a"]
    assert [c["row"]["shift"] for c in cands] == [0.5, 0.3, 0.4]
    assert [c["teacher"] for c in cands] == [True, False, False]
    st = spread(cands)
    assert st["students"] == 2 and st["min"] == 0.95 and st["max"] == 0.97
    table = markdown(cands, shipped="a")
    assert "| 3 | a **(shipped)** | 0.4 |" in table and "t (teacher)" in table


def test_writes_the_table_and_the_figure(tmp_path):
    _write(tmp_path, "a", "runs/a/ep1.pt", [(0.4, 0.95)])
    main(["--results", str(tmp_path), "--out", str(tmp_path / "board")])
    assert (tmp_path / "board.md").read_text().startswith("1 student checkpoint scored")
    assert (tmp_path / "board.png").stat().st_size > 10_000


def test_shipped_takes_the_file_name_and_warns_when_it_marks_nothing(tmp_path, capsys):
    """--shipped prior_shift_a.json (the form its help names) marks a; a name that matches nothing
    marked nothing without a word (a helper's review)."""
    _write(tmp_path, "a", "runs/a/ep1.pt", [(0.4, 0.95)])
    for given in ("prior_shift_a.json", "prior_shift_a", "a"):
        main(["--results", str(tmp_path), "--out", str(tmp_path / "board"), "--shipped", given])
        assert "a **(shipped)**" in (tmp_path / "board.md").read_text(), given
        assert "warning" not in capsys.readouterr().err
    main(["--results", str(tmp_path), "--out", str(tmp_path / "board"), "--shipped", "gone"])
    assert "warning: --shipped gone: no prior_shift_gone.json" in capsys.readouterr().err
    assert "(shipped)" not in (tmp_path / "board.md").read_text()


def fails_with(capsys, message, argv):
    """One ``error: ...`` line and exit status 2, as every training tool reports bad input."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_clear_errors_for_an_empty_folder_and_a_foreign_file(tmp_path, capsys):
    fails_with(capsys, "no prior_shift", ["--results", str(tmp_path), "--out", str(tmp_path / "board")])
    (tmp_path / "prior_shift_x.json").write_text('{"weights": "w"}')
    fails_with(capsys, "not a training.prior_shift result", ["--results", str(tmp_path), "--out", str(tmp_path / "board")])


def test_a_dot_in_out_is_part_of_the_name(tmp_path):
    _write(tmp_path, "a_e1", "runs/a/ep1.pt", [(0.4, 0.95)])
    main(["--results", str(tmp_path), "--out", str(tmp_path / "board_lr0.002"), "--run", "a"])
    for name in ("board_lr0.002.md", "board_lr0.002.png", "board_lr0.002_a.png"):
        assert (tmp_path / name).is_file(), name
    assert not (tmp_path / "board_lr0.md").exists() and not (tmp_path / "board_lr0.png").exists()


def test_a_runs_course_takes_its_scored_epochs_in_order_and_draws_them_with_its_log(tmp_path, capsys):
    _write(tmp_path, "long_e10", "runs/long/ep10.pt", [(0.4, 0.96)])
    _write(tmp_path, "long_e2", "runs/long/ep2.pt", [(0.3, 0.93), (0.4, 0.94)])
    _write(tmp_path, "longer_e1", "runs/longer/ep1.pt", [(0.4, 0.99)])  # another run, not this one's
    _write(tmp_path, "shipped", "runs/s/last.pt", [(0.4, 0.963)])
    course = run_course(load_candidates(tmp_path), "long")
    assert [(e, r["worst ratio to target"]) for e, r in course] == [(2, 0.94), (10, 0.96)]
    logs = tmp_path / "logs" / "long"
    logs.mkdir(parents=True)
    (logs / "log.jsonl").write_text("".join(json.dumps({"epoch": e, "val_accuracy": 0.6 + e / 100,
                                                        "val2_accuracy": 0.4}) + "\n" for e in range(1, 11)))
    main(["--results", str(tmp_path), "--out", str(tmp_path / "board"), "--shipped", "shipped",
          "--run", "long", "--logs", str(tmp_path / "logs")])
    assert (tmp_path / "board_long.png").stat().st_size > 10_000
    fails_with(capsys, "no prior_shift_nosuch_eN", ["--results", str(tmp_path), "--out", str(tmp_path / "board"),
                                                    "--run", "nosuch"])


def test_every_shipped_constant_is_in_the_by_hand_list_for_shipping():
    """DEVELOPERS.md, "Choose and ship a model", step 4 names what a new student changes by hand."""
    from conftest import REPO

    step = (REPO / "DEVELOPERS.md").read_text().split("4. By hand:")[1].split("\n\n")[0]
    holders = [p.name for p in (REPO / "training").glob("*.py") if "\nSHIPPED = " in p.read_text()]
    assert "leaderboard.py" in holders
    for name in holders:
        assert f"`training/{name}`" in step, name
