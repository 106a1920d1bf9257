import type {
  HistoryResult,
  MessagePush,
  SubscribeResult,
} from "@switchboard/protocol";
import { describe, expect, it } from "vitest";

import { ChannelStream, type StreamStep } from "./channel-stream.js";

const CHANNEL = "room:1";

function msg(offset: number, epoch = "e1"): MessagePush {
  return { type: "message", channel: CHANNEL, epoch, offset, data: offset };
}

function history(offsets: number[], top: number, epoch = "e1"): HistoryResult {
  return { epoch, offset: top, publications: offsets.map((o) => msg(o)) };
}

/** The steps in a compact form: `5`, `hole:gap:3-5`, `fetch:3`, ... */
function summary(steps: readonly StreamStep[]): string[] {
  return steps.map((step) => {
    switch (step.type) {
      case "deliver": {
        const { epoch, offset } = step.message;
        return epoch === "e1" ? `${offset}` : `${epoch}/${offset}`;
      }
      case "discontinuity": {
        const { reason, from, to } = step.info;
        return `hole:${reason}:${from?.offset ?? "-"}-${to.offset}`;
      }
      case "recovered":
        return `recovered:${step.info.source}:${step.info.count}`;
      case "fetch":
        return `fetch:${step.since.offset}`;
    }
  });
}

function fetchOf(steps: readonly StreamStep[]): number {
  const fetch = steps.find((s) => s.type === "fetch");
  if (fetch?.type !== "fetch") throw new Error("no fetch step");
  return fetch.generation;
}

function subscribedAt(offset: number, epoch = "e1"): ChannelStream {
  const stream = new ChannelStream();
  stream.subscribed({ epoch, offset }, undefined);
  return stream;
}

describe("channel stream", () => {
  it("stream - starts at the subscribe reply's position", () => {
    const stream = new ChannelStream();
    const steps = stream.subscribed({ epoch: "e1", offset: 7 }, undefined);
    expect(steps).toEqual([]);
    expect(stream.position).toEqual({ epoch: "e1", offset: 7 });
  });

  it("stream - delivers offset n + 1 and advances the position", () => {
    const stream = subscribedAt(3);
    expect(summary(stream.receive(msg(4)))).toEqual(["4"]);
    expect(summary(stream.receive(msg(5)))).toEqual(["5"]);
    expect(stream.position).toEqual({ epoch: "e1", offset: 5 });
  });

  it("stream - drops offsets at or below n as duplicates", () => {
    const stream = subscribedAt(3);
    stream.receive(msg(4));
    expect(stream.receive(msg(4))).toEqual([]);
    expect(stream.receive(msg(2))).toEqual([]);
    expect(stream.position).toEqual({ epoch: "e1", offset: 4 });
  });

  it("stream - on a gap holds live messages and fetches from n", () => {
    const stream = subscribedAt(3);
    const steps = stream.receive(msg(6));
    expect(summary(steps)).toEqual(["fetch:3"]);
    expect(stream.recovering).toBe(true);
    expect(stream.receive(msg(7))).toEqual([]);
    expect(stream.receive(msg(7))).toEqual([]);
    expect(stream.position).toEqual({ epoch: "e1", offset: 3 });
  });

  it("stream - delivers history that fills the gap, then the held ones", () => {
    const stream = subscribedAt(3);
    const generation = fetchOf(stream.receive(msg(6)));
    stream.receive(msg(8));
    stream.receive(msg(7));

    const steps = stream.historyArrived(generation, history([4, 5, 6, 7], 7));
    expect(summary(steps)).toEqual([
      "4",
      "5",
      "6",
      "7",
      "recovered:history:4",
      "8",
    ]);
    expect(stream.recovering).toBe(false);
    expect(stream.position).toEqual({ epoch: "e1", offset: 8 });
    expect(summary(stream.receive(msg(9)))).toEqual(["9"]);
  });

  it("stream - raises a discontinuity when history cannot fill the gap", () => {
    const stream = subscribedAt(3);
    const generation = fetchOf(stream.receive(msg(9)));
    stream.receive(msg(10));

    // History was trimmed: the oldest kept entry is 6.
    const steps = stream.historyArrived(generation, history([6, 7, 8, 9], 10));
    expect(summary(steps)).toEqual(["hole:gap:3-8", "9", "10"]);
    expect(stream.position).toEqual({ epoch: "e1", offset: 10 });
  });

  it("stream - continues from the held ones when history fails", () => {
    const stream = subscribedAt(3);
    const generation = fetchOf(stream.receive(msg(5)));
    stream.receive(msg(6));
    const steps = stream.historyFailed(generation);
    expect(summary(steps)).toEqual(["hole:gap:3-4", "5", "6"]);
    expect(stream.recovering).toBe(false);
  });

  it("stream - fetches again after a full page of history", () => {
    const stream = subscribedAt(0);
    const first = fetchOf(stream.receive(msg(6)));
    const page = stream.historyArrived(first, history([1, 2], 6));
    expect(summary(page)).toEqual(["1", "2", "fetch:2"]);

    const second = fetchOf(page);
    const rest = stream.historyArrived(second, history([3, 4, 5], 6));
    expect(summary(rest)).toEqual(["3", "4", "5", "recovered:history:5", "6"]);
  });

  it("stream - ignores a history reply of a stale generation", () => {
    const stream = subscribedAt(3);
    const generation = fetchOf(stream.receive(msg(5)));
    stream.reset();
    expect(stream.historyArrived(generation, history([4], 4))).toEqual([]);
    expect(stream.recovering).toBe(false);
    expect(stream.position).toEqual({ epoch: "e1", offset: 3 });
  });

  it("stream - reads on after a page cut short of the top", () => {
    const stream = subscribedAt(3);
    const generation = fetchOf(stream.receive(msg(5)));
    stream.receive(msg(8));
    // The server capped the page by size: 6 and 7 are stored but not sent.
    const page = stream.historyArrived(generation, history([4, 5], 8));
    expect(summary(page)).toEqual(["4", "5", "fetch:5"]);
    const rest = stream.historyArrived(fetchOf(page), history([6, 7, 8], 8));
    expect(summary(rest)).toEqual(["6", "7", "8", "recovered:history:5"]);
  });

  it("stream - a gap history cannot fill after progress is a hole", () => {
    const stream = subscribedAt(3);
    const generation = fetchOf(stream.receive(msg(5)));
    stream.receive(msg(8));
    const page = stream.historyArrived(generation, history([4, 5], 8));
    const steps = stream.historyArrived(fetchOf(page), history([], 8));
    expect(summary(steps)).toEqual(["hole:gap:5-7", "8"]);
    expect(stream.recovering).toBe(false);
  });

  it("stream - reads history again when it predates the held ones", () => {
    const stream = subscribedAt(3);
    let generation = fetchOf(stream.receive(msg(5)));
    stream.receive(msg(8));

    // Read before 6-8 existed: all it had, up to a top of 5.
    const early = stream.historyArrived(generation, history([4, 5], 5));
    expect(summary(early)).toEqual(["4", "5", "fetch:5"]);

    generation = fetchOf(early);
    const later = stream.historyArrived(generation, history([6, 7, 8], 8));
    expect(summary(later)).toEqual(["6", "7", "8", "recovered:history:5"]);
  });

  it("stream - gives up after repeated stale history reads", () => {
    const stream = subscribedAt(3);
    let steps = stream.receive(msg(8));
    for (let read = 0; read < 2; read += 1) {
      steps = stream.historyArrived(fetchOf(steps), history([], 3));
      expect(summary(steps)).toEqual(["fetch:3"]);
    }
    steps = stream.historyArrived(fetchOf(steps), history([], 3));
    expect(summary(steps)).toEqual(["hole:gap:3-7", "8"]);
  });

  it("stream - a new epoch raises a discontinuity, then starts over", () => {
    const stream = subscribedAt(40);
    const steps = stream.receive(msg(1, "e2"));
    expect(summary(steps)).toEqual(["hole:epoch_changed:40-0", "e2/1"]);
    expect(stream.position).toEqual({ epoch: "e2", offset: 1 });
    expect(summary(stream.receive(msg(2, "e2")))).toEqual(["e2/2"]);
  });

  it("stream - a new epoch during a gap recovery drops the old one", () => {
    const stream = subscribedAt(3);
    const generation = fetchOf(stream.receive(msg(6)));
    const steps = stream.receive(msg(5, "e2"));
    expect(summary(steps)).toEqual(["hole:epoch_changed:3-4", "e2/5"]);
    expect(stream.historyArrived(generation, history([4, 5], 6))).toEqual([]);
    expect(summary(stream.receive(msg(6, "e2")))).toEqual(["e2/6"]);
  });

  it("stream - a history reply from another epoch cannot fill the gap", () => {
    const stream = subscribedAt(3);
    const generation = fetchOf(stream.receive(msg(6)));
    const steps = stream.historyArrived(generation, history([1, 2], 2, "e2"));
    expect(summary(steps)).toEqual(["hole:gap:3-5", "6"]);
  });

  it("stream - a recovered resubscribe delivers what was missed", () => {
    const stream = subscribedAt(3);
    stream.receive(msg(4));
    const since = stream.position;
    const result: SubscribeResult = {
      epoch: "e1",
      offset: 7,
      recovered: true,
      publications: [msg(4), msg(5), msg(6), msg(7)],
    };
    const steps = stream.subscribed(result, since);
    expect(summary(steps)).toEqual(["5", "6", "7", "recovered:subscribe:3"]);
    expect(summary(stream.receive(msg(8)))).toEqual(["8"]);
  });

  it("stream - recovered with nothing missed delivers nothing", () => {
    const stream = subscribedAt(3);
    const steps = stream.subscribed(
      { epoch: "e1", offset: 3, recovered: true, publications: [] },
      { epoch: "e1", offset: 3 },
    );
    expect(summary(steps)).toEqual(["recovered:subscribe:0"]);
  });

  it("stream - recovered: false raises a discontinuity to the new top", () => {
    const stream = subscribedAt(3);
    const steps = stream.subscribed(
      { epoch: "e2", offset: 12, recovered: false },
      { epoch: "e1", offset: 3 },
    );
    expect(summary(steps)).toEqual(["hole:not_recovered:3-12"]);
    expect(stream.position).toEqual({ epoch: "e2", offset: 12 });
    expect(summary(stream.receive(msg(13, "e2")))).toEqual(["e2/13"]);
  });

  it("stream - recovered publications short of the top are a hole", () => {
    const stream = subscribedAt(3);
    const steps = stream.subscribed(
      { epoch: "e1", offset: 9, recovered: true, publications: [msg(4)] },
      { epoch: "e1", offset: 3 },
    );
    expect(summary(steps)).toEqual(["4", "hole:not_recovered:4-9"]);
  });

  it("stream - a resubscribe forgets held messages", () => {
    const stream = subscribedAt(3);
    stream.receive(msg(6));
    const steps = stream.subscribed(
      { epoch: "e1", offset: 6, recovered: true, publications: [msg(4)] },
      { epoch: "e1", offset: 3 },
    );
    expect(summary(steps)).toEqual(["4", "hole:not_recovered:4-6"]);
    expect(stream.recovering).toBe(false);
  });

  it("stream - starts from the app's since", () => {
    const stream = new ChannelStream({ epoch: "e1", offset: 10 });
    expect(stream.receive(msg(10))).toEqual([]);
    expect(summary(stream.receive(msg(11)))).toEqual(["11"]);
  });
});
