"""hilserl_teleop: SpaceMouse driver and the intervention mux."""
