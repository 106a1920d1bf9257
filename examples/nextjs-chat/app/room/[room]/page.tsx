import { notFound, redirect } from "next/navigation";

import { Chat } from "../../../components/chat";
import {
  ROOMS,
  ROOM_PATTERN,
  currentUser,
  webSocketUrl,
} from "../../../lib/config";

export const dynamic = "force-dynamic";

export default async function RoomPage({
  params,
}: {
  params: Promise<{ room: string }>;
}) {
  const { room } = await params;
  if (!ROOM_PATTERN.test(room)) notFound();
  const user = await currentUser();
  if (!user) redirect("/");
  return (
    <Chat room={room} rooms={[...ROOMS]} user={user} url={webSocketUrl()} />
  );
}
