"""The learner's device: the ``device`` parameter, batches moved to it, checkpoints that resume
on another device, and image storage (uint8 buffers, random shift and frozen encoder per batch)
built the way the node builds it. No GPU here: the CUDA paths are checked by monkeypatching
torch's CUDA queries and tensor moves."""

import numpy as np
import pytest
import torch

from hilserl_core.formats import config as cfg
from hilserl_core.formats import wire
from hilserl_core.formats.config import ConfigError
from hilserl_core.formats.types import FEATURE_PREFIX, IMAGE_PREFIX, Transition, camera_key
from hilserl_core.rl import replay
from hilserl_core.rl.build import LearnerNodeConfig, build_learner, dims, resolve_device
from hilserl_core.rl.checkpoints import strip_prefix
from hilserl_core.rl.learner import Learner, LearnerConfig
from hilserl_core.rl.replay import DEMO_BUFFER, RL_BUFFER
from hilserl_core.rl.rlpd import RLPDAgent, RLPDConfig, RLPDPolicy, restore_generator
from hilserl_core.vision.augment import shift_images

CAMERAS = ("left/wrist",)
BATCH = 2  # one demo and one online transition: the frozen ResNet on a CPU is the slow part


# -- the device parameter ------------------------------------------------------------------
def _cuda(monkeypatch, available: bool, count: int = 1) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count if available else 0)


def test_auto_is_the_first_cuda_gpu_when_torch_sees_one_else_the_cpu(monkeypatch):
    _cuda(monkeypatch, True, count=2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")
    _cuda(monkeypatch, False)
    assert resolve_device("auto") == torch.device("cpu")


def test_a_cuda_device_this_machine_lacks_is_a_one_line_configuration_error(monkeypatch):
    _cuda(monkeypatch, False)
    with pytest.raises(ConfigError, match=r"^device = 'cuda', but .*; use device:=auto or device:=cpu$") as e:
        resolve_device("cuda")
    assert "\n" not in str(e.value)
    _cuda(monkeypatch, True, count=2)
    with pytest.raises(ConfigError, match=r"^device = 'cuda:2', but torch sees 2 CUDA GPU\(s\) \(cuda:0 to cuda:1\)$"):
        resolve_device("cuda:2")
    # and the node's build stops there, before anything is allocated
    _cuda(monkeypatch, False)
    with pytest.raises(ConfigError, match=r"^device = 'cuda:0', but"):
        build_learner(LearnerNodeConfig(device="cuda:0"))


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "CPU", "cuda:0 ", ""])
def test_a_device_setting_of_another_form_is_refused_when_read(bad):
    with pytest.raises(ConfigError, match=r"^device = .* is not allowed; one of auto, cpu, cuda, cuda:N"):
        resolve_device(bad)
    with pytest.raises(ConfigError, match=r"is not allowed"):
        cfg.from_mapping(LearnerNodeConfig, {"device": bad}, "learner.yaml")


def test_the_device_parameter_is_in_the_node_schema_with_its_help():
    spec = {s.name: s for s in cfg.describe(LearnerNodeConfig)}["device"]
    assert spec.default == "auto" and "cuda:N" in spec.description and "host memory" in spec.description
    assert cfg.from_mapping(LearnerNodeConfig, {"device": "cuda:3"}).device == "cuda:3"  # the form; the GPU at build


def test_int8_encoder_precision_on_a_gpu_is_a_configuration_error(monkeypatch):
    _cuda(monkeypatch, True)
    with pytest.raises(ConfigError, match=r"^encoder_dtype = 'int8' runs on x86 CPUs only"):
        build_learner(LearnerNodeConfig(device="cuda", encoder_dtype="int8"))


# -- batches to the device -------------------------------------------------------------------
def test_batches_to_a_cuda_device_are_pinned_then_copied_without_blocking(monkeypatch):
    calls = []

    def pin_memory(self):
        calls.append(("pin", self.dtype))
        return self

    def to(self, *args, **kwargs):
        calls.append(("to", torch.device(args[0]), kwargs.get("non_blocking")))
        return self

    buf = replay.ReplayBuffer.for_cameras(8, ("cam",), 3, 2, "image", image_shape=(8, 8, 3))
    for i in range(3):
        buf.add(Transition({"proprio": np.zeros(3, np.float32), "image/cam": np.full((8, 8, 3), i, np.uint8)},
                           np.zeros(2, np.float32), 0.0, False, False,
                           {"proprio": np.zeros(3, np.float32), "image/cam": np.full((8, 8, 3), i + 1, np.uint8)},
                           episode_id=0, step=i))
    monkeypatch.setattr(torch.Tensor, "pin_memory", pin_memory)
    monkeypatch.setattr(torch.Tensor, "to", to)
    batch = buf.sample(4, np.random.default_rng(0), device=torch.device("cuda", 0))
    assert batch.observations["image/cam"].dtype == torch.uint8  # images cross as uint8, 4x fewer bytes than float
    tensors = 2 * 2 + 6  # obs and next obs (proprio, image), actions, rewards, terminated, grasp actions and penalties, intervened
    assert calls[::2] == [c for c in calls if c[0] == "pin"] and len(calls) == 2 * tensors
    assert all(c == ("to", torch.device("cuda", 0), True) for c in calls[1::2])
    calls.clear()
    buf.sample(4, np.random.default_rng(0), device=torch.device("cpu"))  # the CPU: the host tensors themselves
    buf.sample(4, np.random.default_rng(0))
    assert calls == []


def test_batches_follow_the_learner_device():
    dev = torch.device("meta")  # a device that is not the CPU (agents cannot live there; batches can)
    t = replay.to_device(torch.zeros(3), dev)
    assert t.device == dev
    assert replay.to_device(torch.zeros(3), None).device.type == "cpu"
    agents = {"rlpd": _small_agent()}
    bufs = [replay.ReplayBuffer.for_cameras(8, (), 5, 3) for _ in range(2)]
    L = Learner(LearnerConfig(), agents, bufs[0], bufs[1], batch_size=8)
    assert L.device == torch.device("cpu")  # the rlpd agent's, unless given
    seen = []

    def sample(n, rng, device=None):
        seen.append(device)
        raise StopIteration  # what the agents do with the batch is not the point here

    L.sampler.sample = sample
    with pytest.raises(StopIteration):
        L.train_step()
    assert seen == [None]  # on the CPU the batch stays the host's tensors (the feature path as before)
    L.device = dev
    with pytest.raises(StopIteration):
        L.train_step()
    assert seen[-1] == dev


# -- checkpoints across devices --------------------------------------------------------------
def _small_agent(seed=1):
    return RLPDAgent(RLPDConfig(batch_size=8, actor_hidden_dims=(16,), critic_hidden_dims=(16,), seed=seed), 3, (), 5)


def test_a_checkpoint_from_a_gpu_resumes_on_a_cpu(tmp_path):
    import json

    src = _small_agent()
    src.save(tmp_path)
    meta = json.loads((tmp_path / "agent.json").read_text())
    assert meta["rng_device"] == "cpu"
    # what a CUDA generator's get_state gives: 16 bytes (seed, offset), not a CPU generator's state
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(tmp_path / "agent.safetensors"))
    tensors["rng_state"] = torch.arange(16, dtype=torch.uint8)
    save_file(tensors, str(tmp_path / "agent.safetensors"))
    meta["rng_device"] = "cuda"
    (tmp_path / "agent.json").write_text(json.dumps(meta))
    dst = RLPDAgent.load(tmp_path, device="cpu")
    for name, mod in src.modules().items():
        for (k, a), b in zip(mod.state_dict().items(), dst.modules()[name].state_dict().values()):
            assert torch.equal(a, b), f"{name}/{k}"
    again = RLPDAgent.load(tmp_path)  # the same checkpoint gives the same stream
    assert torch.equal(torch.randn(4, generator=dst.generator), torch.randn(4, generator=again.generator))


class _FakeCudaGenerator:
    device = torch.device("cuda", 0)

    def __init__(self):
        self.calls = []

    def set_state(self, state):
        self.calls.append(("set_state", state))

    def manual_seed(self, seed):
        self.calls.append(("manual_seed", seed))


def test_generator_states_carry_over_on_the_same_device_type_and_reseed_across():
    cpu = torch.Generator().manual_seed(3)
    state = cpu.get_state()
    expected = torch.randn(3, generator=cpu)
    restore_generator(cpu, state, "cpu")
    assert torch.equal(torch.randn(3, generator=cpu), expected)
    gpu = _FakeCudaGenerator()  # a CPU checkpoint resumed on a GPU
    restore_generator(gpu, state, "cpu")
    restore_generator(gpu, state, "cpu")
    (kind, seed), again = gpu.calls
    assert kind == "manual_seed" and again == (kind, seed) and 0 <= seed < 2**63
    restore_generator(gpu, torch.zeros(16, dtype=torch.uint8), "cuda")
    assert gpu.calls[-1][0] == "set_state"


# -- image storage, built as the node builds it -----------------------------------------------
def _learner(storage="images", device="auto", **learner):
    conf = cfg.from_mapping(LearnerNodeConfig, {
        "cameras": list(CAMERAS), "device": device,
        "learner": {"storage": storage, "rl_capacity": 40, "demo_capacity": 40, "learning_starts": 4, **learner},
        "agent": {"batch_size": BATCH, "actor_hidden_dims": [16], "critic_hidden_dims": [16], "image_bottleneck_dim": 8,
                  "proprio_latent_dim": 8},
        "grasp": {"hidden_dims": [16], "image_bottleneck_dim": 8, "proprio_latent_dim": 8},
    }, "test")
    return build_learner(conf), conf


def _episode(conf, n, seed=0):
    proprio_dim, action_dim = dims(conf)
    rng = np.random.default_rng(seed)
    cams = [camera_key(c) for c in conf.cameras]

    def obs():
        o = {"proprio": rng.standard_normal(proprio_dim).astype(np.float32)}
        o.update({IMAGE_PREFIX + c: rng.integers(0, 256, (128, 128, 3), dtype=np.uint8) for c in cams})
        return o

    frames = [obs() for _ in range(n + 1)]
    return [Transition(frames[i], rng.uniform(-1, 1, action_dim).astype(np.float32), float(i == n - 1), i == n - 1,
                       False, frames[i + 1], intervened=i % 2 == 0, grasp_action=int(rng.integers(3)),
                       episode_id=seed, step=i) for i in range(n)]


def test_image_storage_learns_from_shifted_images_encoded_per_batch(tmp_path, monkeypatch):
    _cuda(monkeypatch, False)  # auto -> this CPU
    L, conf = _learner()
    key = IMAGE_PREFIX + camera_key(CAMERAS[0])
    assert L.device == torch.device("cpu") and all(a.device == L.device for a in L.agents.values())
    assert all(b.observation_spec[key][1] == np.uint8 for b in L.buffers.values())  # images stay uint8 in the buffers
    assert L.augment is not None and L.encoder is not None
    for t in _episode(conf, 5):
        L.add(t)
    stored = {bytes(img.tobytes()) for b in L.buffers.values() for img in b._obs[key][: b.num_slots_filled]}

    # spy on the augmentation and on what reaches the frozen encoder
    augmented, encoded = [], []
    augment, encoder_forward = L.augment, L.encoder.forward

    def spy_augment(images):
        out = augment(images)
        augmented.append((images.clone(), out.clone()))
        return out

    def spy_encoder(images):
        encoded.append(images.clone())
        return encoder_forward(images)

    L.augment = spy_augment
    monkeypatch.setattr(L.encoder, "forward", spy_encoder)
    metrics = [L.train_step() for _ in range(3)]  # critic, critic + actor, critic
    assert L.updates == 3 and len(augmented) == len(encoded) == 3  # one pass per camera and batch
    for (before, after), enc in zip(augmented, encoded):
        assert before.shape == (2 * BATCH, 128, 128, 3) and before.dtype == torch.uint8  # obs and next obs of the batch
        assert all(bytes(img.numpy().tobytes()) in stored for img in before)  # straight from the buffers
        assert torch.equal(enc, after)  # the encoder sees the shifted images
        identity = 0
        for src, out in zip(before, after):  # each image is its stored one shifted by at most 4 pixels
            shifts = [(dy, dx) for dy in range(9) for dx in range(9)
                      if torch.equal(shift_images(src[None], torch.tensor([[dy, dx]]), 4)[0], out)]
            assert shifts, "an encoder input is not a shift of a stored image"
            identity += (4, 4) in shifts
        assert identity < len(before)  # the shifts are drawn, not all zero
    for m in metrics:
        for k in ("rlpd/critic_loss", "rlpd/q_mean", "grasp/grasp_critic_loss"):
            assert np.isfinite(m[k]), (k, m)
    assert any("rlpd/actor_loss" in m and np.isfinite(m["rlpd/actor_loss"]) for m in metrics)

    # the encoder's features of the shifted images are what the agents read: float16 like feature storage
    batch = L.encode_images(L.sampler.sample(BATCH, np.random.default_rng(0)))
    feat = FEATURE_PREFIX + camera_key(CAMERAS[0])
    assert key not in batch.observations and batch.observations[feat].dtype == torch.float16
    assert batch.observations[feat].shape == batch.next_observations[feat].shape == (BATCH, 4, 4, 512)

    # weights broadcast: CPU tensors, trainable only, loaded by an actor's policy
    L.augment = augment
    state, version = L.policy_weights()
    assert version == 1 and all(v.device.type == "cpu" for v in state.values())
    assert not any("image_encoder" in k for k in state)
    arrays, meta = wire.weights_to_arrays(state, version, float_dtype="float16")
    received, _ = wire.arrays_to_weights(arrays, meta)
    proprio_dim, action_dim = dims(conf)
    policy = RLPDPolicy(conf.agent, action_dim, [camera_key(c) for c in conf.cameras], proprio_dim)
    policy.load_policy_state_dict({k: torch.as_tensor(v) for k, v in strip_prefix(received, "rlpd/").items()})
    features = L.agents["rlpd"].encoder.eval()(batch.observations)
    a = L.agents["rlpd"].actions_from_features(features, deterministic=True)
    b = policy.actions_from_features(policy.encoder(batch.observations), deterministic=True)
    assert torch.allclose(a, b, atol=0.02)  # float16 on the wire

    # checkpoint round trip: a learner built the same way resumes with the same agents and buffers
    path = L.save_checkpoint(tmp_path)
    R, _ = _learner()
    R.load_checkpoint(path)
    assert R.counters() == L.counters()
    for name in (DEMO_BUFFER, RL_BUFFER):
        assert len(R.buffers[name]) == len(L.buffers[name])
        assert np.array_equal(R.buffers[name]._obs[key], L.buffers[name]._obs[key])
    for name, agent in L.agents.items():
        mine, theirs = agent.policy_state_dict(), R.agents[name].policy_state_dict()
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert np.isfinite(R.train_step()["rlpd/critic_loss"])


def test_feature_storage_is_as_before_encoder_per_transition_no_augmentation(monkeypatch):
    _cuda(monkeypatch, False)
    L, conf = _learner(storage="features")
    assert L.augment is None and L._featurize is not None
    key = FEATURE_PREFIX + camera_key(CAMERAS[0])
    assert all(b.observation_spec[key][1] == np.float16 for b in L.buffers.values())
    for t in _episode(conf, 4):
        L.add(t)
    calls = []
    monkeypatch.setattr(L.encoder, "forward", lambda images: calls.append(images) or None)
    assert np.isfinite(L.train_step()["rlpd/critic_loss"]) and calls == []  # no encoder work per batch
