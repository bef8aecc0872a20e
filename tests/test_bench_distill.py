"""bench/distill.py: the mean over seeds of each predictor, its distance to the ensemble, and the share of the
one-fold-to-ensemble gap it recovers, against hand numbers; a copy of the teacher that keeps fold 0 alone."""
from bench import distill
from src.run.rundir import RunDir


def row(seed, what, f1, ceiling=0.8):
    return dict(seed=seed, what=what, f1=f1, ceiling=ceiling, f1_mask=1.0, f1_gender=0.9, f1_age=0.5, train_min=1.0,
                infer_s=10.0, page_s=0.5)


def test_the_summary_averages_seeds_and_measures_the_gap_recovered():
    rows = [row(1, "teacher, fold 0", 0.60), row(1, "teacher ensemble", 0.70), row(1, "student", 0.66),
            row(2, "teacher, fold 0", 0.62), row(2, "teacher ensemble", 0.72), row(2, "student", 0.70)]
    lines = distill.summary(rows).splitlines()
    student = next(line for line in lines if line.startswith("| student"))
    # mean 0.68 against a fold's 0.61 and the ensemble's 0.71: 0.07 of the 0.10 gap, -0.03 behind the ensemble
    assert "| 0.6800 | 0.850 | -0.0300 | 70% |" in student
    assert "| 0.7100 | 0.887 | +0.0000 | 100% |" in next(line for line in lines if line.startswith("| teacher ensemble"))
    assert len(distill.table(rows).splitlines()) == 2 + len(rows)


def test_one_fold_keeps_fold_0_of_a_copy_and_leaves_the_teacher_whole(tmp_path):
    teacher = RunDir(tmp_path, "teacher")
    for k in range(3):
        teacher.fold(k).mkdir(parents=True)
        teacher.last(k).write_bytes(b"x")
    teacher.submission.write_text("ImageID,ans\n")
    name = distill.one_fold(tmp_path, "teacher")
    assert RunDir(tmp_path, name).folds() == [0] and teacher.folds() == [0, 1, 2]
    assert not RunDir(tmp_path, name).submission.exists()
