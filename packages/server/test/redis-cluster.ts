import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { waitUntil } from "./helpers.js";
import { freePort } from "./ports.js";
import {
  PORT_TRIES,
  PortTakenError,
  TestRedis,
  spawnRedis,
  stopChild,
} from "./redis-server.js";

/** A master of a test's cluster, as CLUSTER SHARDS tells it. */
export interface ClusterMaster {
  readonly port: number;
  readonly id: string;
  /** The replica of this master, if any. */
  readonly replica: number | undefined;
}

/** A Redis Cluster of a test's own, on free loopback ports. */
export interface OwnCluster {
  /** The URL of the first node. */
  readonly url: string;
  readonly ports: readonly number[];
  /** A connection to the node on `port`, closed by `stop`. */
  node(port: number): Promise<TestRedis>;
  /** The masters now, sorted by port. */
  masters(): Promise<ClusterMaster[]>;
  /** The port of the master serving `slot`. */
  ownerOf(slot: number): Promise<number>;
  /** The slot of `key` (CLUSTER KEYSLOT). */
  keySlot(key: string): Promise<number>;
  /**
   * Moves `slot` with its keys to the master on `to`, as an operator
   * resharding does: IMPORTING, MIGRATING, MIGRATE, then SETSLOT NODE on
   * every master.
   */
  moveSlot(slot: number, to: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts `masters` cluster-enabled redis-servers, with `replicas` each,
 * joins them with `redis-cli --cluster create`, and waits until every
 * node says the cluster is ok.
 */
export async function startCluster(
  masters: number,
  replicas: 0 | 1,
): Promise<OwnCluster> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await tryCluster(masters * (1 + replicas), replicas);
    } catch (error) {
      // A free port taken before a server bound it: all again, on others.
      if (!(error instanceof PortTakenError) || attempt >= PORT_TRIES) {
        throw error;
      }
    }
  }
}

/** One try of `startCluster`; a failed try stops what it started. */
async function tryCluster(count: number, replicas: 0 | 1): Promise<OwnCluster> {
  const dir = mkdtempSync(join(tmpdir(), "sb-cluster-"));
  const ports: number[] = [];
  const buses: number[] = [];
  for (let i = 0; i < count; i++) {
    ports.push(await freePort());
    // A bus port of its own: the default, port + 10000, may be taken.
    buses.push(await freePort());
  }
  // Known from their spawn: a start that fails stops them all.
  const children: ChildProcess[] = [];
  const connections = new Map<number, TestRedis>();
  const stop = async () => {
    await Promise.allSettled(
      [...connections.values()].map((connection) => connection.close()),
    );
    await Promise.all(children.map((child) => stopChild(child)));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    return await formCluster(
      { ports, buses, replicas, dir, children, connections },
      stop,
    );
  } catch (error) {
    await stop();
    throw error;
  }
}

/** What `startCluster` forms a cluster from, and fills in. */
interface Forming {
  readonly ports: readonly number[];
  /** Each server's cluster bus port. */
  readonly buses: readonly number[];
  readonly replicas: 0 | 1;
  readonly dir: string;
  readonly children: ChildProcess[];
  readonly connections: Map<number, TestRedis>;
}

/** Spawns the servers of `startCluster`, joins them, and waits. */
async function formCluster(
  { ports, buses, replicas, dir, children, connections }: Forming,
  stop: () => Promise<void>,
): Promise<OwnCluster> {
  const count = ports.length;
  await Promise.all(
    ports.map((port, i) =>
      // A replica's full sync writes an RDB file even without `save`:
      // into the run's own folder, not the working directory.
      spawnRedis(
        port,
        undefined,
        [
          "--dir",
          dir,
          "--dbfilename",
          `dump-${port}.rdb`,
          "--cluster-enabled",
          "yes",
          "--cluster-port",
          String(buses[i]),
          "--cluster-config-file",
          join(dir, `nodes-${port}.conf`),
          "--cluster-node-timeout",
          "2000",
        ],
        (child) => children.push(child),
      ),
    ),
  );
  const node = async (port: number): Promise<TestRedis> => {
    let connection = connections.get(port);
    if (!connection) {
      connection = await TestRedis.connect(`redis://127.0.0.1:${port}`);
      connections.set(port, connection);
    }
    return connection;
  };
  await run("redis-cli", [
    "--cluster",
    "create",
    ...ports.map((port) => `127.0.0.1:${port}`),
    "--cluster-replicas",
    String(replicas),
    "--cluster-yes",
  ]);
  const states = async () =>
    Promise.all(
      ports.map(async (port) =>
        String(await (await node(port)).command(["CLUSTER", "INFO"])),
      ),
    );
  await waitUntil(
    async () =>
      (await states()).every(
        (info) =>
          info.includes("cluster_state:ok") &&
          info.includes(`cluster_known_nodes:${count}`),
      ),
    20_000,
    "cluster_state:ok on every node",
  );

  const shards = async (): Promise<ClusterMaster[]> => {
    const reply = (await (
      await node(ports[0]!)
    ).command(["CLUSTER", "SHARDS"])) as unknown[][];
    const found: ClusterMaster[] = [];
    for (const shard of reply) {
      const nodes = field(shard, "nodes") as unknown[][];
      const described = nodes.map((n) => ({
        port: Number(field(n, "port")),
        id: String(field(n, "id")),
        role: String(field(n, "role")),
        health: String(field(n, "health")),
      }));
      const master = described.find((n) => n.role === "master");
      if (!master || (field(shard, "slots") as unknown[]).length === 0) {
        continue;
      }
      const replica = described.find(
        (n) => n.role === "replica" && n.health === "online",
      );
      found.push({ port: master.port, id: master.id, replica: replica?.port });
    }
    return found.sort((a, b) => a.port - b.port);
  };
  if (replicas > 0) {
    await waitUntil(
      async () =>
        (await shards()).every((master) => master.replica !== undefined),
      20_000,
      "every replica online",
    );
  }

  const keySlot = async (key: string) =>
    Number(await (await node(ports[0]!)).command(["CLUSTER", "KEYSLOT", key]));
  const ownerOf = async (slot: number): Promise<number> => {
    const ranges = (await (
      await node(ports[0]!)
    ).command(["CLUSTER", "SLOTS"])) as [number, number, [string, number]][];
    const range = ranges.find(([start, end]) => slot >= start && slot <= end);
    if (!range) throw new Error(`slot ${slot} has no master`);
    return Number(range[2][1]);
  };
  return {
    url: `redis://127.0.0.1:${ports[0]}`,
    ports,
    node,
    masters: shards,
    keySlot,
    ownerOf,
    moveSlot: async (slot, to) => {
      const from = await ownerOf(slot);
      const all = await shards();
      const id = (port: number) => all.find((m) => m.port === port)!.id;
      const source = await node(from);
      const target = await node(to);
      const slotArg = String(slot);
      await target.command([
        "CLUSTER",
        "SETSLOT",
        slotArg,
        "IMPORTING",
        id(from),
      ]);
      await source.command([
        "CLUSTER",
        "SETSLOT",
        slotArg,
        "MIGRATING",
        id(to),
      ]);
      for (;;) {
        const keys = (await source.command([
          "CLUSTER",
          "GETKEYSINSLOT",
          slotArg,
          "100",
        ])) as string[];
        if (keys.length === 0) break;
        await source.command([
          "MIGRATE",
          "127.0.0.1",
          String(to),
          "",
          "0",
          "5000",
          "KEYS",
          ...keys,
        ]);
      }
      // Once per master: SETSLOT NODE on the owner again would drop its
      // shard channel subscribers of the slot.
      const others = all
        .map((m) => m.port)
        .filter((p) => p !== to && p !== from);
      for (const port of [to, from, ...others]) {
        await (
          await node(port)
        ).command(["CLUSTER", "SETSLOT", slotArg, "NODE", id(to)]);
      }
    },
    stop,
  };
}

/** A field of a CLUSTER SHARDS reply: a flat list of names and values. */
function field(list: unknown[], name: string): unknown {
  if (!Array.isArray(list)) return (list as Record<string, unknown>)[name];
  const at = list.indexOf(name);
  return at === -1 ? undefined : list[at + 1];
}

/** Runs a command to the end; rejects with its output when it fails. */
function run(command: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.once("error", reject);
    child.once("exit", (code) =>
      code === 0
        ? resolve()
        : reject(new Error(`${command} exited with ${code}: ${output}`)),
    );
  });
}
