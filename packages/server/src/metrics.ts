import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";

/** Values read when `/metrics` is scraped rather than kept up to date. */
export interface MetricSources {
  connections(): number;
  channels(): number;
}

/**
 * The node's Prometheus metrics, in a registry of its own so several nodes
 * can share a process. Labels never carry channel or user names.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly published: Counter<"source">;
  readonly delivered: Counter;
  readonly closes: Counter<"code">;
  readonly slowConsumers: Counter;
  readonly rejectedUpgrades: Counter<"reason">;

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: "switchboard_connections",
      help: "Open WebSocket connections",
      registers,
      collect() {
        this.set(sources.connections());
      },
    });
    new Gauge({
      name: "switchboard_channels",
      help: "Channels with local subscribers",
      registers,
      collect() {
        this.set(sources.channels());
      },
    });
    this.published = new Counter({
      name: "switchboard_published_total",
      help: "Messages published through this node",
      labelNames: ["source"],
      registers,
    });
    this.delivered = new Counter({
      name: "switchboard_delivered_total",
      help: "Message frames written to local subscribers",
      registers,
    });
    this.closes = new Counter({
      name: "switchboard_closes_total",
      help: "Closed connections by close code",
      labelNames: ["code"],
      registers,
    });
    this.slowConsumers = new Counter({
      name: "switchboard_slow_consumer_closes_total",
      help: "Connections closed with 4508 for a full outbound buffer",
      registers,
    });
    this.rejectedUpgrades = new Counter({
      name: "switchboard_rejected_upgrades_total",
      help: "Upgrades refused before the handshake, by reason",
      labelNames: ["reason"],
      registers,
    });
  }
}
