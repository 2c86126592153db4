// The HIL-SERL control law in plain C++17; see control_law.hpp and hilserl_core/robot/control.py.
#include "hilserl_controllers/control_law.hpp"

#include <algorithm>
#include <cstdio>

namespace hilserl_controllers
{
namespace law
{

namespace
{

constexpr double kPi = 3.14159265358979323846;

bool finite_positive(double v) { return std::isfinite(v) && v > 0.0; }

bool finite_non_negative(const Vec3 & v) { return is_finite(v) && v.x >= 0.0 && v.y >= 0.0 && v.z >= 0.0; }

double clip_scalar(double v, double lo, double hi) { return std::min(std::max(v, lo), hi); }

std::string vec_text(const Vec3 & v)
{
  char buf[96];
  std::snprintf(buf, sizeof(buf), "[%g, %g, %g]", v.x, v.y, v.z);
  return buf;
}

}  // namespace

const char * status_name(Status s)
{
  switch (s) {
    case Status::ok:
      return "ok";
    case Status::non_finite:
      return "non_finite";
    case Status::invalid_argument:
      return "invalid_argument";
  }
  return "unknown";
}

// --------------------------------------------------------------------------- rotations

Quat quat_canonical(const Quat & q)
{
  double sign = 0.0;
  if (q.w != 0.0) {  // the common case: the sign of w decides (NaN keeps its sign, like numpy)
    sign = q.w < 0.0 ? -1.0 : 1.0;
  } else {
    // Lexicographic on (w, x, y, z): the first non-zero component decides.
    const double order[3] = {q.x, q.y, q.z};
    for (double c : order) {
      if (c != 0.0) {
        sign = c < 0.0 ? -1.0 : 1.0;
        break;
      }
    }
    if (sign == 0.0) {
      sign = 1.0;
    }
  }
  return {q.x * sign, q.y * sign, q.z * sign, q.w * sign};
}

Result<Quat> quat_normalize(const Quat & q)
{
  Result<Quat> out;
  const double n = std::sqrt(q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w);
  if (!is_finite(q) || n < 1e-12) {
    out.status = Status::invalid_argument;
    return out;
  }
  out.value = quat_canonical({q.x / n, q.y / n, q.z / n, q.w / n});
  return out;
}

Quat quat_multiply(const Quat & a, const Quat & b)
{
  return quat_canonical({
    a.w * b.x + a.x * b.w + a.y * b.z - a.z * b.y,
    a.w * b.y - a.x * b.z + a.y * b.w + a.z * b.x,
    a.w * b.z + a.x * b.y - a.y * b.x + a.z * b.w,
    a.w * b.w - a.x * b.x - a.y * b.y - a.z * b.z,
  });
}

Quat quat_conjugate(const Quat & q) { return quat_canonical({-q.x, -q.y, -q.z, q.w}); }

Mat3 quat_to_matrix(const Quat & q_in)
{
  const double n = std::sqrt(q_in.x * q_in.x + q_in.y * q_in.y + q_in.z * q_in.z + q_in.w * q_in.w);
  const double x = q_in.x / n, y = q_in.y / n, z = q_in.z / n, w = q_in.w / n;
  Mat3 R;
  R.m[0] = {1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)};
  R.m[1] = {2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)};
  R.m[2] = {2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)};
  return R;
}

Quat matrix_to_quat(const Mat3 & Rm)
{
  const auto & R = Rm.m;
  const double m00 = R[0][0], m11 = R[1][1], m22 = R[2][2];
  const double trace = m00 + m11 + m22;
  // Four exact formulas, each well conditioned only when its pivot is the largest (first max wins, like argmax).
  const double pivots[4] = {m00, m11, m22, trace};
  int k = 0;
  for (int i = 1; i < 4; ++i) {
    if (pivots[i] > pivots[k]) {
      k = i;
    }
  }
  Quat q;
  switch (k) {
    case 0:
      q = {1 + m00 - m11 - m22, R[0][1] + R[1][0], R[0][2] + R[2][0], R[2][1] - R[1][2]};
      break;
    case 1:
      q = {R[0][1] + R[1][0], 1 - m00 + m11 - m22, R[1][2] + R[2][1], R[0][2] - R[2][0]};
      break;
    case 2:
      q = {R[0][2] + R[2][0], R[1][2] + R[2][1], 1 - m00 - m11 + m22, R[1][0] - R[0][1]};
      break;
    default:
      q = {R[2][1] - R[1][2], R[0][2] - R[2][0], R[1][0] - R[0][1], 1 + trace};
      break;
  }
  const Result<Quat> n = quat_normalize(q);
  return n.ok() ? n.value : Quat{};
}

Quat rotvec_to_quat(const Vec3 & v)
{
  const double angle = norm(v);
  // sin(a/2)/a, with its limit 1/2 at a = 0.
  const double scale = angle == 0.0 ? 0.5 : std::sin(angle / 2.0) / angle;
  return quat_canonical({v.x * scale, v.y * scale, v.z * scale, std::cos(angle / 2.0)});
}

Vec3 quat_to_rotvec(const Quat & q_in)
{
  Quat q = quat_canonical(q_in);
  const double n = std::sqrt(q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w);
  q = {q.x / n, q.y / n, q.z / n, q.w / n};
  const Vec3 xyz{q.x, q.y, q.z};
  const double s = norm(xyz);
  const double angle = 2.0 * std::atan2(s, q.w);
  // angle / sin(angle/2) -> 2 / w * (1 + s^2 / (6 w^2)) as s -> 0 (w ~ 1 there).
  const double factor = s < 1e-8 ? 2.0 / q.w * (1.0 + s * s / (6.0 * q.w * q.w)) : angle / s;
  return xyz * factor;
}

Vec3 quat_rotate(const Quat & q, const Vec3 & v) { return quat_to_matrix(q) * v; }

Vec6 pose_error(const Pose & target, const Pose & measured)
{
  const Vec3 e_pos = target.position - measured.position;
  const Vec3 e_rot = quat_to_rotvec(quat_multiply(target.orientation, quat_conjugate(measured.orientation)));
  return join(e_pos, e_rot);
}

Vec3 clamp_norm(const Vec3 & v, double max_norm)
{
  const double n = norm(v);
  return n > max_norm ? v * (max_norm / n) : v;
}

Vec6 rotate_wrench(const Quat & q, const Vec6 & w)
{
  const Mat3 R = quat_to_matrix(q);
  return join(R * linear(w), R * angular(w));
}

Pose pose_from_column_major(const std::array<double, 16> & T)
{
  Mat3 R;
  for (std::size_t r = 0; r < 3; ++r) {
    for (std::size_t c = 0; c < 3; ++c) {
      R.m[r][c] = T[4 * c + r];
    }
  }
  return {Vec3{T[12], T[13], T[14]}, matrix_to_quat(R)};
}

// --------------------------------------------------------------------------- impedance with reference limiting

Vec3 ImpedanceParams::critical_damping(const Vec3 & k)
{
  return {2.0 * std::sqrt(k.x), 2.0 * std::sqrt(k.y), 2.0 * std::sqrt(k.z)};
}

std::string ImpedanceParams::validate() const
{
  if (!finite_non_negative(translational_stiffness_n_per_m)) {
    return "translational_stiffness_n_per_m must be finite and >= 0 on every axis, got " +
           vec_text(translational_stiffness_n_per_m);
  }
  if (!finite_non_negative(rotational_stiffness_nm_per_rad)) {
    return "rotational_stiffness_nm_per_rad must be finite and >= 0 on every axis, got " +
           vec_text(rotational_stiffness_nm_per_rad);
  }
  if (!finite_non_negative(translational_damping_ns_per_m)) {
    return "translational_damping_ns_per_m must be finite and >= 0 on every axis, got " +
           vec_text(translational_damping_ns_per_m);
  }
  if (!finite_non_negative(rotational_damping_nms_per_rad)) {
    return "rotational_damping_nms_per_rad must be finite and >= 0 on every axis, got " +
           vec_text(rotational_damping_nms_per_rad);
  }
  if (!finite_positive(reference_limit_m)) {
    return "reference_limit_m must be finite and > 0 (it bounds contact force), got " + std::to_string(reference_limit_m);
  }
  if (!finite_positive(reference_limit_rad) || reference_limit_rad >= kPi) {
    return "reference_limit_rad must be in (0, pi): the rotation error flips at pi; got " +
           std::to_string(reference_limit_rad);
  }
  return "";
}

Result<Pose> limit_reference(const Pose & target, const Pose & measured, double limit_m, double limit_rad)
{
  Result<Pose> out;
  if (!finite_positive(limit_m) || !finite_positive(limit_rad)) {
    out.status = Status::invalid_argument;
    return out;
  }
  if (!is_finite(target.position) || !is_finite(target.orientation) || !is_finite(measured.position) ||
      !is_finite(measured.orientation))
  {
    out.status = Status::non_finite;
    return out;
  }
  const Vec6 e = pose_error(target, measured);
  const Vec3 e_pos = linear(e), e_rot = angular(e);
  const double dist = norm(e_pos), angle = norm(e_rot);
  out.value.position = dist <= limit_m ? target.position : measured.position + e_pos * (limit_m / dist);
  if (angle <= limit_rad) {
    const Result<Quat> q = quat_normalize(target.orientation);
    if (!q) {
      out.status = Status::invalid_argument;
      return out;
    }
    out.value.orientation = q.value;
  } else {
    out.value.orientation = quat_multiply(rotvec_to_quat(e_rot * (limit_rad / angle)), measured.orientation);
  }
  return out;
}

Result<Vec6> impedance_wrench(
  const Pose & target, const Pose & measured, const Vec6 & measured_twist_base, const ImpedanceParams & p)
{
  Result<Vec6> out;
  if (!is_finite(measured_twist_base) || !is_finite(target.position) || !is_finite(target.orientation) ||
      !is_finite(measured.position) || !is_finite(measured.orientation))
  {
    out.status = Status::non_finite;
    return out;
  }
  // Limiting the reference scales exactly these two error vectors (limit_reference); doing it on the
  // error directly gives the same wrench without building the reference pose.
  const Vec6 e = pose_error(target, measured);
  const Vec3 e_pos = clamp_norm(linear(e), p.reference_limit_m);
  const Vec3 e_rot = clamp_norm(angular(e), p.reference_limit_rad);
  const Vec3 & Kt = p.translational_stiffness_n_per_m;
  const Vec3 & Kr = p.rotational_stiffness_nm_per_rad;
  const Vec3 & Dt = p.translational_damping_ns_per_m;
  const Vec3 & Dr = p.rotational_damping_nms_per_rad;
  const Vec6 & v = measured_twist_base;
  for (std::size_t i = 0; i < 3; ++i) {
    out.value[i] = Kt[i] * e_pos[i] - Dt[i] * v[i];
    out.value[3 + i] = Kr[i] * e_rot[i] - Dr[i] * v[3 + i];
  }
  return out;
}

// --------------------------------------------------------------------------- clamps and watchdog

std::string WrenchParams::validate() const
{
  if (!(std::isfinite(max_force_n) && max_force_n >= 0.0)) {
    return "max_force_n must be finite and >= 0, got " + std::to_string(max_force_n);
  }
  if (!(std::isfinite(max_torque_nm) && max_torque_nm >= 0.0)) {
    return "max_torque_nm must be finite and >= 0, got " + std::to_string(max_torque_nm);
  }
  if (!finite_positive(watchdog_timeout_s)) {
    return "watchdog_timeout_s must be finite and > 0, got " + std::to_string(watchdog_timeout_s);
  }
  if (!(std::isfinite(max_future_stamp_s) && max_future_stamp_s >= 0.0)) {
    return "max_future_stamp_s must be finite and >= 0, got " + std::to_string(max_future_stamp_s);
  }
  return "";
}

Result<Vec6> clamp_wrench(const Vec6 & wrench, const WrenchParams & params)
{
  Result<Vec6> out;
  if (!is_finite(wrench)) {
    out.status = Status::non_finite;
    return out;
  }
  out.value = join(clamp_norm(linear(wrench), params.max_force_n), clamp_norm(angular(wrench), params.max_torque_nm));
  return out;
}

const char * rejection_code(Rejection r)
{
  switch (r) {
    case Rejection::none:
      return "";
    case Rejection::malformed:
      return "malformed";
    case Rejection::non_finite_wrench:
      return "non_finite_wrench";
    case Rejection::non_finite_stamp:
      return "non_finite_stamp";
    case Rejection::out_of_order_stamp:
      return "out_of_order_stamp";
    case Rejection::future_stamp:
      return "future_stamp";
  }
  return "unknown";
}

bool WrenchWatchdog::reject(Rejection r, double stamp_s, double now_s)
{
  ++rejected_count_;
  ++rejection_counts_[static_cast<std::size_t>(r)];
  last_rejection_ = r;
  last_rejected_stamp_s_ = stamp_s;
  last_rejected_now_s_ = now_s;
  wrench_ = Vec6{};  // fail-safe: nothing is applied until the next accepted command
  return false;
}

bool WrenchWatchdog::command(const double * wrench, std::size_t n, double stamp_s, double now_s)
{
  if (wrench == nullptr || n != 6) {
    return reject(Rejection::malformed, stamp_s, now_s);
  }
  return offer(Vec6{wrench[0], wrench[1], wrench[2], wrench[3], wrench[4], wrench[5]}, stamp_s, true, now_s);
}

bool WrenchWatchdog::command(const double * wrench, std::size_t n, double stamp_s)
{
  if (wrench == nullptr || n != 6) {
    return reject(Rejection::malformed, stamp_s, 0.0);
  }
  return offer(Vec6{wrench[0], wrench[1], wrench[2], wrench[3], wrench[4], wrench[5]}, stamp_s, false, 0.0);
}

bool WrenchWatchdog::command(const Vec6 & wrench, double stamp_s, double now_s)
{
  return offer(wrench, stamp_s, true, now_s);
}

bool WrenchWatchdog::command(const Vec6 & wrench, double stamp_s) { return offer(wrench, stamp_s, false, 0.0); }

bool WrenchWatchdog::offer(const Vec6 & wrench, double stamp_s, bool has_now, double now_s)
{
  if (!is_finite(wrench)) {
    return reject(Rejection::non_finite_wrench, stamp_s, now_s);
  }
  if (!std::isfinite(stamp_s)) {
    return reject(Rejection::non_finite_stamp, stamp_s, now_s);
  }
  // A non-finite clock cannot vouch for any stamp: reject (control.py does the same).
  if (has_now && (!std::isfinite(now_s) || stamp_s - now_s > params_.max_future_stamp_s)) {
    return reject(Rejection::future_stamp, stamp_s, now_s);
  }
  if (has_stamp_ && stamp_s < stamp_s_) {
    return reject(Rejection::out_of_order_stamp, stamp_s, now_s);
  }
  wrench_ = clamp_wrench(wrench, params_).value;  // finite: checked above
  stamp_s_ = stamp_s;
  has_stamp_ = true;
  return true;
}

Vec6 WrenchWatchdog::output(double now_s) const
{
  if (!has_stamp_ || !std::isfinite(now_s) || now_s - stamp_s_ > params_.watchdog_timeout_s ||
      stamp_s_ - now_s > params_.max_future_stamp_s)
  {
    return Vec6{};
  }
  return wrench_;
}

bool WrenchWatchdog::is_stale(double now_s) const
{
  for (double x : output(now_s)) {
    if (x != 0.0) {
      return false;
    }
  }
  return true;
}

void WrenchWatchdog::reset()
{
  wrench_ = Vec6{};
  has_stamp_ = false;
  stamp_s_ = 0.0;
}

std::string WrenchWatchdog::describe_last_rejection() const
{
  if (last_rejection_ == Rejection::none) {
    return "";
  }
  char buf[256];
  if (last_rejection_ == Rejection::future_stamp) {
    std::snprintf(
      buf, sizeof(buf),
      "future_stamp: stamp %.6f s is %.6f s ahead of the controller clock %.6f s (> max_future_stamp_s %g s: "
      "are the clocks synchronised?)",
      last_rejected_stamp_s_, last_rejected_stamp_s_ - last_rejected_now_s_, last_rejected_now_s_,
      params_.max_future_stamp_s);
  } else if (last_rejection_ == Rejection::out_of_order_stamp) {
    std::snprintf(
      buf, sizeof(buf), "out_of_order_stamp: stamp %.6f s is older than the last accepted %.6f s",
      last_rejected_stamp_s_, stamp_s_);
  } else if (last_rejection_ == Rejection::non_finite_stamp) {
    std::snprintf(buf, sizeof(buf), "non_finite_stamp: stamp is %f", last_rejected_stamp_s_);
  } else if (last_rejection_ == Rejection::non_finite_wrench) {
    std::snprintf(buf, sizeof(buf), "non_finite_wrench: wrench has NaN/Inf");
  } else {
    std::snprintf(buf, sizeof(buf), "malformed: wrench must have 6 components");
  }
  return std::string(buf) + "; feed-forward wrench zeroed until the next valid command";
}

// --------------------------------------------------------------------------- wrench mode

Result<Vec6> wrench_mode_wrench(
  const Pose & anchor, const Pose & measured, const Vec6 & measured_twist_base, const Vec6 & wrench_ee,
  const ImpedanceParams & params)
{
  Result<Vec6> out;
  if (!is_finite(wrench_ee)) {
    out.status = Status::non_finite;
    return out;
  }
  const Result<Vec6> spring = impedance_wrench(anchor, measured, measured_twist_base, params);
  if (!spring) {
    out.status = spring.status;
    return out;
  }
  // Commanded in EE axes at the TCP: rotate to base axes, no lever arm (same point).
  const Vec6 ff_base = rotate_wrench(measured.orientation, wrench_ee);
  for (std::size_t i = 0; i < 6; ++i) {
    out.value[i] = spring.value[i] + ff_base[i];
  }
  return out;
}

// --------------------------------------------------------------------------- twist actions -> target pose

std::string WorkspaceBox::validate() const
{
  if (!is_finite(min_position_m) || !is_finite(max_position_m)) {
    return "WorkspaceBox min/max_position_m must be 3 finite numbers each, got " + vec_text(min_position_m) + " / " +
           vec_text(max_position_m);
  }
  for (std::size_t i = 0; i < 3; ++i) {
    if (min_position_m[i] > max_position_m[i]) {
      return "WorkspaceBox min_position_m " + vec_text(min_position_m) + " must be <= max_position_m " +
             vec_text(max_position_m) + " on every axis";
    }
  }
  if (limit_orientation) {
    const Quat & q = orientation_reference;
    const double n = std::sqrt(q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w);
    if (!is_finite(q) || std::fabs(n - 1.0) > 1e-3) {
      return "WorkspaceBox orientation_reference must be a unit quaternion [x, y, z, w]";
    }
    if (!finite_non_negative(orientation_limit_rad) || orientation_limit_rad.x >= kPi ||
        orientation_limit_rad.y >= kPi || orientation_limit_rad.z >= kPi)
    {
      return "WorkspaceBox orientation_limit_rad must be in [0, pi) on every axis, got " +
             vec_text(orientation_limit_rad);
    }
  }
  return "";
}

Pose WorkspaceBox::clip(const Pose & pose) const
{
  Pose out;
  for (std::size_t i = 0; i < 3; ++i) {
    out.position[i] = clip_scalar(pose.position[i], min_position_m[i], max_position_m[i]);
  }
  const Result<Quat> q = quat_normalize(pose.orientation);
  out.orientation = q.ok() ? q.value : pose.orientation;
  if (limit_orientation && q.ok()) {
    const Quat ref = quat_normalize(orientation_reference).value;
    const Vec3 r = quat_to_rotvec(quat_multiply(quat_conjugate(ref), out.orientation));
    Vec3 r_clipped;
    bool changed = false;
    for (std::size_t i = 0; i < 3; ++i) {
      r_clipped[i] = clip_scalar(r[i], -orientation_limit_rad[i], orientation_limit_rad[i]);
      changed = changed || r_clipped[i] != r[i];
    }
    if (changed) {  // untouched orientations pass through bit-exact
      out.orientation = quat_multiply(ref, rotvec_to_quat(r_clipped));
    }
  }
  return out;
}

bool WorkspaceBox::contains(const Pose & pose, double atol) const
{
  for (std::size_t i = 0; i < 3; ++i) {
    if (pose.position[i] < min_position_m[i] - atol || pose.position[i] > max_position_m[i] + atol) {
      return false;
    }
  }
  if (!limit_orientation) {
    return true;
  }
  const Quat ref = quat_normalize(orientation_reference).value;
  const Vec3 r = quat_to_rotvec(quat_multiply(quat_conjugate(ref), pose.orientation));
  for (std::size_t i = 0; i < 3; ++i) {
    if (!(std::fabs(r[i]) <= orientation_limit_rad[i] + atol)) {
      return false;
    }
  }
  return true;
}

Result<Pose> integrate_twist_target(
  const Pose & measured, const Vec6 & action, double linear_step_m, double angular_step_rad, const WorkspaceBox * box)
{
  Result<Pose> out;
  if (!is_finite(action) || !is_finite(measured.position) || !is_finite(measured.orientation)) {
    out.status = Status::non_finite;
    return out;
  }
  const Result<Quat> q = quat_normalize(measured.orientation);
  if (!finite_positive(linear_step_m) || !finite_positive(angular_step_rad) || !q) {
    out.status = Status::invalid_argument;
    return out;
  }
  Vec6 a{};
  for (std::size_t i = 0; i < 6; ++i) {
    a[i] = clip_scalar(action[i], -1.0, 1.0);
  }
  // Same reference point (EE origin), EE axes -> base axes: a rotation, not the full adjoint.
  const Vec3 dp_base = quat_rotate(q.value, linear(a) * linear_step_m);
  out.value.position = measured.position + dp_base;
  out.value.orientation = quat_multiply(q.value, rotvec_to_quat(angular(a) * angular_step_rad));
  if (box != nullptr) {
    out.value = box->clip(out.value);
  }
  return out;
}

// --------------------------------------------------------------------------- single-publisher guard

SinglePublisherGuard::Event SinglePublisherGuard::observe(std::size_t publishers)
{
  publishers_ = publishers;
  if (publishers > 1 && !conflict_) {
    conflict_ = true;
    ++conflicts_;
    return Event::conflict;
  }
  if (publishers <= 1 && conflict_) {
    conflict_ = false;
    return Event::clear;
  }
  return Event::none;
}

bool SinglePublisherGuard::accept()
{
  if (conflict_) {
    ++dropped_;
    return false;
  }
  return true;
}

// --------------------------------------------------------------------------- joint space

bool solve_damped_spd6(const std::array<double, 36> & A, double lambda, const Vec6 & b, Vec6 * x)
{
  // Cholesky M = L L^T of M = A + lambda^2 I (row-major), then two triangular solves.
  std::array<double, 36> L{};
  const double l2 = lambda * lambda;
  for (std::size_t i = 0; i < 6; ++i) {
    for (std::size_t j = 0; j <= i; ++j) {
      double s = A[6 * i + j] + (i == j ? l2 : 0.0);
      for (std::size_t k = 0; k < j; ++k) {
        s -= L[6 * i + k] * L[6 * j + k];
      }
      if (i == j) {
        if (!(s > 0.0) || !std::isfinite(s)) {
          return false;
        }
        L[6 * i + i] = std::sqrt(s);
      } else {
        L[6 * i + j] = s / L[6 * j + j];
      }
    }
  }
  Vec6 y{};
  for (std::size_t i = 0; i < 6; ++i) {
    double s = b[i];
    for (std::size_t k = 0; k < i; ++k) {
      s -= L[6 * i + k] * y[k];
    }
    y[i] = s / L[6 * i + i];
  }
  for (std::size_t ii = 6; ii-- > 0;) {
    double s = y[ii];
    for (std::size_t k = ii + 1; k < 6; ++k) {
      s -= L[6 * k + ii] * (*x)[k];
    }
    (*x)[ii] = s / L[6 * ii + ii];
  }
  return true;
}

}  // namespace law
}  // namespace hilserl_controllers
