// ros2_control plumbing of one Franka arm: interface names, loaned-interface
// lookup, reading the state the control law needs, writing joint torques.
// No control law here (that is control_law.hpp).
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "franka_semantic_components/franka_robot_model.hpp"
#include "hardware_interface/loaned_command_interface.hpp"
#include "hardware_interface/loaned_state_interface.hpp"
#include "hilserl_controllers/control_law.hpp"

namespace hilserl_controllers
{

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

  // arm_id prefixes the franka_ros2 interfaces, e.g. "fr3" or "left_fr3".
  explicit FrankaArm(std::string arm_id);

  const std::string & arm_id() const { return arm_id_; }
  // <id>_joint1..7/position and /velocity, <id>/robot_model, <id>/robot_state.
  std::vector<std::string> state_interface_names() const;
  // <id>_joint1..7/effort.
  std::vector<std::string> command_interface_names() const;

  // Finds this arm's interfaces among the controller's loaned ones (by name, so
  // the order of several arms does not matter) and primes the franka model.
  // False with *error set when one is missing or the model cannot be read.
  bool assign(
    std::vector<hardware_interface::LoanedStateInterface> & state_interfaces,
    std::vector<hardware_interface::LoanedCommandInterface> & command_interfaces, std::string * error);
  void release();

  // Reads joints and the franka model; false when a value is missing or non-finite.
  bool read(State * state);
  // Writes joint torques (N m); false when the hardware refused one.
  bool write(const Joints & tau);

private:
  std::string joint_interface(std::size_t joint, const char * kind) const;

  std::string arm_id_;
  std::unique_ptr<franka_semantic_components::FrankaRobotModel> model_;
  std::array<hardware_interface::LoanedStateInterface *, kJoints> position_{};
  std::array<hardware_interface::LoanedStateInterface *, kJoints> velocity_{};
  std::array<hardware_interface::LoanedCommandInterface *, kJoints> effort_{};
};

}  // namespace hilserl_controllers
