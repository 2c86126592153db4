"""The paper's learning algorithm: RLPD (SAC with a critic ensemble) and the grasp critic (Double DQN),
their networks, replay buffers, the learner's loop and the paper's metrics.
"""
