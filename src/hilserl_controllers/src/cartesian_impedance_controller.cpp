// CartesianImpedanceController: ros2_control plumbing around law::impedance_wrench; see the header.
#include "hilserl_controllers/cartesian_impedance_controller.hpp"

#include <cmath>
#include <exception>
#include <functional>

namespace hilserl_controllers
{

using controller_interface::CallbackReturn;
using controller_interface::InterfaceConfiguration;
using controller_interface::interface_configuration_type;

namespace
{

// Same QoS as the intervention mux's command publishers (hilserl_interfaces.qos.COMMAND).
rclcpp::QoS command_qos() { return rclcpp::QoS(rclcpp::KeepLast(1)).reliable(); }

law::Vec3 vec3(const std::vector<double> & v) { return {v.at(0), v.at(1), v.at(2)}; }

law::Vec3 damping(const law::Vec3 & k, double ratio)
{
  const law::Vec3 critical = law::ImpedanceParams::critical_damping(k);
  return critical * ratio;
}

}  // namespace

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

bool CartesianImpedanceController::make_impedance(const Params & p, law::ImpedanceParams * out, std::string * error)
{
  law::ImpedanceParams law_params;
  law_params.translational_stiffness_n_per_m = vec3(p.translational_stiffness_n_per_m);
  law_params.rotational_stiffness_nm_per_rad = vec3(p.rotational_stiffness_nm_per_rad);
  law_params.translational_damping_ns_per_m =
    damping(law_params.translational_stiffness_n_per_m, p.translational_damping_ratio);
  law_params.rotational_damping_nms_per_rad =
    damping(law_params.rotational_stiffness_nm_per_rad, p.rotational_damping_ratio);
  law_params.reference_limit_m = p.reference_limit_m;
  law_params.reference_limit_rad = p.reference_limit_rad;
  *error = law_params.validate();
  if (!error->empty()) {
    return false;
  }
  *out = law_params;
  return true;
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
  if (!make_impedance(params_, &impedance_, &error)) {
    RCLCPP_ERROR(get_node()->get_logger(), "impedance parameters: %s", error.c_str());
    return CallbackReturn::ERROR;
  }
  base_frame_id_ = params_.base_frame_id;  // read-only; a copy the subscription thread may read
  arms_.clear();
  for (std::size_t i = 0; i < params_.arms.size(); ++i) {
    arms_.push_back(std::make_unique<Arm>(params_.arms[i]));
    Arm & arm = *arms_.back();
    arm.subscription = get_node()->create_subscription<PoseMsg>(
      params_.target_topics[i], command_qos(),
      [this, &arm](const PoseMsg::SharedPtr msg) { on_target(arm, msg); });
    RCLCPP_INFO(
      get_node()->get_logger(), "arm '%s' tracks %s (reference limits %.3f m, %.3f rad)", params_.arms[i].c_str(),
      arm.subscription->get_topic_name(), impedance_.reference_limit_m, impedance_.reference_limit_rad);
  }
  return CallbackReturn::SUCCESS;
}

void CartesianImpedanceController::on_target(Arm & arm, const PoseMsg::SharedPtr & msg)
{
  // Non-real-time side: reject what the law would reject, so update() only sees usable targets.
  const auto & p = msg->pose.position;
  const auto & o = msg->pose.orientation;
  const law::Quat q{o.x, o.y, o.z, o.w};
  const char * why = nullptr;
  if (!law::is_finite(law::Vec3{p.x, p.y, p.z}) || !law::is_finite(q)) {
    why = "NaN/Inf in the pose";
  } else if (!law::quat_normalize(q).ok()) {
    why = "zero orientation quaternion";
  } else if (!base_frame_id_.empty() && !msg->header.frame_id.empty() && msg->header.frame_id != base_frame_id_) {
    why = "frame_id is not base_frame_id";
  }
  if (why != nullptr) {
    ++arm.rejected_targets;
    RCLCPP_WARN_THROTTLE(
      get_node()->get_logger(), *get_node()->get_clock(), 1000,
      "arm '%s': target rejected (%s; frame_id '%s'), holding the last one; %zu rejected so far",
      arm.io.arm_id().c_str(), why, msg->header.frame_id.c_str(), arm.rejected_targets.load());
    return;
  }
  arm.latest_target.writeFromNonRT(msg);
}

InterfaceConfiguration CartesianImpedanceController::command_interface_configuration() const
{
  InterfaceConfiguration config{interface_configuration_type::INDIVIDUAL, {}};
  for (const auto & arm : arms_) {
    for (const auto & name : arm->io.command_interface_names()) {
      config.names.push_back(name);
    }
  }
  return config;
}

InterfaceConfiguration CartesianImpedanceController::state_interface_configuration() const
{
  InterfaceConfiguration config{interface_configuration_type::INDIVIDUAL, {}};
  for (const auto & arm : arms_) {
    for (const auto & name : arm->io.state_interface_names()) {
      config.names.push_back(name);
    }
  }
  return config;
}

CallbackReturn CartesianImpedanceController::on_activate(const rclcpp_lifecycle::State &)
{
  for (auto & arm_ptr : arms_) {
    Arm & arm = *arm_ptr;
    std::string error;
    if (!arm.io.assign(state_interfaces_, command_interfaces_, &error)) {
      RCLCPP_ERROR(get_node()->get_logger(), "%s", error.c_str());
      return CallbackReturn::ERROR;
    }
    FrankaArm::State s;
    if (!arm.io.read(&s)) {
      RCLCPP_ERROR(get_node()->get_logger(), "arm '%s': cannot read the robot state", arm.io.arm_id().c_str());
      return CallbackReturn::ERROR;
    }
    // Hold still where the arm is until the first target arrives; ignore targets sent before activation.
    arm.target = s.ee_pose;
    arm.posture = s.q;
    arm.tau_previous.fill(0.0);
    arm.latest_target.initRT(std::shared_ptr<PoseMsg>());
    arm.applied_msg.reset();
  }
  return CallbackReturn::SUCCESS;
}

CallbackReturn CartesianImpedanceController::on_deactivate(const rclcpp_lifecycle::State &)
{
  for (auto & arm : arms_) {
    arm->io.write(FrankaArm::Joints{});
    arm->io.release();
  }
  return CallbackReturn::SUCCESS;
}

controller_interface::return_type CartesianImpedanceController::update(
  const rclcpp::Time &, const rclcpp::Duration & period)
{
  if (param_listener_->is_old(params_)) {  // gains and limits may change at run time
    params_ = param_listener_->get_params();
    std::string error;
    if (!make_impedance(params_, &impedance_, &error)) {
      RCLCPP_WARN_THROTTLE(
        get_node()->get_logger(), *get_node()->get_clock(), 1000, "keeping the previous gains: %s", error.c_str());
    }
  }
  const double max_step_nm = params_.max_torque_rate_nm_per_s * period.seconds();
  const double k_ns = params_.nullspace_stiffness_nm_per_rad;
  const double d_ns = 2.0 * params_.nullspace_damping_ratio * std::sqrt(k_ns);

  for (auto & arm_ptr : arms_) {
    Arm & arm = *arm_ptr;
    FrankaArm::State s;
    if (!arm.io.read(&s)) {
      RCLCPP_ERROR_THROTTLE(
        get_node()->get_logger(), *get_node()->get_clock(), 1000, "arm '%s': robot state unreadable or non-finite",
        arm.io.arm_id().c_str());
      return controller_interface::return_type::ERROR;
    }
    const std::shared_ptr<PoseMsg> * latest = arm.latest_target.readFromRT();
    if (latest != nullptr && *latest && *latest != arm.applied_msg) {
      const auto & m = (*latest)->pose;
      arm.target = {{m.position.x, m.position.y, m.position.z},
                    {m.orientation.x, m.orientation.y, m.orientation.z, m.orientation.w}};
      arm.applied_msg = *latest;
    }

    // Paper, low-level controller: F = K e - D v on the reference-limited target.
    FrankaArm::Joints tau{};
    const law::Result<law::Vec6> wrench = law::impedance_wrench(arm.target, s.ee_pose, s.ee_twist, impedance_);
    if (wrench.ok()) {
      tau = law::jacobian_transpose_times<FrankaArm::kJoints>(s.jacobian, wrench.value);
    }
    const auto posture = law::nullspace_torque<FrankaArm::kJoints>(
      s.jacobian, s.q, s.dq, arm.posture, k_ns, d_ns, params_.nullspace_pinv_damping);
    for (std::size_t j = 0; j < FrankaArm::kJoints; ++j) {
      tau[j] += (posture.ok() ? posture.value[j] : 0.0) + (params_.compensate_coriolis ? s.coriolis[j] : 0.0);
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

PLUGINLIB_EXPORT_CLASS(hilserl_controllers::CartesianImpedanceController, controller_interface::ControllerInterface)
