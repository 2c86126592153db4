// ros2_control plumbing shared by the controllers; see franka_arm.hpp.
#include "hilserl_controllers/franka_arm.hpp"

#include <chrono>
#include <exception>
#include <functional>
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

// --------------------------------------------------------------------------- FrankaArm

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

bool FrankaArm::activate(
  std::vector<hardware_interface::LoanedStateInterface> & state_interfaces,
  std::vector<hardware_interface::LoanedCommandInterface> & command_interfaces, State * initial, std::string * error)
{
  if (!assign(state_interfaces, command_interfaces, error)) {
    return false;
  }
  const char * why = read(initial);
  if (why != nullptr) {
    *error = "arm '" + arm_id_ + "': cannot read the robot state at activation: " + why;
    return false;
  }
  posture_ = initial->q;
  tau_previous_.fill(0.0);
  consecutive_missed_ = 0;
  missed_total_ = 0;
  last_miss_ = "";
  return true;
}

void FrankaArm::deactivate()
{
  (void)write(Joints{});
  model_->release_interfaces();
  position_.fill(nullptr);
  velocity_.fill(nullptr);
  effort_.fill(nullptr);
}

const char * FrankaArm::read(State * s)
{
  if (position_[0] == nullptr) {
    return "interfaces not assigned";
  }
  for (std::size_t j = 0; j < kJoints; ++j) {
    // get_optional() fails when the hardware holds the handle this very moment (it
    // retries a few times first): a momentary miss, the next tick normally succeeds.
    const auto q = position_[j]->get_optional();
    const auto dq = velocity_[j]->get_optional();
    if (!q || !dq) {
      return "joint position/velocity state busy";
    }
    s->q[j] = *q;
    s->dq[j] = *dq;
  }
  try {
    s->coriolis = model_->getCoriolisForceVector();
    s->jacobian = model_->getZeroJacobian(franka::Frame::kEndEffector);
    s->ee_pose = law::pose_from_column_major(model_->getPoseMatrix(franka::Frame::kEndEffector));
  } catch (const std::exception &) {
    return "franka robot model unreadable";
  }
  s->ee_twist = law::jacobian_times<kJoints>(s->jacobian, s->dq);
  for (std::size_t j = 0; j < kJoints; ++j) {
    if (!std::isfinite(s->q[j]) || !std::isfinite(s->dq[j]) || !std::isfinite(s->coriolis[j])) {
      return "non-finite joint state or Coriolis";
    }
  }
  if (!law::is_finite(s->ee_twist) || !law::is_finite(s->ee_pose.position) ||
      !law::is_finite(s->ee_pose.orientation))
  {
    return "non-finite end-effector pose or Jacobian";
  }
  return nullptr;
}

bool FrankaArm::write(const Joints & tau)
{
  bool ok = true;
  for (std::size_t j = 0; j < kJoints; ++j) {
    if (effort_[j] == nullptr) {  // not assigned (activation failed) or already released
      return false;
    }
    if (effort_[j]->set_value(tau[j])) {
      tau_previous_[j] = tau[j];
    } else {
      ok = false;  // the interface keeps its previous value, and so does tau_previous_[j]
    }
  }
  return ok;
}

FrankaArm::Tick FrankaArm::missed(const char * why)
{
  ++consecutive_missed_;
  ++missed_total_;
  last_miss_ = why;
  return consecutive_missed_ > max_missed_ ? Tick::fault : Tick::skip;
}

FrankaArm::Tick FrankaArm::begin_tick(State * state)
{
  const char * why = read(state);
  return why == nullptr ? Tick::ok : missed(why);
}

FrankaArm::Tick FrankaArm::finish_tick(
  const State & s, const law::Result<law::Vec6> & wrench_base, const JointSpaceGains & g)
{
  Joints tau{};
  if (wrench_base.ok()) {
    tau = law::jacobian_transpose_times<kJoints>(s.jacobian, wrench_base.value);
  }
  const law::Result<Joints> posture = law::nullspace_torque<kJoints>(
    s.jacobian, s.q, s.dq, posture_, g.nullspace_stiffness_nm_per_rad, g.nullspace_damping_nms_per_rad,
    g.nullspace_pinv_damping);
  for (std::size_t j = 0; j < kJoints; ++j) {
    tau[j] += (posture.ok() ? posture.value[j] : 0.0) + (g.compensate_coriolis ? s.coriolis[j] : 0.0);
  }
  tau = law::saturate_torque_rate<kJoints>(tau, tau_previous_, g.max_torque_step_nm);
  if (!write(tau)) {
    return missed("effort command interface busy");
  }
  consecutive_missed_ = 0;
  return Tick::ok;
}

bool handle_tick(
  rclcpp_lifecycle::LifecycleNode & node, const FrankaArm & arm, FrankaArm::Tick tick,
  controller_interface::return_type * result)
{
  switch (tick) {
    case FrankaArm::Tick::ok:
      return true;
    case FrankaArm::Tick::skip:
      // franka_ros2 (jazzy) itself: its FR3 Duo example controllers warn on a failed
      // get_optional(), keep the previous joint values and return OK (its single-arm
      // examples call get_optional().value(), which throws on a miss). Returning ERROR
      // would make the controller manager deactivate this controller (and switch to
      // fallbacks) over one busy tick. Here nothing new is written for this arm this
      // tick: its effort interfaces keep the last torques, for at most
      // max_consecutive_missed_ticks ticks.
      RCLCPP_WARN_THROTTLE(
        node.get_logger(), *node.get_clock(), 1000,
        "arm '%s': tick skipped (%s), keeping the last torques; %zu in a row, %zu in all", arm.arm_id().c_str(),
        arm.last_miss(), arm.consecutive_missed_ticks(), arm.missed_ticks());
      return false;
    case FrankaArm::Tick::fault:
      RCLCPP_ERROR_THROTTLE(
        node.get_logger(), *node.get_clock(), 1000,
        "arm '%s': %zu ticks in a row missed (%s), more than max_consecutive_missed_ticks", arm.arm_id().c_str(),
        arm.consecutive_missed_ticks(), arm.last_miss());
      *result = controller_interface::return_type::ERROR;
      return false;
  }
  return false;
}

// --------------------------------------------------------------------------- PublisherGuard

void PublisherGuard::watch(
  rclcpp_lifecycle::LifecycleNode & node, rclcpp::SubscriptionBase::SharedPtr subscription, const std::string & arm_id,
  const char * what)
{
  {
    std::lock_guard<std::mutex> lock(mutex_);
    arm_id_ = arm_id;
    what_ = what;
    logger_ = node.get_logger();
    graph_ = node.get_node_graph_interface();
    subscription_ = std::move(subscription);
  }
  timer_ = node.create_wall_timer(std::chrono::milliseconds(100), [this]() { (void)check(false); });
}

std::string PublisherGuard::publisher_names() const
{
  std::string out;
  for (const auto & info : graph_->get_publishers_info_by_topic(subscription_->get_topic_name())) {
    std::string ns = info.node_namespace();
    if (ns.empty() || ns.back() != '/') {
      ns += '/';
    }
    out += (out.empty() ? "" : ", ") + ns + info.node_name();
  }
  return out.empty() ? std::string("unnamed nodes") : out;
}

bool PublisherGuard::check(bool message)
{
  std::lock_guard<std::mutex> lock(mutex_);
  if (!subscription_) {
    return true;  // not watching yet (a message during on_configure(); nothing is applied before activation)
  }
  const std::size_t n = subscription_->get_publisher_count();
  switch (guard_.observe(n)) {
    case law::SinglePublisherGuard::Event::conflict:
      conflict_.store(true, std::memory_order_release);
      RCLCPP_ERROR(
        logger_,
        "arm '%s': %zu publishers on %s (%s): only the intervention mux may publish there; holding the arm where it "
        "is and dropping every %s until one is left",
        arm_id_.c_str(), n, subscription_->get_topic_name(), publisher_names().c_str(), what_.c_str());
      break;
    case law::SinglePublisherGuard::Event::clear:
      conflict_.store(false, std::memory_order_release);
      RCLCPP_INFO(
        logger_, "arm '%s': %s has %zu publisher(s) again (%zu messages dropped in all): following the next %s",
        arm_id_.c_str(), subscription_->get_topic_name(), n, guard_.dropped(), what_.c_str());
      break;
    case law::SinglePublisherGuard::Event::none:
      break;
  }
  return message ? guard_.accept() : !guard_.conflict();
}

// --------------------------------------------------------------------------- PoseInput

void PoseInput::subscribe(
  rclcpp_lifecycle::LifecycleNode & node, const std::string & topic, const std::string & arm_id,
  const std::string & base_frame_id, const char * what)
{
  // Set before the subscription exists: the callback reads them from another thread.
  arm_id_ = arm_id;
  base_frame_id_ = base_frame_id;
  what_ = what;
  logger_ = node.get_logger();
  clock_ = node.get_clock();
  subscription_ = node.create_subscription<Msg>(
    topic, command_qos(), [this](const Msg::SharedPtr msg) { on_message(msg); });
  guard_.watch(node, subscription_, arm_id, what);
}

void PoseInput::on_message(const Msg::SharedPtr & msg)
{
  if (!guard_.check_message()) {
    return;  // another publisher on this topic: dropped (and logged by the guard)
  }
  // Non-real-time side: reject what the law would reject, so update() only sees usable poses.
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
    const std::size_t n = ++rejected_;
    RCLCPP_WARN_THROTTLE(
      logger_, *clock_, 1000, "arm '%s': %s rejected (%s; frame_id '%s'), holding the last one; %zu rejected so far",
      arm_id_.c_str(), what_.c_str(), why, msg->header.frame_id.c_str(), n);
    return;
  }
  latest_.writeFromNonRT(msg);
}

void PoseInput::reset()
{
  latest_.initRT(std::shared_ptr<Msg>());
  taken_.reset();
}

bool PoseInput::take(law::Pose * pose)
{
  const std::shared_ptr<Msg> * latest = latest_.readFromRT();
  if (latest == nullptr || !*latest || *latest == taken_) {
    return false;
  }
  taken_ = *latest;
  const auto & m = taken_->pose;
  *pose = {{m.position.x, m.position.y, m.position.z},
           {m.orientation.x, m.orientation.y, m.orientation.z, m.orientation.w}};
  return true;
}

std::string PoseInput::topic_name() const
{
  return subscription_ ? std::string(subscription_->get_topic_name()) : std::string();
}

}  // namespace hilserl_controllers
