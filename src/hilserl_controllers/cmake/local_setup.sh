# Installed by hilserl_controllers when it is built without ament_cmake (pip-only workspace): colcon's
# setup scripts source share/<package>/local_setup.*, which ament_package() would have generated. This
# does the one thing those hooks do that matters here: put the install prefix on AMENT_PREFIX_PATH.
if [ -n "${COLCON_CURRENT_PREFIX:-}" ]; then
  case ":${AMENT_PREFIX_PATH:-}:" in
    *":$COLCON_CURRENT_PREFIX:"*) ;;
    *) export AMENT_PREFIX_PATH="$COLCON_CURRENT_PREFIX${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;;
  esac
fi
