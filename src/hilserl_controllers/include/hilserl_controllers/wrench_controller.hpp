// Feed-forward wrench controller (HIL-SERL dynamic tasks) for one or more Franka
// arms under ros2_control.
//
// Per arm: geometry_msgs/WrenchStamped commands in the CURRENT end-effector frame
// arrive through a real-time buffer; each new one is offered to a
// law::WrenchWatchdog (norm clamps; NaN/Inf, bad stamps and out-of-order stamps
// rejected, which zeroes the output at once; zero after watchdog_timeout_s without
// a command). The held wrench is rotated to base axes (same point: the TCP) and
// applied as tau = J^T F (+ Coriolis), rate-limited.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "controller_interface/controller_interface.hpp"
#include "geometry_msgs/msg/wrench_stamped.hpp"
#include "hilserl_controllers/control_law.hpp"
#include "hilserl_controllers/franka_arm.hpp"
#include "rclcpp/rclcpp.hpp"
#include "rclcpp_lifecycle/state.hpp"
#include "realtime_tools/realtime_buffer.hpp"

#if __has_include("hilserl_controllers/wrench_controller_parameters.hpp")
#include "hilserl_controllers/wrench_controller_parameters.hpp"
#else
#include "wrench_controller_parameters.hpp"
#endif

namespace hilserl_controllers
{

class WrenchController : public controller_interface::ControllerInterface
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
  using WrenchMsg = geometry_msgs::msg::WrenchStamped;
  using Params = hilserl_wrench_controller::Params;

  struct Arm
  {
    explicit Arm(const std::string & arm_id) : io(arm_id) {}

    FrankaArm io;
    rclcpp::Subscription<WrenchMsg>::SharedPtr subscription;
    realtime_tools::RealtimeBuffer<std::shared_ptr<WrenchMsg>> latest_command;
    std::shared_ptr<WrenchMsg> offered_msg;  // the last message given to the watchdog (RT side)
    law::WrenchWatchdog watchdog;
    FrankaArm::Joints tau_previous{};
  };

  static law::WrenchParams make_wrench_params(const Params & p);

  std::shared_ptr<hilserl_wrench_controller::ParamListener> param_listener_;
  Params params_;
  std::vector<std::unique_ptr<Arm>> arms_;
};

}  // namespace hilserl_controllers
