// Property checks of the control_law pieces the golden file does not cover: the
// joint-space helpers the controllers use (J dq, J^T F, nullspace projection,
// torque-rate limit), rotation conversions, the force bound of reference
// limiting, watchdog corner cases, parameter validation and the single-publisher
// guard. Plain C++17, no test framework; prints "N passed, N failed" and exits
// non-zero on a failure.
#include <cmath>
#include <cstdio>
#include <random>
#include <string>

#include "hilserl_controllers/control_law.hpp"

using namespace hilserl_controllers::law;

namespace
{

constexpr double kPi = 3.14159265358979323846;

int g_passed = 0;
int g_failed = 0;

void check(bool ok, const std::string & what)
{
  if (ok) {
    ++g_passed;
  } else {
    ++g_failed;
    std::printf("FAIL %s\n", what.c_str());
  }
}

bool near(double a, double b, double tol) { return std::fabs(a - b) <= tol; }

std::mt19937_64 rng(20250101);
double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); }

Quat random_quat()
{
  std::normal_distribution<double> n(0.0, 1.0);
  return quat_normalize({n(rng), n(rng), n(rng), n(rng)}).value;
}

bool same_rotation(const Quat & a, const Quat & b, double tol)
{
  const bool plus = near(a.x, b.x, tol) && near(a.y, b.y, tol) && near(a.z, b.z, tol) && near(a.w, b.w, tol);
  const bool minus = near(a.x, -b.x, tol) && near(a.y, -b.y, tol) && near(a.z, -b.z, tol) && near(a.w, -b.w, tol);
  return plus || minus;
}

constexpr std::size_t N = 7;

Jacobian<N> random_jacobian()
{
  Jacobian<N> J{};
  for (double & x : J) {
    x = uniform(-1.0, 1.0);
  }
  return J;
}

JointVector<N> random_joints(double lo, double hi)
{
  JointVector<N> q{};
  for (double & x : q) {
    x = uniform(lo, hi);
  }
  return q;
}

void test_rotations()
{
  for (int i = 0; i < 200; ++i) {
    const Quat q = random_quat();
    check(same_rotation(matrix_to_quat(quat_to_matrix(q)), q, 1e-12), "matrix_to_quat(quat_to_matrix(q)) == q");
    check(same_rotation(rotvec_to_quat(quat_to_rotvec(q)), q, 1e-12), "rotvec_to_quat(quat_to_rotvec(q)) == q");
    const Quat c = matrix_to_quat(quat_to_matrix(q));
    check(c.w >= 0.0, "matrix_to_quat returns the canonical sign");
  }
  // Gripper pointing down (w = 0): canonical sign by x.
  const Quat down = quat_canonical({-1.0, 0.0, 0.0, 0.0});
  check(down.x == 1.0 && down.w == 0.0, "w == 0 canonicalises by x");
  // Column-major pose (libfranka O_T_EE layout).
  const Quat q = random_quat();
  const Mat3 R = quat_to_matrix(q);
  std::array<double, 16> T{};
  for (std::size_t r = 0; r < 3; ++r) {
    for (std::size_t c = 0; c < 3; ++c) {
      T[4 * c + r] = R.m[r][c];
    }
  }
  T[12] = 0.4;
  T[13] = -0.1;
  T[14] = 0.3;
  T[15] = 1.0;
  const Pose p = pose_from_column_major(T);
  check(same_rotation(p.orientation, q, 1e-12) && p.position.x == 0.4 && p.position.y == -0.1 && p.position.z == 0.3,
        "pose_from_column_major reads a column-major 4x4");
  // rotate_wrench: 90 deg about z turns a force along x into one along y (same point, no p x f term).
  const Vec6 w = rotate_wrench(rotvec_to_quat({0.0, 0.0, kPi / 2}), {1.0, 0.0, 0.0, 0.0, 2.0, 0.0});
  check(near(w[0], 0.0, 1e-12) && near(w[1], 1.0, 1e-12) && near(w[3], -2.0, 1e-12), "rotate_wrench rotates f and tau");
}

void test_force_bound()
{
  // |F_spring| <= K * limit for any target (paper: reference limiting bounds contact force).
  ImpedanceParams p;
  p.translational_stiffness_n_per_m = {3000.0, 3000.0, 3000.0};
  p.rotational_stiffness_nm_per_rad = {200.0, 200.0, 200.0};
  p.reference_limit_m = 0.015;
  p.reference_limit_rad = 0.08;
  check(p.validate().empty(), "valid impedance params");
  for (int i = 0; i < 500; ++i) {
    const Pose measured{{uniform(-1, 1), uniform(-1, 1), uniform(-1, 1)}, random_quat()};
    const Pose target{{uniform(-5, 5), uniform(-5, 5), uniform(-5, 5)}, random_quat()};
    const auto F = impedance_wrench(target, measured, Vec6{}, p);
    check(F.ok(), "impedance_wrench accepts finite inputs");
    check(norm(linear(F.value)) <= 3000.0 * 0.015 * (1 + 1e-12), "|force| <= K_t * reference_limit_m");
    check(norm(angular(F.value)) <= 200.0 * 0.08 * (1 + 1e-12), "|torque| <= K_r * reference_limit_rad");
    // The wrench equals K * pose_error(limit_reference(target)) at rest.
    const auto ref = limit_reference(target, measured, p.reference_limit_m, p.reference_limit_rad);
    const Vec6 e = pose_error(ref.value, measured);
    bool same = ref.ok();
    for (std::size_t k = 0; k < 3; ++k) {
      same = same && near(F.value[k], 3000.0 * e[k], 1e-9) && near(F.value[3 + k], 200.0 * e[3 + k], 1e-9);
    }
    check(same, "impedance_wrench == K * error of the limited reference");
  }
  const Pose nan_target{{std::nan(""), 0.0, 0.0}, Quat{}};
  check(impedance_wrench(nan_target, Pose{}, Vec6{}, p).status == Status::non_finite, "NaN target rejected");
  Vec6 twist{};
  twist[4] = INFINITY;
  check(impedance_wrench(Pose{}, Pose{}, twist, p).status == Status::non_finite, "Inf twist rejected");
  check(limit_reference(Pose{}, Pose{}, 0.0, 0.1).status == Status::invalid_argument, "zero limit rejected");
}

void test_joint_space()
{
  for (int trial = 0; trial < 50; ++trial) {
    const Jacobian<N> J = random_jacobian();
    const JointVector<N> dq = random_joints(-1, 1);
    Vec6 F{};
    for (double & x : F) {
      x = uniform(-10, 10);
    }
    // Power balance: tau . dq == F . (J dq).
    const JointVector<N> tau = jacobian_transpose_times<N>(J, F);
    const Vec6 v = jacobian_times<N>(J, dq);
    double p_joint = 0.0, p_cart = 0.0;
    for (std::size_t j = 0; j < N; ++j) {
      p_joint += tau[j] * dq[j];
    }
    for (std::size_t r = 0; r < 6; ++r) {
      p_cart += F[r] * v[r];
    }
    check(near(p_joint, p_cart, 1e-9), "J^T F and J dq agree on power");
    // Column-major layout: joint j's column is J[6j .. 6j+5].
    JointVector<N> e2{};
    e2[2] = 1.0;
    const Vec6 col = jacobian_times<N>(J, e2);
    check(col[0] == J[12] && col[5] == J[17], "Jacobian is column-major 6 x N");

    // Nullspace torque creates (almost) no Cartesian wrench: J tau_ns -> 0 as lambda -> 0.
    const JointVector<N> q = random_joints(-2, 2), q0 = random_joints(-2, 2);
    const auto ns = nullspace_torque<N>(J, q, dq, q0, 20.0, 2.0 * std::sqrt(20.0), 1e-7);
    check(ns.ok(), "nullspace_torque ok");
    const Vec6 leak = jacobian_times<N>(J, ns.value);
    double leak_norm = 0.0;
    for (double x : leak) {
      leak_norm += x * x;
    }
    check(std::sqrt(leak_norm) < 1e-6, "nullspace torque is in the nullspace of J");
    // Projection is idempotent: projecting the projected torque changes little.
    // (Zero stiffness, unit "damping" on -tau_ns makes tau0 = tau_ns.)
    JointVector<N> minus{};
    for (std::size_t j = 0; j < N; ++j) {
      minus[j] = -ns.value[j];
    }
    const auto twice = nullspace_torque<N>(J, q, minus, q, 0.0, 1.0, 1e-7);
    bool idem = twice.ok();
    for (std::size_t j = 0; j < N; ++j) {
      idem = idem && near(twice.value[j], ns.value[j], 1e-6);
    }
    check(idem, "nullspace projection is idempotent");

    // Damped solve against the definition: (A + l^2 I) x == b.
    std::array<double, 36> A{};
    for (std::size_t r = 0; r < 6; ++r) {
      for (std::size_t c = 0; c < 6; ++c) {
        double s = 0.0;
        for (std::size_t j = 0; j < N; ++j) {
          s += J[6 * j + r] * J[6 * j + c];
        }
        A[6 * r + c] = s;
      }
    }
    Vec6 x{};
    check(solve_damped_spd6(A, 0.2, F, &x), "damped SPD solve succeeds");
    bool solved = true;
    for (std::size_t r = 0; r < 6; ++r) {
      double s = 0.04 * x[r];
      for (std::size_t c = 0; c < 6; ++c) {
        s += A[6 * r + c] * x[c];
      }
      solved = solved && near(s, F[r], 1e-9);
    }
    check(solved, "solve_damped_spd6 solves (A + l^2 I) x = b");
  }
  // A singular Jacobian (all zero) still gives a finite torque with damping, and tau_ns == tau0.
  const Jacobian<N> Z{};
  JointVector<N> q{}, q0{}, dq{};
  q0[3] = 0.5;
  const auto ns = nullspace_torque<N>(Z, q, dq, q0, 10.0, 0.0, 0.2);
  check(ns.ok() && near(ns.value[3], 5.0, 1e-12), "zero Jacobian: nullspace torque is the full posture torque");
  check(nullspace_torque<N>(Z, q, dq, q0, 10.0, 0.0, 0.0).status == Status::invalid_argument, "lambda 0 rejected");
  q[1] = std::nan("");
  check(nullspace_torque<N>(Z, q, dq, q0, 10.0, 0.0, 0.2).status == Status::non_finite, "NaN joint rejected");

  // Torque-rate saturation moves each joint by at most the step.
  const JointVector<N> prev{0, 0, 0, 0, 0, 0, 0};
  const JointVector<N> want{5, -5, 0.5, -0.5, 1, -1, 0};
  const JointVector<N> got = saturate_torque_rate<N>(want, prev, 1.0);
  check(got[0] == 1.0 && got[1] == -1.0 && got[2] == 0.5 && got[3] == -0.5 && got[4] == 1.0 && got[5] == -1.0,
        "saturate_torque_rate limits each joint's step");
}

void test_watchdog()
{
  WrenchWatchdog dog;
  const double w5[5] = {1, 2, 3, 4, 5};
  check(!dog.command(w5, 5, 0.0), "5 numbers rejected");
  check(dog.last_rejection() == Rejection::malformed && std::string(rejection_code(dog.last_rejection())) == "malformed",
        "reason malformed");
  check(!dog.command(nullptr, 6, 0.0), "null pointer rejected as malformed");
  check(dog.rejection_count(Rejection::malformed) == 2 && dog.rejected_count() == 2, "rejections counted per reason");
  check(dog.command({1, 0, 0, 0, 0, 0}, 1.0), "valid command accepted");
  check(!dog.is_stale(1.1) && dog.is_stale(1.3), "stale after the timeout");
  check(!dog.command({2, 0, 0, 0, 0, 0}, 0.5), "older stamp rejected");
  check(dog.output(1.0)[0] == 0.0, "rejection zeroes the output at once");
  check(dog.describe_last_rejection().find("out_of_order_stamp") == 0, "describe_last_rejection names the reason");
  dog.reset();
  check(dog.command({2, 0, 0, 0, 0, 0}, 0.5) && dog.output(0.5)[0] == 2.0, "reset forgets the last stamp");
  check(std::string(rejection_code(Rejection::non_finite_stamp)) == "non_finite_stamp" &&
          std::string(rejection_code(Rejection::non_finite_wrench)) == "non_finite_wrench" &&
          std::string(rejection_code(Rejection::out_of_order_stamp)) == "out_of_order_stamp" &&
          std::string(rejection_code(Rejection::future_stamp)) == "future_stamp",
        "reason codes are control.py's strings");
}

void test_watchdog_future_stamp()
{
  // A 30 N command stamped 60 s ahead of the controller clock must not be applied, and must not make
  // correctly stamped follow-ups look out of order.
  WrenchWatchdog dog;  // max_future_stamp_s 0.05 by default
  check(near(dog.params().max_future_stamp_s, 0.05, 0.0), "default max_future_stamp_s is 0.05 s (control.py)");
  check(!dog.command({30, 0, 0, 0, 0, 0}, 160.0, 100.0), "command 60 s in the future rejected");
  check(dog.last_rejection() == Rejection::future_stamp, "reason future_stamp");
  check(dog.describe_last_rejection().find("future_stamp: stamp 160.000000 s is 60.000000 s ahead") == 0,
        "describe_last_rejection says how far ahead: " + dog.describe_last_rejection());
  check(dog.is_stale(100.0) && dog.is_stale(159.0), "nothing applied");
  check(dog.command({1, 0, 0, 0, 0, 0}, 100.5, 100.5), "correctly stamped follow-up accepted");
  check(dog.output(100.6)[0] == 1.0, "and applied");
  check(dog.rejection_count(Rejection::future_stamp) == 1 && dog.rejection_count(Rejection::out_of_order_stamp) == 0,
        "counted as future_stamp, not out_of_order_stamp");
  // Within the tolerance (clock offset between machines) a stamp slightly ahead is fine.
  check(dog.command({2, 0, 0, 0, 0, 0}, 100.74, 100.7), "40 ms ahead accepted");
  check(dog.output(100.7)[0] == 2.0, "and applied at once");
  // A NaN or infinite clock vouches for nothing.
  check(!dog.command({2, 0, 0, 0, 0, 0}, 101.0, std::nan("")), "NaN clock rejects");
  check(!dog.command({2, 0, 0, 0, 0, 0}, 101.0, INFINITY), "+Inf clock rejects");
  // Offered without a clock: accepted, but output() never applies it while it is still in the future.
  WrenchWatchdog no_clock;
  check(no_clock.command({3, 0, 0, 0, 0, 0}, 10.0), "no-clock overload has no future check");
  check(no_clock.is_stale(5.0) && no_clock.output(9.96)[0] == 3.0, "output applies only within the tolerance");
  WrenchParams bad;
  bad.max_future_stamp_s = -0.1;
  check(bad.validate().find("max_future_stamp_s") == 0, "negative max_future_stamp_s rejected");
  bad.max_future_stamp_s = std::nan("");
  check(!bad.validate().empty(), "NaN max_future_stamp_s rejected");
}

void test_wrench_mode()
{
  // With the simulator's wrench-mode gains, the holding spring adds at most K * limit however far the anchor
  // is, and the feed-forward wrench arrives rotated, unclipped, on top.
  ImpedanceParams p;
  p.translational_stiffness_n_per_m = {100, 100, 100};
  p.rotational_stiffness_nm_per_rad = {3, 3, 3};
  p.translational_damping_ns_per_m = ImpedanceParams::critical_damping(p.translational_stiffness_n_per_m) * 0.3;
  p.rotational_damping_nms_per_rad = ImpedanceParams::critical_damping(p.rotational_stiffness_nm_per_rad) * 0.3;
  p.reference_limit_m = 0.1;
  p.reference_limit_rad = 0.5;
  for (int i = 0; i < 200; ++i) {
    const Pose measured{{uniform(-1, 1), uniform(-1, 1), uniform(-1, 1)}, random_quat()};
    const Pose anchor{{uniform(-5, 5), uniform(-5, 5), uniform(-5, 5)}, random_quat()};
    Vec6 ff{};
    for (double & x : ff) {
      x = uniform(-20, 20);
    }
    const auto with = wrench_mode_wrench(anchor, measured, Vec6{}, ff, p);
    const auto spring = impedance_wrench(anchor, measured, Vec6{}, p);
    const Vec6 ff_base = rotate_wrench(measured.orientation, ff);
    bool sum = with.ok() && spring.ok();
    for (std::size_t k = 0; k < 6; ++k) {
      sum = sum && near(with.value[k], spring.value[k] + ff_base[k], 1e-12);
    }
    check(sum, "wrench_mode_wrench = impedance toward the anchor + rotated feed-forward");
    check(norm(linear(spring.value)) <= 100 * 0.1 * (1 + 1e-12) && norm(angular(spring.value)) <= 3 * 0.5 * (1 + 1e-9),
          "holding spring bounded by K * reference limit");
  }
  const Pose here{{0.5, 0, 0.3}, {}};
  check(wrench_mode_wrench(here, here, Vec6{}, Vec6{std::nan(""), 0, 0, 0, 0, 0}, p).status == Status::non_finite,
        "NaN feed-forward rejected");
  const auto still = wrench_mode_wrench(here, here, Vec6{}, Vec6{}, p);
  check(still.ok() && norm(linear(still.value)) == 0.0 && norm(angular(still.value)) == 0.0,
        "at the anchor, at rest, no feed-forward: no wrench");
}

void test_validation()
{
  ImpedanceParams p;
  check(p.validate().empty(), "default impedance params are valid");
  check(near(p.translational_damping_ns_per_m.x, 2.0 * std::sqrt(2000.0), 1e-12), "default damping is critical");
  p.reference_limit_rad = 3.2;
  check(p.validate().find("reference_limit_rad") == 0, "limit_rad >= pi rejected with its name");
  p = ImpedanceParams{};
  p.translational_stiffness_n_per_m.y = -1.0;
  check(p.validate().find("translational_stiffness_n_per_m") == 0, "negative stiffness rejected");
  WrenchParams w;
  check(w.validate().empty(), "default wrench params are valid");
  w.watchdog_timeout_s = 0.0;
  check(!w.validate().empty(), "zero timeout rejected");
  WorkspaceBox box;
  box.min_position_m = {0.3, -0.3, 0.05};
  box.max_position_m = {0.7, 0.3, 0.5};
  check(box.validate().empty(), "box valid");
  box.min_position_m.x = 0.8;
  check(!box.validate().empty(), "min > max rejected");
  box.min_position_m.x = 0.3;
  box.limit_orientation = true;
  box.orientation_reference = {0.0, 0.0, 0.0, 2.0};
  check(!box.validate().empty(), "non-unit reference quaternion rejected");
  box.orientation_reference = {1.0, 0.0, 0.0, 0.0};
  box.orientation_limit_rad = {0.2, 0.2, 0.5};
  check(box.validate().empty(), "orientation box valid");
  // Integration stays inside the box, whatever the action.
  for (int i = 0; i < 200; ++i) {
    const Pose m = box.clip({{uniform(0, 1), uniform(-1, 1), uniform(0, 1)}, random_quat()});
    Vec6 a{};
    for (double & x : a) {
      x = uniform(-3, 3);
    }
    const auto t = integrate_twist_target(m, a, 0.05, 0.3, &box);
    check(t.ok() && box.contains(t.value), "integrated target inside the box");
  }
  check(integrate_twist_target(Pose{}, Vec6{}, 0.0, 0.1, nullptr).status == Status::invalid_argument,
        "zero linear step rejected");
  check(integrate_twist_target({{}, {0, 0, 0, 0}}, Vec6{}, 0.01, 0.1, nullptr).status == Status::invalid_argument,
        "zero measured quaternion rejected");
}

// The sequence tests/core/test_control_publisher_guard.py runs on control.py's twin.
void test_single_publisher_guard()
{
  using E = SinglePublisherGuard::Event;
  struct Step
  {
    std::size_t publishers;
    E event;
    bool accepts;
  };
  const Step sequence[] = {
    {0, E::none, true},     {1, E::none, true},      {2, E::conflict, false}, {3, E::none, false}, {2, E::none, false},
    {1, E::clear, true},    {1, E::none, true},      {2, E::conflict, false}, {0, E::clear, true},
  };
  SinglePublisherGuard g;
  std::size_t dropped = 0;
  int i = 0;
  for (const Step & step : sequence) {
    const std::string at = "guard step " + std::to_string(i++);
    check(g.observe(step.publishers) == step.event, at + ": event");
    check(g.publishers() == step.publishers && g.conflict() == !step.accepts, at + ": state");
    check(g.accept() == step.accepts, at + ": accept");
    dropped += step.accepts ? 0 : 1;
  }
  check(g.conflicts() == 2, "guard counts two conflicts");
  check(g.dropped() == dropped && dropped == 4, "guard counts the dropped commands");
}

}  // namespace

int main()
{
  test_rotations();
  test_force_bound();
  test_joint_space();
  test_watchdog();
  test_watchdog_future_stamp();
  test_wrench_mode();
  test_validation();
  test_single_publisher_guard();
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
