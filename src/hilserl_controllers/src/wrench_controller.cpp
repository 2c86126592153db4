// WrenchController: ros2_control plumbing around law::WrenchWatchdog; see the header.
#include "hilserl_controllers/wrench_controller.hpp"

#include <exception>

namespace hilserl_controllers
{

using controller_interface::CallbackReturn;
using controller_interface::InterfaceConfiguration;
using controller_interface::interface_configuration_type;

namespace
{

// Same QoS as the intervention mux's command publishers (hilserl_interfaces.qos.COMMAND).
rclcpp::QoS command_qos() { return rclcpp::QoS(rclcpp::KeepLast(1)).reliable(); }

}  // namespace

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
  return w;
}

CallbackReturn WrenchController::on_configure(const rclcpp_lifecycle::State &)
{
  params_ = param_listener_->get_params();
  if (params_.target_topics.size() != params_.arms.size()) {
    RCLCPP_ERROR(
      get_node()->get_logger(), "'target_topics' has %zu entries but 'arms' has %zu: give one topic per arm",
      params_.target_topics.size(), params_.arms.size());
    return CallbackReturn::ERROR;
  }
  const law::WrenchParams limits = make_wrench_params(params_);
  const std::string error = limits.validate();
  if (!error.empty()) {
    RCLCPP_ERROR(get_node()->get_logger(), "wrench parameters: %s", error.c_str());
    return CallbackReturn::ERROR;
  }
  arms_.clear();
  for (std::size_t i = 0; i < params_.arms.size(); ++i) {
    arms_.push_back(std::make_unique<Arm>(params_.arms[i]));
    Arm & arm = *arms_.back();
    arm.watchdog.set_params(limits);
    // Only hands the message over: validation, clamping and timing happen in update() (the watchdog).
    arm.subscription = get_node()->create_subscription<WrenchMsg>(
      params_.target_topics[i], command_qos(),
      [&arm](const WrenchMsg::SharedPtr msg) { arm.latest_command.writeFromNonRT(msg); });
    RCLCPP_INFO(
      get_node()->get_logger(), "arm '%s' applies %s (EE frame; clamps %.1f N, %.2f N m; watchdog %.3f s)",
      params_.arms[i].c_str(), arm.subscription->get_topic_name(), limits.max_force_n, limits.max_torque_nm,
      limits.watchdog_timeout_s);
  }
  return CallbackReturn::SUCCESS;
}

InterfaceConfiguration WrenchController::command_interface_configuration() const
{
  InterfaceConfiguration config{interface_configuration_type::INDIVIDUAL, {}};
  for (const auto & arm : arms_) {
    for (const auto & name : arm->io.command_interface_names()) {
      config.names.push_back(name);
    }
  }
  return config;
}

InterfaceConfiguration WrenchController::state_interface_configuration() const
{
  InterfaceConfiguration config{interface_configuration_type::INDIVIDUAL, {}};
  for (const auto & arm : arms_) {
    for (const auto & name : arm->io.state_interface_names()) {
      config.names.push_back(name);
    }
  }
  return config;
}

CallbackReturn WrenchController::on_activate(const rclcpp_lifecycle::State &)
{
  for (auto & arm_ptr : arms_) {
    Arm & arm = *arm_ptr;
    std::string error;
    if (!arm.io.assign(state_interfaces_, command_interfaces_, &error)) {
      RCLCPP_ERROR(get_node()->get_logger(), "%s", error.c_str());
      return CallbackReturn::ERROR;
    }
    // Start from nothing: a command sent before activation is not applied.
    arm.watchdog.reset();
    arm.latest_command.initRT(std::shared_ptr<WrenchMsg>());
    arm.offered_msg.reset();
    arm.tau_previous.fill(0.0);
  }
  return CallbackReturn::SUCCESS;
}

CallbackReturn WrenchController::on_deactivate(const rclcpp_lifecycle::State &)
{
  for (auto & arm : arms_) {
    arm->io.write(FrankaArm::Joints{});
    arm->io.release();
  }
  return CallbackReturn::SUCCESS;
}

controller_interface::return_type WrenchController::update(const rclcpp::Time & time, const rclcpp::Duration & period)
{
  if (param_listener_->is_old(params_)) {  // clamps and timeout may change at run time
    params_ = param_listener_->get_params();
    const law::WrenchParams limits = make_wrench_params(params_);
    if (limits.validate().empty()) {
      for (auto & arm : arms_) {
        arm->watchdog.set_params(limits);
      }
    }
  }
  const double now_s = time.seconds();
  const double max_step_nm = params_.max_torque_rate_nm_per_s * period.seconds();

  for (auto & arm_ptr : arms_) {
    Arm & arm = *arm_ptr;
    const std::shared_ptr<WrenchMsg> * latest = arm.latest_command.readFromRT();
    if (latest != nullptr && *latest && *latest != arm.offered_msg) {
      arm.offered_msg = *latest;
      const auto & f = arm.offered_msg->wrench.force;
      const auto & t = arm.offered_msg->wrench.torque;
      // By hand rather than rclcpp::Time, which throws on negative stamps (not in the real-time loop).
      const auto & stamp = arm.offered_msg->header.stamp;
      const double stamp_s = static_cast<double>(stamp.sec) + 1e-9 * static_cast<double>(stamp.nanosec);
      if (!arm.watchdog.command(law::Vec6{f.x, f.y, f.z, t.x, t.y, t.z}, stamp_s)) {
        RCLCPP_WARN_THROTTLE(
          get_node()->get_logger(), *get_node()->get_clock(), 1000,
          "arm '%s': wrench command rejected (%s), applying zero until the next valid one; %zu rejected so far",
          arm.io.arm_id().c_str(), law::rejection_code(arm.watchdog.last_rejection()), arm.watchdog.rejected_count());
      }
    }

    FrankaArm::State s;
    if (!arm.io.read(&s)) {
      RCLCPP_ERROR_THROTTLE(
        get_node()->get_logger(), *get_node()->get_clock(), 1000, "arm '%s': robot state unreadable or non-finite",
        arm.io.arm_id().c_str());
      return controller_interface::return_type::ERROR;
    }
    // Commanded in EE axes at the TCP; J is the base-frame Jacobian of the TCP: rotate, no lever arm.
    const law::Vec6 wrench_base = law::rotate_wrench(s.ee_pose.orientation, arm.watchdog.output(now_s));
    FrankaArm::Joints tau = law::jacobian_transpose_times<FrankaArm::kJoints>(s.jacobian, wrench_base);
    if (params_.compensate_coriolis) {
      for (std::size_t j = 0; j < FrankaArm::kJoints; ++j) {
        tau[j] += s.coriolis[j];
      }
    }
    tau = law::saturate_torque_rate<FrankaArm::kJoints>(tau, arm.tau_previous, max_step_nm);
    if (!arm.io.write(tau)) {
      return controller_interface::return_type::ERROR;
    }
    arm.tau_previous = tau;
  }
  return controller_interface::return_type::OK;
}

}  // namespace hilserl_controllers

#include "pluginlib/class_list_macros.hpp"

PLUGINLIB_EXPORT_CLASS(hilserl_controllers::WrenchController, controller_interface::ControllerInterface)
