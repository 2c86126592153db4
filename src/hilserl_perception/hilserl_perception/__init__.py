"""hilserl_perception: camera crop/resize node."""
