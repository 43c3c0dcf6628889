"""What runs on the robot computer: the fixed-rate runtime, its safety layer, robot back-ends and the log recorder (numpy, mujoco and onnxruntime; no torch)."""
