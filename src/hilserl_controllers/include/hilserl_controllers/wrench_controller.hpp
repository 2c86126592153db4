// Wrench-mode controller (HIL-SERL dynamic tasks) for one or more Franka arms
// under ros2_control: the simulator's wrench mode (hilserl_sim robot.py), on the robot.
//
// Per arm and per tick:
//   F   = law::wrench_mode_wrench: a soft, reference-limited impedance toward the
//         anchor pose (parameters as the impedance controller's, with the
//         simulator's wrench_* defaults) + the feed-forward wrench rotated from
//         the CURRENT end-effector axes to base axes (same point: the TCP);
//   tau = J^T F + nullspace posture torque + Coriolis, rate-limited.
// So a zero, stale or rejected feed-forward wrench leaves the arm held softly
// near the anchor, not floating and drifting in its nullspace.
//
// Feed-forward: geometry_msgs/WrenchStamped commands arrive through a real-time
// buffer; each new one is offered to a law::WrenchWatchdog at the tick's time
// (norm clamps; NaN/Inf, bad stamps, out-of-order stamps and stamps more than
// max_future_stamp_s ahead of the controller clock rejected, which zeroes the
// output at once; zero after watchdog_timeout_s without a command).
//
// Anchor: the measured pose at activation; replaced by each valid
// geometry_msgs/PoseStamped on anchor_topics (same checks as the impedance
// controller's target, shared PoseInput). On the robot the anchor therefore stays
// the pose at activation unless something (a reset procedure) publishes one.
//
// Single-publisher guard (PublisherGuard) on both topics: while another node
// publishes on an arm's wrench or anchor topic besides the intervention mux, that
// arm's anchor becomes the pose measured at the first tick of the conflict, the
// feed-forward wrench is zero (watchdog reset) and every message on the topic is
// dropped, until one publisher is left; then the next command is followed.
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

    FrankaArm io;            // interfaces, state, nullspace posture, torque history, missed ticks
    PoseInput anchor_input;  // anchor_topics entry
    law::Pose anchor;        // where the holding impedance pulls: pose at activation or the last anchor message
    realtime_tools::RealtimeBuffer<std::shared_ptr<WrenchMsg>> latest_command;
    std::shared_ptr<WrenchMsg> offered_msg;  // the last message given to the watchdog (RT side)
    law::WrenchWatchdog watchdog;
    bool held_for_conflict = false;  // anchor set to the measured pose for the current publisher conflict
    PublisherGuard wrench_guard;     // single publisher on the wrench topic (declared before the subscription)
    rclcpp::Subscription<WrenchMsg>::SharedPtr subscription;  // last: destroyed first
  };

  static law::WrenchParams make_wrench_params(const Params & p);
  // Reads the parameters that may change at run time into the law's structs; false (sentence in *error) when unusable.
  bool apply_parameters(std::string * error);

  std::shared_ptr<hilserl_wrench_controller::ParamListener> param_listener_;
  Params params_;
  law::ImpedanceParams holding_;  // the impedance toward the anchor
  std::vector<std::unique_ptr<Arm>> arms_;
};

}  // namespace hilserl_controllers
