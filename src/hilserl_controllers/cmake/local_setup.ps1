# Installed by hilserl_controllers when it is built without ament_cmake; see local_setup.sh.
