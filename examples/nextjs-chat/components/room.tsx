"use client";

import type { ConnectionState, Message } from "@switchboard/client";
import {
  useChannel,
  useConnectionState,
  usePresence,
  usePublish,
  useSwitchboard,
} from "@switchboard/react";
import Link from "next/link";
import {
  useCallback,
  useEffect,
  useRef,
  useState,
  type FormEvent,
} from "react";

import { MAX_TEXT, mergeLines, toLine, type ChatLine } from "./messages";

/** Messages read from history when a room opens. */
const HISTORY_LIMIT = 50;
/** Least time between two typing signals, ms. */
const TYPING_SIGNAL_MS = 1_500;
/** How long a typing signal shows, ms. */
const TYPING_SHOWN_MS = 3_000;

const BADGE: Record<ConnectionState, string> = {
  connected: "Live",
  connecting: "Connecting…",
  disconnected: "Offline",
  closed: "Disconnected",
};

interface Pending {
  readonly id: string;
  readonly text: string;
  readonly failed: boolean;
}

export interface RoomProps {
  room: string;
  rooms: string[];
  user: string;
}

/** One room: messages, who is here, who is typing, and the composer. */
export function Room({ room, rooms, user }: RoomProps) {
  const channel = `chat:${room}`;
  const state = useConnectionState();
  const client = useSwitchboard();
  const [lines, setLines] = useState<ChatLine[]>([]);
  const [pending, setPending] = useState<Pending[]>([]);
  const [draft, setDraft] = useState("");

  const add = useCallback((messages: readonly Message[]) => {
    const added = messages.map(toLine).filter((line) => line !== undefined);
    const ids = new Set(added.map((line) => line.id));
    setLines((list) => mergeLines(list, added));
    setPending((list) => list.filter((item) => !ids.has(item.id)));
  }, []);

  const typing = useTyping(room, user, state);
  const status = useChannel(channel, (message) => {
    add([message]);
    // A message ends its author's typing.
    if (message.publisher?.user) typing.stop(message.publisher.user);
  });
  const members = usePresence(channel);
  const publish = usePublish(channel);
  const people = [...new Set(members.map((member) => member.user))].sort();

  // History is read once the subscription is live, so nothing published
  // between the read and the subscription is missed; overlaps merge.
  const loaded = useRef(false);
  useEffect(() => {
    if (status !== "subscribed" || !client || loaded.current) return;
    loaded.current = true;
    client
      .history(channel, { limit: HISTORY_LIMIT, reverse: true })
      .then((result) => add(result.publications))
      .catch(() => {
        loaded.current = false;
      });
  }, [status, client, channel, add]);

  const bottom = useRef<HTMLLIElement>(null);
  useEffect(() => {
    bottom.current?.scrollIntoView({ block: "end" });
  }, [lines.length, pending.length]);

  function send(event: FormEvent) {
    event.preventDefault();
    const text = draft.trim();
    if (!text) return;
    const id = crypto.randomUUID();
    setDraft("");
    typing.reset();
    setPending((list) => [...list, { id, text, failed: false }]);
    // While offline the client keeps the publish and sends it on
    // reconnect, under an idempotency key, so it lands once.
    publish({ text, id }).catch(() =>
      setPending((list) =>
        list.map((item) => (item.id === id ? { ...item, failed: true } : item)),
      ),
    );
  }

  return (
    <div className="chat">
      <header className="bar">
        <Link href="/" className="back" aria-label="All rooms">
          ‹
        </Link>
        <h1># {room}</h1>
        <span className={`badge ${state}`} data-testid="connection">
          {BADGE[state]}
        </span>
      </header>

      <aside className="side">
        <nav>
          <h2>Rooms</h2>
          <ul>
            {rooms.map((name) => (
              <li key={name}>
                <Link
                  href={`/room/${name}`}
                  className={name === room ? "current" : undefined}
                >
                  # {name}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <section>
          <h2>Here now · {people.length}</h2>
          <ul className="people">
            {people.map((name) => (
              <li key={name} data-testid="member">
                <span className="dot" />
                {name}
                {name === user && <span className="you"> (you)</span>}
              </li>
            ))}
          </ul>
        </section>
      </aside>

      <main className="log">
        <ol>
          {lines.map((line) => (
            <li
              key={line.key}
              data-testid="message"
              className={
                line.notice ? "notice" : line.author === user ? "mine" : ""
              }
            >
              <span className="author">{line.author}</span>
              <span className="text">{line.text}</span>
              {line.cut && (
                <span className="state" data-testid="cut">
                  cut at {MAX_TEXT} characters
                </span>
              )}
            </li>
          ))}
          {pending.map((item) => (
            <li key={item.id} className="mine pending" data-testid="pending">
              <span className="author">{user}</span>
              <span className="text">{item.text}</span>
              <span className="state">
                {item.failed ? "not sent" : "sending…"}
              </span>
            </li>
          ))}
          <li ref={bottom} className="end" aria-hidden />
        </ol>
      </main>

      <footer className="compose">
        <p className="typing" data-testid="typing">
          {typing.names.length > 0 &&
            `${typing.names.join(", ")} ${
              typing.names.length === 1 ? "is" : "are"
            } typing…`}
        </p>
        <form onSubmit={send}>
          <input
            aria-label="Message"
            placeholder={`Message #${room}`}
            value={draft}
            maxLength={MAX_TEXT}
            onChange={(event) => {
              setDraft(event.target.value);
              typing.signal();
            }}
          />
          <button type="submit" disabled={!draft.trim()}>
            Send
          </button>
        </form>
      </footer>
    </div>
  );
}

/**
 * Who else is typing in the room, and `signal()` to say the user is.
 * Signals go on a channel without history; none are sent offline, where
 * they would arrive late.
 */
function useTyping(room: string, user: string, state: ConnectionState) {
  const [until, setUntil] = useState<Record<string, number>>({});
  const [now, setNow] = useState(0);
  const last = useRef(0);
  const publish = usePublish(`typing:${room}`);

  useChannel(`typing:${room}`, (message) => {
    const who = message.publisher?.user;
    if (!who || who === user) return;
    setUntil((map) => ({ ...map, [who]: Date.now() + TYPING_SHOWN_MS }));
    setNow(Date.now());
  });

  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 1_000);
    return () => clearInterval(timer);
  }, []);

  const names = Object.entries(until)
    .filter(([, time]) => time > now)
    .map(([name]) => name)
    .sort();

  const signal = useCallback(() => {
    if (state !== "connected") return;
    if (Date.now() - last.current < TYPING_SIGNAL_MS) return;
    last.current = Date.now();
    publish(true).catch(() => undefined);
  }, [publish, state]);

  const stop = useCallback((who: string) => {
    setUntil((map) => {
      if (!(who in map)) return map;
      const rest = { ...map };
      delete rest[who];
      return rest;
    });
  }, []);

  // After a send, the next keystroke says "typing" again at once.
  const reset = useCallback(() => {
    last.current = 0;
  }, []);

  return { names, signal, stop, reset };
}
