"""Rollout videos: ``simrl eval --video``, ``simrl deploy --video`` and ``simrl logs video``
(MuJoCo offscreen rendering through EGL, MP4s written and read back with OpenCV)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

import envs
from envs.render import QposMap, VideoConfig, render_log, visual_model
from simrl.cli import main
from simrl.core.logs import LogWriter, read_log
from test_export import trained_like_checkpoint

REPO = Path(__file__).resolve().parents[1]


def read_video(path: Path) -> np.ndarray:
    """Every frame of an MP4 as (frames, height, width, 3) BGR."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"OpenCV cannot open {path}"
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return np.stack(frames)


@pytest.fixture(scope="module")
def go1_log(go1_ckpt, tmp_path_factory) -> Path:
    """A lockstep deploy run of 1 s with ``--video`` at one frame per control step."""
    out = tmp_path_factory.mktemp("deploy")
    code = main(["deploy", "--checkpoint", go1_ckpt, "--lockstep", "--duration", "1.0", "--soft-start", "0.2",
                 "--log", str(out / "run.mcap"), "--video", str(out / "run.mp4"), "--video-fps", "50",
                 "--no-end-on-termination"])
    assert code == 0
    return out / "run.mcap"


def test_eval_video_writes_readable_mp4s(tmp_path):
    ckpt = trained_like_checkpoint(tmp_path / "c", "go1-velocity", out_gain=0.2)
    code = main(["eval", "--checkpoint", ckpt, "--episodes", "1", "--task.max-episode-steps", "41",
                 "--video", str(tmp_path / "videos"), "--video-episodes", "2", "--video-seconds", "2",
                 "--video-width", "160", "--video-height", "120", "--json", str(tmp_path / "r.json")])
    assert code == 0
    videos = json.loads((tmp_path / "r.json").read_text())["videos"]
    assert [Path(v["path"]).name for v in videos] == ["c-0.mp4", "c-1.mp4"]
    firsts = []
    for v in videos:
        # 41 steps (the episode's end), a frame every 2 steps (25 fps at 50 Hz) + the start + the end
        assert v["steps"] == 41 and v["fps"] == pytest.approx(25.0) and v["success"] is not None
        frames = read_video(Path(v["path"]))
        assert frames.shape == (1 + 41 // 2 + 1, 120, 160, 3) == (v["frames"], 120, 160, 3)
        assert frames.std() > 10  # a scene, not a blank image
        assert np.abs(frames[-1].astype(int) - frames[0].astype(int)).mean() > 1  # it moves
        firsts.append(frames[0])
    assert np.abs(firsts[0].astype(int) - firsts[1].astype(int)).mean() > 0.5  # other seeds: other episodes


def test_videos_render_the_visual_meshes_training_drops():
    task = envs.make_task("go1-velocity")
    full = visual_model(task)
    assert full.nq == task.model.nq and full.ngeom > task.model.ngeom


def test_deploy_video_has_a_frame_per_logged_step(go1_log):
    log = read_log(go1_log)
    frames = read_video(go1_log.with_suffix(".mp4"))
    assert len(log) == 50 and frames.shape == (50, 240, 320, 3)
    # the soft start (10 steps) is a safety flag drawn in red; the policy steps after it are not
    red = lambda f: np.count_nonzero(f[..., 2].astype(int) - f[..., :2].max(axis=-1) > 60)  # noqa: E731
    assert log.safety["soft_start"][:10].all() and not log.safety["soft_start"][10:].any()
    assert red(frames[5]) > 100 and red(frames[30]) < 10
    # at 10 fps: a frame every 5 control steps
    assert main(["logs", "video", str(go1_log), "--out", str(go1_log.with_name("slow.mp4")), "--fps", "10"]) == 0
    assert read_video(go1_log.with_name("slow.mp4")).shape[0] == 10
    with pytest.raises(FileExistsError, match="slow.mp4"):
        from simrl.cli.logs import render_video
        render_video(str(go1_log), str(go1_log.with_name("slow.mp4")))


def test_logged_state_is_put_back_into_qpos(go1_log):
    log = read_log(go1_log)
    qmap = QposMap.probe(envs.make_task("go1-velocity"))
    for t in (0, 25, 49):
        q = qmap.qpos(log.state, t)
        np.testing.assert_array_equal(q[0:3], log.state["base_pos"][t])
        np.testing.assert_array_equal(q[3:7], log.state["base_quat"][t])
        np.testing.assert_array_equal(q[7:19], log.state["joint_pos"][t])
    assert not qmap.base_fixed(log.state) and qmap.missing(log.state) == []


def test_log_without_base_pos_renders_with_the_base_fixed_and_says_so(go1_log, tmp_path, capsys):
    log = read_log(go1_log)
    cut = tmp_path / "no_base.mcap"
    with LogWriter(cut, log.meta) as w:
        for t in range(len(log)):
            state = {k: v[t] for k, v in log.state.items() if k != "base_pos"}
            w.write(log.t[t], int(log.step[t]), state, log.obs[t], log.action[t],
                    {k: (bool(v[t]) if v.dtype == bool else int(v[t])) for k, v in log.safety.items()})
    assert main(["logs", "video", str(cut), "--out", str(tmp_path / "no_base.mp4"), "--fps", "50"]) == 0
    assert "base fixed: log has no base_pos" in capsys.readouterr().out
    result = render_log(read_log(cut), tmp_path / "api.mp4", VideoConfig(160, 120, 50))
    assert result.notes == ["base fixed: log has no base_pos"] and result.frames == len(log)
    # the note is a line of text the full log's frames do not have
    with_base = read_video(go1_log.with_suffix(".mp4"))[40]
    without = read_video(tmp_path / "no_base.mp4")[40]
    band = slice(75, 95)  # the line below "return"
    bright = lambda f: np.count_nonzero(f[band, :200].min(axis=-1) > 230)  # noqa: E731
    assert bright(without) > bright(with_base) + 30


def test_rendering_stays_out_of_the_control_loop(tmp_path):
    """A real-time run with --video: the runtime never loads the renderer, the log is complete
    and closed before the video is written, and the loop kept its period."""
    ckpt = trained_like_checkpoint(tmp_path / "c")
    script = textwrap.dedent(f"""
        import sys
        import deploy
        from policies.export import export
        export({ckpt!r})
        deploy.run({ckpt!r}, "mujoco", 0.3, {str(tmp_path / 'api.mcap')!r},
                   config=deploy.RuntimeConfig(realtime=True, end_on_termination=False))
        assert "envs.render" not in sys.modules and "cv2" not in sys.modules, "renderer loaded by the runtime"
        from simrl.cli import main
        sys.exit(main(["deploy", "--checkpoint", {ckpt!r}, "--duration", "0.5", "--log",
                       {str(tmp_path / 'cli.mcap')!r}, "--video", {str(tmp_path / 'cli.mp4')!r},
                       "--no-end-on-termination"]))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, cwd=REPO)
    assert out.returncode == 0, out.stderr
    log = read_log(tmp_path / "cli.mcap")
    assert not log.truncated and log.end  # closed, with its closing record, before rendering
    assert (tmp_path / "cli.mp4").stat().st_mtime >= (tmp_path / "cli.mcap").stat().st_mtime
    period = np.median(np.diff(log.t))
    assert period == pytest.approx(log.meta.control_period, rel=0.2)
    assert f"wrote {tmp_path / 'cli.mp4'}" in out.stdout
