#!/usr/bin/env bash
# The learning stack's Python packages, the same way in both images:
#   install_python_deps.sh REQUIREMENTS TORCH_VERSION TORCH_INDEX_URL
# torch comes from the PyTorch wheel index given (…/whl/cpu on the robot PC, …/whl/cu130 on the
# learner host), everything else from requirements.txt. The ROS wheels, colcon and setuptools pins
# there are for the pip-only setup (scripts/setup.sh); apt provides them on a full ROS install.
# --ignore-installed: pip cannot uninstall apt's Python packages (no RECORD file), so newer
# versions go to /usr/local beside them and shadow them.
set -euo pipefail
requirements=$1 torch_version=$2 torch_index_url=$3
pip=(pip3 install --break-system-packages --no-cache-dir --ignore-installed)

"${pip[@]}" --index-url "$torch_index_url" "torch==${torch_version}"
grep -vE '^(torch|setuptools)([=<>!~ ]|$)|^(ros-|colcon-|catkin-pkg|empy|lark)' "$requirements" > /tmp/requirements-image.txt
"${pip[@]}" -r /tmp/requirements-image.txt

# The torch that ended up installed is the one asked for: version, and CPU or CUDA build by the index.
python3 - "$torch_version" "$torch_index_url" <<'PY'
import sys
import torch
want, index = sys.argv[1], sys.argv[2].rstrip("/")
have = torch.__version__.split("+")[0]
if have != want:
    sys.exit(f"torch {torch.__version__} installed, {want} wanted (requirements.txt)")
cpu_index = index.endswith("/cpu")
if cpu_index != (torch.version.cuda is None):
    sys.exit(f"torch {torch.__version__} (CUDA {torch.version.cuda}) does not match the index {index}")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda or 'none'}")
PY
