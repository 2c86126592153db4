// Cartesian impedance controller with reference limiting (HIL-SERL low-level
// controller) for one or more Franka arms under ros2_control.
//
// Per arm and per tick: read q, dq, O_T_EE, the zero Jacobian and Coriolis from
// franka_ros2; F = K e - D v on the reference-limited target
// (law::impedance_wrench); tau = J^T F + nullspace posture torque + Coriolis,
// rate-limited, written to the joint effort interfaces. The target comes from a
// geometry_msgs/PoseStamped topic through a real-time buffer (PoseInput); before
// the first one the arm holds the pose it had at activation. A momentarily
// unreadable state skips that arm's tick (FrankaArm::Tick). Single-publisher
// guard (PublisherGuard): while another node publishes on an arm's target topic
// besides the intervention mux, that arm holds the pose measured at the first tick
// of the conflict and every target on the topic is dropped, until one publisher is
// left; then the next target is followed.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "controller_interface/controller_interface.hpp"
#include "hilserl_controllers/control_law.hpp"
#include "hilserl_controllers/franka_arm.hpp"
#include "rclcpp/rclcpp.hpp"
#include "rclcpp_lifecycle/state.hpp"

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
  using Params = hilserl_cartesian_impedance_controller::Params;

  struct Arm
  {
    explicit Arm(const std::string & arm_id) : io(arm_id) {}

    FrankaArm io;            // interfaces, state, nullspace posture, torque history, missed ticks
    PoseInput target_input;  // target_pose topic
    law::Pose target;        // what the impedance law tracks
    bool held_for_conflict = false;  // target set to the measured pose for the current publisher conflict
  };

  std::shared_ptr<hilserl_cartesian_impedance_controller::ParamListener> param_listener_;
  Params params_;
  law::ImpedanceParams impedance_;
  std::vector<std::unique_ptr<Arm>> arms_;
};

}  // namespace hilserl_controllers
