"""Dropout world models (Dropout's Dream Land): learn a simulator from transitions or real logs,
train policies in its dreams, measure how they do in the real task.

>>> from simrl.dream import collect, fit, DreamEnv, DreamConfig
>>> data = collect("hopper", 50_000, "random")                 # or from_logs("logs/")
>>> model = fit(data)                                           # MLP with explicit dropout masks
>>> env = DreamEnv(model, 256, device="cpu", cfg=DreamConfig(mode="episode"))
>>> obs = env.reset(); obs, reward, terminated, truncated, info = env.step(actions)
>>> model.disagreement(obs_np, action_np)                      # per-step OOD score
"""

from simrl.dream.data import Transitions, collect, from_logs, load_data
from simrl.dream.dynamics import MODES, MaskedDynamics
from simrl.dream.env import DreamConfig, DreamEnv
from simrl.dream.fit import FitConfig, fit
from simrl.dream.masks import DropoutMasks
from simrl.dream.model import Prediction, WorldModel, WorldModelConfig

__all__ = ["Transitions", "collect", "from_logs", "load_data", "MODES", "MaskedDynamics",
           "DreamConfig", "DreamEnv", "FitConfig", "fit", "DropoutMasks", "Prediction",
           "WorldModel", "WorldModelConfig"]
