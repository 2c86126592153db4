// ros2_control plumbing of one Franka arm; see franka_arm.hpp.
#include "hilserl_controllers/franka_arm.hpp"

#include <exception>
#include <utility>

namespace hilserl_controllers
{

namespace
{

template <typename Loaned>
Loaned * find_interface(std::vector<Loaned> & interfaces, const std::string & name)
{
  for (auto & itf : interfaces) {
    if (itf.get_name() == name) {
      return &itf;
    }
  }
  return nullptr;
}

}  // namespace

FrankaArm::FrankaArm(std::string arm_id)
: arm_id_(std::move(arm_id)),
  model_(std::make_unique<franka_semantic_components::FrankaRobotModel>(
    arm_id_ + "/robot_model", arm_id_ + "/robot_state"))
{
}

std::string FrankaArm::joint_interface(std::size_t joint, const char * kind) const
{
  return arm_id_ + "_joint" + std::to_string(joint + 1) + "/" + kind;
}

std::vector<std::string> FrankaArm::state_interface_names() const
{
  std::vector<std::string> names;
  for (std::size_t j = 0; j < kJoints; ++j) {
    names.push_back(joint_interface(j, "position"));
    names.push_back(joint_interface(j, "velocity"));
  }
  names.push_back(arm_id_ + "/robot_model");
  names.push_back(arm_id_ + "/robot_state");
  return names;
}

std::vector<std::string> FrankaArm::command_interface_names() const
{
  std::vector<std::string> names;
  for (std::size_t j = 0; j < kJoints; ++j) {
    names.push_back(joint_interface(j, "effort"));
  }
  return names;
}

bool FrankaArm::assign(
  std::vector<hardware_interface::LoanedStateInterface> & state_interfaces,
  std::vector<hardware_interface::LoanedCommandInterface> & command_interfaces, std::string * error)
{
  for (std::size_t j = 0; j < kJoints; ++j) {
    position_[j] = find_interface(state_interfaces, joint_interface(j, "position"));
    velocity_[j] = find_interface(state_interfaces, joint_interface(j, "velocity"));
    effort_[j] = find_interface(command_interfaces, joint_interface(j, "effort"));
    if (position_[j] == nullptr || velocity_[j] == nullptr || effort_[j] == nullptr) {
      *error = "arm '" + arm_id_ + "': joint " + std::to_string(j + 1) +
               " lacks a position/velocity state or effort command interface; check 'arms' against the "
               "franka_ros2 hardware (interfaces are named <arm>_joint<i>/<kind>)";
      return false;
    }
  }
  if (!model_->assign_loaned_state_interfaces(state_interfaces)) {
    *error = "arm '" + arm_id_ + "': no " + arm_id_ + "/robot_model and " + arm_id_ +
             "/robot_state state interfaces; is franka_hardware running for this arm?";
    return false;
  }
  try {  // the model binds to the hardware on first use; do it here, not in update()
    (void)model_->getPoseMatrix(franka::Frame::kEndEffector);
  } catch (const std::exception & e) {
    *error = "arm '" + arm_id_ + "': franka robot model unavailable: " + e.what();
    return false;
  }
  return true;
}

void FrankaArm::release()
{
  model_->release_interfaces();
  position_.fill(nullptr);
  velocity_.fill(nullptr);
  effort_.fill(nullptr);
}

bool FrankaArm::read(State * s)
{
  if (position_[0] == nullptr) {
    return false;  // not assigned
  }
  for (std::size_t j = 0; j < kJoints; ++j) {
    const auto q = position_[j]->get_optional();
    const auto dq = velocity_[j]->get_optional();
    if (!q || !dq) {
      return false;  // the hardware is writing this very moment: try again next tick
    }
    s->q[j] = *q;
    s->dq[j] = *dq;
  }
  try {
    s->coriolis = model_->getCoriolisForceVector();
    s->jacobian = model_->getZeroJacobian(franka::Frame::kEndEffector);
    s->ee_pose = law::pose_from_column_major(model_->getPoseMatrix(franka::Frame::kEndEffector));
  } catch (const std::exception &) {
    return false;
  }
  s->ee_twist = law::jacobian_times<kJoints>(s->jacobian, s->dq);
  for (std::size_t j = 0; j < kJoints; ++j) {
    if (!std::isfinite(s->q[j]) || !std::isfinite(s->dq[j]) || !std::isfinite(s->coriolis[j])) {
      return false;
    }
  }
  return law::is_finite(s->ee_twist) && law::is_finite(s->ee_pose.position) && law::is_finite(s->ee_pose.orientation);
}

bool FrankaArm::write(const Joints & tau)
{
  bool ok = true;
  for (std::size_t j = 0; j < kJoints; ++j) {
    if (effort_[j] == nullptr) {  // not assigned (activation failed) or already released
      return false;
    }
    ok = effort_[j]->set_value(tau[j]) && ok;
  }
  return ok;
}

}  // namespace hilserl_controllers
