"""QoS profiles, one per kind of traffic, so publishers and subscribers always match."""

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

# Camera and robot-state streams: a best-effort subscriber matches both best-effort
# drivers (most cameras) and reliable publishers. Only the newest sample matters, so
# depth 1: a node that falls behind for a moment drops old frames instead of working
# through a queue of them (depth 5 turned a brief stall into ~300 ms of added latency).
SENSOR = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST)

# Controller targets and operator input: reliable, newest wins.
COMMAND = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)

# Transitions actor -> learner: reliable with a deep queue; nothing may be dropped
# silently (interventions are the most valuable data). Senders number them so the
# learner can report gaps.
TRANSITIONS = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)

# Acknowledgements learner -> actors: state (the newest says all), sent periodically.
ACKS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)

# Policy weights learner -> actor: reliable, transient-local, so a late-joining or
# restarted actor gets the newest weights at once.
LATCHED = QoSProfile(
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    history=HistoryPolicy.KEEP_LAST,
)

# Episode metrics, reward events, mux source: reliable, modest history.
EVENTS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
