// Checks control_law against the golden vectors of hilserl_core/robot/control.py.
//
//   golden_test CASES.txt
//
// CASES.txt is control_golden.json rewritten by golden_to_flat.py (format in its
// docstring). Prints PASS/FAIL per case, per-function counts, and a closing
// "N passed, N failed" line; exits 0 only when every case passed and there was
// at least one. Numbers match when |got - expected| <= atol * max(1, |expected|);
// quaternions match up to sign (q and -q are one rotation).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "hilserl_controllers/control_law.hpp"

namespace law = hilserl_controllers::law;

namespace
{

struct Event
{
  bool is_command = false;
  double time_s = 0.0;         // stamp_s of a command, now_s of an output
  bool has_now = false;        // command only: offered at controller time now_s (command_at)
  double now_s = 0.0;
  std::vector<double> wrench;  // command only
};

struct ExpectedResult
{
  bool is_command = false;
  bool accepted = false;
  std::string reason;          // "" when accepted
  std::vector<double> wrench;  // output only
};

struct Case
{
  std::string name;
  std::string function;
  std::map<std::string, std::vector<double>> in;
  std::map<std::string, std::vector<double>> expect;
  std::string expected_error;
  std::vector<Event> events;
  std::vector<ExpectedResult> results;
};

[[noreturn]] void die(const std::string & why)
{
  std::cerr << "golden_test: " << why << "\n";
  std::exit(2);
}

double parse_number(const std::string & tok, const std::string & where)
{
  const char * begin = tok.c_str();
  char * end = nullptr;
  const double v = std::strtod(begin, &end);  // accepts nan, inf, -inf
  if (end == begin || *end != '\0') {
    die("bad number '" + tok + "' in " + where);
  }
  return v;
}

std::vector<double> parse_values(std::istringstream & ss, const std::string & where)
{
  std::size_t n = 0;
  if (!(ss >> n)) {
    die("missing count in " + where);
  }
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    std::string tok;
    if (!(ss >> tok)) {
      die("expected " + std::to_string(n) + " numbers in " + where);
    }
    v[i] = parse_number(tok, where);
  }
  return v;
}

std::vector<Case> read_cases(const std::string & path, double * atol)
{
  std::ifstream f(path);
  if (!f) {
    die("cannot open " + path);
  }
  std::vector<Case> cases;
  Case * cur = nullptr;
  std::string line;
  int lineno = 0;
  bool header = false;
  while (std::getline(f, line)) {
    ++lineno;
    std::istringstream ss(line);
    std::string kind;
    if (!(ss >> kind)) {
      continue;
    }
    const std::string where = path + ":" + std::to_string(lineno);
    if (kind == "hilserl_control_golden") {
      int version = 0;
      ss >> version;
      if (version != 2) {
        die("unsupported format version at " + where);
      }
      header = true;
    } else if (kind == "atol") {
      std::string tok;
      ss >> tok;
      *atol = parse_number(tok, where);
    } else if (kind == "case") {
      cases.emplace_back();
      cur = &cases.back();
      ss >> cur->name >> cur->function;
    } else if (cur == nullptr) {
      die("record before any case at " + where);
    } else if (kind == "in" || kind == "expect") {
      std::string key;
      ss >> key;
      if (kind == "expect" && key == "error") {
        ss >> cur->expected_error;
      } else {
        (kind == "in" ? cur->in : cur->expect)[key] = parse_values(ss, where);
      }
    } else if (kind == "event") {
      Event ev;
      std::string op, tok;
      ss >> op >> tok;
      ev.time_s = parse_number(tok, where);
      if (op == "command" || op == "command_at") {
        ev.is_command = true;
        if (op == "command_at") {
          std::string now_tok;
          ss >> now_tok;
          ev.has_now = true;
          ev.now_s = parse_number(now_tok, where);
        }
        ev.wrench = parse_values(ss, where);
      } else if (op != "output") {
        die("unknown event '" + op + "' at " + where);
      }
      cur->events.push_back(ev);
    } else if (kind == "result") {
      ExpectedResult r;
      std::string what;
      ss >> what;
      if (what == "accepted") {
        int acc = 0;
        ss >> acc >> r.reason;
        r.is_command = true;
        r.accepted = acc != 0;
        if (r.reason == "-") {
          r.reason.clear();
        }
      } else if (what == "wrench") {
        r.wrench = parse_values(ss, where);
      } else {
        die("unknown result '" + what + "' at " + where);
      }
      cur->results.push_back(r);
    } else if (kind == "end") {
      cur = nullptr;
    } else {
      die("unknown record '" + kind + "' at " + where);
    }
  }
  if (!header) {
    die(path + " is not a hilserl_control_golden file");
  }
  return cases;
}

// ---------------------------------------------------------------- input helpers (throw on a malformed case)

struct CaseError
{
  std::string what;
};

const std::vector<double> & need(const std::map<std::string, std::vector<double>> & m, const std::string & key,
                                 std::size_t n)
{
  auto it = m.find(key);
  if (it == m.end()) {
    throw CaseError{"missing '" + key + "'"};
  }
  if (it->second.size() != n) {
    throw CaseError{"'" + key + "' has " + std::to_string(it->second.size()) + " numbers, want " + std::to_string(n)};
  }
  return it->second;
}

double scalar(const Case & c, const std::string & key) { return need(c.in, key, 1)[0]; }
law::Vec3 vec3(const Case & c, const std::string & key)
{
  const auto & v = need(c.in, key, 3);
  return {v[0], v[1], v[2]};
}
law::Quat quat(const Case & c, const std::string & key)
{
  const auto & v = need(c.in, key, 4);
  return {v[0], v[1], v[2], v[3]};
}
law::Vec6 vec6(const std::vector<double> & v)
{
  if (v.size() != 6) {
    throw CaseError{"want 6 numbers, got " + std::to_string(v.size())};
  }
  return {v[0], v[1], v[2], v[3], v[4], v[5]};
}

// ---------------------------------------------------------------- comparisons

double g_atol = 1e-9;

bool close(double got, double want) { return std::fabs(got - want) <= g_atol * std::max(1.0, std::fabs(want)); }

std::string numbers(const std::vector<double> & v)
{
  std::ostringstream s;
  s.precision(17);
  s << "[";
  for (std::size_t i = 0; i < v.size(); ++i) {
    s << (i ? ", " : "") << v[i];
  }
  s << "]";
  return s.str();
}

// Empty when every number matches, else a description.
std::string compare(const std::string & what, const std::vector<double> & got, const std::vector<double> & want)
{
  bool ok = got.size() == want.size();
  for (std::size_t i = 0; ok && i < got.size(); ++i) {
    ok = close(got[i], want[i]);
  }
  return ok ? "" : what + " got " + numbers(got) + " want " + numbers(want);
}

std::string compare_quat(const law::Quat & q, const std::vector<double> & want)
{
  const std::vector<double> got{q.x, q.y, q.z, q.w};
  const std::vector<double> neg{-q.x, -q.y, -q.z, -q.w};
  if (compare("quat", got, want).empty() || compare("quat", neg, want).empty()) {
    return "";
  }
  return compare("quat (up to sign)", got, want);
}

std::string compare_pose(const Case & c, const law::Pose & p)
{
  std::string e = compare("pos", {p.position.x, p.position.y, p.position.z}, need(c.expect, "pos", 3));
  return e.empty() ? compare_quat(p.orientation, need(c.expect, "quat", 4)) : e;
}

std::vector<double> vec(const law::Vec6 & v) { return {v.begin(), v.end()}; }

// ---------------------------------------------------------------- one function per golden function

std::string check_limit_reference(const Case & c)
{
  const law::Pose target{vec3(c, "target_pos"), quat(c, "target_quat")};
  const law::Pose measured{vec3(c, "measured_pos"), quat(c, "measured_quat")};
  const auto r = law::limit_reference(target, measured, scalar(c, "limit_m"), scalar(c, "limit_rad"));
  if (!r) {
    return std::string("rejected: ") + law::status_name(r.status);
  }
  return compare_pose(c, r.value);
}

law::ImpedanceParams impedance_params(const Case & c)
{
  law::ImpedanceParams p;
  p.translational_stiffness_n_per_m = vec3(c, "params.translational_stiffness_n_per_m");
  p.rotational_stiffness_nm_per_rad = vec3(c, "params.rotational_stiffness_nm_per_rad");
  p.translational_damping_ns_per_m = vec3(c, "params.translational_damping_ns_per_m");
  p.rotational_damping_nms_per_rad = vec3(c, "params.rotational_damping_nms_per_rad");
  p.reference_limit_m = scalar(c, "params.reference_limit_m");
  p.reference_limit_rad = scalar(c, "params.reference_limit_rad");
  const std::string invalid = p.validate();
  if (!invalid.empty()) {
    throw CaseError{"params rejected: " + invalid};
  }
  return p;
}

std::string check_impedance_wrench(const Case & c)
{
  const law::ImpedanceParams p = impedance_params(c);
  const law::Pose target{vec3(c, "target_pos"), quat(c, "target_quat")};
  const law::Pose measured{vec3(c, "measured_pos"), quat(c, "measured_quat")};
  const auto r = law::impedance_wrench(target, measured, vec6(need(c.in, "measured_twist_base", 6)), p);
  if (!r) {
    return std::string("rejected: ") + law::status_name(r.status);
  }
  return compare("wrench", vec(r.value), need(c.expect, "wrench", 6));
}

law::WrenchParams wrench_params(const Case & c)
{
  law::WrenchParams p;
  p.max_force_n = scalar(c, "params.max_force_n");
  p.max_torque_nm = scalar(c, "params.max_torque_nm");
  p.watchdog_timeout_s = scalar(c, "params.watchdog_timeout_s");
  p.max_future_stamp_s = scalar(c, "params.max_future_stamp_s");
  const std::string invalid = p.validate();
  if (!invalid.empty()) {
    throw CaseError{"params rejected: " + invalid};
  }
  return p;
}

std::string check_clamp_wrench(const Case & c)
{
  const auto r = law::clamp_wrench(vec6(need(c.in, "wrench", 6)), wrench_params(c));
  if (!r) {
    return std::string("rejected: ") + law::status_name(r.status);
  }
  return compare("wrench", vec(r.value), need(c.expect, "wrench", 6));
}

std::string check_wrench_watchdog(const Case & c)
{
  law::WrenchWatchdog dog(wrench_params(c));
  if (c.events.size() != c.results.size() || c.events.empty()) {
    return "case has " + std::to_string(c.events.size()) + " events but " + std::to_string(c.results.size()) +
           " results";
  }
  for (std::size_t i = 0; i < c.events.size(); ++i) {
    const Event & ev = c.events[i];
    const ExpectedResult & want = c.results[i];
    const std::string at = "event " + std::to_string(i) + ": ";
    if (ev.is_command != want.is_command) {
      return at + "event and result kinds differ";
    }
    if (ev.is_command) {
      const bool accepted = ev.has_now ? dog.command(ev.wrench.data(), ev.wrench.size(), ev.time_s, ev.now_s)
                                       : dog.command(ev.wrench.data(), ev.wrench.size(), ev.time_s);
      const std::string reason = accepted ? "" : law::rejection_code(dog.last_rejection());
      if (accepted != want.accepted || reason != want.reason) {
        return at + "command got accepted=" + std::to_string(accepted) + " reason='" + reason + "' want accepted=" +
               std::to_string(want.accepted) + " reason='" + want.reason + "'";
      }
    } else {
      const std::string e = compare("output", vec(dog.output(ev.time_s)), want.wrench);
      if (!e.empty()) {
        return at + e;
      }
    }
  }
  return "";
}

std::string check_wrench_mode_wrench(const Case & c)
{
  const law::ImpedanceParams p = impedance_params(c);
  const law::Pose anchor{vec3(c, "anchor_pos"), quat(c, "anchor_quat")};
  const law::Pose measured{vec3(c, "measured_pos"), quat(c, "measured_quat")};
  const auto r = law::wrench_mode_wrench(
    anchor, measured, vec6(need(c.in, "measured_twist_base", 6)), vec6(need(c.in, "wrench_ee", 6)), p);
  if (!c.expected_error.empty()) {
    if (r.ok()) {
      return "accepted inputs that must be rejected (" + c.expected_error + ")";
    }
    return law::status_name(r.status) == c.expected_error
             ? ""
             : std::string("rejected as ") + law::status_name(r.status) + ", want " + c.expected_error;
  }
  if (!r) {
    return std::string("rejected: ") + law::status_name(r.status);
  }
  return compare("wrench", vec(r.value), need(c.expect, "wrench", 6));
}

std::string check_integrate_twist_target(const Case & c)
{
  const law::Pose measured{vec3(c, "measured_pos"), quat(c, "measured_quat")};
  law::WorkspaceBox box;
  const law::WorkspaceBox * box_ptr = nullptr;
  if (c.in.count("box") == 0) {  // "in box 0" is box: null
    box.min_position_m = vec3(c, "box.min_position_m");
    box.max_position_m = vec3(c, "box.max_position_m");
    box.limit_orientation = c.in.count("box.orientation_reference_quat") > 0;
    if (box.limit_orientation) {
      box.orientation_reference = quat(c, "box.orientation_reference_quat");
      box.orientation_limit_rad = vec3(c, "box.orientation_limit_rad");
    }
    const std::string invalid = box.validate();
    if (!invalid.empty()) {
      return "box rejected: " + invalid;
    }
    box_ptr = &box;
  }
  const auto r = law::integrate_twist_target(
    measured, vec6(need(c.in, "action", 6)), scalar(c, "linear_step_m"), scalar(c, "angular_step_rad"), box_ptr);
  if (!c.expected_error.empty()) {
    if (r.ok()) {
      return "accepted a command that must be rejected (" + c.expected_error + ")";
    }
    return law::status_name(r.status) == c.expected_error
             ? ""
             : std::string("rejected as ") + law::status_name(r.status) + ", want " + c.expected_error;
  }
  if (!r) {
    return std::string("rejected: ") + law::status_name(r.status);
  }
  return compare_pose(c, r.value);
}

std::string check(const Case & c)
{
  try {
    if (c.function == "limit_reference") return check_limit_reference(c);
    if (c.function == "impedance_wrench") return check_impedance_wrench(c);
    if (c.function == "clamp_wrench") return check_clamp_wrench(c);
    if (c.function == "wrench_watchdog") return check_wrench_watchdog(c);
    if (c.function == "wrench_mode_wrench") return check_wrench_mode_wrench(c);
    if (c.function == "integrate_twist_target") return check_integrate_twist_target(c);
    return "unknown function '" + c.function + "'";
  } catch (const CaseError & e) {
    return "malformed case: " + e.what;
  }
}

}  // namespace

int main(int argc, char ** argv)
{
  if (argc != 2) {
    std::cerr << "usage: golden_test CASES.txt (made by golden_to_flat.py from control_golden.json)\n";
    return 2;
  }
  const std::vector<Case> cases = read_cases(argv[1], &g_atol);
  std::map<std::string, std::pair<int, int>> per_function;  // passed, failed
  int passed = 0, failed = 0;
  for (const Case & c : cases) {
    const std::string err = check(c);
    auto & counts = per_function[c.function];
    if (err.empty()) {
      ++passed;
      ++counts.first;
      std::cout << "PASS " << c.name << "\n";
    } else {
      ++failed;
      ++counts.second;
      std::cout << "FAIL " << c.name << " (" << c.function << "): " << err << "\n";
    }
  }
  std::cout << "atol " << g_atol << "\n";
  for (const auto & kv : per_function) {
    std::cout << "function " << kv.first << ": " << kv.second.first << " passed, " << kv.second.second
              << " failed\n";
  }
  std::cout << passed << " passed, " << failed << " failed\n";
  return (failed == 0 && passed > 0) ? 0 : 1;
}
