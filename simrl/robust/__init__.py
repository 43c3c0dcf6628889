"""Robust training: residual RL on frozen base controllers, an adversarial disturber under an
H-infinity constraint, and teacher-student distillation."""
