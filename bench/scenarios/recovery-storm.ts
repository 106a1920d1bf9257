/**
 * Recovery storm: every client of a node reconnects at once when the node
 * is killed, to a second node sharing its Redis, and recovers what was
 * published while it was away. Socket.IO uses its Redis Streams adapter
 * and connection state recovery; raw `ws` has no recovery to compare.
 */
import { Clients, startRedis, startServer } from "../fleet.js";
import { closedLoop } from "../rounds.js";
import { sizes, type Scenario } from "../scenario.js";

/** Rounds delivered before the kill, and published after it. */
const ROUNDS_BEFORE = 3;
const ROUNDS_AFTER = 3;
/** Longest wait for every client to recover. */
const RECOVERY_LIMIT_MS = 60_000;
const POLL_MS = 20;

export const recoveryStorm: Scenario = {
  name: "recovery-storm",
  metric: "seconds from a node's kill until all its clients recovered",
  better: "lower",
  systems: ["switchboard", "socket.io"],
  async measure(system, options, progress) {
    const [size] = sizes(options, [5000], [500]);
    const channels = Math.max(1, Math.round(size! / 100));
    const redisUrl = await startRedis();
    const doomed = await startServer(system, { redisUrl, recovery: true });
    const survivor = await startServer(system, { redisUrl, recovery: true });
    const clients = await Clients.start(system, size!);

    progress(0, `connecting ${size}`);
    const { failed } = await clients.connect({
      ports: [doomed.port],
      count: size!,
      prefix: "bench:r",
      channels,
      fallbackPort: survivor.port,
    });
    await closedLoop(
      { servers: [doomed], clients, prefix: "bench:r", channels },
      { inFlight: 1, seconds: 60, first: 1, rounds: ROUNDS_BEFORE },
    );

    progress(0.5, "killing the node");
    await doomed.kill();
    const killed = performance.now();
    for (let n = 1; n <= ROUNDS_AFTER; n++) {
      survivor.round(ROUNDS_BEFORE + n, "bench:r", channels);
    }
    const rounds = ROUNDS_BEFORE + ROUNDS_AFTER;
    let state = await clients.recovery(rounds);
    while (
      state.done + state.refused < state.total &&
      performance.now() - killed < RECOVERY_LIMIT_MS
    ) {
      await new Promise((r) => setTimeout(r, POLL_MS));
      state = await clients.recovery(rounds);
    }
    const seconds = (performance.now() - killed) / 1000;
    return {
      value: seconds,
      loss: failed + state.total - state.done,
      details: {
        recovered: state.done,
        "refused recovery": state.refused,
      },
    };
  },
};
