// Cartesian impedance controller with reference limiting (HIL-SERL low-level
// controller) for one or more Franka arms under ros2_control.
//
// Per arm and per tick: read q, dq, O_T_EE, the zero Jacobian and Coriolis from
// franka_ros2; F = K e - D v on the reference-limited target
// (law::impedance_wrench); tau = J^T F + nullspace posture torque + Coriolis,
// rate-limited, written to the joint effort interfaces. The target comes from a
// geometry_msgs/PoseStamped topic through a real-time buffer; before the first
// one the arm holds the pose it had at activation.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "controller_interface/controller_interface.hpp"
#include "geometry_msgs/msg/pose_stamped.hpp"
#include "hilserl_controllers/control_law.hpp"
#include "hilserl_controllers/franka_arm.hpp"
#include "rclcpp/rclcpp.hpp"
#include "rclcpp_lifecycle/state.hpp"
#include "realtime_tools/realtime_buffer.hpp"

#if __has_include("hilserl_controllers/cartesian_impedance_controller_parameters.hpp")
#include "hilserl_controllers/cartesian_impedance_controller_parameters.hpp"
#else
#include "cartesian_impedance_controller_parameters.hpp"
#endif

namespace hilserl_controllers
{

class CartesianImpedanceController : public controller_interface::ControllerInterface
{
public:
  controller_interface::CallbackReturn on_init() override;
  controller_interface::InterfaceConfiguration command_interface_configuration() const override;
  controller_interface::InterfaceConfiguration state_interface_configuration() const override;
  controller_interface::CallbackReturn on_configure(const rclcpp_lifecycle::State & previous_state) override;
  controller_interface::CallbackReturn on_activate(const rclcpp_lifecycle::State & previous_state) override;
  controller_interface::CallbackReturn on_deactivate(const rclcpp_lifecycle::State & previous_state) override;
  controller_interface::return_type update(const rclcpp::Time & time, const rclcpp::Duration & period) override;

private:
  using PoseMsg = geometry_msgs::msg::PoseStamped;
  using Params = hilserl_cartesian_impedance_controller::Params;

  struct Arm
  {
    explicit Arm(const std::string & arm_id) : io(arm_id) {}

    FrankaArm io;
    rclcpp::Subscription<PoseMsg>::SharedPtr subscription;
    realtime_tools::RealtimeBuffer<std::shared_ptr<PoseMsg>> latest_target;
    std::shared_ptr<PoseMsg> applied_msg;   // the message `target` came from (RT side)
    law::Pose target;                       // what the impedance law tracks
    FrankaArm::Joints posture{};            // nullspace posture: q at activation
    FrankaArm::Joints tau_previous{};       // for the torque-rate limit
    std::atomic<std::size_t> rejected_targets{0};
  };

  // Law parameters from ROS parameters; false (message in *error) when unusable.
  static bool make_impedance(const Params & p, law::ImpedanceParams * out, std::string * error);
  void on_target(Arm & arm, const PoseMsg::SharedPtr & msg);

  std::shared_ptr<hilserl_cartesian_impedance_controller::ParamListener> param_listener_;
  Params params_;
  law::ImpedanceParams impedance_;
  std::string base_frame_id_;
  std::vector<std::unique_ptr<Arm>> arms_;
};

}  // namespace hilserl_controllers
