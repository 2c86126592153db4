// Control laws of the HIL-SERL low-level stack in plain C++17 (no Eigen, no ROS).
//
// This is the C++ twin of hilserl_core/control.py (the reference): the same
// reference-limited Cartesian impedance law, wrench clamps and watchdog, and
// twist-action integration. Both are checked against
// hilserl_core/data/control_golden.json (tests/controllers/test_control_law_cpp.py).
//
// Conventions (those of hilserl_core.frames): quaternions [x, y, z, w], Hamilton
// product, active rotation; every returned quaternion has the canonical sign
// (w > 0; when w == 0 the first non-zero of x, y, z is positive). Twists are
// [v, w], wrenches [f, tau]. Poses and wrenches are of the end effector (TCP) in
// the robot's base frame unless a name says _ee.
//
// Nothing here allocates or throws on the control path, so every function may
// run inside a 1 kHz real-time update(). Errors come back as a Status
// (Result<T>), never as exceptions; parameter structs have validate(), called
// once at configuration time, which returns what is wrong as a sentence.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <string>

namespace hilserl_controllers
{
namespace law
{

// --------------------------------------------------------------------------- small types

struct Vec3
{
  double x = 0.0;
  double y = 0.0;
  double z = 0.0;

  double operator[](std::size_t i) const { return i == 0 ? x : (i == 1 ? y : z); }
  double & operator[](std::size_t i) { return i == 0 ? x : (i == 1 ? y : z); }
};

inline Vec3 operator+(const Vec3 & a, const Vec3 & b) { return {a.x + b.x, a.y + b.y, a.z + b.z}; }
inline Vec3 operator-(const Vec3 & a, const Vec3 & b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
inline Vec3 operator*(const Vec3 & a, double s) { return {a.x * s, a.y * s, a.z * s}; }
inline Vec3 operator*(double s, const Vec3 & a) { return a * s; }
inline double dot(const Vec3 & a, const Vec3 & b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
inline Vec3 cross(const Vec3 & a, const Vec3 & b)
{
  return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x};
}
// Euclidean norm computed like numpy.linalg.norm (sqrt of the sum of squares).
inline double norm(const Vec3 & a) { return std::sqrt(dot(a, a)); }
inline bool is_finite(const Vec3 & a) { return std::isfinite(a.x) && std::isfinite(a.y) && std::isfinite(a.z); }

// Quaternion [x, y, z, w]; the default is the identity.
struct Quat
{
  double x = 0.0;
  double y = 0.0;
  double z = 0.0;
  double w = 1.0;
};

inline bool is_finite(const Quat & q)
{
  return std::isfinite(q.x) && std::isfinite(q.y) && std::isfinite(q.z) && std::isfinite(q.w);
}

// Row-major 3x3 rotation matrix: m[r][c].
struct Mat3
{
  std::array<std::array<double, 3>, 3> m{{{1.0, 0.0, 0.0}, {0.0, 1.0, 0.0}, {0.0, 0.0, 1.0}}};
};

inline Vec3 operator*(const Mat3 & R, const Vec3 & v)
{
  Vec3 out;
  for (std::size_t r = 0; r < 3; ++r) {
    out[r] = R.m[r][0] * v.x + R.m[r][1] * v.y + R.m[r][2] * v.z;
  }
  return out;
}

// A pose of a frame in the base frame: position (m) and orientation.
struct Pose
{
  Vec3 position;
  Quat orientation;
};

// Twist [vx, vy, vz, wx, wy, wz] (m/s, rad/s) or wrench [fx, fy, fz, tx, ty, tz] (N, N m).
using Vec6 = std::array<double, 6>;

inline bool is_finite(const Vec6 & v)
{
  for (double x : v) {
    if (!std::isfinite(x)) {
      return false;
    }
  }
  return true;
}
inline Vec3 linear(const Vec6 & v) { return {v[0], v[1], v[2]}; }
inline Vec3 angular(const Vec6 & v) { return {v[3], v[4], v[5]}; }
inline Vec6 join(const Vec3 & a, const Vec3 & b) { return {a.x, a.y, a.z, b.x, b.y, b.z}; }

// --------------------------------------------------------------------------- results

// Why a law refused its inputs. non_finite is a command to reject (the caller
// holds its last safe target); invalid_argument is a programming or
// configuration error (bad limits, zero quaternion).
enum class Status { ok, non_finite, invalid_argument };

const char * status_name(Status s);

template <typename T>
struct Result
{
  Status status = Status::ok;
  T value{};

  bool ok() const { return status == Status::ok; }
  explicit operator bool() const { return ok(); }
};

// --------------------------------------------------------------------------- rotations (hilserl_core.frames)

// q with the canonical sign (w > 0; ties broken by x, then y, then z).
Quat quat_canonical(const Quat & q);
// Unit-norm canonical copy; invalid_argument on a zero or non-finite quaternion.
Result<Quat> quat_normalize(const Quat & q);
// Hamilton product q1 * q2 (rotate by q2 first, then by q1), canonical sign.
Quat quat_multiply(const Quat & q1, const Quat & q2);
// Conjugate [-x, -y, -z, w] (the inverse of a unit quaternion), canonical sign.
Quat quat_conjugate(const Quat & q);
// Rotation matrix of q (normalised first, either sign).
Mat3 quat_to_matrix(const Quat & q);
// Canonical unit quaternion of a rotation matrix (Shepperd's method, largest pivot).
Quat matrix_to_quat(const Mat3 & R);
// Quaternion of a rotation vector (axis * angle, rad); any angle; canonical sign.
Quat rotvec_to_quat(const Vec3 & v);
// Rotation vector of q (either sign), angle in [0, pi].
Vec3 quat_to_rotvec(const Quat & q);
// R(q) v.
Vec3 quat_rotate(const Quat & q, const Vec3 & v);
// Impedance-control error [p_t - p, log(R_t R^T)], both parts in base axes.
Vec6 pose_error(const Pose & target, const Pose & measured);
// v scaled down to norm max_norm when longer; direction kept.
Vec3 clamp_norm(const Vec3 & v, double max_norm);
// A wrench or twist with the same reference point written in other axes: [R f, R tau]
// (hilserl_core.frames.rotate_wrench; NOT the full adjoint, which would add p x f).
Vec6 rotate_wrench(const Quat & q, const Vec6 & w);

// Pose of a column-major homogeneous 4x4 matrix (the layout libfranka and
// franka_semantic_components use for O_T_EE).
Pose pose_from_column_major(const std::array<double, 16> & T);

// --------------------------------------------------------------------------- impedance with reference limiting

// Gains and reference limits of the Cartesian impedance law (base-frame axes).
// The reference limits bound contact force: |F_spring| <= K * limit.
struct ImpedanceParams
{
  Vec3 translational_stiffness_n_per_m{2000.0, 2000.0, 2000.0};
  Vec3 rotational_stiffness_nm_per_rad{150.0, 150.0, 150.0};
  Vec3 translational_damping_ns_per_m{2.0 * std::sqrt(2000.0), 2.0 * std::sqrt(2000.0), 2.0 * std::sqrt(2000.0)};
  Vec3 rotational_damping_nms_per_rad{2.0 * std::sqrt(150.0), 2.0 * std::sqrt(150.0), 2.0 * std::sqrt(150.0)};
  double reference_limit_m = 0.02;
  double reference_limit_rad = 0.1;

  // Critical damping of a unit mass per axis, D = 2 sqrt(K) (control.py's default when damping is None).
  static Vec3 critical_damping(const Vec3 & stiffness);
  // Empty when usable, else a sentence naming the field and the allowed range.
  std::string validate() const;
};

// Reference limiting (paper, low-level controller): the position moves toward the
// target along the straight line and stops at limit_m; the orientation turns
// along the geodesic and stops at limit_rad. Targets inside the limits come back
// unchanged (quaternion normalised and canonical). non_finite when the target has
// NaN/Inf; invalid_argument when a limit is not finite and > 0.
Result<Pose> limit_reference(const Pose & target, const Pose & measured, double limit_m, double limit_rad);

// F = K e - D v (base axes, at the TCP) with e the pose error of the limited
// reference and v the measured TCP twist in base axes. non_finite when the target,
// the measured pose or the twist has NaN/Inf (then command no wrench from this law).
Result<Vec6> impedance_wrench(
  const Pose & target, const Pose & measured, const Vec6 & measured_twist_base, const ImpedanceParams & params);

// --------------------------------------------------------------------------- feed-forward wrench: clamps and watchdog

struct WrenchParams
{
  double max_force_n = 30.0;
  double max_torque_nm = 5.0;
  double watchdog_timeout_s = 0.25;
  // How far a command's stamp may lie ahead of the controller clock and still be
  // accepted (s). It absorbs the clock offset between the machine that stamps
  // commands and the controller's, so that offset must stay below it (NTP/PTP).
  double max_future_stamp_s = 0.05;

  std::string validate() const;
};

// Force and torque scaled separately to their norm limits (directions kept).
// non_finite on NaN/Inf.
Result<Vec6> clamp_wrench(const Vec6 & wrench, const WrenchParams & params);

// Why the watchdog refused a command; the codes are control.py's REJECT_* strings.
enum class Rejection { none = 0, malformed, non_finite_wrench, non_finite_stamp, out_of_order_stamp, future_stamp };
constexpr std::size_t kRejectionKinds = 6;
// "" for none, else "malformed", "non_finite_wrench", "non_finite_stamp", "out_of_order_stamp",
// "future_stamp".
const char * rejection_code(Rejection r);

// Holds the last accepted feed-forward wrench and zeroes it when commands stop.
// Time comes in as arguments, so the same sequence gives the same outputs here,
// in the simulator and in the golden file. A rejected command zeroes the output
// until the next accepted one (fail-safe). Real-time safe: no allocation.
// Rejections, checked in this order: malformed, non_finite_wrench,
// non_finite_stamp, future_stamp (stamp_s - now_s > max_future_stamp_s, only
// when now_s is given; a non-finite now_s rejects), out_of_order_stamp (older
// than the last accepted command).
class WrenchWatchdog
{
public:
  explicit WrenchWatchdog(const WrenchParams & params = WrenchParams{}) : params_(params) {}

  // Offer a wrench [f, tau] stamped stamp_s (s) at controller time now_s (s), the
  // clock the stamp must come from; true if accepted (then stored clamped).
  bool command(const Vec6 & wrench, double stamp_s, double now_s);
  // Same, from n numbers; n != 6 is rejected as malformed.
  bool command(const double * wrench, std::size_t n, double stamp_s, double now_s);
  // Without a clock (control.py's now_s=None): no future_stamp check; output() still
  // never applies a command stamped more than max_future_stamp_s ahead of its now_s.
  bool command(const Vec6 & wrench, double stamp_s);
  bool command(const double * wrench, std::size_t n, double stamp_s);
  // Wrench to apply at now_s: the last accepted one while now_s - stamp <= timeout and
  // stamp - now_s <= max_future_stamp_s, else zeros.
  Vec6 output(double now_s) const;
  // True when output(now_s) is all zeros (nothing recent held).
  bool is_stale(double now_s) const;
  // Forget the held command and the last stamp (e.g. on controller activation); counters are kept.
  void reset();

  void set_params(const WrenchParams & params) { params_ = params; }
  const WrenchParams & params() const { return params_; }
  std::size_t rejected_count() const { return rejected_count_; }
  std::size_t rejection_count(Rejection r) const { return rejection_counts_[static_cast<std::size_t>(r)]; }
  Rejection last_rejection() const { return last_rejection_; }
  // A sentence for a log or diagnostic message (allocates: call outside the real-time loop).
  std::string describe_last_rejection() const;

private:
  bool offer(const Vec6 & wrench, double stamp_s, bool has_now, double now_s);
  bool reject(Rejection r, double stamp_s, double now_s);

  WrenchParams params_;
  Vec6 wrench_{};
  bool has_stamp_ = false;
  double stamp_s_ = 0.0;
  std::size_t rejected_count_ = 0;
  std::array<std::size_t, kRejectionKinds> rejection_counts_{};
  Rejection last_rejection_ = Rejection::none;
  double last_rejected_stamp_s_ = 0.0;
  double last_rejected_now_s_ = 0.0;
};

// --------------------------------------------------------------------------- wrench mode

// Cartesian wrench of wrench mode (base axes, at the TCP): impedance_wrench toward
// the anchor pose (soft, reference-limited: it adds at most K * limit) plus the
// feed-forward wrench_ee ([f, tau] at the TCP in the CURRENT EE axes, e.g.
// WrenchWatchdog::output) rotated to base axes by the measured orientation (same
// point: no lever arm). A zero or stale feed-forward wrench holds the arm near the
// anchor instead of letting it float. non_finite on NaN/Inf in any input.
Result<Vec6> wrench_mode_wrench(
  const Pose & anchor, const Pose & measured, const Vec6 & measured_twist_base, const Vec6 & wrench_ee,
  const ImpedanceParams & params);

// --------------------------------------------------------------------------- twist actions -> target pose

// Where targets may go: a position box in the base frame and optionally a per-axis
// bound on the rotation vector of the target relative to orientation_reference
// (written in the reference frame's axes; no Euler wrap-around near +-pi).
struct WorkspaceBox
{
  Vec3 min_position_m;
  Vec3 max_position_m;
  bool limit_orientation = false;
  Quat orientation_reference;
  Vec3 orientation_limit_rad;

  std::string validate() const;
  // Nearest position inside the box; orientation rotation vector clipped per axis
  // (untouched orientations pass through normalised and canonical).
  Pose clip(const Pose & pose) const;
  bool contains(const Pose & pose, double atol = 1e-9) const;
};

// Target pose of one control step from a normalised twist action [v, w] in the
// CURRENT EE frame (values clipped to [-1, 1]): the EE origin moves by
// R (v * linear_step_m) in the base frame and turns by w * angular_step_rad about
// its own axes (q_target = q_measured * exp(w * angular_step_rad)); then clipped to
// box (nullptr: no clipping). non_finite when the action or the measured pose has
// NaN/Inf; invalid_argument for non-positive steps or a zero measured quaternion.
Result<Pose> integrate_twist_target(
  const Pose & measured, const Vec6 & action_twist_ee_normalised, double linear_step_m,
  double angular_step_rad, const WorkspaceBox * box);

// --------------------------------------------------------------------------- single-publisher guard

// The twin of control.py's SinglePublisherGuard: a command topic is followed only while at
// most one node publishes on it (the intervention mux). With two or more the receiver holds
// the arm where it is and drops every command until the topic is back to one publisher.
// The caller counts the topic's publishers (a subscription's get_publisher_count(), outside
// the real-time loop) and feeds the count to observe(). Not thread-safe on its own.
class SinglePublisherGuard
{
public:
  enum class Event { none, conflict, clear };

  // conflict when a conflict starts (hold now), clear when it ends, none otherwise.
  Event observe(std::size_t publishers);
  // True when a command arriving now may be followed; false (counted in dropped()) during a conflict.
  bool accept();

  bool conflict() const { return conflict_; }
  std::size_t publishers() const { return publishers_; }
  std::size_t conflicts() const { return conflicts_; }  // how many times a conflict started
  std::size_t dropped() const { return dropped_; }

private:
  bool conflict_ = false;
  std::size_t publishers_ = 0;
  std::size_t conflicts_ = 0;
  std::size_t dropped_ = 0;
};

// --------------------------------------------------------------------------- joint space (N joints)
//
// Jacobians are 6 x N in column-major order, the layout of franka's
// getZeroJacobian(): J[6 * joint + row], rows [v; w] of the TCP in base axes.

template <std::size_t N>
using JointVector = std::array<double, N>;
template <std::size_t N>
using Jacobian = std::array<double, 6 * N>;

// Twist of the TCP in base axes: J dq.
template <std::size_t N>
Vec6 jacobian_times(const Jacobian<N> & J, const JointVector<N> & dq)
{
  Vec6 v{};
  for (std::size_t j = 0; j < N; ++j) {
    for (std::size_t r = 0; r < 6; ++r) {
      v[r] += J[6 * j + r] * dq[j];
    }
  }
  return v;
}

// Joint torques that produce the wrench F at the TCP: J^T F.
template <std::size_t N>
JointVector<N> jacobian_transpose_times(const Jacobian<N> & J, const Vec6 & F)
{
  JointVector<N> tau{};
  for (std::size_t j = 0; j < N; ++j) {
    double s = 0.0;
    for (std::size_t r = 0; r < 6; ++r) {
      s += J[6 * j + r] * F[r];
    }
    tau[j] = s;
  }
  return tau;
}

// Solves (A + lambda^2 I) x = b for a symmetric positive semi-definite 6x6 A by
// Cholesky; false when the damped matrix is not positive definite.
bool solve_damped_spd6(const std::array<double, 36> & A, double lambda, const Vec6 & b, Vec6 * x);

// Nullspace posture torque: tau0 = K_ns (q_posture - q) - D_ns dq projected by
// P = I - J^T (J J^T + lambda^2 I)^-1 J (damped pseudo-inverse of J^T), so it does
// not disturb the Cartesian wrench (exactly so as lambda -> 0 away from singularities).
// non_finite on NaN/Inf inputs; invalid_argument when lambda is not > 0.
template <std::size_t N>
Result<JointVector<N>> nullspace_torque(
  const Jacobian<N> & J, const JointVector<N> & q, const JointVector<N> & dq,
  const JointVector<N> & q_posture, double stiffness_nm_per_rad, double damping_nms_per_rad, double lambda)
{
  Result<JointVector<N>> out;
  if (!(std::isfinite(lambda) && lambda > 0.0)) {
    out.status = Status::invalid_argument;
    return out;
  }
  JointVector<N> tau0{};
  for (std::size_t j = 0; j < N; ++j) {
    tau0[j] = stiffness_nm_per_rad * (q_posture[j] - q[j]) - damping_nms_per_rad * dq[j];
    if (!std::isfinite(tau0[j])) {
      out.status = Status::non_finite;
      return out;
    }
  }
  for (double x : J) {
    if (!std::isfinite(x)) {
      out.status = Status::non_finite;
      return out;
    }
  }
  std::array<double, 36> JJt{};  // row-major 6x6
  for (std::size_t r = 0; r < 6; ++r) {
    for (std::size_t c = 0; c < 6; ++c) {
      double s = 0.0;
      for (std::size_t j = 0; j < N; ++j) {
        s += J[6 * j + r] * J[6 * j + c];
      }
      JJt[6 * r + c] = s;
    }
  }
  const Vec6 y = jacobian_times<N>(J, tau0);  // J tau0
  Vec6 z{};
  if (!solve_damped_spd6(JJt, lambda, y, &z)) {
    out.status = Status::non_finite;
    return out;
  }
  const JointVector<N> back = jacobian_transpose_times<N>(J, z);
  for (std::size_t j = 0; j < N; ++j) {
    out.value[j] = tau0[j] - back[j];
  }
  return out;
}

// Limits how fast the commanded torque changes: each joint moves from tau_previous
// toward tau_desired by at most max_delta_nm (the robot rejects torque steps).
template <std::size_t N>
JointVector<N> saturate_torque_rate(
  const JointVector<N> & tau_desired, const JointVector<N> & tau_previous, double max_delta_nm)
{
  JointVector<N> out{};
  for (std::size_t j = 0; j < N; ++j) {
    const double d = tau_desired[j] - tau_previous[j];
    out[j] = tau_previous[j] + (d > max_delta_nm ? max_delta_nm : (d < -max_delta_nm ? -max_delta_nm : d));
  }
  return out;
}

}  // namespace law
}  // namespace hilserl_controllers
