// ros2_control plumbing shared by the controllers: one Franka arm (interface
// names, loaned-interface lookup, reading the state the control law needs,
// missed-tick accounting, the joint-space torque and writing it), a validated
// PoseStamped input (target or anchor), the single-publisher guard of a command
// subscription, and the parameter -> law conversions both controllers use. No
// control law here (that is control_law.hpp).
#pragma once

#include <array>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "controller_interface/controller_interface.hpp"
#include "franka_semantic_components/franka_robot_model.hpp"
#include "geometry_msgs/msg/pose_stamped.hpp"
#include "hardware_interface/loaned_command_interface.hpp"
#include "hardware_interface/loaned_state_interface.hpp"
#include "hilserl_controllers/control_law.hpp"
#include "rclcpp/rclcpp.hpp"
#include "rclcpp_lifecycle/lifecycle_node.hpp"
#include "realtime_tools/realtime_buffer.hpp"

namespace hilserl_controllers
{

// Same QoS as the intervention mux's command publishers (hilserl_interfaces.qos.COMMAND).
inline rclcpp::QoS command_qos() { return rclcpp::QoS(rclcpp::KeepLast(1)).reliable(); }

// The joint-space part of both controllers' torque, from their (identically named) parameters.
struct JointSpaceGains
{
  double nullspace_stiffness_nm_per_rad = 10.0;
  double nullspace_damping_nms_per_rad = 2.0 * std::sqrt(10.0);
  double nullspace_pinv_damping = 0.2;
  bool compensate_coriolis = true;
  double max_torque_step_nm = 1.0;  // max_torque_rate_nm_per_s * period
};

class FrankaArm
{
public:
  static constexpr std::size_t kJoints = 7;
  using Joints = law::JointVector<kJoints>;

  // What one control tick needs from the robot, all in the base frame.
  struct State
  {
    Joints q{};                              // joint positions (rad)
    Joints dq{};                             // joint velocities (rad/s)
    Joints coriolis{};                       // C(q, dq) dq (N m)
    law::Jacobian<kJoints> jacobian{};       // zero Jacobian of the EE frame, column-major 6x7
    law::Pose ee_pose;                       // O_T_EE
    law::Vec6 ee_twist{};                    // J dq: TCP twist [v, w] in base axes
  };

  // How a tick went for this arm. skip: a momentary miss (a state value could not be
  // read or was non-finite, or the hardware refused a torque): nothing new is written
  // this tick and the effort interfaces keep their last value. fault: more than
  // max_consecutive_missed_ticks ticks in a row missed; update() must return ERROR.
  enum class Tick { ok, skip, fault };

  // arm_id prefixes the franka_ros2 interfaces, e.g. "fr3" or "left_fr3".
  explicit FrankaArm(std::string arm_id);

  const std::string & arm_id() const { return arm_id_; }
  // <id>_joint1..7/position and /velocity, <id>/robot_model, <id>/robot_state.
  std::vector<std::string> state_interface_names() const;
  // <id>_joint1..7/effort.
  std::vector<std::string> command_interface_names() const;

  // on_activate(): finds this arm's interfaces among the controller's loaned ones (by
  // name, so the order of several arms does not matter), primes the franka model, reads
  // the state into *initial, takes its joints as the nullspace posture, and resets the
  // torque history and the missed-tick count. False with *error set on any failure.
  bool activate(
    std::vector<hardware_interface::LoanedStateInterface> & state_interfaces,
    std::vector<hardware_interface::LoanedCommandInterface> & command_interfaces, State * initial,
    std::string * error);
  // on_deactivate(): zero torques, release the interfaces.
  void deactivate();

  // Up to this many ticks in a row may be missed (skip); one more is a fault. 0: every miss is a fault.
  void set_max_consecutive_missed_ticks(std::size_t n) { max_missed_ = n; }

  // Start of a tick: read the state. ok: *state is fresh; skip/fault: see Tick.
  Tick begin_tick(State * state);
  // End of a tick: tau = J^T F + nullspace posture torque (toward the joints at
  // activation) + Coriolis, rate-limited against the torques last written, written.
  // When wrench_base is not ok the J^T F term is left out. A joint whose value the
  // hardware refuses keeps its previous command (and the tick counts as missed).
  Tick finish_tick(const State & state, const law::Result<law::Vec6> & wrench_base, const JointSpaceGains & gains);

  std::size_t consecutive_missed_ticks() const { return consecutive_missed_; }
  std::size_t missed_ticks() const { return missed_total_; }
  // Why the last tick was missed (a static string; safe in the real-time loop).
  const char * last_miss() const { return last_miss_; }

private:
  std::string joint_interface(std::size_t joint, const char * kind) const;
  bool assign(
    std::vector<hardware_interface::LoanedStateInterface> & state_interfaces,
    std::vector<hardware_interface::LoanedCommandInterface> & command_interfaces, std::string * error);
  // nullptr when *state is complete and finite, else why not.
  const char * read(State * state);
  // Writes each joint's torque; a joint the hardware refused keeps its previous value
  // (and tau_previous_ stays what the hardware has). False when any was refused.
  bool write(const Joints & tau);
  Tick missed(const char * why);

  std::string arm_id_;
  std::unique_ptr<franka_semantic_components::FrankaRobotModel> model_;
  std::array<hardware_interface::LoanedStateInterface *, kJoints> position_{};
  std::array<hardware_interface::LoanedStateInterface *, kJoints> velocity_{};
  std::array<hardware_interface::LoanedCommandInterface *, kJoints> effort_{};
  Joints posture_{};        // nullspace posture: q at activation
  Joints tau_previous_{};   // the torques the effort interfaces hold, for the rate limit
  std::size_t max_missed_ = 10;
  std::size_t consecutive_missed_ = 0;
  std::size_t missed_total_ = 0;
  const char * last_miss_ = "";
};

// Logs a missed tick of arm (throttled warning; an error on a fault) and sets *result
// to ERROR on a fault. True when the arm may be commanded this tick (tick == ok).
bool handle_tick(
  rclcpp_lifecycle::LifecycleNode & node, const FrankaArm & arm, FrankaArm::Tick tick,
  controller_interface::return_type * result);

// Single-publisher guard of one command subscription: the ROS side of
// law::SinglePublisherGuard. The intervention mux must be the only publisher of an arm's
// targets; while the subscription has two or more matched publishers every message is
// dropped and conflict() is true, and update() holds the arm where it is (the pose
// measured at the first tick of the conflict; no feed-forward wrench). The publishers are
// counted outside the real-time loop: on every message (check_message(), subscription
// thread) and at 10 Hz on a wall timer, so a publisher that appears (or leaves) is seen
// even while nothing is sent. One ERROR line names the publishers when a conflict starts,
// one INFO line says when it ends; then the next message is followed again.
class PublisherGuard
{
public:
  // Call once, right after creating the subscription (on_configure()). what names the
  // input in log lines ("target", "anchor", "wrench command").
  void watch(
    rclcpp_lifecycle::LifecycleNode & node, rclcpp::SubscriptionBase::SharedPtr subscription, const std::string & arm_id,
    const char * what);
  // Subscription thread: true when the message that just arrived may be used.
  bool check_message() { return check(true); }
  // Real-time side, lock-free: true while the topic has more than one publisher.
  bool conflict() const { return conflict_.load(std::memory_order_acquire); }

private:
  bool check(bool message);
  std::string publisher_names() const;

  std::mutex mutex_;  // the subscription and the timer may run in different executor threads
  law::SinglePublisherGuard guard_;
  std::atomic<bool> conflict_{false};
  std::string arm_id_;
  std::string what_;
  rclcpp::Logger logger_ = rclcpp::get_logger("hilserl_controllers");
  rclcpp::node_interfaces::NodeGraphInterface::SharedPtr graph_;
  rclcpp::SubscriptionBase::SharedPtr subscription_;
  // Last, so it is destroyed first: no timer callback into the members above while they go away.
  rclcpp::TimerBase::SharedPtr timer_;
};

// A geometry_msgs/PoseStamped input of one arm: the impedance controller's target, the
// wrench controller's anchor. Checked on arrival in the subscription thread (NaN/Inf,
// zero quaternion, a frame_id other than base_frame_id: rejected, logged, counted; the
// last good pose stays), handed to update() through a real-time buffer. Guarded by a
// PublisherGuard: while another node publishes on the topic too, nothing is taken and
// conflict() is true.
class PoseInput
{
public:
  using Msg = geometry_msgs::msg::PoseStamped;

  // Subscribes to topic (relative names resolve in the controller's namespace). what
  // names the input in log lines ("target", "anchor"). Call once, in on_configure().
  void subscribe(
    rclcpp_lifecycle::LifecycleNode & node, const std::string & topic, const std::string & arm_id,
    const std::string & base_frame_id, const char * what);
  // Forgets what arrived so far (on_activate(): poses sent before activation are not used).
  void reset();
  // Real-time side: true, with *pose set, when a pose arrived since the last call.
  bool take(law::Pose * pose);
  std::string topic_name() const;
  std::size_t rejected() const { return rejected_.load(); }
  // Real-time side: true while the topic has more than one publisher (hold the arm, see PublisherGuard).
  bool conflict() const { return guard_.conflict(); }

private:
  void on_message(const Msg::SharedPtr & msg);

  realtime_tools::RealtimeBuffer<std::shared_ptr<Msg>> latest_;
  std::shared_ptr<Msg> taken_;  // the message last returned by take() (RT side)
  std::atomic<std::size_t> rejected_{0};
  std::string arm_id_;
  std::string base_frame_id_;
  std::string what_;
  rclcpp::Logger logger_ = rclcpp::get_logger("hilserl_controllers");
  rclcpp::Clock::SharedPtr clock_;
  PublisherGuard guard_;
  // Last, so it is destroyed first: no callback into the members above while they go away.
  rclcpp::Subscription<Msg>::SharedPtr subscription_;
};

// The InterfaceConfiguration of several arms: every arm's command (or state) interfaces.
// Arms is a range of (smart) pointers to structs with a FrankaArm member `io`.
template <typename Arms>
controller_interface::InterfaceConfiguration interface_configuration(const Arms & arms, bool command)
{
  controller_interface::InterfaceConfiguration config{
    controller_interface::interface_configuration_type::INDIVIDUAL, {}};
  for (const auto & arm : arms) {
    const std::vector<std::string> names =
      command ? arm->io.command_interface_names() : arm->io.state_interface_names();
    config.names.insert(config.names.end(), names.begin(), names.end());
  }
  return config;
}

// Cartesian impedance law parameters from a generated Params struct with the fields
// translational_stiffness_n_per_m[3], rotational_stiffness_nm_per_rad[3],
// translational_damping_ratio, rotational_damping_ratio (D = 2 ratio sqrt(K), as the
// simulator), reference_limit_m, reference_limit_rad. False (sentence in *error) when unusable.
template <typename Params>
bool impedance_from_parameters(const Params & p, law::ImpedanceParams * out, std::string * error)
{
  if (p.translational_stiffness_n_per_m.size() != 3 || p.rotational_stiffness_nm_per_rad.size() != 3) {
    *error = "translational_stiffness_n_per_m and rotational_stiffness_nm_per_rad need 3 numbers each";
    return false;
  }
  law::ImpedanceParams law_params;
  law_params.translational_stiffness_n_per_m = {
    p.translational_stiffness_n_per_m[0], p.translational_stiffness_n_per_m[1], p.translational_stiffness_n_per_m[2]};
  law_params.rotational_stiffness_nm_per_rad = {
    p.rotational_stiffness_nm_per_rad[0], p.rotational_stiffness_nm_per_rad[1], p.rotational_stiffness_nm_per_rad[2]};
  law_params.translational_damping_ns_per_m =
    law::ImpedanceParams::critical_damping(law_params.translational_stiffness_n_per_m) * p.translational_damping_ratio;
  law_params.rotational_damping_nms_per_rad =
    law::ImpedanceParams::critical_damping(law_params.rotational_stiffness_nm_per_rad) * p.rotational_damping_ratio;
  law_params.reference_limit_m = p.reference_limit_m;
  law_params.reference_limit_rad = p.reference_limit_rad;
  *error = law_params.validate();
  if (!error->empty()) {
    return false;
  }
  *out = law_params;
  return true;
}

// Joint-space gains from a generated Params struct with the fields
// nullspace_stiffness_nm_per_rad, nullspace_damping_ratio, nullspace_pinv_damping,
// compensate_coriolis, max_torque_rate_nm_per_s; period_s is this tick's period.
template <typename Params>
JointSpaceGains joint_space_from_parameters(const Params & p, double period_s)
{
  JointSpaceGains g;
  g.nullspace_stiffness_nm_per_rad = p.nullspace_stiffness_nm_per_rad;
  g.nullspace_damping_nms_per_rad = 2.0 * p.nullspace_damping_ratio * std::sqrt(p.nullspace_stiffness_nm_per_rad);
  g.nullspace_pinv_damping = p.nullspace_pinv_damping;
  g.compensate_coriolis = p.compensate_coriolis;
  g.max_torque_step_nm = p.max_torque_rate_nm_per_s * period_s;
  return g;
}

}  // namespace hilserl_controllers
