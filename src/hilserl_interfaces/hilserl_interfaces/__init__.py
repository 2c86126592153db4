"""hilserl_interfaces: how hilserl nodes talk to each other, over standard messages.

The project defines no custom .msg types (see docs/DESIGN.md): this package holds
what would otherwise be spread over every node: topic names, QoS profiles, the
safetensors payload carried in std_msgs/UInt8MultiArray, parameter declaration
from hilserl_core.formats.config schemas, and diagnostics.
"""
