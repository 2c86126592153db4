"""Episode metrics with hand-computed values, and the Eq. 1 Q-variance on an analytic critic."""

import json

import pytest
import torch

from hilserl_core.rl.metrics import EpisodeMetrics, EpisodeRecord, q_value_variance


def rec(success, duration, steps=10, intervened=0, eid=0):
    return EpisodeRecord(success=success, duration_s=duration, steps=steps, intervention_steps=intervened, episode_id=eid)


def test_empty_metrics_are_none_and_json_clean():
    m = EpisodeMetrics()
    assert m.success_rate is None and m.cycle_time_s is None and m.intervention_rate is None
    s = json.loads(m.to_json())
    assert s["episodes_total"] == 0 and s["cycle_time_s"] is None and s["window"] == 20


def test_hand_computed_rates():
    m = EpisodeMetrics(window=20)
    m.add(rec(True, 4.0, steps=40, intervened=10))   # 0.25 intervened
    m.add(rec(False, 10.0, steps=100, intervened=0))  # 0.0
    m.add(rec(True, 6.0, steps=60, intervened=30))   # 0.5
    m.add(rec(False, 10.0, steps=100, intervened=100))  # 1.0
    assert m.success_rate == pytest.approx(0.5)
    assert m.cycle_time_s == pytest.approx(5.0)  # failures (10 s time-outs) are excluded
    assert m.intervention_rate == pytest.approx((0.25 + 0.0 + 0.5 + 1.0) / 4)
    s = m.summary()
    assert s["steps_total"] == 300 and s["intervention_steps_total"] == 140
    assert s["total_intervention_rate"] == pytest.approx(140 / 300)
    assert json.loads(m.to_json())["last_episode"]["steps"] == 100


def test_no_successes_gives_no_cycle_time():
    m = EpisodeMetrics(window=3)
    for _ in range(3):
        m.add(rec(False, 10.0))
    assert m.success_rate == 0.0
    assert m.cycle_time_s is None
    assert json.loads(m.to_json())["cycle_time_s"] is None


def test_window_rolls_over_but_totals_do_not():
    m = EpisodeMetrics(window=3)
    m.add(rec(True, 2.0, intervened=10))  # rolls out below
    m.add(rec(False, 9.0, intervened=0))
    m.add(rec(False, 9.0, intervened=0))
    assert m.success_rate == pytest.approx(1 / 3) and m.cycle_time_s == pytest.approx(2.0)
    m.add(rec(True, 3.0, intervened=5))
    assert m.success_rate == pytest.approx(1 / 3)  # window = [F, F, T]
    assert m.cycle_time_s == pytest.approx(3.0)  # the 2 s success left the window
    assert m.intervention_rate == pytest.approx(0.5 / 3)
    m.add(rec(True, 5.0))
    m.add(rec(True, 7.0))
    assert m.success_rate == 1.0 and m.cycle_time_s == pytest.approx(5.0)
    assert m.episodes_total == 6 and m.successes_total == 4
    assert len(m.recent) == 3


def test_zero_step_episode_does_not_divide_by_zero_and_bad_records_rejected():
    m = EpisodeMetrics(window=5)
    m.add(rec(False, 0.0, steps=0))
    assert m.intervention_rate is None
    m.add(rec(False, 1.0, steps=4, intervened=1))
    assert m.intervention_rate == pytest.approx(0.25)
    with pytest.raises(ValueError):
        rec(False, 1.0, steps=4, intervened=5)
    with pytest.raises(ValueError):
        rec(False, float("nan"))
    with pytest.raises(ValueError):
        EpisodeMetrics(window=0)


def quadratic_critic(center):
    """Q(s, a) = -sum_i (a_i - c_i)^2 with per-state c = s."""

    def q(obs, actions):
        return -((actions - obs) ** 2).sum(dim=1)

    return q


def analytic_variance(action, center, delta):
    # Q = -sum (d_i + e_i)^2, d = a - c, e ~ U[-delta, delta] independent:
    # Var[(d + e)^2] = 4 d^2 Var[e] + Var[e^2] (Cov(e, e^2) = 0 by symmetry),
    # Var[e] = delta^2 / 3, Var[e^2] = delta^4 / 5 - delta^4 / 9 = 4 delta^4 / 45.
    d = action - center
    return (4 * d**2 * delta**2 / 3 + 4 * delta**4 / 45).sum(dim=1)


def test_q_value_variance_matches_the_analytic_value():
    obs = torch.tensor([[0.0, 0.0], [0.3, -0.1], [0.0, 0.0]])  # the optimum c per state
    action = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.5, 0.5]])
    g = torch.Generator().manual_seed(0)
    var = q_value_variance(quadratic_critic(obs), obs, action, n=200_000, noise=0.2, generator=g)
    expected = analytic_variance(action, obs, 0.2)
    torch.testing.assert_close(var, expected, rtol=0.02, atol=1e-6)
    # flat at the optimum, sharp away from it: the paper's "Q-value is sharper near the
    # demonstrated action" reading
    assert var[0] < var[1] < var[2]


def test_q_value_variance_defaults_and_dict_observations():
    calls = {}

    def critic(obs, actions):
        calls["n"] = actions.shape[0]
        assert obs["proprio"].shape[0] == actions.shape[0]
        # the noise really is bounded by 0.2 around the given action
        assert (actions - obs["proprio"]).abs().max() <= 0.2 + 1e-6
        return (actions.sum(dim=1, keepdim=True))  # [B*n, 1] is accepted

    obs = {"proprio": torch.ones(4, 3)}
    var = q_value_variance(critic, obs, torch.ones(4, 3), generator=torch.Generator().manual_seed(1))
    assert calls["n"] == 400 and var.shape == (4,)
    # linear Q = sum(a + e): variance = 3 * 0.2^2 / 3 = 0.04 (loose: n = 100 samples)
    assert ((var - 0.04).abs() < 0.02).all()
    with pytest.raises(ValueError, match=r"\[B \* n\]"):
        q_value_variance(lambda o, a: a, obs, torch.ones(4, 3))


def test_recent_median_keeps_only_the_window():
    from hilserl_core.rl.metrics import RecentMedian

    m = RecentMedian(window=3)
    assert m.median() != m.median()  # nan
    assert [m.add(v) for v in (10, 1, 2, 30, 40)] == [10, 10, 2, 2, 30]
