import {
  SwitchboardClient,
  type ClientOptions,
  type ConnectionState,
  type Json,
  type Message,
  type PresenceMember,
  type PublishOptions,
  type PublishResult,
  type Subscription,
  type SubscriptionState,
} from "@switchboard/client";

/** What `useChannel` reports before a subscription exists. */
export type ChannelStatus = SubscriptionState | "idle";

/** A token, or a function the client calls for a fresh one. */
export type TokenSource = string | (() => string | Promise<string>);

/** One channel's wire subscription, shared by every hook that uses it. */
interface Entry {
  refs: number;
  subscription: Subscription | undefined;
  release: ReturnType<typeof setTimeout> | undefined;
  readonly messages: Set<(message: Message) => void>;
  readonly changes: Set<() => void>;
  status: ChannelStatus;
  members: readonly PresenceMember[];
  detach: (() => void) | undefined;
}

/** Empty member list, one object so snapshots compare equal. */
const NO_MEMBERS: readonly PresenceMember[] = [];

/**
 * The client of one provider and the channels its hooks use. It creates
 * the client only when an effect asks for it, so nothing runs during
 * server rendering, and it delays every close and unsubscribe by a tick,
 * so React's StrictMode probe (unmount, then mount again at once) keeps
 * the same socket and the same subscription.
 */
export class ClientHub {
  /** The provider's `url` prop, as given. */
  url = "";
  options: Omit<ClientOptions, "url" | "token"> = {};

  private token: TokenSource | undefined;
  private client: SwitchboardClient | undefined;
  private starts = 0;
  /** Between the provider's mount and its unmount. */
  private live = false;
  /** Publishes made before the provider first started, waiting for it. */
  private readonly waiting: (() => void)[] = [];
  private stopTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly entries = new Map<string, Entry>();
  private readonly stateListeners = new Set<() => void>();
  private offState: (() => void) | undefined;

  /** The client, created on first use; undefined before any effect ran. */
  get current(): SwitchboardClient | undefined {
    return this.client;
  }

  /** The connection state; `connecting` before the client exists. */
  state(): ConnectionState {
    return this.client?.state ?? "connecting";
  }

  /**
   * Takes the provider's `token` prop. A new function is only called from
   * then on; another string, or a token where there was none (or none
   * where there was one), replaces the client, since the connection was
   * made with the old one. So does any new token once the client stopped
   * for good (signed out, or refused), to let a new sign-in connect.
   */
  setToken(token: TokenSource | undefined): void {
    const before = this.token;
    this.token = token;
    const client = this.client;
    if (token === before || !client) return;
    const bothFunctions =
      typeof token === "function" && typeof before === "function";
    if (bothFunctions && client.state !== "closed") return;
    this.closeClient();
    if (this.live) this.connectClient();
  }

  /**
   * Publishes through the client. Before the provider's first start (a
   * child's mount effect runs before its provider's), the publish waits
   * for it, so the client is made with the provider's url and token.
   */
  async publish(
    channel: string,
    data: Json,
    options?: PublishOptions,
  ): Promise<PublishResult> {
    if (this.starts === 0) {
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    return this.ensure().publish(channel, data, options);
  }

  /** Creates the client if there is none yet, and returns it. */
  ensure(): SwitchboardClient {
    if (this.client) return this.client;
    const token = this.token;
    const client = new SwitchboardClient({
      ...this.options,
      url: absoluteUrl(this.url),
      // A function reads the provider's latest prop at every call, so a
      // re-rendered provider never needs a new client for a new function.
      token:
        typeof token === "function"
          ? () => (this.token as () => string | Promise<string>)()
          : token,
    });
    this.client = client;
    this.offState = client.on("state", () => this.notifyState());
    for (const [channel, entry] of this.entries) {
      if (entry.refs > 0) this.attach(channel, entry);
    }
    this.notifyState();
    return client;
  }

  /** The provider mounted: connect (again, after a StrictMode probe). */
  start(): void {
    this.starts += 1;
    this.live = true;
    clearTimeout(this.stopTimer);
    this.stopTimer = undefined;
    this.connectClient();
    for (const resolve of this.waiting.splice(0)) resolve();
  }

  /** The provider unmounted: close, unless it mounts again at once. */
  stop(): void {
    const starts = this.starts;
    this.stopTimer = setTimeout(() => {
      if (this.starts !== starts) return;
      this.live = false;
      this.closeClient();
    }, 0);
  }

  private connectClient(): void {
    // A client that stops for good also emits the error on its `error`
    // event and turns `closed`, which useConnectionState shows.
    void this.ensure()
      .connect()
      .catch(() => undefined);
  }

  /** Closes the client now; a later `ensure` makes a new one. */
  closeClient(): void {
    const client = this.client;
    if (!client) return;
    this.client = undefined;
    this.offState?.();
    for (const entry of this.entries.values()) {
      entry.detach?.();
      entry.detach = undefined;
      entry.subscription = undefined;
      this.setStatus(entry, "idle", NO_MEMBERS);
    }
    void client.close();
    this.notifyState();
  }

  /** Listens to connection state changes; returns the remover. */
  onState(listener: () => void): () => void {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  }

  /** Takes a reference on `channel`; the first one subscribes. */
  acquire(channel: string): void {
    const entry = this.entry(channel);
    entry.refs += 1;
    clearTimeout(entry.release);
    entry.release = undefined;
    if (!entry.subscription) this.attach(channel, entry);
  }

  /** Drops a reference; the last one unsubscribes a tick later. */
  release(channel: string): void {
    const entry = this.entries.get(channel);
    if (!entry) return;
    entry.refs -= 1;
    if (entry.refs > 0) return;
    clearTimeout(entry.release);
    entry.release = setTimeout(() => {
      if (entry.refs > 0) return;
      entry.detach?.();
      void entry.subscription?.unsubscribe().catch(() => undefined);
      if (entry.messages.size === 0 && entry.changes.size === 0) {
        this.entries.delete(channel);
      } else {
        entry.subscription = undefined;
        entry.detach = undefined;
        this.setStatus(entry, "idle", NO_MEMBERS);
      }
    }, 0);
  }

  /** Adds a message listener on `channel`; returns the remover. */
  onMessage(channel: string, listener: (message: Message) => void) {
    const entry = this.entry(channel);
    entry.messages.add(listener);
    return () => entry.messages.delete(listener);
  }

  /** Listens to status and member changes of `channel`. */
  onChange(channel: string, listener: () => void): () => void {
    const entry = this.entry(channel);
    entry.changes.add(listener);
    return () => entry.changes.delete(listener);
  }

  /** The channel's subscription status. */
  status(channel: string): ChannelStatus {
    return this.entries.get(channel)?.status ?? "idle";
  }

  /** The channel's members, one per connection. */
  members(channel: string): readonly PresenceMember[] {
    return this.entries.get(channel)?.members ?? NO_MEMBERS;
  }

  private entry(channel: string): Entry {
    let entry = this.entries.get(channel);
    if (!entry) {
      entry = {
        refs: 0,
        subscription: undefined,
        release: undefined,
        messages: new Set(),
        changes: new Set(),
        status: "idle",
        members: NO_MEMBERS,
        detach: undefined,
      };
      this.entries.set(channel, entry);
    }
    return entry;
  }

  /** Subscribes `channel` on the client, sharing one with earlier uses. */
  private attach(channel: string, entry: Entry): void {
    const client = this.client;
    if (!client) return;
    if (client.state === "closed") {
      // Stopped for good: nothing can subscribe until the provider gets a
      // new url or token, which makes a new client.
      this.setStatus(entry, "unsubscribed", NO_MEMBERS);
      return;
    }
    // Presence is always asked for: one wire subscription then serves
    // both useChannel and usePresence of the channel.
    const subscription =
      client.getSubscription(channel) ??
      client.subscribe(channel, { presence: true });
    entry.subscription = subscription;
    const update = () =>
      this.setStatus(entry, subscription.state, [...subscription.members]);
    const removers = [
      subscription.on("message", (message) => {
        for (const listener of entry.messages) listener(message);
      }),
      subscription.on("subscribed", update),
      subscription.on("members", update),
      subscription.on("join", update),
      subscription.on("leave", update),
      subscription.on("unsubscribed", update),
    ];
    entry.detach = () => removers.forEach((remove) => remove());
    update();
  }

  private setStatus(
    entry: Entry,
    status: ChannelStatus,
    members: readonly PresenceMember[],
  ): void {
    entry.status = status;
    entry.members = members.length === 0 ? NO_MEMBERS : members;
    for (const listener of entry.changes) listener();
  }

  private notifyState(): void {
    for (const listener of this.stateListeners) listener();
  }
}

/** `/ws` on the page's own host, with `ws:` or `wss:` as the page uses. */
function absoluteUrl(url: string): string {
  if (!url.startsWith("/")) return url;
  const { protocol, host } = window.location;
  return `${protocol === "https:" ? "wss:" : "ws:"}//${host}${url}`;
}
