"""Test-session set-up shared by every test directory.

ROS tests talk over DDS on loopback only, and every pytest process gets its own
ROS_DOMAIN_ID so that parallel or repeated runs on one machine never see each
other's nodes.
"""

import os

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
if "HILSERL_TEST_KEEP_DOMAIN" not in os.environ:
    # Fast DDS maps domain ids to UDP ports; 1..100 stays inside the safe range.
    os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

try:  # keep torch from oversubscribing the 2-core CI machine
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
except ImportError:  # pragma: no cover - torch is in requirements.txt
    pass


def pytest_report_header(config):
    """Which CPU ran the suite and which precisions its "auto" settings took (README, "Testing"):
    what a learning check measured depends on them."""
    try:
        from hilserl_core.accel import native, precision
        from hilserl_core.vision import encoders
    except ImportError as exc:  # before scripts/setup.sh
        return [f"hilserl: not importable ({exc})"]
    info = precision.cpu_info()
    flags = sorted(precision.cpu_flags() & {"avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni", "avx_vnni"})
    forced = {k: os.environ[k] for k in (precision.FORCE_COMPUTE_DTYPE, encoders.FORCE_ENCODER_DTYPE, "HILSERL_NATIVE",
                                          "HILSERL_INT8_OPERATOR", "ONEDNN_MAX_CPU_ISA") if os.environ.get(k)}
    return [
        f"hilserl cpu: {info.get('model name', '?')} (family {info.get('cpu family', '?')}, model {info.get('model', '?')}); "
        f"bf16/int8 flags: {' '.join(flags) or 'none'}",
        f"hilserl precision: matrix products auto -> {str(precision.resolve_compute_dtype('auto')).replace('torch.', '')}, "
        f"encoder auto -> {encoders.resolve_encoder_dtype('auto')}",
        f"hilserl {native.status()}; {native.encoder_op_status()}",
        f"hilserl forced: {' '.join(f'{k}={v}' for k, v in forced.items()) or 'nothing (this host decides)'}",
    ]
