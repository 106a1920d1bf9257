import cluster, { type Worker } from "node:cluster";

import type { GroupView, Readiness } from "@switchboard/server";
import type { Logger } from "pino";
import { AggregatorRegistry, type Registry } from "prom-client";

/** One registry's metrics as JSON, as the aggregator takes them. */
type MetricsJson = Awaited<ReturnType<Registry["getMetricsAsJSON"]>>;

/** How often a worker tells the primary whether it is ready, ms. */
const READINESS_INTERVAL_MS = 500;

/** First wait before a dead worker is started again; it doubles. */
const RESTART_MIN_MS = 1_000;
const RESTART_MAX_MS = 30_000;

/** A worker alive this long has its restart delay reset, ms. */
const STABLE_MS = 60_000;

/** What a worker tells the primary. */
type FromWorker =
  | { type: "listening"; url: string }
  | { type: "readiness"; readiness: Readiness }
  | { type: "ask"; id: number; what: "readiness" | "metrics" }
  | { type: "collected"; id: number; metrics: MetricsJson };

/** What the primary tells a worker. */
type FromPrimary =
  | { type: "answer"; id: number; readiness?: Readiness; body?: string }
  | { type: "collect"; id: number }
  | { type: "drain" };

interface Member {
  readonly worker: Worker;
  readonly startedAt: number;
  readiness: Readiness;
}

/**
 * Runs `count` worker processes of this command on one port (Node's
 * cluster module shares the listening socket) and keeps them running:
 * a dead worker is started again with backoff. A signal drains every
 * worker; a second one ends them at once. Resolves with the exit status.
 */
export function runPrimary(count: number, logger: Logger): Promise<number> {
  const members = new Map<number, Member>();
  const collections = new Map<number, (metrics: MetricsJson) => void>();
  let nextCollection = 1;
  let restarts = 0;
  let stopping = false;
  let announced = false;

  const groupReadiness = (): Readiness => {
    if (members.size < count) {
      return { ready: false, reason: "a worker is starting", since: 0 };
    }
    for (const [id, member] of members) {
      if (!member.readiness.ready) {
        const { reason, shard, since } = member.readiness;
        return {
          ready: false,
          shard,
          reason: `worker ${id}: ${reason}`,
          since,
        };
      }
    }
    return { ready: true };
  };

  const groupMetrics = async (): Promise<string> => {
    const replies = [...members.values()].map(
      ({ worker }) =>
        new Promise<MetricsJson>((resolve) => {
          const id = nextCollection++;
          collections.set(id, resolve);
          send(worker, { type: "collect", id });
        }),
    );
    const aggregated = AggregatorRegistry.aggregate(await Promise.all(replies));
    return aggregated.metrics();
  };

  const fork = (id: number): void => {
    const worker = cluster.fork({ SWITCHBOARD_WORKER_ID: String(id) });
    const member: Member = {
      worker,
      startedAt: Date.now(),
      readiness: { ready: false, reason: "starting", since: Date.now() },
    };
    members.set(id, member);
    worker.on("message", (message: FromWorker) => {
      switch (message.type) {
        case "listening":
          if (!announced && ++listening === count) {
            announced = true;
            process.stdout.write(
              `Switchboard listening on ${message.url} with ${count} workers\n`,
            );
          }
          return;
        case "readiness":
          member.readiness = message.readiness;
          return;
        case "collected":
          collections.get(message.id)?.(message.metrics);
          collections.delete(message.id);
          return;
        case "ask":
          if (message.what === "readiness") {
            send(worker, {
              type: "answer",
              id: message.id,
              readiness: groupReadiness(),
            });
          } else {
            void groupMetrics().then((body) =>
              send(worker, { type: "answer", id: message.id, body }),
            );
          }
          return;
      }
    });
    worker.on("exit", (code, signal) => {
      if (members.get(id)?.worker === worker) members.delete(id);
      if (stopping) return;
      const stable = Date.now() - member.startedAt > STABLE_MS;
      restarts = stable ? 0 : restarts + 1;
      const delay = Math.min(
        RESTART_MAX_MS,
        RESTART_MIN_MS * 2 ** Math.max(0, restarts - 1),
      );
      logger.warn({ worker: id, code, signal, delay }, "worker died");
      setTimeout(() => fork(id), delay);
    });
  };

  let listening = 0;
  for (let id = 1; id <= count; id++) fork(id);

  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        logger.warn({ signal }, "second signal: ending every worker");
        for (const { worker } of members.values()) worker.process.kill();
        process.exit(1);
      }
      stopping = true;
      logger.info({ signal }, "signal: draining every worker");
      for (const { worker } of members.values()) {
        send(worker, { type: "drain" });
      }
      const check = setInterval(() => {
        if (members.size > 0) return;
        clearInterval(check);
        resolve(0);
      }, 50);
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
}

function send(worker: Worker, message: FromPrimary): void {
  if (worker.isConnected()) worker.send(message);
}

/** The id the primary gave this worker, or undefined outside a group. */
export function workerId(): string | undefined {
  return cluster.isWorker ? process.env.SWITCHBOARD_WORKER_ID : undefined;
}

/**
 * The worker's side: reports its readiness to the primary, answers its
 * metrics collections, drains when told, and asks the primary for the
 * group's view at `/readyz` and `/metrics`.
 */
export function joinGroup(member: {
  readiness(): Readiness;
  metrics(): Promise<MetricsJson>;
  drain(): void;
}): GroupView {
  const answers = new Map<number, (message: FromPrimary) => void>();
  let nextAsk = 1;

  process.on("message", (message: FromPrimary) => {
    if (message.type === "drain") {
      member.drain();
    } else if (message.type === "collect") {
      void member
        .metrics()
        .then((metrics) =>
          process.send?.({ type: "collected", id: message.id, metrics }),
        );
    } else if (message.type === "answer") {
      answers.get(message.id)?.(message);
      answers.delete(message.id);
    }
  });
  const report = () =>
    process.send?.({ type: "readiness", readiness: member.readiness() });
  report();
  setInterval(report, READINESS_INTERVAL_MS).unref();

  const ask = (what: "readiness" | "metrics") =>
    new Promise<FromPrimary>((resolve) => {
      const id = nextAsk++;
      answers.set(id, resolve);
      process.send?.({ type: "ask", id, what });
    });
  return {
    readiness: async () => {
      const answer = await ask("readiness");
      return answer.type === "answer" && answer.readiness
        ? answer.readiness
        : { ready: false, reason: "no answer from the primary" };
    },
    metrics: async () => {
      const answer = await ask("metrics");
      return {
        contentType: AggregatorRegistry.PROMETHEUS_CONTENT_TYPE,
        body: answer.type === "answer" ? (answer.body ?? "") : "",
      };
    },
  };
}

/** Tells the primary where the worker listens. */
export function announceListening(url: string): void {
  process.send?.({ type: "listening", url });
}
