"""hilserl_learner: the learner node."""
