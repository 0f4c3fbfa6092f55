"""Simulated rat trajectories in a square box (thesis Chapter 4, Section 4.10; motion model of Erdem & Hasselmo 2012).

Constants are those of the reference code the thesis builds on (spec ch3_ch4 Part B5.2): time step dt = 0.02 s,
T = 20 steps, forward speed ~ Rayleigh(scale 0.13*2*pi = 0.817 m/s), random turn velocity ~ N(0, 11.52 rad/s), and
wall avoidance: within 0.03 m of a wall and heading into it (|a_wall| < pi/2), speed *= 0.25 and the heading turns by
sign(a_wall) * (pi/2 - |a_wall|), i.e. parallel to the wall. Per step t:
    pos[t+1] = pos[t] + v_t*dt*[cos hd[t], sin hd[t]];  hd[t+1] = hd[t] + turn_t + dt*noise_t
T + 2 positions are generated; the network starts at pos[1], input k is the displacement pos[k+2] - pos[k+1]
(metres per step, allocentric) and target k is pos[k+2].

Decision (documented in the README): the reference model lets a fast step cross a wall (re-simulated: 2.8% of
20,000 episodes in the 2.2 m box leave it, 0.6% of positions lie outside, by up to 9 cm); we clip positions to the box and derive the velocity inputs from the clipped positions, so
integration of the inputs reproduces the positions exactly and every position lies inside the box.

Variants: cue inputs (5 square landmarks; input = distance to the nearest edge of each cue, 0 inside; present in a
random half of the episodes), reward-biased trajectories (a (1 - epsilon) fraction of the episodes of each batch goes
straight to a 20 cm reward zone in 7 steps and then random-walks inside it), and a reward-zone indicator input.
All randomness is stateless (seeded by a [2] int64 seed), so a batch is a pure function of its seed.

1-D track (environment="track"; thesis Section 4.10, the 4 m virtual track of Fig. 4.2b; spec Ambiguity 27): the
track is the segment y = 0, x in [-L/2, L/2] of the same 2-D frame (L = box_width, thesis 4 m), so positions,
velocity inputs and place-cell centres keep two components (the y ones are 0) and a model trained in the 2-D box runs
on the track unchanged. "No turns" is a fixed heading of 0 (running towards +x, as a head-fixed mouse runs forward in
VR): the turn noise and the wall turn are not applied; speeds are the same Rayleigh draws as in the box. At the far
end the agent stops (positions clipped to the track, as at the box's walls) rather than being teleported back, so
integrating the inputs still reproduces the positions exactly.
"""

# b: batch, t: time steps, k: cues
import dataclasses
import math

import numpy as np
import tensorflow as tf

# (centre x, centre y, side) in metres, centred coordinates (spec B5.5 item 6, from the reference code).
DEFAULT_CUES = ((0.0, 0.0, 0.3), (0.35, 0.35, 0.2), (-0.3, -0.3, 0.1), (0.6, 0.5, 0.1), (-0.7, -0.6, 0.06))
# Reward zone [x_min, x_max, y_min, y_max] in a centred 2.2 m box (spec B5.5 item 7).
DEFAULT_REWARD_ZONE = (0.65, 0.85, 0.65, 0.85)
ENVIRONMENTS = ("box", "track")


@dataclasses.dataclass(frozen=True)
class TrajectoryGenerator:
    """Batches of random-walk trajectories in a box centred at the origin.

    Attributes:
      box_width, box_height: arena size in metres (height defaults to width). Training: 2.2; evaluation: 1.0 or 1.5.
        On the track, box_width is the track length (thesis: 4.0) and the height is 0.
      environment: "box" (2-D random foraging) or "track" (1-D, fixed heading towards +x: module docstring).
      sequence_length: T, steps per episode.
      dt: seconds per step.
      speed_scale: Rayleigh scale of the forward speed (m/s).
      turn_sigma: standard deviation of the random turn velocity (rad/s).
      border_region: distance to a wall (m) below which the agent slows down and turns.
      wall_slowdown: speed factor near a wall.
      velocity_input: include the 2-D displacement in the inputs (False: cue-only models).
      cues: None, or (centre x, centre y, side) squares whose distances are appended to the inputs.
      cue_probability: fraction of episodes in which the cues are present (zeros otherwise).
      reward_epsilon: fraction of ordinary episodes per batch; the other ceil((1 - eps) * b) are reward-biased.
      reward_zone: (x_min, x_max, y_min, y_max) of the reward zone.
      reward_approach_steps: steps taken to walk straight to the zone centre.
      reward_input: append a 1/0 "inside the reward zone" input.
    """

    box_width: float = 2.2
    box_height: float | None = None
    environment: str = "box"
    sequence_length: int = 20
    dt: float = 0.02
    speed_scale: float = 0.13 * 2 * math.pi
    turn_sigma: float = 5.76 * 2
    border_region: float = 0.03
    wall_slowdown: float = 0.25
    velocity_input: bool = True
    cues: tuple[tuple[float, float, float], ...] | None = None
    cue_probability: float = 0.5
    reward_epsilon: float = 1.0
    reward_zone: tuple[float, float, float, float] = DEFAULT_REWARD_ZONE
    reward_approach_steps: int = 7
    reward_input: bool = False

    def __post_init__(self):
        if self.environment not in ENVIRONMENTS:
            raise ValueError(f"environment must be one of {ENVIRONMENTS}; received {self.environment!r}.")
        if self.box_width <= 0 or (self.height <= 0 and self.environment == "box"):
            raise ValueError(f"box size must be positive; received {self.box_width} x {self.height} m.")
        if self.environment == "track" and self.reward_epsilon < 1.0:
            raise ValueError("reward-biased episodes need the 2-D box (a reward zone); use environment='box'.")
        if self.sequence_length < 1:
            raise ValueError(f"sequence_length must be >= 1; received {self.sequence_length}.")
        if not 0.0 <= self.reward_epsilon <= 1.0:
            raise ValueError(f"reward_epsilon is a fraction in [0, 1]; received {self.reward_epsilon}.")
        if self.reward_epsilon < 1.0 and not 0 < self.reward_approach_steps < self.sequence_length:
            raise ValueError(
                f"reward_approach_steps must be in (0, sequence_length={self.sequence_length}); "
                f"received {self.reward_approach_steps}."
            )
        if not (self.velocity_input or self.cues or self.reward_input):
            raise ValueError("the generator has no inputs: enable velocity_input, cues or reward_input.")
        if self.cues is not None and any(len(c) != 3 or c[2] <= 0 for c in self.cues):
            raise ValueError(f"cues are (centre x, centre y, side > 0) triples; received {self.cues}.")

    @property
    def height(self) -> float:
        """Box extent along y in metres (0 on the track)."""
        if self.environment == "track":
            return 0.0
        return self.box_width if self.box_height is None else self.box_height

    @property
    def input_dim(self) -> int:
        return 2 * self.velocity_input + (len(self.cues) if self.cues else 0) + int(self.reward_input)

    def generate(self, batch_size: int, seed) -> dict[str, tf.Tensor]:
        """One batch. `seed`: shape-[2] integer tensor (stateless RNG).

        Returns:
          init_position (b, 2), position (b, t, 2) targets, velocity (b, t, 2) displacement per step,
          head_direction (b, t) heading during each step, inputs (b, t, input_dim) float32.
        """
        seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
        seeds = tf.random.experimental.stateless_split(seed, num=6)
        lo = tf.constant([-self.box_width / 2, -self.height / 2], tf.float32)
        hi = -lo
        start = lo + (hi - lo) * tf.random.stateless_uniform([batch_size, 2], seeds[0])
        if self.environment == "track":
            positions, head_dirs = self._walk_track(start, hi, self.sequence_length + 1, seeds[2])
        else:
            start_hd = tf.random.stateless_uniform([batch_size], seeds[1], maxval=2 * math.pi)
            positions, head_dirs = self._walk(start, start_hd, lo, hi, self.sequence_length + 1, seeds[2])
        init, targets, headings = positions[:, 1], positions[:, 2:], head_dirs[:, 1:-1]
        if self.reward_epsilon < 1.0:
            r_init, r_targets, r_headings = self._reward_episodes(batch_size, lo, hi, seeds[3])
            biased = self._reward_mask(batch_size, seeds[4])  # (b,)
            init = tf.where(biased[:, None], r_init, init)
            targets = tf.where(biased[:, None, None], r_targets, targets)
            headings = tf.where(biased[:, None], r_headings, headings)
        before = tf.concat([init[:, None], targets[:, :-1]], axis=1)  # (b, t, 2) position at which input k is given
        velocity = targets - before
        inputs = []
        if self.velocity_input:
            inputs.append(velocity)
        if self.cues:
            inputs.append(self._cue_inputs(before, seeds[5]))
        if self.reward_input:
            x0, x1, y0, y1 = self.reward_zone
            inside = (before[..., 0] >= x0) & (before[..., 0] <= x1) & (before[..., 1] >= y0) & (before[..., 1] <= y1)
            inputs.append(tf.cast(inside, tf.float32)[..., None])
        return {
            "init_position": init,
            "position": targets,
            "velocity": velocity,
            "head_direction": headings,
            "inputs": tf.concat(inputs, axis=-1),
        }

    def _walk(self, start, start_hd, lo, hi, n_steps, seed):
        """Random walk of n_steps from start; returns positions (b, n+1, 2) and head directions (b, n+1)."""
        batch = tf.shape(start)[0]
        noise_seed, speed_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
        turns = tf.random.stateless_normal([batch, n_steps], noise_seed, stddev=self.turn_sigma)
        # Rayleigh(scale s) = s * sqrt(-2 log U), U in (0, 1].
        uniform = tf.random.stateless_uniform([batch, n_steps], speed_seed, minval=1e-12, maxval=1.0)
        speeds = self.speed_scale * tf.sqrt(-2.0 * tf.math.log(uniform))
        wall_angles = tf.constant([0.0, math.pi / 2, math.pi, 3 * math.pi / 2])
        pos, hd = start, start_hd
        positions, headings = [pos], [hd]
        for t in range(n_steps):
            # Distances to the walls the agent would hit heading at 0, pi/2, pi, 3pi/2: right, top, left, bottom.
            dists = tf.stack([hi[0] - pos[:, 0], hi[1] - pos[:, 1], pos[:, 0] - lo[0], pos[:, 1] - lo[1]], axis=-1)
            theta = tf.gather(wall_angles, tf.argmin(dists, axis=-1))
            a_wall = tf.math.floormod(tf.math.floormod(hd, 2 * math.pi) - theta + math.pi, 2 * math.pi) - math.pi
            near = (tf.reduce_min(dists, axis=-1) < self.border_region) & (tf.abs(a_wall) < math.pi / 2)
            speed = tf.where(near, speeds[:, t] * self.wall_slowdown, speeds[:, t])
            turn = tf.where(near, tf.sign(a_wall) * (math.pi / 2 - tf.abs(a_wall)), 0.0) + self.dt * turns[:, t]
            step = (speed * self.dt)[:, None] * tf.stack([tf.cos(hd), tf.sin(hd)], axis=-1)
            pos = tf.clip_by_value(pos + step, lo, hi)
            hd = hd + turn
            positions.append(pos)
            headings.append(hd)
        return tf.stack(positions, axis=1), tf.stack(headings, axis=1)

    def _walk_track(self, start, hi, n_steps, seed):
        """Forward walk along the track (heading 0, no turns) stopping at its end; (b, n+1, 2) and (b, n+1)."""
        batch = tf.shape(start)[0]
        _, speed_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))  # the box walk's speed seed
        uniform = tf.random.stateless_uniform([batch, n_steps], speed_seed, minval=1e-12, maxval=1.0)
        steps = self.speed_scale * tf.sqrt(-2.0 * tf.math.log(uniform)) * self.dt  # (b, n) metres, >= 0
        travelled = tf.concat([tf.zeros([batch, 1]), tf.cumsum(steps, axis=1)], axis=1)  # (b, n+1)
        x = tf.minimum(start[:, :1] + travelled, hi[0])  # monotone, so clipping the sum = clipping every step
        positions = tf.stack([x, tf.zeros_like(x)], axis=-1)
        return positions, tf.zeros_like(x)

    def _reward_episodes(self, batch_size, lo, hi, seed):
        """Straight approach to the zone centre in `reward_approach_steps` steps, then a walk inside the zone."""
        s_start, s_hd, s_walk = tf.unstack(tf.random.experimental.stateless_split(seed, num=3))
        x0, x1, y0, y1 = self.reward_zone
        zone_lo, zone_hi = tf.constant([x0, y0]), tf.constant([x1, y1])
        centre = (zone_lo + zone_hi) / 2
        init = lo + (hi - lo) * tf.random.stateless_uniform([batch_size, 2], s_start)
        fractions = tf.range(1, self.reward_approach_steps + 1, dtype=tf.float32) / self.reward_approach_steps
        approach = init[:, None] + (centre - init)[:, None] * fractions[None, :, None]  # (b, approach, 2)
        approach_hd = tf.math.atan2(centre[1] - init[:, 1], centre[0] - init[:, 0])
        hd0 = tf.random.stateless_uniform([batch_size], s_hd, maxval=2 * math.pi)
        start = tf.broadcast_to(centre, [batch_size, 2])
        zone_steps = self.sequence_length - self.reward_approach_steps
        walk, walk_hd = self._walk(start, hd0, zone_lo, zone_hi, zone_steps, s_walk)
        targets = tf.concat([approach, walk[:, 1:]], axis=1)
        headings = tf.concat([tf.repeat(approach_hd[:, None], self.reward_approach_steps, axis=1), walk_hd[:, :-1]], 1)
        return init, targets, headings

    def _reward_mask(self, batch_size, seed):
        """Exactly ceil((1 - epsilon) * b) reward-biased episodes, at random positions in the batch."""
        n_biased = math.ceil((1.0 - self.reward_epsilon) * batch_size - 1e-9)
        ranks = tf.argsort(tf.argsort(tf.random.stateless_uniform([batch_size], seed)))
        return ranks < n_biased

    def _cue_inputs(self, before, seed):
        cues = np.asarray(self.cues, np.float32)  # (k, 3)
        half = cues[:, 2] / 2
        dx = tf.nn.relu(tf.abs(before[..., 0:1] - cues[:, 0]) - half)  # (b, t, k)
        dy = tf.nn.relu(tf.abs(before[..., 1:2] - cues[:, 1]) - half)
        distance = tf.sqrt(dx * dx + dy * dy)
        present = tf.random.stateless_uniform([tf.shape(before)[0], 1, 1], seed) < self.cue_probability
        return tf.where(present, distance, 0.0)
