"""The arm: SE(3) and egocentric frames, control laws, the intervention mux, the SpaceMouse and the
actor's episode bookkeeping.
"""
