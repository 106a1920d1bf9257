/**
 * How a bench client speaks to each system: open a connection, pass the
 * token check, join one channel, then hand every publication to `sink`.
 * A connection to a node that dies moves to `fallbackPort` and recovers
 * what it missed, where the system can.
 */
import { io } from "socket.io-client";
import WebSocket from "ws";

/** Where and how one client connects. */
export interface Target {
  readonly port: number;
  readonly channel: string;
  readonly token: string;
  /** Reconnect here with recovery when the connection drops. */
  readonly fallbackPort?: number;
}

/** What a connection reports. */
export interface Sink {
  /** A publication arrived: its round and its publishing time. */
  message(seq: number, sentAt: number): void;
  /** The connection closed without being asked to. */
  closed(): void;
  /** The connection came back on the fallback node: did it recover? */
  resumed(recovered: boolean): void;
}

/** An open connection; `close` ends it without counting as a loss. */
export interface ClientConnection {
  close(): void;
}

type Opener = (target: Target, sink: Sink) => Promise<ClientConnection>;

interface Frame {
  type: string;
  id?: number;
  epoch?: string;
  offset?: number;
  data?: { s: number; t: number };
  result?: {
    epoch: string;
    offset: number;
    recovered?: boolean;
    publications?: Frame[];
  };
  message?: string;
}

/** Switchboard's protocol: `connect`, then `subscribe`, over switchboard.v1. */
const switchboard: Opener = (target, sink) => {
  let position: { epoch: string; offset: number } | undefined;
  let closing = false;
  let current: WebSocket | undefined;

  const open = (port: number, resuming: boolean) =>
    new Promise<void>((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, "switchboard.v1");
      current = ws;
      let ready = false;
      const deliver = (frame: Frame) => {
        position = { epoch: frame.epoch!, offset: frame.offset! };
        sink.message(frame.data!.s, frame.data!.t);
      };
      ws.on("open", () => {
        ws.send(
          JSON.stringify({ type: "connect", id: 1, token: target.token }),
        );
        const since = resuming ? position : undefined;
        ws.send(
          JSON.stringify({
            type: "subscribe",
            id: 2,
            channel: target.channel,
            since,
          }),
        );
      });
      ws.on("message", (raw: Buffer) => {
        const frame = JSON.parse(raw.toString()) as Frame;
        if (frame.type === "message") return deliver(frame);
        if (frame.id !== 2) return;
        if (frame.type !== "ok") return reject(new Error(frame.message));
        ready = true;
        const result = frame.result!;
        if (resuming) {
          for (const publication of result.publications ?? []) {
            deliver(publication);
          }
          sink.resumed(result.recovered === true);
        }
        position ??= { epoch: result.epoch, offset: result.offset };
        resolve();
      });
      ws.on("error", (error) => {
        if (!ready) reject(error);
      });
      ws.on("close", () => {
        if (!ready) reject(new Error("closed before subscribing"));
        if (closing || current !== ws) return;
        if (target.fallbackPort === undefined) return sink.closed();
        open(target.fallbackPort, true).catch(() => sink.closed());
      });
    });

  return open(target.port, false).then(() => ({
    close: () => {
      closing = true;
      current?.terminate();
    },
  }));
};

/** Socket.IO: the token and channel in `auth`, then an `ok` event. */
const socketIo: Opener = (target, sink) =>
  new Promise((resolve, reject) => {
    let closing = false;
    let ready = false;
    const socket = io(`http://127.0.0.1:${target.port}`, {
      transports: ["websocket"],
      auth: { token: target.token, channel: target.channel },
      forceNew: true,
      reconnection: target.fallbackPort !== undefined,
      reconnectionDelay: 0,
      reconnectionDelayMax: 0,
      randomizationFactor: 0,
      timeout: 120_000,
    });
    socket.on("m", (data: { s: number; t: number }) =>
      sink.message(data.s, data.t),
    );
    socket.on("ok", () => {
      if (ready) return sink.resumed(socket.recovered);
      ready = true;
      resolve({
        close: () => {
          closing = true;
          socket.disconnect();
        },
      });
    });
    socket.on("connect_error", (error) => {
      if (!ready) reject(error);
    });
    socket.on("disconnect", () => {
      if (closing) return;
      if (target.fallbackPort === undefined) return sink.closed();
      // The manager reconnects to its `uri`: point it at the live node.
      const manager = socket.io as unknown as { uri: string };
      manager.uri = `http://127.0.0.1:${target.fallbackPort}`;
    });
  });

/** Raw `ws`: the token in the upgrade, the channel in the query. */
const raw: Opener = (target, sink) =>
  new Promise((resolve, reject) => {
    let closing = false;
    let ready = false;
    const url = `ws://127.0.0.1:${target.port}/?channel=${target.channel}`;
    const ws = new WebSocket(url, {
      headers: { authorization: `Bearer ${target.token}` },
    });
    ws.on("message", (bytes: Buffer) => {
      const frame = JSON.parse(bytes.toString()) as Frame & {
        s: number;
        t: number;
      };
      if (ready) return sink.message(frame.s, frame.t);
      ready = true;
      resolve({
        close: () => {
          closing = true;
          ws.terminate();
        },
      });
    });
    ws.on("error", (error) => {
      if (!ready) reject(error);
    });
    ws.on("close", () => {
      if (!ready) reject(new Error("closed before joining"));
      else if (!closing) sink.closed();
    });
  });

/** The client protocol of each system. */
export const OPENERS: Record<string, Opener> = {
  switchboard,
  "socket.io": socketIo,
  ws: raw,
  "ws-coalesced": raw,
};
