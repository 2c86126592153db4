"""hilserl_reward: the reward-classifier node."""
