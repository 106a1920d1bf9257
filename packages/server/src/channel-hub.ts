import type { Publication, PresenceEvent } from "./engine.js";
import { messageFrame, textFrame } from "./wire.js";

/** Where the hub writes frames: one connection. */
export interface Subscriber {
  /**
   * Queues an encoded WebSocket frame (see `textFrame`); the same buffer
   * goes to every subscriber.
   */
  sendFrame(frame: Buffer): void;
}

/** One connection's subscription to one channel, as the hub tracks it. */
export interface LocalSubscription {
  /**
   * Live messages held while the subscribe reply is being prepared; unset
   * once the subscription is live.
   */
  buffer: Publication[] | undefined;
  /** Position of the last message delivered to this connection. */
  epoch: string;
  offset: number;
  /** Whether join/leave pushes are wanted. */
  readonly joinLeave: boolean;
}

/**
 * The node's local subscriber sets. A publication is encoded once, as a
 * whole WebSocket frame, and the same buffer is queued for every live
 * subscriber.
 */
export class ChannelHub {
  private readonly channels = new Map<
    string,
    Map<Subscriber, LocalSubscription>
  >();

  /** Adds a subscription; returns true when it is the channel's first. */
  add(
    channel: string,
    subscriber: Subscriber,
    subscription: LocalSubscription,
  ): boolean {
    let subscribers = this.channels.get(channel);
    const first = subscribers === undefined;
    if (!subscribers) {
      subscribers = new Map();
      this.channels.set(channel, subscribers);
    }
    subscribers.set(subscriber, subscription);
    return first;
  }

  /** Removes a subscription; returns true when it was the channel's last. */
  remove(channel: string, subscriber: Subscriber): boolean {
    const subscribers = this.channels.get(channel);
    if (!subscribers?.delete(subscriber)) return false;
    if (subscribers.size > 0) return false;
    this.channels.delete(channel);
    return true;
  }

  /** Local subscribers of a channel. */
  count(channel: string): number {
    return this.channels.get(channel)?.size ?? 0;
  }

  /** Channels with local subscribers. */
  get size(): number {
    return this.channels.size;
  }

  /** Delivers a publication to every local subscriber; returns how many. */
  deliver(publication: Publication): number {
    const subscribers = this.channels.get(publication.channel);
    if (!subscribers) return 0;

    let frame: Buffer | undefined;
    let delivered = 0;
    // forEach rather than for-of over entries: no [key, value] pair is
    // made per subscriber.
    subscribers.forEach((subscription, subscriber) => {
      if (subscription.buffer) {
        subscription.buffer.push(publication);
        return;
      }
      if (!advance(subscription, publication)) return;
      frame ??= textFrame(messageFrame(publication));
      subscriber.sendFrame(frame);
      delivered += 1;
    });
    return delivered;
  }

  /** Delivers one held publication to one subscriber, if it is new. */
  deliverTo(
    subscriber: Subscriber,
    subscription: LocalSubscription,
    publication: Publication,
  ): void {
    if (advance(subscription, publication)) {
      subscriber.sendFrame(textFrame(messageFrame(publication)));
    }
  }

  /** Sends a join or leave to the subscribers that asked for them. */
  announce(event: PresenceEvent, maxUsers: number): void {
    const subscribers = this.channels.get(event.channel);
    if (!subscribers || event.users > maxUsers) return;

    let frame: Buffer | undefined;
    for (const [subscriber, subscription] of subscribers) {
      if (subscription.joinLeave && !subscription.buffer) {
        frame ??= textFrame(
          JSON.stringify({
            type: event.type,
            channel: event.channel,
            user: event.user,
            client: event.client,
          }),
        );
        subscriber.sendFrame(frame);
      }
    }
  }
}

/**
 * Moves a subscription's position to `publication`; false when it was
 * already delivered. A new epoch always moves: the client raises it as a
 * discontinuity.
 */
export function advance(
  subscription: LocalSubscription,
  publication: Publication,
): boolean {
  if (
    publication.epoch === subscription.epoch &&
    publication.offset <= subscription.offset
  ) {
    return false;
  }
  subscription.epoch = publication.epoch;
  subscription.offset = publication.offset;
  return true;
}
