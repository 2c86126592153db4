// CartesianImpedanceController: ros2_control plumbing around law::impedance_wrench; see the header.
#include "hilserl_controllers/cartesian_impedance_controller.hpp"

#include <exception>

namespace hilserl_controllers
{

using controller_interface::CallbackReturn;
using controller_interface::InterfaceConfiguration;

CallbackReturn CartesianImpedanceController::on_init()
{
  try {
    param_listener_ = std::make_shared<hilserl_cartesian_impedance_controller::ParamListener>(get_node());
    params_ = param_listener_->get_params();
  } catch (const std::exception & e) {
    RCLCPP_ERROR(get_node()->get_logger(), "parameters of %s: %s", get_node()->get_name(), e.what());
    return CallbackReturn::ERROR;
  }
  return CallbackReturn::SUCCESS;
}

CallbackReturn CartesianImpedanceController::on_configure(const rclcpp_lifecycle::State &)
{
  params_ = param_listener_->get_params();
  if (params_.target_topics.size() != params_.arms.size()) {
    RCLCPP_ERROR(
      get_node()->get_logger(), "'target_topics' has %zu entries but 'arms' has %zu: give one topic per arm",
      params_.target_topics.size(), params_.arms.size());
    return CallbackReturn::ERROR;
  }
  std::string error;
  if (!impedance_from_parameters(params_, &impedance_, &error)) {
    RCLCPP_ERROR(get_node()->get_logger(), "impedance parameters: %s", error.c_str());
    return CallbackReturn::ERROR;
  }
  arms_.clear();
  for (std::size_t i = 0; i < params_.arms.size(); ++i) {
    arms_.push_back(std::make_unique<Arm>(params_.arms[i]));
    Arm & arm = *arms_.back();
    arm.io.set_max_consecutive_missed_ticks(static_cast<std::size_t>(params_.max_consecutive_missed_ticks));
    // base_frame_id is read-only: PoseInput keeps a copy its subscription thread may read.
    arm.target_input.subscribe(*get_node(), params_.target_topics[i], params_.arms[i], params_.base_frame_id, "target");
    RCLCPP_INFO(
      get_node()->get_logger(), "arm '%s' tracks %s (reference limits %.3f m, %.3f rad)", params_.arms[i].c_str(),
      arm.target_input.topic_name().c_str(), impedance_.reference_limit_m, impedance_.reference_limit_rad);
  }
  return CallbackReturn::SUCCESS;
}

InterfaceConfiguration CartesianImpedanceController::command_interface_configuration() const
{
  return interface_configuration(arms_, true);
}

InterfaceConfiguration CartesianImpedanceController::state_interface_configuration() const
{
  return interface_configuration(arms_, false);
}

CallbackReturn CartesianImpedanceController::on_activate(const rclcpp_lifecycle::State &)
{
  for (auto & arm_ptr : arms_) {
    Arm & arm = *arm_ptr;
    FrankaArm::State s;
    std::string error;
    if (!arm.io.activate(state_interfaces_, command_interfaces_, &s, &error)) {
      RCLCPP_ERROR(get_node()->get_logger(), "%s", error.c_str());
      return CallbackReturn::ERROR;
    }
    // Hold still where the arm is until the first target arrives; ignore targets sent before activation.
    arm.target = s.ee_pose;
    arm.target_input.reset();
    arm.held_for_conflict = false;
  }
  return CallbackReturn::SUCCESS;
}

CallbackReturn CartesianImpedanceController::on_deactivate(const rclcpp_lifecycle::State &)
{
  for (auto & arm : arms_) {
    arm->io.deactivate();
  }
  return CallbackReturn::SUCCESS;
}

controller_interface::return_type CartesianImpedanceController::update(
  const rclcpp::Time &, const rclcpp::Duration & period)
{
  if (param_listener_->is_old(params_)) {  // gains and limits may change at run time
    params_ = param_listener_->get_params();
    std::string error;
    if (!impedance_from_parameters(params_, &impedance_, &error)) {
      RCLCPP_WARN_THROTTLE(
        get_node()->get_logger(), *get_node()->get_clock(), 1000, "keeping the previous gains: %s", error.c_str());
    }
    for (auto & arm : arms_) {
      arm->io.set_max_consecutive_missed_ticks(static_cast<std::size_t>(params_.max_consecutive_missed_ticks));
    }
  }
  const JointSpaceGains gains = joint_space_from_parameters(params_, period.seconds());

  // Every arm is handled every tick: a missed tick of one arm neither skips nor stops the others.
  auto result = controller_interface::return_type::OK;
  for (auto & arm_ptr : arms_) {
    Arm & arm = *arm_ptr;
    // Single-publisher guard: while another node publishes targets too, hold (and drop what came).
    const bool conflict = arm.target_input.conflict();
    law::Pose incoming;
    if (arm.target_input.take(&incoming) && !conflict) {
      arm.target = incoming;  // the newest target, if one arrived
    }
    FrankaArm::State s;
    if (!handle_tick(*get_node(), arm.io, arm.io.begin_tick(&s), &result)) {
      continue;  // nothing written for this arm: its effort interfaces keep the last torques
    }
    if (conflict && !arm.held_for_conflict) {
      arm.target = s.ee_pose;  // hold where the arm is now, whatever either publisher sent
    }
    arm.held_for_conflict = conflict;
    // Paper, low-level controller: F = K e - D v on the reference-limited target.
    const law::Result<law::Vec6> wrench = law::impedance_wrench(arm.target, s.ee_pose, s.ee_twist, impedance_);
    (void)handle_tick(*get_node(), arm.io, arm.io.finish_tick(s, wrench, gains), &result);
  }
  return result;
}

}  // namespace hilserl_controllers

#include "pluginlib/class_list_macros.hpp"

PLUGINLIB_EXPORT_CLASS(hilserl_controllers::CartesianImpedanceController, controller_interface::ControllerInterface)
