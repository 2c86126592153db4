"""What crosses files and wires: typed config, transition types, safetensors files, wire payloads
and ROS message fields as numpy.
"""
