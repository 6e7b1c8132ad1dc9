"""Evaluation protocols against values computed by hand on tiny inputs."""

import numpy as np
import pytest
from scipy import stats

from valuation.evaluate.measure import measure
from valuation.evaluate.noisy_labels import detection_auroc, detection_f1, random_f1
from valuation.evaluate.point_removal import curve_summary, curves, order_masks
from valuation.evaluate.rank_correlation import mid_ranks, spearman, top_k_overlap
from valuation.tasks import make_task


def test_detection_f1_by_hand():
    values = np.array([0.5, -1.0, 0.2, -0.3, 0.9, 0.0])
    noisy = np.array([False, True, False, False, False, True])
    # k = 2 lowest: positions 1 (-1.0) and 3 (-0.3); one of them noisy.
    # precision 1/2, recall 1/2 -> F1 1/2.
    assert detection_f1(values, noisy) == pytest.approx(0.5)
    # k = 3 adds position 5 (0.0): tp 2, precision 2/3, recall 1 -> F1 0.8.
    assert detection_f1(values, noisy, k=3) == pytest.approx(0.8)
    assert random_f1(noisy) == pytest.approx(2 / 6)


def test_detection_auroc_by_hand():
    # noisy values {-1, 0.2}, clean {0.5, -0.3, 0.2}: pairs where noisy < clean count 1,
    # ties 1/2. -1 is below all 3; 0.2 is below 0.5, above -0.3, tied with 0.2 -> 1.5.
    values = np.array([-1.0, 0.5, 0.2, -0.3, 0.2])
    noisy = np.array([True, False, True, False, False])
    assert detection_auroc(values, noisy) == pytest.approx((3 + 1.5) / 6)
    assert detection_auroc(values, np.zeros(5, bool)) != detection_auroc(values, noisy)
    assert np.isnan(detection_auroc(values, np.zeros(5, bool)))  # no noisy sample: undefined
    assert np.isnan(detection_auroc(values, np.ones(5, bool)))  # no clean sample: undefined


def test_mid_ranks_and_spearman_by_hand():
    np.testing.assert_allclose(mid_ranks([10, 30, 20, 30]), [1, 3.5, 2, 3.5])
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # d = rank differences (0, 0, 1, -1): rho = 1 - 6 * 2 / (4 * 15) = 0.8.
    assert spearman([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(0.8)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), np.round(rng.normal(size=50), 1)  # ties in b
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_top_k_overlap_by_hand():
    a, b = [5, 4, 3, 2, 1], [5, 1, 3, 4, 2]
    assert top_k_overlap(a, b, 2) == pytest.approx(0.5)  # {0, 1} vs {0, 3}
    assert top_k_overlap(a, b, 2, lowest=True) == pytest.approx(0.5)  # {4, 3} vs {1, 4}


def test_order_masks_by_hand():
    order = np.array([2, 0, 3, 1])
    np.testing.assert_array_equal(
        order_masks(order, [0.0, 0.25, 0.5], remove=True),
        [[1, 1, 1, 1], [1, 1, 0, 1], [0, 1, 0, 1]])
    np.testing.assert_array_equal(
        order_masks(order, [0.25, 0.5], remove=False), [[0, 0, 1, 0], [1, 0, 1, 0]])


def test_removal_curve_on_an_additive_utility():
    # Additive utility: the score of a subset is the sum of its samples' contributions.
    contrib = np.array([3.0, -1.0, 2.0, 0.5])
    calls = []

    def utility(w):
        calls.append(w.shape)
        return w @ contrib

    values = np.array([3.0, -1.0, 2.0, 0.5])  # perfect values: the contributions themselves
    frame = curves(values, utility, fractions=[0.0, 0.25, 0.5], n_random=3, seed=0)
    assert len(calls) == 1  # every curve point trained in one batch
    by = frame.set_index(["protocol", "order", "fraction"])["score"].sort_index()
    # removal high-first: remove 3.0 then 2.0 -> 4.5, 1.5, -0.5
    np.testing.assert_allclose(by["removal", "high_first"].to_numpy(), [4.5, 1.5, -0.5])
    # removal low-first: remove -1.0 then 0.5 -> 4.5, 5.5, 5.0
    np.testing.assert_allclose(by["removal", "low_first"].to_numpy(), [4.5, 5.5, 5.0])
    # addition high-first: {} , {3}, {3, 2} -> 0, 3, 5
    np.testing.assert_allclose(by["addition", "high_first"].to_numpy(), [0.0, 3.0, 5.0])
    # random removal of a quarter: mean over 3 random single removals, each 4.5 - c_i
    assert by["removal", "random", 0.0] == pytest.approx(4.5)
    assert min(4.5 - contrib) <= by["removal", "random", 0.25] <= max(4.5 - contrib)
    summary = curve_summary(frame)
    assert summary["removal_high_first"] == pytest.approx((4.5 + 1.5 - 0.5) / 3)
    assert summary["removal_high_first"] < summary["removal_random"] < summary[
        "removal_low_first"]


def test_tasks_are_deterministic_and_noise_lives_in_train():
    a, b = make_task("wine", seed=3), make_task("wine", seed=3)
    np.testing.assert_array_equal(a.train.ids, b.train.ids)
    np.testing.assert_array_equal(a.train.y, b.train.y)
    np.testing.assert_array_equal(a.noisy, b.noisy)
    clean = make_task("wine", noise=0.0, seed=3)
    np.testing.assert_array_equal(clean.train.ids, a.train.ids)
    assert (clean.train.y != a.train.y).sum() == a.noisy.sum() == round(0.1 * a.train.n)
    np.testing.assert_array_equal(clean.train.y != a.train.y, a.noisy)
    ids = [set(p.ids.tolist()) for p in (a.train, a.valid, a.test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    np.testing.assert_allclose(a.train.x.mean(0), 0.0, atol=1e-5)


def test_measure_sees_a_large_allocation():
    _, small = measure(lambda: np.ones(1000).sum())
    _, big = measure(lambda: np.ones(25_000_000).sum())  # 200 MB of float64
    assert big.peak_mb - small.peak_mb > 150
    assert big.seconds > 0


def test_knn_label_agreement_by_hand():
    from valuation.evaluate.noisy_labels import knn_label_agreement

    # Points on a line: 0, 1, 2.5 labelled a, a, b and 10, 11 labelled b, b (no ties).
    x = np.array([[0.0], [1.0], [2.5], [10.0], [11.0]])
    y = np.array([0, 0, 1, 1, 1])
    np.testing.assert_allclose(knn_label_agreement(x, y, k=1), [1, 1, 0, 1, 1])
    # k = 2: 2.5's neighbours are 1 and 0 (both a); 10's are 11 and 2.5 (both b).
    np.testing.assert_allclose(knn_label_agreement(x, y, k=2, block=2), [0.5, 0.5, 0, 1, 1])
    # New samples look their neighbours up in a reference set; nothing is excluded there:
    # 0.0 (a) finds the reference point 0.0 itself; 0.4 (a) finds 0, 1, 2.5 at k = 3.
    new = np.array([[0.0], [0.4], [10.6]])
    got = knn_label_agreement(new, np.array([0, 0, 1]), k=1, reference=(x, y))
    np.testing.assert_allclose(got, [1, 1, 1])
    got = knn_label_agreement(new, np.array([1, 0, 1]), k=3, reference=(x, y))
    np.testing.assert_allclose(got, [1 / 3, 2 / 3, 1])


def test_cyclic_task_flips_each_class_to_the_next_and_new_rows_get_the_same_noise():
    clean = make_task("synthetic_1k_cyclic", noise=0.0, seed=0)
    task = make_task("synthetic_1k_cyclic", noise=0.2, seed=0)
    assert task.cyclic and task.noisy.sum() == round(0.2 * task.train.n)
    np.testing.assert_array_equal(task.train.y[task.noisy], (clean.train.y[task.noisy] + 1) % 3)
    np.testing.assert_array_equal(task.train.y[~task.noisy], clean.train.y[~task.noisy])
    new, flipped = task.flip(task.test, seed=5)
    assert flipped.sum() == round(0.2 * task.test.n)
    np.testing.assert_array_equal(new.y[flipped], (task.test.y[flipped] + 1) % 3)
    uniform = make_task("synthetic_1k", noise=0.2, seed=0)  # same source, uniform flips
    assert not uniform.cyclic
    np.testing.assert_array_equal(uniform.train.ids, clean.train.ids)
    was = clean.train.y[uniform.noisy]
    assert (uniform.train.y[uniform.noisy] == (was + 2) % 3).any()
