"""hilserl_policy: the actor node."""
