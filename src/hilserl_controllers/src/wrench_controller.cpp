// WrenchController: ros2_control plumbing around law::WrenchWatchdog and law::wrench_mode_wrench; see the header.
#include "hilserl_controllers/wrench_controller.hpp"

#include <exception>

namespace hilserl_controllers
{

using controller_interface::CallbackReturn;
using controller_interface::InterfaceConfiguration;

CallbackReturn WrenchController::on_init()
{
  try {
    param_listener_ = std::make_shared<hilserl_wrench_controller::ParamListener>(get_node());
    params_ = param_listener_->get_params();
  } catch (const std::exception & e) {
    RCLCPP_ERROR(get_node()->get_logger(), "parameters of %s: %s", get_node()->get_name(), e.what());
    return CallbackReturn::ERROR;
  }
  return CallbackReturn::SUCCESS;
}

law::WrenchParams WrenchController::make_wrench_params(const Params & p)
{
  law::WrenchParams w;
  w.max_force_n = p.max_force_n;
  w.max_torque_nm = p.max_torque_nm;
  w.watchdog_timeout_s = p.watchdog_timeout_s;
  w.max_future_stamp_s = p.max_future_stamp_s;
  return w;
}

bool WrenchController::apply_parameters(std::string * error)
{
  const law::WrenchParams limits = make_wrench_params(params_);
  *error = limits.validate();
  if (!error->empty()) {
    return false;
  }
  law::ImpedanceParams holding;
  if (!impedance_from_parameters(params_, &holding, error)) {
    return false;
  }
  holding_ = holding;
  for (auto & arm : arms_) {
    arm->watchdog.set_params(limits);
    arm->io.set_max_consecutive_missed_ticks(static_cast<std::size_t>(params_.max_consecutive_missed_ticks));
  }
  return true;
}

CallbackReturn WrenchController::on_configure(const rclcpp_lifecycle::State &)
{
  params_ = param_listener_->get_params();
  const bool anchor_topics = !params_.anchor_topics.empty();  // empty: the anchor is always the pose at activation
  if (params_.target_topics.size() != params_.arms.size() ||
      (anchor_topics && params_.anchor_topics.size() != params_.arms.size()))
  {
    RCLCPP_ERROR(
      get_node()->get_logger(),
      "'target_topics' has %zu entries and 'anchor_topics' %zu, but 'arms' has %zu: give one topic per arm "
      "(anchor_topics may also be empty)",
      params_.target_topics.size(), params_.anchor_topics.size(), params_.arms.size());
    return CallbackReturn::ERROR;
  }
  arms_.clear();
  for (std::size_t i = 0; i < params_.arms.size(); ++i) {
    arms_.push_back(std::make_unique<Arm>(params_.arms[i]));
    Arm & arm = *arms_.back();
    // Only hands the message over: validation, clamping and timing happen in update() (the watchdog).
    arm.subscription = get_node()->create_subscription<WrenchMsg>(
      params_.target_topics[i], command_qos(), [&arm](const WrenchMsg::SharedPtr msg) {
        if (arm.wrench_guard.check_message()) {  // dropped while another node publishes here too
          arm.latest_command.writeFromNonRT(msg);
        }
      });
    arm.wrench_guard.watch(*get_node(), arm.subscription, params_.arms[i], "wrench command");
    if (anchor_topics) {
      arm.anchor_input.subscribe(*get_node(), params_.anchor_topics[i], params_.arms[i], params_.base_frame_id, "anchor");
    }
  }
  std::string error;
  if (!apply_parameters(&error)) {
    RCLCPP_ERROR(get_node()->get_logger(), "wrench controller parameters: %s", error.c_str());
    arms_.clear();
    return CallbackReturn::ERROR;
  }
  for (const auto & arm : arms_) {
    const law::WrenchParams & limits = arm->watchdog.params();
    RCLCPP_INFO(
      get_node()->get_logger(),
      "arm '%s' applies %s (EE frame; clamps %.1f N, %.2f N m; watchdog %.3f s; stamps at most %.3f s ahead) "
      "on a hold toward the pose at activation or the last anchor on '%s' (K %.0f N/m, %.1f N m/rad; reference "
      "limits %.3f m, %.3f rad)",
      arm->io.arm_id().c_str(), arm->subscription->get_topic_name(), limits.max_force_n, limits.max_torque_nm,
      limits.watchdog_timeout_s, limits.max_future_stamp_s,
      anchor_topics ? arm->anchor_input.topic_name().c_str() : "(no anchor topic)",
      holding_.translational_stiffness_n_per_m.x, holding_.rotational_stiffness_nm_per_rad.x, holding_.reference_limit_m,
      holding_.reference_limit_rad);
  }
  return CallbackReturn::SUCCESS;
}

InterfaceConfiguration WrenchController::command_interface_configuration() const
{
  return interface_configuration(arms_, true);
}

InterfaceConfiguration WrenchController::state_interface_configuration() const
{
  return interface_configuration(arms_, false);
}

CallbackReturn WrenchController::on_activate(const rclcpp_lifecycle::State &)
{
  for (auto & arm_ptr : arms_) {
    Arm & arm = *arm_ptr;
    FrankaArm::State s;
    std::string error;
    if (!arm.io.activate(state_interfaces_, command_interfaces_, &s, &error)) {
      RCLCPP_ERROR(get_node()->get_logger(), "%s", error.c_str());
      return CallbackReturn::ERROR;
    }
    // Hold softly where the arm is; start from nothing: wrenches and anchors sent before activation are not used.
    arm.anchor = s.ee_pose;
    arm.anchor_input.reset();
    arm.watchdog.reset();
    arm.latest_command.initRT(std::shared_ptr<WrenchMsg>());
    arm.offered_msg.reset();
    arm.held_for_conflict = false;
  }
  return CallbackReturn::SUCCESS;
}

CallbackReturn WrenchController::on_deactivate(const rclcpp_lifecycle::State &)
{
  for (auto & arm : arms_) {
    arm->io.deactivate();
  }
  return CallbackReturn::SUCCESS;
}

controller_interface::return_type WrenchController::update(const rclcpp::Time & time, const rclcpp::Duration & period)
{
  if (param_listener_->is_old(params_)) {  // gains, clamps and timeouts may change at run time
    params_ = param_listener_->get_params();
    std::string error;
    if (!apply_parameters(&error)) {
      RCLCPP_WARN_THROTTLE(
        get_node()->get_logger(), *get_node()->get_clock(), 1000, "keeping the previous limits and gains: %s",
        error.c_str());
    }
  }
  const double now_s = time.seconds();
  const JointSpaceGains gains = joint_space_from_parameters(params_, period.seconds());

  // Every arm is handled every tick: a missed tick of one arm neither skips nor stops the others.
  auto result = controller_interface::return_type::OK;
  for (auto & arm_ptr : arms_) {
    Arm & arm = *arm_ptr;
    // Single-publisher guard: while another node publishes wrenches or anchors too, hold (and drop what came).
    const bool conflict = arm.wrench_guard.conflict() || arm.anchor_input.conflict();
    const std::shared_ptr<WrenchMsg> * latest = arm.latest_command.readFromRT();
    const bool fresh = latest != nullptr && *latest && *latest != arm.offered_msg;
    if (fresh) {
      arm.offered_msg = *latest;
    }
    // During a conflict a message (one that came before the conflict was seen) is taken but never applied.
    if (fresh && !conflict) {
      const auto & f = arm.offered_msg->wrench.force;
      const auto & t = arm.offered_msg->wrench.torque;
      // By hand rather than rclcpp::Time, which throws on negative stamps (not in the real-time loop).
      const auto & stamp = arm.offered_msg->header.stamp;
      const double stamp_s = static_cast<double>(stamp.sec) + 1e-9 * static_cast<double>(stamp.nanosec);
      if (!arm.watchdog.command(law::Vec6{f.x, f.y, f.z, t.x, t.y, t.z}, stamp_s, now_s)) {
        RCLCPP_WARN_THROTTLE(
          get_node()->get_logger(), *get_node()->get_clock(), 1000,
          "arm '%s': wrench command rejected (%s; stamp %.6f s, controller clock %.6f s), applying zero until the "
          "next valid one; %zu rejected so far",
          arm.io.arm_id().c_str(), law::rejection_code(arm.watchdog.last_rejection()), stamp_s, now_s,
          arm.watchdog.rejected_count());
      }
    }
    law::Pose anchor;
    if (arm.anchor_input.take(&anchor) && !conflict) {
      arm.anchor = anchor;  // a published anchor replaces the pose at activation
    }

    FrankaArm::State s;
    if (!handle_tick(*get_node(), arm.io, arm.io.begin_tick(&s), &result)) {
      continue;  // nothing written for this arm: its effort interfaces keep the last torques
    }
    if (conflict && !arm.held_for_conflict) {
      arm.anchor = s.ee_pose;  // hold where the arm is now
      arm.watchdog.reset();    // no feed-forward wrench; after the conflict the next valid command is taken
    }
    arm.held_for_conflict = conflict;
    const law::Vec6 feedforward = conflict ? law::Vec6{} : arm.watchdog.output(now_s);
    // The simulator's wrench mode: hold toward the anchor + the feed-forward wrench (EE axes -> base axes).
    const law::Result<law::Vec6> wrench =
      law::wrench_mode_wrench(arm.anchor, s.ee_pose, s.ee_twist, feedforward, holding_);
    (void)handle_tick(*get_node(), arm.io, arm.io.finish_tick(s, wrench, gains), &result);
  }
  return result;
}

}  // namespace hilserl_controllers

#include "pluginlib/class_list_macros.hpp"

PLUGINLIB_EXPORT_CLASS(hilserl_controllers::WrenchController, controller_interface::ControllerInterface)
