import Link from "next/link";

import { ROOMS, currentUser } from "../lib/config";

export const dynamic = "force-dynamic";

export default async function Home({
  searchParams,
}: {
  searchParams: Promise<{ error?: string }>;
}) {
  const user = await currentUser();
  const { error } = await searchParams;

  if (!user) {
    return (
      <main className="card">
        <h1>Switchboard chat</h1>
        <form action="/session" method="post" className="signin">
          <label htmlFor="name">Your name</label>
          <input
            id="name"
            name="name"
            autoComplete="nickname"
            placeholder="ada"
            pattern="[A-Za-z0-9_\-]{1,24}"
            required
          />
          {error === "name" && (
            <p className="error">1-24 letters, digits, - or _</p>
          )}
          <button type="submit">Sign in</button>
        </form>
      </main>
    );
  }

  return (
    <main className="card">
      <h1>Hello, {user}</h1>
      <p>Pick a room:</p>
      <ul className="rooms">
        {ROOMS.map((room) => (
          <li key={room}>
            <Link href={`/room/${room}`}># {room}</Link>
          </li>
        ))}
      </ul>
      <form action="/session?out" method="post">
        <button type="submit" className="link">
          Sign out
        </button>
      </form>
    </main>
  );
}
